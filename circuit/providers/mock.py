"""The built-in mock provider: deterministic, faithful OpenAI answers without a network.

It answers any model name: a reply derived from the last user message (or tool result), tool
calls when tools are offered, JSON that meets a requested `response_format` schema, `n`
choices, `stop` sequences, the token limit and logprobs, in OpenAI's exact JSON and stream
shapes, with usage counted by the real tokenizer (`mock_reply` says what it answers,
`mock_wire` how it goes on the wire). The same request always gets the same answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from circuit.accounting.tokens import TokenCounter
from circuit.providers.base import ChatCall, Completion
from circuit.providers.mock_reply import MockReply, compose
from circuit.providers.mock_wire import MockChunkStream, completion_body

MOCK_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-5-mini", "mock-echo")
#: Bodies up to this size are answered inline (tens of microseconds at most); larger ones,
#: whose prompt takes milliseconds to count, off the event loop.
_INLINE_BYTES = 16 * 1024


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

    async def _reply(self, call: ChatCall) -> MockReply:
        body = call.body
        # Tools and response formats make the mock generate JSON from a client's schema, work
        # a small body can make large (tens of milliseconds within the generator's caps).
        if (len(call.raw) > _INLINE_BYTES or "tools" in body or "functions" in body
                or "response_format" in body):
            return await asyncio.to_thread(compose, body, call.model, self._counter)
        return compose(body, call.model, self._counter)

    async def complete(self, call: ChatCall) -> Completion:
        reply = await self._reply(call)
        return Completion(body=completion_body(reply, call.model), usage=reply.usage,
                          finish_reason=reply.choices[0].finish_reason, text=reply.text)

    async def open_stream(self, call: ChatCall) -> MockChunkStream:
        return MockChunkStream(await self._reply(call), call.model, self._delay)
