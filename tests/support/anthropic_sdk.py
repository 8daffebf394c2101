"""The Anthropic SDK's exception classes the tests expect, whatever its version: recent SDKs
raise a class per status (OverloadedError for 529, ServiceUnavailableError for 503, both kinds
of InternalServerError); older ones InternalServerError itself."""

from __future__ import annotations

import anthropic

OVERLOADED = getattr(anthropic, "OverloadedError", anthropic.InternalServerError)
UNAVAILABLE = getattr(anthropic, "ServiceUnavailableError", anthropic.InternalServerError)
