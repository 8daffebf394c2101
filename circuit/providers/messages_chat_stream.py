"""A chat-completions stream as Anthropic's Messages stream, event by event.

    chat chunk                      Messages events
    (first read)                    message_start (usage: zeros; the chat usage comes last)
    delta.reasoning_content         content_block_start thinking (signature ""), then
                                    content_block_delta thinking_delta (no signature_delta:
                                    see messages_chat)
    delta.content                   content_block_stop (of an open thinking block),
                                    content_block_start text (once), content_block_delta text
    delta.tool_calls[i] with id     content_block_stop (of the open block),
                                    content_block_start tool_use {id, name, input: {}}
    delta.tool_calls[i].arguments   content_block_delta input_json_delta
    finish_reason                   (kept for message_delta)
    usage chunk                     (kept for message_delta)
    an error payload                event: error (the relay ends the stream there)
    end of the chat stream          content_block_stop, message_delta {stop_reason, usage},
                                    message_stop

Each event carries what the chat provider already read (text, usage), so nothing is counted
twice and accounting sees the same stream whatever the door.
"""

from __future__ import annotations

from typing import Any

import orjson

from circuit.providers.messages_chat import (
    STOP_REASONS,
    anthropic_usage,
    message_from_chat,
    thinking_block,
)
from circuit.providers.openai_wire import reasoning_of
from circuit.wire import Completion, EventStream, StreamEvent, Usage


def _event(name: str, body: dict[str, Any], **fields: Any) -> StreamEvent:
    return StreamEvent(orjson.dumps({"type": name, **body}), event=name.encode(), **fields)


class MessagesFromChat:
    """The EventStream of Anthropic events made from a chat provider's EventStream."""

    def __init__(self, chat: EventStream, model: str) -> None:
        self._chat = chat
        self._iterator = aiter(chat)
        self._model = model
        self._started = False
        self._ended = False
        self._block: int | None = None  # index of the open content block
        self._kind: str | None = None  # and its type
        self._blocks = 0
        self._tools: dict[int, int] = {}  # chat tool call index → block index
        self._stop: str | None = None
        self._usage: Usage | None = None
        self._id = ""

    def __aiter__(self) -> MessagesFromChat:
        return self

    async def __anext__(self) -> list[StreamEvent]:
        if self._ended:
            raise StopAsyncIteration
        try:
            read = await anext(self._iterator)
        except StopAsyncIteration:
            self._ended = True
            return self._start() + self._finish()
        # Translated first, so message_start can carry the id the first chunk brought.
        translated = [out for event in read for out in self._translate(event)]
        return self._start() + translated

    async def aclose(self) -> None:
        await self._chat.aclose()

    def _start(self) -> list[StreamEvent]:
        if self._started:
            return []
        self._started = True
        return [_event("message_start", {"message": {
            "id": "msg_" + self._id, "type": "message", "role": "assistant",
            "model": self._model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})]

    def _open(self, block: dict[str, Any]) -> list[StreamEvent]:
        out = self._close()
        self._block = self._blocks
        self._kind = block["type"]
        self._blocks += 1
        out.append(_event("content_block_start", {"index": self._block,
                                                  "content_block": block}))
        return out

    def _close(self) -> list[StreamEvent]:
        if self._block is None:
            return []
        index, self._block, self._kind = self._block, None, None
        return [_event("content_block_stop", {"index": index})]

    def _translate(self, event: StreamEvent) -> list[StreamEvent]:
        if event.usage is not None:
            self._usage = event.usage
        if event.error is not None:
            kind = "overloaded_error" if event.error.get("code") == "upstream_overloaded" \
                else "api_error"
            return [_event("error", {"error": {"type": kind, "message": str(
                event.error.get("message") or "upstream error")}}, error=event.error)]
        try:
            chunk = orjson.loads(event.data)
            choice = (chunk.get("choices") or [None])[0]
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return []
        if not isinstance(choice, dict):
            return []
        if not self._id and isinstance(chunk.get("id"), str):
            self._id = chunk["id"]
        out: list[StreamEvent] = []
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            return out
        thought = reasoning_of(delta)
        if thought:
            out.extend(self._delta(thinking_block(), {"type": "thinking_delta",
                                                      "thinking": thought}, thought))
        text = delta.get("content")
        if isinstance(text, str) and text:
            out.extend(self._delta({"type": "text", "text": ""},
                                   {"type": "text_delta", "text": text}, text))
        for call in delta.get("tool_calls") or ():
            out.extend(self._tool_delta(call))
        if choice.get("finish_reason"):
            self._stop = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def _delta(self, block: dict[str, Any], delta: dict[str, Any], text: str
               ) -> list[StreamEvent]:
        """A text or thinking delta, in a block of its type (opened unless it is open)."""
        out = self._open(block) if self._kind != block["type"] else []
        out.append(_event("content_block_delta", {"index": self._block, "delta": delta},
                          text=text, outputs=1))
        return out

    def _tool_delta(self, call: Any) -> list[StreamEvent]:
        if not isinstance(call, dict):
            return []
        function = call.get("function") or {}
        out: list[StreamEvent] = []
        number = call.get("index", 0)
        if call.get("id") or number not in self._tools:
            name = str(function.get("name") or "")
            out.extend(self._open({"type": "tool_use", "id": str(call.get("id") or ""),
                                   "name": name, "input": {}}))
            out[-1].text, out[-1].outputs = name, 1 if name else 0
            self._tools[number] = self._block  # type: ignore[assignment]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments and self._tools[number] == self._block:
            out.append(_event("content_block_delta", {"index": self._block, "delta": {
                "type": "input_json_delta", "partial_json": arguments}},
                text=arguments, outputs=1))
        return out

    def _finish(self) -> list[StreamEvent]:
        stop = self._stop or "end_turn"
        return [*self._close(),
                _event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                         "usage": anthropic_usage(self._usage)},
                       finish_reason=stop),
                _event("message_stop", {}, usage=self._usage)]


def chat_answer_as_messages(answer: Completion | EventStream, model: str
                            ) -> Completion | EventStream:
    """A chat provider's answer (JSON or stream) in the Messages format, under `model`."""
    if isinstance(answer, Completion):
        return message_from_chat(answer, model)
    return MessagesFromChat(answer, model)
