"""Bad input and bad keys: a clear error in OpenAI's shape, the right status, and a record."""

from __future__ import annotations

import httpx
import pytest

from tests.support.gateway_server import CLIENT_KEY

URL = "/v1/chat/completions"
GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _call(gateway, request_id, *, key=CLIENT_KEY, **kwargs) -> httpx.Response:
    headers = {"x-request-id": request_id, **kwargs.pop("headers", {})}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(gateway.url + URL, headers=headers, timeout=10, **kwargs)


def _assert_openai_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert {"message", "type", "code"} <= set(error) <= {"message", "type", "code", "param"}
    assert error["code"] == code and error["message"]
    assert "Traceback" not in response.text
    return error


@pytest.mark.parametrize("key, code", [
    (None, "invalid_api_key"),
    ("sk-not-a-real-key-at-all", "invalid_api_key"),
])
def test_missing_or_wrong_key_gets_401_and_a_rejected_record(mock_gateway, request_id, key,
                                                            code):
    response = _call(mock_gateway, request_id, key=key, json=GOOD)
    error = _assert_openai_error(response, 401, code)
    assert error["type"] == "authentication_error"
    row = mock_gateway.record(request_id)
    assert (row["status"], row["status_code"], row["key_name"]) == ("rejected", 401, None)


def test_wrong_key_never_appears_in_the_database(mock_gateway, request_id):
    secret = "sk-leaked-secret-value-987654321"
    _call(mock_gateway, request_id, key=secret, json=GOOD)
    mock_gateway.record(request_id)
    assert secret.encode() not in mock_gateway.db_path.read_bytes()


def test_malformed_json_gets_400(mock_gateway, request_id):
    response = _call(mock_gateway, request_id, content=b'{"model": "gpt-4o-mini", "messa')
    _assert_openai_error(response, 400, "invalid_json")
    assert mock_gateway.record(request_id)["status"] == "rejected"


def test_empty_body_gets_400(mock_gateway, request_id):
    _assert_openai_error(_call(mock_gateway, request_id, content=b""), 400, "invalid_json")


def test_body_that_is_not_an_object_gets_400(mock_gateway, request_id):
    _assert_openai_error(_call(mock_gateway, request_id, content=b"[1, 2]"), 400, "invalid_json")


def test_invalid_utf8_gets_400(mock_gateway, request_id):
    _assert_openai_error(_call(mock_gateway, request_id, content=b'{"model": "\xff\xfe"}'), 400,
                         "invalid_json")


def test_deeply_nested_json_gets_400(mock_gateway, request_id):
    body = b'{"model": "m", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    _assert_openai_error(_call(mock_gateway, request_id, content=body), 400, "invalid_json")


@pytest.mark.parametrize("body, code, param", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "missing_required_parameter", "model"),
    ({"model": 42, "messages": [{"role": "user", "content": "hi"}]}, "invalid_type", "model"),
    ({"model": "", "messages": [{"role": "user", "content": "hi"}]}, "invalid_type", "model"),
    ({"model": "gpt-4o-mini"}, "missing_required_parameter", "messages"),
    ({"model": "gpt-4o-mini", "messages": "hi"}, "invalid_type", "messages"),
    ({"model": "gpt-4o-mini", "messages": []}, "invalid_type", "messages"),
    ({"model": "gpt-4o-mini", "messages": ["hi"]}, "invalid_type", "messages[0]"),
    ({**GOOD, "stream": "yes"}, "invalid_type", "stream"),
    ({**GOOD, "stream_options": []}, "invalid_type", "stream_options"),
])
def test_missing_or_ill_typed_fields_get_400_naming_the_field(mock_gateway, request_id, body,
                                                              code, param):
    error = _assert_openai_error(_call(mock_gateway, request_id, json=body), 400, code)
    assert error["param"] == param
    assert mock_gateway.record(request_id)["status_code"] == 400


@pytest.mark.parametrize("body, code", [
    ({**GOOD, "max_tokens": -1}, "integer_below_min_value"),
    ({**GOOD, "max_tokens": "10"}, "invalid_type"),
    ({**GOOD, "n": 0}, "integer_below_min_value"),
])
def test_output_knobs_are_the_upstreams_to_judge(mock_gateway, request_id, body, code):
    # The gateway reads them only to bound the budget; the upstream (here the mock, as
    # OpenAI would) refuses what it cannot take, naming the parameter.
    error = _assert_openai_error(_call(mock_gateway, request_id, json=body), 400, code)
    assert error["param"] in ("max_tokens", "n")


@pytest.mark.parametrize("knob", ["max_tokens", "max_completion_tokens"])
def test_an_output_limit_of_zero_is_not_refused_by_the_gateway(mock_gateway, request_id, knob):
    # The official SDK's own test suite sends it.
    response = _call(mock_gateway, request_id, json={**GOOD, knob: 0})
    assert response.status_code == 200


def test_body_over_the_limit_gets_413_from_its_declared_length(openai_gateway, request_id):
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 70_000}]}
    _assert_openai_error(_call(openai_gateway, request_id, json=big), 413, "request_too_large")
    assert openai_gateway.record(request_id)["status"] == "rejected"


def test_chunked_body_over_the_limit_gets_413(openai_gateway, request_id):
    def chunks():
        for _ in range(100):
            yield b"x" * 1024

    response = _call(openai_gateway, request_id, content=chunks())
    _assert_openai_error(response, 413, "request_too_large")


def test_unknown_path_gets_404_in_openai_shape(mock_gateway):
    response = httpx.get(mock_gateway.url + "/v1/nothing-here")
    _assert_openai_error(response, 404, "not_found")
    assert response.headers["x-request-id"]


def test_wrong_method_gets_405_in_openai_shape(mock_gateway):
    # GET is the stored-completions list (passed through): PUT is no method of this path.
    _assert_openai_error(httpx.put(mock_gateway.url + URL), 405, "method_not_allowed")


@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", URL, "POST"), ("DELETE", URL, "POST"), ("POST", "/v1/models", "GET"),
    ("PUT", "/healthz", "GET"),
])
def test_a_405_says_which_methods_are_allowed(mock_gateway, method, path, allowed):
    response = httpx.request(method, mock_gateway.url + path)
    _assert_openai_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed


def test_the_openapi_description_documents_the_chat_routes_errors(mock_gateway):
    route = httpx.get(mock_gateway.url + "/openapi.json").json()["paths"][URL]["post"]
    for status in ("400", "401", "404", "413", "429", "502", "503", "504"):
        schema = route["responses"][status]["content"]["application/json"]["schema"]
        assert schema["required"] == ["error"], status
        assert set(schema["properties"]["error"]["properties"]) == {"message", "type", "code"}


def test_form_encoded_json_from_curl_is_accepted(mock_gateway, request_id):
    # curl -d sends application/x-www-form-urlencoded; the body is JSON all the same.
    import orjson

    response = _call(mock_gateway, request_id, content=orjson.dumps(GOOD),
                     headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200


def test_a_trailing_slash_is_a_404_not_a_redirect(mock_gateway):
    response = httpx.post(mock_gateway.url + URL + "/", json=GOOD,
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    _assert_openai_error(response, 404, "not_found")
