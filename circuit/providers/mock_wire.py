"""A mock reply in OpenAI's wire format: the `chat.completion` body and the chunk stream.

The stream is cut the way OpenAI's is: a first delta per choice with the role (and, for a tool
call, its id, type, name and empty arguments), then text one word at a time (one token at a time
when logprobs are asked for, each chunk with its tokens' logprobs), JSON and tool arguments in
short fragments, a last delta per choice with the finish reason, then the usage chunk. With
`n` > 1 the choices' chunks interleave, each carrying its index.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Iterator
from itertools import zip_longest
from typing import Any

import orjson

from circuit.providers.mock_logprobs import whole_pieces
from circuit.providers.mock_reply import MockCall, MockChoice, MockReply
from circuit.wire import Usage

# Both split losslessly: the pieces join back into the text, trailing whitespace included.
_WORD = re.compile(r"\s*\S+|\s+")
#: JSON in pieces the size of tokens: `{"`, `city`, `":"`, `Paris`, `"}`.
_FRAGMENT = re.compile(r"\s*(?:\w+|[^\w\s]+)|\s+")
_ids = itertools.count(1)
_FINGERPRINT = "fp_circuit_mock"


def completion_body(reply: MockReply, model: str) -> bytes:
    """The `chat.completion` JSON body."""
    choices = []
    for index, choice in enumerate(reply.choices):
        choices.append({"index": index, "finish_reason": choice.finish_reason,
                        "logprobs": _logprobs(reply, choice.logprobs),
                        "message": _message(choice)})
    return orjson.dumps({
        "id": f"chatcmpl-mock{next(_ids)}", "object": "chat.completion",
        "created": int(time.time()), "model": model, "choices": choices,
        "usage": usage_json(reply.usage), "system_fingerprint": _FINGERPRINT,
    })


def usage_json(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _message(choice: MockChoice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.content, "refusal": None}
    if choice.legacy_call and choice.calls:
        call = choice.calls[0]
        message["function_call"] = {"name": call.name, "arguments": call.arguments}
    elif choice.calls:
        message["tool_calls"] = [_call_json(call) for call in choice.calls]
    return message


def _call_json(call: MockCall, arguments: str | None = None) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name,
                         "arguments": call.arguments if arguments is None else arguments}}


def _logprobs(reply: MockReply, entries: list[dict] | None) -> dict[str, Any] | None:
    return {"content": entries, "refusal": None} if reply.logprobs else None


class MockChunkStream:
    """The reply as `chat.completion.chunk` payloads, `delay` seconds between chunks."""

    def __init__(self, reply: MockReply, model: str, delay: float) -> None:
        self._chunks = self._generate(reply, model, delay)

    async def _generate(self, reply: MockReply, model: str,
                        delay: float) -> AsyncIterator[list[bytes]]:
        base = {"id": f"chatcmpl-mock{next(_ids)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model,
                "system_fingerprint": _FINGERPRINT}

        def chunk(index: int, delta: dict, logprobs: Any = None,
                  finish_reason: str | None = None) -> bytes:
            return orjson.dumps({**base, "choices": [{"index": index, "delta": delta,
                                                      "logprobs": logprobs,
                                                      "finish_reason": finish_reason}],
                                 "usage": None})

        first = reply.choices[0]
        if len(reply.choices) == 1 and not first.calls and not reply.logprobs:
            # The plain reply, as cheap as it ever was: one chunk per word.
            yield [chunk(0, {"role": "assistant", "content": "", "refusal": None})]
            for piece in (_FRAGMENT if first.structured else _WORD).findall(first.content or ""):
                if delay:
                    await asyncio.sleep(delay)
                yield [chunk(0, {"content": piece})]
        else:
            steps = zip_longest(*(_deltas(reply, choice) for choice in reply.choices))
            for number, step in enumerate(steps):
                if delay and number:
                    await asyncio.sleep(delay)
                yield [chunk(index, *delta) for index, delta in enumerate(step) if delta]
        yield [*(chunk(index, {}, None, choice.finish_reason)
                 for index, choice in enumerate(reply.choices)),
               orjson.dumps({**base, "choices": [], "usage": usage_json(reply.usage)})]

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self._chunks

    async def aclose(self) -> None:
        await self._chunks.aclose()


def _deltas(reply: MockReply, choice: MockChoice) -> Iterator[tuple[dict, Any]]:
    """One choice's deltas (and their logprobs), all but the finishing one."""
    if choice.calls:
        yield from _call_deltas(choice)
        return
    yield {"role": "assistant", "content": "", "refusal": None}, _logprobs(reply, [])
    if choice.logprobs is not None:
        for text, entries in whole_pieces(choice.logprobs):
            yield {"content": text}, {"content": entries, "refusal": None}
        return
    split = _FRAGMENT if choice.structured else _WORD
    for piece in split.findall(choice.content or ""):
        yield {"content": piece}, None


def _call_deltas(choice: MockChoice) -> Iterator[tuple[dict, Any]]:
    start: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if choice.legacy_call:
        call = choice.calls[0]
        yield {**start, "function_call": {"name": call.name, "arguments": ""}}, None
        for piece in _FRAGMENT.findall(call.arguments):
            yield {"function_call": {"arguments": piece}}, None
        return
    for index, call in enumerate(choice.calls):
        opening = {"tool_calls": [{"index": index, **_call_json(call, "")}]}
        yield ({**start, **opening} if index == 0 else opening), None
        for piece in _FRAGMENT.findall(call.arguments):
            yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}, None
