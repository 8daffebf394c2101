"""The fake OpenAI upstream's endpoints beside chat: embeddings, legacy completions, stored
chat completions, a model's description, files — each in OpenAI's wire format (checked
against shared/specs/openai-openapi.yaml), each scripted by the same `Behaviour`s as chat
(status, hang, send_usage, usage, oversized, error_message …).

* ``POST /v1/embeddings``: one vector per input, 1536 floats (3072 for
  ``text-embedding-3-large``, or ``dimensions``), as numbers or, with
  ``encoding_format: "base64"``, the base64 of their little-endian float32 bytes;
  ``prompt_tokens`` = words of each string + length of each token array.
* ``POST /v1/completions``: ``text_completion`` (JSON, or SSE chunks with ``text``, a usage
  chunk with ``choices: []`` when ``stream_options.include_usage``, then ``[DONE]``;
  ``drop_after_chunks`` breaks the connection after that many chunks).
* stored chat completions: every chat completion made with ``"store": true`` is kept, and
  listed (``limit``, ``model`` query), retrieved, updated (``metadata``), deleted, and its
  messages listed.
* ``GET /v1/models/{id}``; ``GET|POST /v1/files`` (the upload's content type is kept).
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tests.fakes.oversized import write_padded

if TYPE_CHECKING:
    from tests.fakes.openai_upstream import Behaviour, FakeOpenAI


def vector(index: int, size: int) -> list[float]:
    """The fake's vector for the `index`-th input: float32 values, exact in JSON."""
    return [((index + 1) * (i + 1) % 97) / 128 for i in range(size)]


def embedding_tokens(item: Any) -> int:
    return len(item.split()) if isinstance(item, str) else len(item)


def _inputs(value: Any) -> list[Any]:
    if isinstance(value, str) or (isinstance(value, list) and value and
                                  isinstance(value[0], int)):
        return [value]
    return value if isinstance(value, list) else []


def embeddings_answer(body: dict[str, Any], behaviour: Behaviour) -> dict[str, Any]:
    model = body["model"]
    size = body.get("dimensions") or (3072 if "large" in model else 1536)
    data, tokens = [], 0
    for index, item in enumerate(_inputs(body.get("input"))):
        tokens += embedding_tokens(item)
        values = vector(index, size)
        embedding: Any = values
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{size}f", *values)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    answer: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if behaviour.send_usage:
        answer["usage"] = behaviour.usage or {"prompt_tokens": tokens, "total_tokens": tokens}
    return answer


def completion_text(body: dict[str, Any], behaviour: Behaviour) -> tuple[list[str], str]:
    words = (behaviour.reply or "This is a deterministic legacy completion.").split()
    limit = body.get("max_tokens", 16)
    if isinstance(limit, int) and 0 <= limit < len(words) and not behaviour.ignore_max_tokens:
        return words[:limit], "length"
    return words, "stop"


