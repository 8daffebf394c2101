"""OpenAI Responses ⇄ chat completions: pure translation, no I/O, stateless.

    chat_request(body)                       a Responses request → a chat-completions body
    response_from_chat(completion, request)  a `chat.completion` → a Response object
    responses_usage(usage)                   `Usage` → the Responses `usage` object

For targets that speak no Responses: OpenAI-compatible chat-only upstreams (vLLM, Ollama,
`responses = false`), the mock, and Anthropic (whose provider translates chat on to Messages).
What chat has no words for is refused with an InvalidRequest 400 naming it, before any
network call (the door then leaves such targets out of the route, routing.able_targets): hosted and custom tools (web search, file search, …), stored state, file inputs.
Reasoning items from an earlier turn are dropped: they are another model's encrypted state;
reasoning text a chat upstream sends (`reasoning_content`) comes back as a `reasoning` item
with `reasoning_text` content, as vLLM's Responses server answers for open models;
so are OpenAI-only fields (`metadata`, `include`, `prompt_cache_key`, …), which some chat
servers refuse. `max_output_tokens` is written as chat's `max_tokens`; the provider sends it
under its own `max_tokens_field` (`Call.translated`). The functions of a `namespace` tool go to chat as `<namespace>__<name>` and
their calls come back split (`split_name`).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from circuit.errors import InvalidRequest
from circuit.providers.openai_wire import reasoning_of
from circuit.wire import Usage

#: Fields of a Responses request passed to chat as they are (others, like `metadata` or
#: `prompt_cache_key`, are OpenAI's own and some chat servers refuse what they do not know).
_SAME = ("temperature", "top_p")
#: chat `finish_reason` → (Responses status, incomplete reason).
_STATUS = {"length": ("incomplete", "max_output_tokens"),
           "content_filter": ("incomplete", "content_filter")}


def reject(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, code="unsupported_parameter", param=param)


#: A chat request's top-level fields, as the Responses request they came from names them
#: (`messages` holds `instructions` and `input` both: `input`, the likelier).
_PARAMS = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens",
           "messages": "input", "response_format": "text.format",
           "reasoning_effort": "reasoning.effort", "tools": "tools",
           "tool_choice": "tool_choice", "parallel_tool_calls": "parallel_tool_calls",
           "temperature": "temperature", "top_p": "top_p", "model": "model",
           "stream": "stream"}


def responses_param(param: str | None) -> str | None:
    """The Responses field a chat upstream's error `param` is about, for a client that never
    sent chat (`max_completion_tokens` is its `max_output_tokens`); None for a field it has no
    name for. `tools[2].function.name` keeps its tool's index; a message's index is dropped
    (instructions and items do not map one to one)."""
    if not param:
        return None
    head, rest = param, ""
    for at, char in enumerate(param):
        if char in ".[":
            head, rest = param[:at], param[at:]
            break
    named = _PARAMS.get(head)
    if named is None:
        return None
    return named + rest if head == "tools" else named


# ---------------------------------------------------------------------- request


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body for a Responses request (`model` and `stream` kept)."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif isinstance(instructions, list):
        _add_items(messages, instructions, "instructions")
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    elif isinstance(items, list):
        _add_items(messages, items, "input")
    if not messages:
        raise reject("The request has no input to send to the model", "input")
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("stream") is True:
        out["stream"] = True
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for name in _SAME:
        if body.get(name) is not None:
            out[name] = body[name]
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["user"] = user
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        out["reasoning_effort"] = reasoning["effort"]
    _add_format(body.get("text"), out)
    _add_tools(body, out)
    return out


def _add_items(messages: list[dict[str, Any]], items: list[Any], where: str) -> None:
    for index, item in enumerate(items):
        at = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise reject(f"'{at}' must be an object", at)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise reject(f"'{at}.role' must be user, system, developer or assistant", at)
            content = _content(item.get("content"), at, role == "assistant")
            messages.append({"role": role, "content": content})
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not (isinstance(call_id, str) and call_id and isinstance(name, str) and name):
                raise reject(f"'{at}' (a function_call) needs a 'call_id' and a 'name'", at)
            arguments = item.get("arguments")
            if isinstance(item.get("namespace"), str) and item["namespace"]:
                name = item["namespace"] + NAMESPACE_JOIN + name
            call = {"id": call_id, "type": "function",
                    "function": {"name": name,
                                 "arguments": arguments if isinstance(arguments, str) else "{}"}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not (isinstance(call_id, str) and call_id):
                raise reject(f"'{at}' (a function_call_output) needs a 'call_id'", at)
            output = item.get("output")
            content = output if isinstance(output, str) else _content(output, at, False)
            messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
        elif kind == "reasoning":
            continue  # another model's (encrypted) thinking: nothing a chat upstream can take
        elif kind == "item_reference":
            raise reject(f"'{at}' refers to an item stored by OpenAI; this model's upstream "
                         "keeps none: send the item itself", at)
        else:
            raise reject(f"'{at}' is an item of type {kind!r}, which this model's upstream "
                         "(chat completions) cannot take", at)


def _content(content: Any, at: str, assistant: bool) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise reject(f"'{at}.content' must be a string or an array of content parts", at)
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str) \
                and not assistant:
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise reject(f"'{at}.content' has a part of type {kind!r} that this model's "
                         "upstream (chat completions) cannot take (images by URL or data "
                         "URL and text can be sent; files and file ids cannot)", at)
    if assistant:  # chat's assistant turns are text
        return "".join(part["text"] for part in parts)
    return parts


#: Joins a namespace and a function's name into one chat function name (chat and Anthropic
#: allow letters, digits, `_` and `-` in a name, no dots).
NAMESPACE_JOIN = "__"


def _function(tool: Any, at: str, namespace: str | None = None) -> dict[str, Any]:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind != "function" or not isinstance(tool.get("name"), str):
        raise reject(f"'{at}' is a {kind!r} tool: only function tools (alone or in a "
                     "namespace) can be sent to this model's upstream (OpenAI's hosted and "
                     "custom tools run on OpenAI only)", at)
    function = {name: tool[name] for name in ("description", "parameters", "strict")
                if tool.get(name) is not None}
    name = tool["name"] if namespace is None else namespace + NAMESPACE_JOIN + tool["name"]
    return {"type": "function", "function": {"name": name, **function}}


def namespaces(request: dict[str, Any]) -> frozenset[str]:
    """The names of the request's namespace tools."""
    return frozenset(tool["name"] for tool in request.get("tools") or ()
                     if isinstance(tool, dict) and tool.get("type") == "namespace"
                     and isinstance(tool.get("name"), str))


