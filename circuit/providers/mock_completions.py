"""The mock provider's legacy completions (`POST /completions`): each prompt answered as the
mock answers a chat message of it (mock_reply), in OpenAI's `text_completion` shape, JSON or
a stream of `text` chunks (a usage chunk when asked for, then `[DONE]`).

`max_tokens` defaults to 16 as OpenAI's does; `n` choices per prompt, prompt by prompt.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from circuit.accounting.tokens import TokenCounter
from circuit.providers.mock_reply import compose
from circuit.providers.mock_wire import usage_json
from circuit.wire import Usage

#: OpenAI's default `max_tokens` on this endpoint.
DEFAULT_MAX_TOKENS = 16


def _prompts(prompt: Any) -> list[str]:
    """Each prompt as text (token ids are answered as their count of words, unread)."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
        return [f"{len(prompt)} tokens"]
    return [p if isinstance(p, str) else f"{len(p)} tokens" for p in prompt or []]


def completions_answer(body: dict[str, Any], model: str, counter: TokenCounter
                       ) -> tuple[list[dict[str, Any]], Usage]:
    """The choices (text, index, finish_reason) and usage of an (already checked) request."""
    choices: list[dict[str, Any]] = []
    used, given = Usage(), body.get("max_tokens")
    for prompt in _prompts(body.get("prompt")):
        chat = {"messages": [{"role": "user", "content": prompt}], "n": body.get("n"),
                "max_tokens": given if isinstance(given, int) else DEFAULT_MAX_TOKENS}
        reply = compose({k: v for k, v in chat.items() if v is not None}, model, counter)
        for choice in reply.choices:
            choices.append({"text": choice.content or "", "index": len(choices),
                            "logprobs": None, "finish_reason": choice.finish_reason})
        used = Usage(used.input_tokens + reply.usage.input_tokens,
                     used.output_tokens + reply.usage.output_tokens)
    return choices, used


def _head(model: str) -> dict[str, Any]:
    return {"id": f"cmpl-mock{time.monotonic_ns()}", "object": "text_completion",
            "created": int(time.time()), "model": model, "system_fingerprint": "fp_circuit_mock"}


def completions_body(body: dict[str, Any], model: str, counter: TokenCounter) -> bytes:
    choices, usage = completions_answer(body, model, counter)
    return orjson.dumps({**_head(model), "choices": choices, "usage": _usage(usage)})


async def completions_chunks(body: dict[str, Any], model: str, counter: TokenCounter
                             ) -> AsyncIterator[list[bytes]]:
    """The `data:` values of the stream: one chunk a choice, the usage chunk, `[DONE]`."""
    choices, usage = completions_answer(body, model, counter)
    head = _head(model)
    yield [orjson.dumps({**head, "choices": [choice]}) for choice in choices]
    yield [orjson.dumps({**head, "choices": [], "usage": _usage(usage)}), b"[DONE]"]


def _usage(usage: Usage) -> dict[str, Any]:
    answer = usage_json(usage)
    answer.pop("prompt_tokens_details"), answer.pop("completion_tokens_details")
    return answer
