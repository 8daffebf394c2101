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

import orjson

from circuit.accounting.tokens import TokenCounter
from circuit.errors import UpstreamRejected
from circuit.providers.mock_completions import completions_body, completions_chunks
from circuit.providers.mock_embeddings import embeddings_body
from circuit.providers.mock_reply import MockReply, compose
from circuit.providers.mock_wire import MockChunkStream, completion_body
from circuit.providers.openai_wire import OpenAIEvents, PayloadEvents, wants_usage
from circuit.wire import Call, Completion, Passthrough, WireReader

MOCK_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-5-mini", "mock-echo")
#: Bodies up to this size are answered inline (tens of microseconds at most); larger ones,
#: whose prompt takes milliseconds to count, off the event loop.
_INLINE_BYTES = 16 * 1024


class MockProvider:
    """Answers locally; `delay` seconds between stream chunks makes it feel like a model."""

    wire = "chat"
    speaks_responses = False

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

    async def _reply(self, call: Call) -> MockReply:
        body = call.body
        check_knobs(body)
        # Tools and response formats make the mock generate JSON from a client's schema, work
        # a small body can make large (tens of milliseconds within the generator's caps).
        if (len(call.raw) > _INLINE_BYTES or "tools" in body or "functions" in body
                or "response_format" in body):
            return await asyncio.to_thread(compose, body, call.model, self._counter)
        return compose(body, call.model, self._counter)

    def takes(self, body: dict) -> None:
        """Every chat body goes upstream as it came."""

    async def complete(self, call: Call) -> Completion:
        reply = await self._reply(call)
        return Completion(body=completion_body(reply, call.model), usage=reply.usage,
                          finish_reason=reply.choices[0].finish_reason, text=reply.text)

    async def forward(self, request: Passthrough, reader: WireReader
                      ) -> Completion | PayloadEvents:
        """Embeddings, legacy completions and a model's description; other formats a door
        translates to chat."""
        path = request.path.partition("?")[0]
        if path == "/embeddings" and request.method == "POST":
            body = orjson.loads(request.body)  # checked by the door
            if len(request.body) > _INLINE_BYTES or isinstance(body.get("input"), list) \
                    and len(body["input"]) > 16:
                answer = await asyncio.to_thread(embeddings_body, body, body["model"],
                                                 self._counter)
            else:
                answer = embeddings_body(body, body["model"], self._counter)
            return reader.completion(answer)
        if path == "/completions" and request.method == "POST":
            body = orjson.loads(request.body)  # checked by the door
            if request.stream:
                return PayloadEvents(completions_chunks(body, body["model"], self._counter),
                                     reader.transform())
            return reader.completion(await asyncio.to_thread(
                completions_body, body, body["model"], self._counter))
        if path.startswith("/models/") and request.method == "GET":
            # The mock answers any model name, so it describes any.
            return reader.completion(orjson.dumps({
                "id": path.removeprefix("/models/"), "object": "model", "created": 0,
                "owned_by": self.name}))
        raise UpstreamRejected(404, f"The mock provider does not serve {request.method} "
                               f"{path}", type="invalid_request_error", code="not_found")

    async def open_stream(self, call: Call) -> PayloadEvents:
        chunks = MockChunkStream(await self._reply(call), call.model, self._delay)
        return PayloadEvents(chunks, OpenAIEvents(wants_usage(call.body)))


def check_knobs(body: dict) -> None:
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
