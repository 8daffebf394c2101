"""The mock provider's embeddings: deterministic unit vectors in OpenAI's exact answer shape.

Each input's vector is derived from a hash of the input (the same text always gets the same
vector, different texts different ones), of the model's dimension (3072 for
text-embedding-3-large, 1536 for the others, or `dimensions`), as float32 values: a list of
numbers, or with `encoding_format: "base64"` (what the openai SDK asks for) the base64 of their
little-endian bytes, as OpenAI sends them. Usage counts strings with the real tokenizer and
token arrays by their length.
"""

from __future__ import annotations

import base64
import hashlib
import math
import sys
from array import array
from typing import Any

import orjson

from circuit.accounting.tokens import TokenCounter

LARGE_DIMENSIONS, DEFAULT_DIMENSIONS = 3072, 1536


def dimensions_for(model: str, asked: Any) -> int:
    if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
        return asked
    return LARGE_DIMENSIONS if "large" in model else DEFAULT_DIMENSIONS


def vector(item: Any, size: int) -> array:
    """A unit vector of `size` float32 values, a function of `item` alone."""
    seed = orjson.dumps(item)
    raw = array("h", hashlib.shake_256(seed).digest(2 * size))  # int16s in [-32768, 32767]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return array("f", (v / norm for v in raw))


def embeddings_body(body: dict[str, Any], model: str, counter: TokenCounter) -> bytes:
    """The JSON answer to an (already checked) embeddings request."""
    inputs = body["input"]
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs
                                   and isinstance(inputs[0], int)):
        inputs = [inputs]
    size = dimensions_for(model, body.get("dimensions"))
    as_base64 = body.get("encoding_format") == "base64"
    data, tokens = [], 0
    for index, item in enumerate(inputs):
        tokens += counter.count_text(model, item) if isinstance(item, str) else len(item)
        values = vector(item, size)
        if as_base64:
            if sys.byteorder != "little":
                values.byteswap()
            embedding: Any = base64.b64encode(values.tobytes()).decode()
        else:
            embedding = values.tolist()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return orjson.dumps({"object": "list", "data": data, "model": model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
