"""The built-in mock provider: deterministic, realistic OpenAI answers without a network.

It answers any model name with a reply derived from the last user message, honours `max_tokens`,
streams one chunk per word and reports usage counted with the real tokenizer, so a new user (and
the tests) see exactly what a real upstream would produce.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from circuit.accounting.tokens import TokenCounter
from circuit.errors import UpstreamRejected
from circuit.providers.openai_wire import OpenAIEvents, PayloadEvents, wants_usage
from circuit.wire import Call, Completion, Usage

MOCK_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-5-mini", "mock-echo")
_WORD = re.compile(r"\s*\S+")
#: Bodies up to this size are counted inline (tens of microseconds at most).
_INLINE_COUNT_BYTES = 16 * 1024
_ids = itertools.count(1)


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content
                                if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def check_knobs(body: dict[str, Any]) -> None:
    """Refuse ill-typed output knobs as OpenAI does (the gateway leaves them to upstreams)."""
    for name, minimum in (("max_tokens", 0), ("max_completion_tokens", 0), ("n", 1)):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise UpstreamRejected(400, f"Invalid type for '{name}': expected an integer",
                                   type="invalid_request_error", code="invalid_type",
                                   param=name)
        if value < minimum:
            raise UpstreamRejected(
                400, f"Invalid '{name}': integer below minimum value. Expected a value >= "
                f"{minimum}, but got {value} instead.", type="invalid_request_error",
                code="integer_below_min_value", param=name)


class MockProvider:
    """Answers locally; `delay` seconds between stream chunks makes it feel like a model."""

    reports_stream_usage = True

    def __init__(self, counter: Callable[[], TokenCounter], name: str = "mock",
                 delay: float = 0.0) -> None:
        self.name = name
        self._load_counter = counter
        self._counter: TokenCounter | None = None
        self._delay = delay

    async def start(self) -> None:
        # Its usage is counted with the real tokenizer, loaded off the event loop.
        self._counter = await asyncio.to_thread(self._load_counter)

    async def aclose(self) -> None:
        return None

    async def list_models(self) -> list[str]:
        return list(MOCK_MODELS)

    def _answer(self, call: Call) -> tuple[list[str], str, Usage]:
        check_knobs(call.body)
        prompt = _last_user_text(call.body.get("messages"))
        excerpt = " ".join(prompt.split()[:12]) or "(nothing)"
        reply = (f"This is a mock reply from Circuit. You said: {excerpt}. The mock provider "
                 "answers every request deterministically, so you can try the gateway without "
                 "an upstream key.")
        words = _WORD.findall(reply)
        limit = _max_tokens(call.body)
        finish = "stop"
        if limit is not None:
            kept: list[str] = []
            for word in words:
                if self._counter.count_text(call.model, "".join(kept) + word) > limit:
                    finish = "length"
                    break
                kept.append(word)
            words = kept
        usage = Usage(input_tokens=self._counter.count_messages(call.model,
                                                                call.body.get("messages")),
                      output_tokens=self._counter.count_text(call.model, "".join(words)))
        return words, finish, usage

    async def _counted_answer(self, call: Call) -> tuple[list[str], str, Usage]:
        # Counting a large prompt takes milliseconds: off the event loop, as everywhere else.
        if len(call.raw) > _INLINE_COUNT_BYTES:
            return await asyncio.to_thread(self._answer, call)
        return self._answer(call)

    async def complete(self, call: Call) -> Completion:
        words, finish, usage = await self._counted_answer(call)
        text = "".join(words)
        body = {
            "id": f"chatcmpl-mock{next(_ids)}", "object": "chat.completion",
            "created": int(time.time()), "model": call.model,
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": text, "refusal": None}}],
            "usage": _usage_json(usage), "system_fingerprint": "fp_circuit_mock",
        }
        return Completion(body=orjson.dumps(body), usage=usage, finish_reason=finish, text=text)

    async def open_stream(self, call: Call) -> PayloadEvents:
        words, finish, usage = await self._counted_answer(call)
        return PayloadEvents(MockChunkStream(call.model, words, finish, usage, self._delay),
                             OpenAIEvents(wants_usage(call.body)))


def _usage_json(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


class MockChunkStream:
    def __init__(self, model: str, words: list[str], finish: str, usage: Usage,
                 delay: float) -> None:
        self._chunks = self._generate(model, words, finish, usage, delay)

    async def _generate(self, model: str, words: list[str], finish: str, usage: Usage,
                        delay: float) -> AsyncIterator[list[bytes]]:
        base = {"id": f"chatcmpl-mock{next(_ids)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model,
                "system_fingerprint": "fp_circuit_mock"}

        def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
            return orjson.dumps({**base, "choices": [{"index": 0, "delta": delta,
                                                      "logprobs": None,
                                                      "finish_reason": finish_reason}],
                                 "usage": None})

        yield [chunk({"role": "assistant", "content": "", "refusal": None})]
        for word in words:
            if delay:
                await asyncio.sleep(delay)
            yield [chunk({"content": word})]
        yield [chunk({}, finish),
               orjson.dumps({**base, "choices": [], "usage": _usage_json(usage)})]

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self._chunks

    async def aclose(self) -> None:
        await self._chunks.aclose()
