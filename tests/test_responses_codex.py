"""A request as Codex CLI sends it (captured from codex-cli 0.169: its developer instructions,
function tools, a `namespace` of sub-agent tools, `web_search`, `store: false`,
`include: ["reasoning.encrypted_content"]`, `client_metadata`, a stream), through the door:
byte for byte to OpenAI, translated for a chat-only upstream."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY

CODEX = (Path(__file__).parent / "specs" / "codex-request.json").read_bytes()
HEADERS = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}


def _post(gateway, raw: bytes, request_id: str) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/responses", content=raw,
                      headers={**HEADERS, "x-request-id": request_id}, timeout=15)


def test_codex_request_reaches_openai_byte_for_byte_and_its_stream_comes_back(
        door, upstream, request_id):
    answer = _post(door, CODEX, request_id)
    assert answer.status_code == 200
    assert upstream.last.raw == CODEX
    assert answer.content == bytes(upstream.last.sent)
    row = door.record(request_id)
    assert (row["upstream_api"], row["status"], row["usage_source"]) == (
        "responses", "ok", "provider")


def test_codex_request_for_a_chat_only_upstream_names_the_hosted_tool_it_cannot_take(
        door, upstream, request_id):
    body = orjson.loads(CODEX)
    answer = _post(door, orjson.dumps({**body, "model": "local-llama"}), request_id)
    assert answer.status_code == 400
    where = answer.json()["error"]["param"]
    assert body["tools"][int(where[6:-1])]["type"] == "web_search"
    assert upstream.calls == 0


def test_codex_request_without_web_search_is_translated_for_a_chat_only_upstream(
        door, upstream, request_id):
    upstream.script(Behaviour(reply="Hello from a local model"))
    body = orjson.loads(CODEX)
    tools = [tool for tool in body["tools"] if tool["type"] != "web_search"]
    answer = _post(door, orjson.dumps({**body, "model": "local-llama", "tools": tools}),
                   request_id)
    assert answer.status_code == 200
    assert "Hello from a local model" in answer.text
    sent = upstream.last.body
    assert [m["role"] for m in sent["messages"]] == ["developer", "developer", "user", "user"]
    names = [tool["function"]["name"] for tool in sent["tools"]]
    assert "exec_command" in names and "multi_agent_v1__close_agent" in names
    assert not {"include", "store", "client_metadata", "prompt_cache_key"} & set(sent)
    assert door.record(request_id)["upstream_api"] == "chat"
