"""Deterministic log probabilities in OpenAI's shapes, for the mock provider.

Each generated token gets `{token, logprob, bytes, top_logprobs}`: the token as the real
tokenizer cut it (`bytes:\\xe2\\x80`-style text for a token that is not whole UTF-8, as OpenAI
writes it), a logprob derived from the token id, and as alternatives the token itself first
(greedy decoding) and then common tokens, each less likely than the last.
"""

from __future__ import annotations

from typing import Any

import tiktoken

#: OpenAI accepts top_logprobs from 0 to 20.
MAX_TOP_LOGPROBS = 20
_ALTERNATIVES = (" the", " a", ",", ".", " and", " to", " of", " is", " in", " it", " you",
                 " that", " for", " on", " with", " this", " as", " be", " at", " I", " or",
                 "\n")


def token_logprobs(encoding: tiktoken.Encoding, tokens: list[int], top: int) -> list[dict]:
    """One entry per token, with `top` alternatives each."""
    alternatives = _alternative_tokens(encoding)
    entries = []
    for token in tokens:
        chosen = _entry(encoding, token, -((token % 97) + 1) / 10_000)
        others = [_entry(encoding, alt, round(chosen["logprob"] - 1.25 * rank, 4))
                  for rank, alt in enumerate((a for a in alternatives if a != token), 1)]
        entries.append({**chosen, "top_logprobs": [chosen, *others][:top]})
    return entries


def whole_pieces(entries: list[dict]) -> list[tuple[str, list[dict]]]:
    """Entries grouped so each group's bytes are whole UTF-8 text: one stream chunk each."""
    pieces: list[tuple[str, list[dict]]] = []
    pending: list[dict] = []
    for entry in entries:
        pending.append(entry)
        data = b"".join(bytes(e["bytes"]) for e in pending)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        pieces.append((text, pending))
        pending = []
    if pending:
        data = b"".join(bytes(e["bytes"]) for e in pending)
        pieces.append((data.decode("utf-8", errors="replace"), pending))
    return pieces


def _entry(encoding: tiktoken.Encoding, token: int, logprob: float) -> dict[str, Any]:
    data = encoding.decode_single_token_bytes(token)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "bytes:" + "".join(f"\\x{b:02x}" for b in data)
    return {"token": text, "logprob": logprob, "bytes": list(data)}


_alternatives_cache: dict[str, tuple[int, ...]] = {}


def _alternative_tokens(encoding: tiktoken.Encoding) -> tuple[int, ...]:
    found = _alternatives_cache.get(encoding.name)
    if found is None:
        found = tuple(dict.fromkeys(t for text in _ALTERNATIVES
                                    for t in encoding.encode_ordinary(text)[:1]))
        _alternatives_cache[encoding.name] = found
    return found