def split_name(name: str, known: frozenset[str]) -> tuple[str | None, str]:
    """(namespace, function name) of a chat function name made by `_function`."""
    namespace, sep, rest = name.partition(NAMESPACE_JOIN)
    return (namespace, rest) if sep and rest and namespace in known else (None, name)


def _add_format(text: Any, out: dict[str, Any]) -> None:
    form = text.get("format") if isinstance(text, dict) else None
    if not isinstance(form, dict) or form.get("type") in (None, "text"):
        return
    if form["type"] == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif form["type"] == "json_schema":
        schema = {name: form[name] for name in ("name", "schema", "strict", "description")
                  if name in form}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        raise reject(f"'text.format' of type {form['type']!r} is not supported", "text.format")


def _add_tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise reject("'tools' must be an array of tools", "tools")
    if tools:
        translated = []
        for index, tool in enumerate(tools):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind == "namespace" and isinstance(tool.get("name"), str) \
                    and isinstance(tool.get("tools"), list):
                # A group of functions: each goes to chat as `<namespace>__<name>`.
                for number, inner in enumerate(tool["tools"]):
                    translated.append(_function(inner, f"tools[{index}].tools[{number}]",
                                                tool["name"]))
                continue
            translated.append(_function(tool, f"tools[{index}]"))
        out["tools"] = translated
        if isinstance(body.get("parallel_tool_calls"), bool):  # chat refuses it without tools
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    choice = body.get("tool_choice")
    if choice is None or "tools" not in out:
        return  # chat completions refuses a tool_choice without tools (the Agents SDK sends one)
    if choice in ("auto", "none", "required"):
        out["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function" \
            and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise reject("'tool_choice' must be \"auto\", \"none\", \"required\" or "
                     "{\"type\": \"function\", \"name\": ...} for this model's upstream",
                     "tool_choice")


# ---------------------------------------------------------------------- response


def responses_usage(usage: Usage) -> dict[str, Any]:
    """`Usage` in the Responses shape."""
    return {"input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_input_tokens,
                                     "cache_write_tokens": usage.cache_write_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.input_tokens + usage.output_tokens}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": content if text or status == "completed" else []}


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """A `reasoning` output item holding a chat upstream's reasoning text (no summary: the
    upstream made none; no encrypted_content: there is no state to carry to a next turn)."""
    content = [{"type": "reasoning_text", "text": text}] if text or status == "completed" \
        else []
    return {"id": item_id, "type": "reasoning", "status": status, "summary": [],
            "content": content}


def call_item(item_id: str, call_id: str, name: str, arguments: str,
              status: str = "completed", namespace: str | None = None) -> dict[str, Any]:
    item = {"id": item_id, "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}
    if namespace is not None:
        item["namespace"] = namespace
    return item


def response_object(request: dict[str, Any], response_id: str, created: int, *,
                    status: str, output: list[dict[str, Any]], usage: Usage | None,
                    model: str | None = None, finish: str | None = None) -> dict[str, Any]:
    """A Response object for `request`, echoing its settings as OpenAI does (it is not
    stored, whatever `store` asked: Circuit keeps no responses)."""
    if finish in _STATUS and status == "completed":
        status = _STATUS[finish][0]
    incomplete = {"reason": _STATUS[finish][1]} if status == "incomplete" and \
        finish in _STATUS else None
    instructions = request.get("instructions")
    response = {
        "id": response_id, "object": "response", "created_at": created, "status": status,
        "background": False, "error": None, "incomplete_details": incomplete,
        "instructions": instructions, "max_output_tokens": request.get("max_output_tokens"),
        "model": model or request.get("model"), "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None, "reasoning": request.get("reasoning"),
        "temperature": request.get("temperature"),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": [_tool_echo(tool) for tool in request.get("tools") or ()],
        "top_p": request.get("top_p"), "truncation": "disabled",
        "metadata": request.get("metadata") or {},
    }
    # Absent rather than null, as the spec has them: usage until the end, an unnamed user.
    if usage is not None:
        response["usage"] = responses_usage(usage)
    if isinstance(request.get("user"), str):
        response["user"] = request["user"]
    return response


def _tool_echo(tool: Any) -> Any:
    """A function tool as a Response echoes it: `strict` and `parameters` always there."""
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"description": None, **tool, "parameters": tool.get("parameters"),
                "strict": tool.get("strict")}
    return tool


def response_from_chat(completion: dict[str, Any], request: dict[str, Any],
                       usage: Usage | None) -> dict[str, Any]:
    """The Response object for a `chat.completion` (KeyError/TypeError on another shape)."""
    choice = completion["choices"][0]
    message = choice["message"]
    suffix = str(completion.get("id") or "").removeprefix("chatcmpl-") or str(time.time_ns())
    output: list[dict[str, Any]] = []
    thought = reasoning_of(message)
    if thought:
        output.append(reasoning_item("rs_" + suffix, thought))
    text = message.get("content")
    if isinstance(message.get("refusal"), str) and not text:
        text = message["refusal"]
    if isinstance(text, str) and text:
        output.append(message_item("msg_" + suffix, text))
    known = namespaces(request)
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        namespace, name = split_name(function["name"], known)
        output.append(call_item(f"fc_{suffix}_{index}", call["id"], name,
                                function.get("arguments") or "{}", namespace=namespace))
    if not any(item["type"] != "reasoning" for item in output):
        output.append(message_item("msg_" + suffix, ""))
    model = completion.get("model") if isinstance(completion.get("model"), str) else None
    return response_object(request, "resp_" + suffix, int(completion.get("created") or
                                                          time.time()),
                           status="completed", output=output, usage=usage, model=model,
                           finish=choice.get("finish_reason"))


def translated_body(completion_body: bytes, request: dict[str, Any],
                    usage: Usage | None) -> bytes:
    """`response_from_chat` from and to bytes."""
    return orjson.dumps(response_from_chat(orjson.loads(completion_body), request, usage))
