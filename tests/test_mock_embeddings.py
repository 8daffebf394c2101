"""The mock provider answers embeddings (PROVIDER=mock): deterministic vectors of the right
shape, as numbers or base64, with usage, so the door can be tried without a network."""

from __future__ import annotations

import math

import httpx

from tests.support.gateway_server import CLIENT_KEY
from tests.support.openai_spec import validator


def _embed(gateway, **body) -> dict:
    response = httpx.post(gateway.url + "/v1/embeddings", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_same_input_always_gets_the_same_vector(mock_gateway):
    first = _embed(mock_gateway, model="text-embedding-3-small", input="same text")
    again = _embed(mock_gateway, model="text-embedding-3-small", input="same text")
    other = _embed(mock_gateway, model="text-embedding-3-small", input="other text")
    assert first["data"] == again["data"] != other["data"]


def test_vectors_have_the_models_dimension_or_the_one_asked(mock_gateway):
    def size(**body) -> int:
        return len(_embed(mock_gateway, input="x", **body)["data"][0]["embedding"])

    assert size(model="text-embedding-3-small") == 1536
    assert size(model="text-embedding-3-large") == 3072
    assert size(model="text-embedding-3-large", dimensions=64) == 64


def test_vectors_are_unit_length_and_the_answer_meets_the_spec(mock_gateway):
    answer = _embed(mock_gateway, model="text-embedding-3-small", input=["a", "b c"])
    validator("CreateEmbeddingResponse").validate(answer)
    for item in answer["data"]:
        assert math.isclose(math.fsum(v * v for v in item["embedding"]), 1.0, rel_tol=1e-4)


def test_base64_is_the_same_vector_the_sdk_decodes(mock_gateway):
    floats = _embed(mock_gateway, model="text-embedding-3-small", input="x")
    client = mock_gateway.client()
    decoded = client.embeddings.create(model="text-embedding-3-small", input="x")
    assert decoded.data[0].embedding == floats["data"][0]["embedding"]


def test_usage_counts_strings_by_tokenizer_and_token_arrays_by_length(mock_gateway):
    words = _embed(mock_gateway, model="text-embedding-3-small", input="hello world")
    ids = _embed(mock_gateway, model="text-embedding-3-small", input=[[1, 2, 3], [4]])
    assert words["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert ids["usage"]["prompt_tokens"] == 4
