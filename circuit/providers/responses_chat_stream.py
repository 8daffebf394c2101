"""A chat-completions stream → the Responses stream the OpenAI SDK expects, event by event.

    chat chunk                         Responses events (each with its sequence_number)
    (before the first)                 response.created, response.in_progress
    delta.reasoning_content            [output_item.added (reasoning), content_part.added]
                                       response.reasoning_text.delta
    delta.content                      [the reasoning closed] [output_item.added (message),
                                       content_part.added]
                                       response.output_text.delta
    delta.tool_calls[i] with id/name   [the message closed] output_item.added (function_call)
    delta.tool_calls[i].arguments      response.function_call_arguments.delta
    usage-only chunk                   (kept for the end)
    an error payload                   error
    the stream's end                   the open items closed (reasoning_text.done,
                                       output_text.done,
                                       content_part.done, function_call_arguments.done,
                                       output_item.done), then response.completed — or
                                       response.incomplete when cut by length — with usage

`ResponsesWriter` is the pure part (chat StreamEvents in, Responses StreamEvents out, each
carrying the text, usage and finish reason the provider read, for the tally);
`TranslatedStream` wraps a provider's EventStream with it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from circuit.errors import StreamBroken
from circuit.providers.openai_wire import reasoning_of
from circuit.providers.responses_chat import (
    call_item,
    message_item,
    namespaces,
    reasoning_item,
    response_object,
    split_name,
)
from circuit.wire import EventStream, StreamEvent, Usage


@dataclass(frozen=True, slots=True)
class _TextKind:
    """An output item of one text part, built up from deltas: a message or a reasoning item."""

    prefix: str  # of its item id
    build: Callable[..., dict[str, Any]]  # (item id, text[, status]) → the item
    events: str  # its events are response.<events>.delta / .done
    extra: dict[str, Any]  # fields those events carry beside the text


_MESSAGE = _TextKind("msg", message_item, "output_text", {"logprobs": []})
_REASONING = _TextKind("rs", reasoning_item, "reasoning_text", {})


@dataclass(slots=True)
class _OpenText:
    kind: _TextKind
    item_id: str
    output_index: int
    pieces: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Call:
    item_id: str
    output_index: int
    call_id: str
    name: str
    namespace: str | None = None
    arguments: list[str] = field(default_factory=list)


class ResponsesWriter:
    """Writes the Responses events of one translated stream (see the module docstring)."""

    def __init__(self, request: dict[str, Any], model: str) -> None:
        self._request = request
        self._namespaces = namespaces(request)
        self._model = model
        self._suffix = uuid.uuid4().hex
        self._id = "resp_" + self._suffix
        self._created = int(time.time())
        #: The sequence number of the next event: an event added after the last (an error
        #: the relay writes) takes it.
        self.sequence = 0
        self._output: list[dict[str, Any]] = []
        self._message: _OpenText | None = None
        self._reasoning: _OpenText | None = None
        self._calls: dict[int, _Call] = {}
        self._open_calls: list[_Call] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.started = False

    def _event(self, type_: str, counted: str = "", **fields: Any) -> StreamEvent:
        """One event; `counted` is the output text it brings (for the tally)."""
        data = orjson.dumps({"type": type_, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        return StreamEvent(data, event=type_.encode(), text=counted,
                           outputs=1 if counted else 0)

    def _response(self, status: str, usage: Usage | None = None) -> dict[str, Any]:
        return response_object(self._request, self._id, self._created, status=status,
                               output=list(self._output), usage=usage, model=self._model,
                               finish=self.finish_reason)

    def start(self) -> list[StreamEvent]:
        self.started = True
        return [self._event("response.created", response=self._response("in_progress")),
                self._event("response.in_progress", response=self._response("in_progress"))]

    def feed(self, events: list[StreamEvent]) -> list[StreamEvent]:
        """The Responses events for a read of chat StreamEvents."""
        out = [] if self.started else self.start()
        for event in events:
            if event.usage is not None:
                self.usage = event.usage
            if event.finish_reason:
                self.finish_reason = event.finish_reason
            if event.error is not None:
                error = event.error
                out.append(StreamEvent(orjson.dumps({
                    "type": "error", "sequence_number": self.sequence,
                    "code": error.get("code"), "message": error.get("message") or "error",
                    "param": error.get("param")}), event=b"error", error=error))
                self.sequence += 1
                return out
            try:
                chunk = orjson.loads(event.data)
                for choice in chunk.get("choices") or ():
                    if isinstance(choice, dict) and choice.get("index", 0) == 0:
                        delta = choice.get("delta")
                        if isinstance(delta, dict):
                            out += self._delta(delta)
            except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
                # A chunk of an odd shape (choices not a list, an unhashable index, …).
                raise StreamBroken("the upstream sent a chunk that cannot be translated "
                                   f"({exc.__class__.__name__})",
                                   code="bad_upstream_response") from None
        return out

    def _delta(self, delta: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        thought = reasoning_of(delta)
        if thought:
            self._reasoning = self._text_delta(self._reasoning, _REASONING, thought, out)
        content = delta.get("content") or delta.get("refusal")
        if isinstance(content, str) and content:
            out += self._close_reasoning()
            self._message = self._text_delta(self._message, _MESSAGE, content, out)
        for piece in delta.get("tool_calls") or ():
            if not isinstance(piece, dict):
                continue
            function = piece.get("function") if isinstance(piece.get("function"), dict) else {}
            index = piece.get("index", 0)
            call = self._calls.get(index)
            if call is None:
                out += self._close_reasoning() + self._close_message()
                full = function.get("name") if isinstance(function.get("name"), str) else ""
                namespace, name = split_name(full, self._namespaces)
                call = _Call(f"fc_{self._suffix}_{index}", len(self._output),
                             str(piece.get("id") or f"call_{self._suffix}_{index}"), name,
                             namespace)
                self._calls[index] = call
                self._open_calls.append(call)
                item = call_item(call.item_id, call.call_id, name, "", "in_progress",
                                 namespace)
                self._output.append(item)
                out.append(self._event("response.output_item.added", counted=full,
                                       output_index=call.output_index, item=item))
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                call.arguments.append(arguments)
                out.append(self._event("response.function_call_arguments.delta",
                                       counted=arguments, item_id=call.item_id,
                                       output_index=call.output_index, delta=arguments))
        return out

    def _text_delta(self, current: _OpenText | None, kind: _TextKind, text: str,
                    out: list[StreamEvent]) -> _OpenText:
        """`text` added to the open item of `kind` (opened first when none is): its events
        onto `out`; the open item back."""
        if current is None:
            index = len(self._output)
            current = _OpenText(kind, f"{kind.prefix}_{self._suffix}_{index}", index)
            item = kind.build(current.item_id, "", "in_progress")
            self._output.append(item)
            out += [self._event("response.output_item.added", output_index=index, item=item),
                    self._event("response.content_part.added", item_id=current.item_id,
                                output_index=index, content_index=0,
                                part=kind.build(current.item_id, "")["content"][0])]
        current.pieces.append(text)
        out.append(self._event(f"response.{kind.events}.delta", counted=text,
                               item_id=current.item_id, output_index=current.output_index,
                               content_index=0, delta=text, **kind.extra))
        return current

    def _close_text(self, current: _OpenText | None) -> list[StreamEvent]:
        if current is None:
            return []
        kind, text = current.kind, "".join(current.pieces)
        index, item_id = current.output_index, current.item_id
        item = kind.build(item_id, text)
        self._output[index] = item
        return [self._event(f"response.{kind.events}.done", item_id=item_id,
                            output_index=index, content_index=0, text=text, **kind.extra),
                self._event("response.content_part.done", item_id=item_id, output_index=index,
                            content_index=0, part=item["content"][0]),
                self._event("response.output_item.done", output_index=index, item=item)]

    def _close_reasoning(self) -> list[StreamEvent]:
        out, self._reasoning = self._close_text(self._reasoning), None
        return out

    def _close_message(self) -> list[StreamEvent]:
        out, self._message = self._close_text(self._message), None
        return out

    def _close_calls(self) -> list[StreamEvent]:
        out = []
        for call in self._open_calls:
            arguments = "".join(call.arguments) or "{}"
            item = call_item(call.item_id, call.call_id, call.name, arguments,
                             namespace=call.namespace)
            self._output[call.output_index] = item
            out += [self._event("response.function_call_arguments.done", item_id=call.item_id,
                                output_index=call.output_index, name=call.name,
                                arguments=arguments),
                    self._event("response.output_item.done", output_index=call.output_index,
                                item=item)]
        self._open_calls = []
        return out

    def finish(self) -> list[StreamEvent]:
        """The events that end the stream well: open items closed, then the terminal event
        with the whole response and its usage."""
        out = [] if self.started else self.start()
        out += self._close_reasoning() + self._close_message() + self._close_calls()
        response = self._response("completed", self.usage)
        terminal = self._event("response." + response["status"], response=response)
        terminal.usage, terminal.finish_reason = self.usage, self.finish_reason or "stop"
        return [*out, terminal]


class TranslatedStream:
    """A provider's chat EventStream, read out as a Responses stream."""

    def __init__(self, inner: EventStream, writer: ResponsesWriter) -> None:
        self._inner = aiter(inner)
        self._source = inner
        self.writer = writer
        self._ended = False

    def __aiter__(self) -> TranslatedStream:
        return self

    async def __anext__(self) -> list[StreamEvent]:
        if self._ended:
            raise StopAsyncIteration
        try:
            events = await anext(self._inner)
        except StopAsyncIteration:
            self._ended = True
            return self.writer.finish()
        out = self.writer.feed(events)
        if out and out[-1].error is not None:
            self._ended = True
        return out

    async def aclose(self) -> None:
        await self._source.aclose()