class SurfaceRoutes:
    """The handlers, bound to one FakeOpenAI (its script, its records, its errors)."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.stored: dict[str, dict[str, Any]] = {}
        self.stored_messages: dict[str, list[dict[str, Any]]] = {}

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/chat/completions", self._list_stored)
        app.router.add_get("/v1/chat/completions/{id}", self._get_stored)
        app.router.add_post("/v1/chat/completions/{id}", self._update_stored)
        app.router.add_delete("/v1/chat/completions/{id}", self._delete_stored)
        app.router.add_get("/v1/chat/completions/{id}/messages", self._stored_messages)
        app.router.add_get("/v1/models/{id:.+}", self._model)
        app.router.add_get("/v1/files", self._list_files)
        app.router.add_post("/v1/files", self._upload_file)

    def keep(self, body: dict[str, Any], answer: dict[str, Any]) -> None:
        """A chat completion made with `store: true`, kept as OpenAI keeps it."""
        if body.get("store") is True:
            self.stored[answer["id"]] = {**answer, "metadata": body.get("metadata") or {}}
            self.stored_messages[answer["id"]] = [
                {"id": f"{answer['id']}-{i}", "role": m.get("role"), "content": m.get("content"),
                 "name": None, "content_parts": None}
                for i, m in enumerate(body.get("messages") or [])]

    # ---------------------------------------------------------------- plumbing

    async def _begin(self, request: web.Request, needs_body: bool = True
                     ) -> tuple[Any, Behaviour | None, web.Response | None]:
        """(body, behaviour, early answer): records the request, checks its key, applies
        the behaviour's hang and error status."""
        fake = self.fake
        rec = await fake.record(request)
        if rec.api_key is None:
            return None, None, fake.unauthorized()
        if needs_body and rec.body is None:
            return None, None, fake.json_error(400, {"error": {
                "message": "We could not parse the JSON body of your request.",
                "type": "invalid_request_error", "param": None, "code": None}})
        behaviour = fake.next_behaviour()
        rec.behaviour = behaviour
        if behaviour.hang > 0:
            await asyncio.sleep(behaviour.hang)
        if behaviour.status != 200:
            return rec.body, behaviour, fake.error_answer(behaviour)
        return rec.body, behaviour, None

    @staticmethod
    def _json(obj: Any, behaviour: Behaviour | None = None) -> web.Response:
        headers = behaviour.headers if behaviour is not None else {}
        return web.Response(body=orjson.dumps(obj), content_type="application/json",
                            headers=headers)

    def _missing(self, what: str) -> web.Response:
        return self.fake.json_error(404, {"error": {
            "message": f"No {what} found.", "type": "invalid_request_error", "param": None,
            "code": None}})

    # ---------------------------------------------------------------- embeddings, completions

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, behaviour, early = await self._begin(request)
        if early is not None:
            return early
        if behaviour.oversized is not None:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await write_padded(response, b'{"object": "list", "data": [{"object": '
                               b'"embedding", "index": 0, "embedding": "', behaviour.oversized,
                               b'"}], "model": "m", "usage": {"prompt_tokens": 1, '
                               b'"total_tokens": 1}}')
            await response.write_eof()
            return response
        return self._json(embeddings_answer(body, behaviour), behaviour)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body, behaviour, early = await self._begin(request)
        if early is not None:
            return early
        words, finish = completion_text(body, behaviour)
        prompt = body.get("prompt")
        prompt_tokens = sum(embedding_tokens(p) for p in _inputs(prompt))
        usage = behaviour.usage or {"prompt_tokens": prompt_tokens,
                                    "completion_tokens": len(words),
                                    "total_tokens": prompt_tokens + len(words)}
        head = {"id": f"cmpl-fake{self.fake.calls}", "object": "text_completion",
                "created": int(time.time()), "model": body["model"],
                "system_fingerprint": "fp_fa4e0000ed"}
        if body.get("stream") is not True:
            answer = {**head, "choices": [{"text": " ".join(words), "index": 0,
                                           "logprobs": None, "finish_reason": finish}]}
            if behaviour.send_usage:
                answer["usage"] = usage
            return self._json(answer, behaviour)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, word in enumerate(words):
            if behaviour.drop_after_chunks is not None and index >= behaviour.drop_after_chunks:
                await self.fake.abort(request)
            chunk = {**head, "choices": [{"text": word if index == 0 else " " + word,
                                          "index": 0, "logprobs": None,
                                          "finish_reason": finish if index == len(words) - 1
                                          else None}]}
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        options = body.get("stream_options") or {}
        if options.get("include_usage") and behaviour.send_usage:
            await response.write(b"data: " + orjson.dumps({**head, "choices": [],
                                                           "usage": usage}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    # ---------------------------------------------------------------- stored chat completions

    async def _list_stored(self, request: web.Request) -> web.Response:
        _, behaviour, early = await self._begin(request, needs_body=False)
        if early is not None:
            return early
        items = list(self.stored.values())
        if "model" in request.query:
            items = [item for item in items if item["model"] == request.query["model"]]
        limit = int(request.query.get("limit", 20))
        page = items[:limit]
        return self._json({"object": "list", "data": page,
                           "first_id": page[0]["id"] if page else None,
                           "last_id": page[-1]["id"] if page else None,
                           "has_more": len(items) > limit}, behaviour)

    async def _get_stored(self, request: web.Request) -> web.Response:
        _, behaviour, early = await self._begin(request, needs_body=False)
        if early is not None:
            return early
        stored = self.stored.get(request.match_info["id"])
        return self._json(stored, behaviour) if stored else self._missing("chat completion")

    async def _update_stored(self, request: web.Request) -> web.Response:
        body, behaviour, early = await self._begin(request)
        if early is not None:
            return early
        stored = self.stored.get(request.match_info["id"])
        if stored is None:
            return self._missing("chat completion")
        stored["metadata"] = body.get("metadata") or {}
        return self._json(stored, behaviour)

    async def _delete_stored(self, request: web.Request) -> web.Response:
        _, behaviour, early = await self._begin(request, needs_body=False)
        if early is not None:
            return early
        completion_id = request.match_info["id"]
        if self.stored.pop(completion_id, None) is None:
            return self._missing("chat completion")
        return self._json({"object": "chat.completion.deleted", "id": completion_id,
                           "deleted": True}, behaviour)

    async def _stored_messages(self, request: web.Request) -> web.Response:
        _, behaviour, early = await self._begin(request, needs_body=False)
        if early is not None:
            return early
        messages = self.stored_messages.get(request.match_info["id"])
        if messages is None:
            return self._missing("chat completion")
        return self._json({"object": "list", "data": messages,
                           "first_id": messages[0]["id"] if messages else None,
                           "last_id": messages[-1]["id"] if messages else None,
                           "has_more": False}, behaviour)

    # ---------------------------------------------------------------- models, files

    async def _model(self, request: web.Request) -> web.Response:
        _, behaviour, early = await self._begin(request, needs_body=False)
        if early is not None:
            return early
        model = request.match_info["id"]
        if model not in self.fake.models:
            return self.fake.json_error(404, {"error": {
                "message": f"The model '{model}' does not exist", "type":
                "invalid_request_error", "param": "model", "code": "model_not_found"}})
        return self._json({"id": model, "object": "model", "created": 1715367049,
                           "owned_by": "system"}, behaviour)

    async def _list_files(self, request: web.Request) -> web.Response:
        _, behaviour, early = await self._begin(request, needs_body=False)
        if early is not None:
            return early
        return self._json({"object": "list", "data": [_file(9)], "first_id": "file-fake1",
                           "last_id": "file-fake1", "has_more": False}, behaviour)

    async def _upload_file(self, request: web.Request) -> web.Response:
        _, behaviour, early = await self._begin(request, needs_body=False)
        if early is not None:
            return early
        return self._json(_file(len(self.fake.last.raw)), behaviour)


def _file(size: int) -> dict[str, Any]:
    return {"id": "file-fake1", "object": "file", "bytes": size, "created_at": 1715367049,
            "filename": "upload.jsonl", "purpose": "batch", "status": "processed"}
