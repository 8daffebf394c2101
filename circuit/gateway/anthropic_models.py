"""GET /v1/models in Anthropic's shape, for a client that sends `anthropic-version` (the
Anthropic SDK's `models.list()`, Claude Code's model picker)."""

from __future__ import annotations

from typing import Any

#: Anthropic's models carry a creation time; the gateway's routes have none.
_EPOCH = "1970-01-01T00:00:00Z"


def anthropic_model_list(models: list[str]) -> dict[str, Any]:
    """One page holding every model: `{"data": [...], "has_more": false, first_id, last_id}`."""
    data = [{"type": "model", "id": m, "display_name": m, "created_at": _EPOCH} for m in models]
    return {"data": data, "has_more": False, "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None}
