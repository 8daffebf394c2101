"""The mock provider's tool calls, through the gateway, as the official SDK sees them."""

from __future__ import annotations

import json

import jsonschema
import pytest

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {
        "zone": {"type": "string", "format": "uuid"}}, "required": ["zone"]}}}
TOOLS = [WEATHER, TIME]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _create(gateway, messages, **options):
    return gateway.client().chat.completions.create(model="gpt-4o-mini", messages=messages,
                                                    **options)


def _called(completion) -> list[str]:
    return [call.function.name for call in completion.choices[0].message.tool_calls or ()]


def _after_result(question: str, name: str = "get_weather") -> list[dict]:
    """The question, the assistant's call of `name`, and the tool's result."""
    return [*_ask(question),
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": name, "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees"}]


def test_auto_calls_the_tool_the_message_names(mock_gateway):
    completion = _create(mock_gateway, _ask("What time is it in Tokyo?"), tools=TOOLS)
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.choices[0].message.content is None
    assert _called(completion) == ["get_time"]


def test_without_a_named_tool_the_first_is_called(mock_gateway):
    assert _called(_create(mock_gateway, _ask("Hello"), tools=TOOLS)) == ["get_weather"]


def test_arguments_validate_against_the_tool_schema(mock_gateway):
    completion = _create(mock_gateway, _ask("The weather and the time, please"), tools=TOOLS)
    calls = completion.choices[0].message.tool_calls
    assert len(calls) == 2
    for call in calls:
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name],
                            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert len({call.id for call in calls}) == 2


def test_parallel_tool_calls_false_calls_only_one(mock_gateway):
    completion = _create(mock_gateway, _ask("The weather and the time, please"), tools=TOOLS,
                         parallel_tool_calls=False)
    assert _called(completion) == ["get_weather"]


def test_tool_choice_none_answers_in_text(mock_gateway):
    completion = _create(mock_gateway, _ask("Weather?"), tools=TOOLS, tool_choice="none")
    assert completion.choices[0].finish_reason == "stop"
    assert "You said: Weather?" in completion.choices[0].message.content


def test_a_named_tool_choice_is_called_whatever_the_message_says(mock_gateway):
    completion = _create(mock_gateway, _ask("What is the weather?"), tools=TOOLS,
                         tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert _called(completion) == ["get_time"]


def test_allowed_tools_narrow_the_choice(mock_gateway):
    choice = {"type": "allowed_tools", "allowed_tools": {
        "mode": "required", "tools": [{"type": "function", "function": {"name": "get_time"}}]}}
    completion = _create(mock_gateway, _ask("What is the weather?"), tools=TOOLS,
                         tool_choice=choice)
    assert _called(completion) == ["get_time"]


def test_after_a_tool_result_auto_answers_text_about_it(mock_gateway):
    completion = _create(mock_gateway, _after_result("Weather in Paris?"), tools=TOOLS)
    assert completion.choices[0].finish_reason == "stop"
    assert "The tool returned: Sunny, 21 degrees" in completion.choices[0].message.content


def test_after_a_tool_result_required_calls_a_tool_not_called_yet(mock_gateway):
    completion = _create(mock_gateway, _after_result("Weather in Paris?"), tools=TOOLS,
                         tool_choice="required")
    assert _called(completion) == ["get_time"]


def test_a_new_question_after_a_tool_result_calls_tools_again(mock_gateway):
    messages = [*_after_result("Weather in Paris?"),
                {"role": "assistant", "content": "It is sunny."}, *_ask("And the time?")]
    assert _called(_create(mock_gateway, messages, tools=TOOLS)) == ["get_time"]


def test_legacy_functions_answer_a_function_call(mock_gateway):
    completion = _create(mock_gateway, _ask("Weather in Paris?"),
                         functions=[WEATHER["function"]])
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_weather"
    jsonschema.validate(json.loads(choice.message.function_call.arguments),
                        SCHEMAS["get_weather"])


def test_legacy_function_call_none_answers_in_text(mock_gateway):
    completion = _create(mock_gateway, _ask("Weather?"), functions=[WEATHER["function"]],
                         function_call="none")
    assert completion.choices[0].message.function_call is None
    assert completion.choices[0].message.content


def test_stream_sends_the_call_head_first_then_argument_fragments(mock_gateway):
    chunks = list(_create(mock_gateway, _ask("Weather in Paris?"), tools=TOOLS, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    head = deltas[0].tool_calls[0]
    assert deltas[0].role == "assistant"
    assert (head.index, head.type, head.function.name, head.function.arguments) == (
        0, "function", "get_weather", "")
    assert head.id.startswith("call_")
    fragments = [d.tool_calls[0].function.arguments for d in deltas[1:] if d.tool_calls]
    assert len(fragments) > 3
    assert all(d.tool_calls[0].id is None for d in deltas[1:] if d.tool_calls)
    jsonschema.validate(json.loads("".join(fragments)), SCHEMAS["get_weather"])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_of_legacy_function_call_sends_name_then_fragments(mock_gateway):
    chunks = list(_create(mock_gateway, _ask("Weather?"), functions=[WEATHER["function"]],
                          stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].function_call.name == "get_weather"
    assert deltas[0].function_call.arguments == ""
    arguments = "".join(d.function_call.arguments for d in deltas[1:] if d.function_call)
    jsonschema.validate(json.loads(arguments), SCHEMAS["get_weather"])
    assert chunks[-1].choices[0].finish_reason == "function_call"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tool_call_tokens_are_the_usage_and_the_record(mock_gateway, request_id, stream):
    options = {"stream_options": {"include_usage": True}} if stream else {}
    answer = _create(mock_gateway, _ask("Weather in Paris?"), tools=TOOLS, stream=stream,
                     extra_headers={"x-request-id": request_id}, **options)
    usage = [c.usage for c in answer if c.usage][0] if stream else answer.usage
    record = mock_gateway.record(request_id)
    assert record["tokens_output"] == usage.completion_tokens > 5
    assert record["tokens_input"] == usage.prompt_tokens


def test_tool_definitions_count_as_prompt_tokens(mock_gateway):
    bare = _create(mock_gateway, _ask("Weather?"), tools=TOOLS, tool_choice="none")
    plain = _create(mock_gateway, _ask("Weather?"))
    assert bare.usage.prompt_tokens > plain.usage.prompt_tokens + 20


def test_max_tokens_cuts_the_arguments_and_says_length(mock_gateway):
    completion = _create(mock_gateway, _ask("Weather?"), tools=TOOLS, max_tokens=3)
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice.message.tool_calls[0].function.arguments)
