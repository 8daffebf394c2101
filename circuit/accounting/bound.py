"""RequestBound: the most a request can make the upstream bill, known before the call.

A budget is a ceiling only if the reservation bounds everything the upstream bills, whatever
shape the client sends. Input: every string of the body, in UTF-8 bytes (a byte-level BPE
token covers at least one byte, so bytes bound tokens for any such tokenizer) — the messages
with tool calls and results, and everything beside them (`tools`, `functions`,
`response_format` schemas, `prediction`, …) as the bytes of its JSON — plus a fixed overhead
per message and per tool, plus media at their worst-case token cost (an image by its model's
largest tiling, audio and files by their size). Output: `n` choices times the larger of
`max_tokens` and `max_completion_tokens` (an upstream may honour either), or the model's cap.
Numbers the client sends as strings count too: some upstreams coerce "50" to 50.

Building the bound walks the body once and costs microseconds; when a bound alone would be
refused, `Meter.refine` replaces its text part with an exact count, off the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

#: Tokens the chat format adds: per message, per name, and to prime the reply.
PER_MESSAGE, PER_NAME, PRIMING = 3, 1, 3
#: Per tool: the namespace and signature an upstream wraps each function definition in.
PER_TOOL = 16
#: Once per request with tools: the tool-use instructions some upstreams add (Anthropic
#: documents up to 346 tokens).
TOOL_PREAMBLE = 600
#: Room for tokens an upstream counts that no local rule sees.
UPSTREAM_MARGIN = 16
#: A file part (a PDF) is billed as its text plus an image of each page; neither is knowable
#: without parsing it, so each file reserves this many tokens.
FILE_TOKENS = 100_000
#: Audio input: far fewer tokens than bytes (OpenAI bills ~10 tokens a second of audio); one
#: token per 8 bytes of its base64 text is a generous bound, plus a floor.
AUDIO_BYTES_PER_TOKEN, AUDIO_FLOOR = 8, 256

#: Fields of a chat request that the upstream does not turn into prompt tokens.
CONTROL_FIELDS = frozenset({
    "model", "messages", "stream", "stream_options", "n", "max_tokens",
    "max_completion_tokens", "temperature", "top_p", "presence_penalty", "frequency_penalty",
    "logprobs", "top_logprobs", "seed", "user", "store", "metadata", "service_tier",
    "parallel_tool_calls", "reasoning_effort", "modalities", "logit_bias", "stop",
    "safety_identifier", "prompt_cache_key", "verbosity"})
TOOL_LISTS = ("tools", "functions")

# Images: (model family, tokens at detail "low", worst case at "high"/"auto"), most specific
# first. OpenAI's tile rule gives at most 8 tiles (2048x768 after scaling): 85 + 170 * 8 for
# gpt-4o, 2,833 + 5,667 * 8 for gpt-4o-mini; patch-based models cap 1,536 patches times
# their multiplier. A model not listed gets the largest of all.
_IMAGE_TOKENS = (
    ("gpt-4o-mini", 2_833, 48_169),
    ("gpt-4.1-mini", 2_489, 2_489),
    ("gpt-4.1-nano", 3_779, 3_779),
    ("o4-mini", 2_642, 2_642),
    ("gpt-4o", 85, 1_445),
    ("chatgpt-4o", 85, 1_445),
    ("gpt-4.1", 85, 1_445),
    ("gpt-4.5", 85, 1_445),
    ("gpt-4-turbo", 85, 1_445),
    ("o1", 75, 1_275),
    ("o3", 75, 1_275),
    ("claude", 1_600, 5_000),
)
_IMAGE_WORST = 48_169


def image_tokens(model: str, low: bool) -> int:
    """The most one image can cost in input tokens on `model`."""
    name = model.strip().lower().rsplit("/", 1)[-1] if isinstance(model, str) else ""
    for family, low_tokens, high_tokens in _IMAGE_TOKENS:
        if name.startswith(family):
            return low_tokens if low else high_tokens
    return _IMAGE_WORST


@dataclass(frozen=True, slots=True)
class RequestBound:
    """Upper bounds on what one request can be billed; `input_tokens(model)` adds media."""

    text_tokens: int  # messages and every other billed field, media excluded
    images_low: int = 0  # image parts with detail "low"
    images_high: int = 0  # any other image part
    media_tokens: int = 0  # audio and files, whatever the model
    choices: int = 1
    max_output: int | None = None  # the largest output knob the client sent
    extra_output: int = 0  # prediction text: rejected prediction tokens bill as output
    exact: bool = False  # text_tokens is a count, not a byte bound
    #: Whether Meter.refine can count this request's text (a chat-completions body).
    countable: bool = False

    def input_tokens(self, model: str) -> int:
        total = self.text_tokens + self.media_tokens + UPSTREAM_MARGIN
        if self.images_low:
            total += self.images_low * image_tokens(model, True)
        if self.images_high:
            total += self.images_high * image_tokens(model, False)
        return total

    def output_tokens(self, model_cap: int) -> int:
        """Every choice at its longest: the output knob the client sent, or the model's cap."""
        per_choice = self.max_output if self.max_output is not None else model_cap
        return self.choices * per_choice + self.extra_output

    def with_text(self, tokens: int) -> RequestBound:
        return replace(self, text_tokens=tokens, exact=True)


def billed_fields(body: Mapping[str, Any]) -> Iterator[Any]:
    """The values beside `messages` that an upstream renders into the prompt (tools,
    schemas, …): everything but the control fields."""
    return (value for name, value in body.items()
            if name not in CONTROL_FIELDS and value is not None)


def tool_overhead(body: Mapping[str, Any]) -> int:
    """Tokens an upstream adds around the tools of a request (none without tools)."""
    tools = sum(len(body[name]) for name in TOOL_LISTS if isinstance(body.get(name), list))
    return TOOL_PREAMBLE + PER_TOOL * tools if tools else 0


def lenient_int(value: Any) -> int | None:
    """An integer as the laxest upstream would read it (50, 50.0, "50", " +50", "5_0",
    "50.0", "５０"), else None. Leniency errs toward reading a number: a string a lax parser
    (pydantic's, as vLLM reads `n`) takes for 500 must not be reserved as one choice."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)  # whitespace, a sign, underscores, any Unicode digits
        except ValueError:
            try:
                value = float(value)  # "500.0", "5e2"
            except ValueError:
                return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


#: What a request that continues a stored conversation (`previous_response_id`) may carry in
#: from it: unknowable from the request, so a context window's worth is reserved.
STORED_CONTEXT_TOKENS = 128_000

#: Fields of an Anthropic Messages request the upstream does not turn into prompt tokens.
MESSAGES_CONTROL = frozenset({
    "model", "messages", "stream", "max_tokens", "temperature", "top_p", "top_k",
    "stop_sequences", "metadata", "service_tier", "thinking", "tool_choice"})
#: Fields of an OpenAI Responses request the upstream does not turn into prompt tokens.
RESPONSES_CONTROL = frozenset({
    "model", "input", "stream", "max_output_tokens", "temperature", "top_p", "store",
    "metadata", "previous_response_id", "reasoning", "parallel_tool_calls", "service_tier",
    "truncation", "user", "include", "background", "prompt_cache_key", "safety_identifier",
    "stream_options", "top_logprobs", "max_tool_calls", "tool_choice", "conversation"})


def _fields_beside(body: Mapping[str, Any], control: frozenset[str]) -> int:
    """Bytes of the JSON of every field but the control ones, and the tools' overhead."""
    total = 0
    for name, value in body.items():
        if name not in control and value is not None:
            total += json_bytes(value)
    return total + tool_overhead(body)


def messages_bound(body: Mapping[str, Any]) -> RequestBound:
    """The bound of an Anthropic Messages request: `system`, every message and content block
    (text, tool uses and results; images and documents at their worst case), `tools`; the
    output is `max_tokens`, which a thinking budget counts within."""
    walk = _Walk()
    total = PRIMING + walk.value(body.get("system"))
    for message in body.get("messages") or ():
        total += PER_MESSAGE
        if isinstance(message, dict):
            total += walk.value(message.get("content"))
    total += _fields_beside(body, MESSAGES_CONTROL | {"system"})
    output = lenient_int(body.get("max_tokens"))
    return RequestBound(
        text_tokens=total, images_low=walk.images_low, images_high=walk.images_high,
        media_tokens=walk.media_tokens,
        max_output=max(output, 0) if output is not None else None)


def responses_bound(body: Mapping[str, Any]) -> RequestBound:
    """The bound of an OpenAI Responses request: `input` (a string or items, media at their
    worst case), `instructions`, `tools`, a `text.format` schema; the output is
    `max_output_tokens` (reasoning included) or the model's cap. A request that continues a
    stored response carries in what cannot be seen from here: a context window's worth."""
    walk = _Walk()
    total = PRIMING + walk.value(body.get("input"))
    items = body.get("input")
    if isinstance(items, list):
        total += PER_MESSAGE * len(items)
    total += _fields_beside(body, RESPONSES_CONTROL)
    stored = STORED_CONTEXT_TOKENS if body.get("previous_response_id") or \
        body.get("conversation") else 0
    output = lenient_int(body.get("max_output_tokens"))
    return RequestBound(
        text_tokens=total, images_low=walk.images_low, images_high=walk.images_high,
        media_tokens=walk.media_tokens + stored,
        max_output=max(output, 0) if output is not None else None)


def embeddings_bound(body: Mapping[str, Any]) -> RequestBound:
    """The bound of an embeddings request: its input (see `input_bound`); no output tokens.
    `dimensions` and `encoding_format` change the answer, not what it is billed."""
    return RequestBound(text_tokens=input_bound(body.get("input")), max_output=0)


#: The legacy completions endpoint's `max_tokens` when the client sends none.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


def completions_bound(body: Mapping[str, Any]) -> RequestBound:
    """The bound of a legacy completions request: the prompt (see `input_bound`) and
    `suffix`; every prompt of a list gets `n` completions out of `best_of` generated, each
    up to `max_tokens` (16 when not sent): prompts x n x best_of choices, a safe ceiling."""
    prompt = body.get("prompt")
    prompts = len(prompt) if isinstance(prompt, list) and prompt and \
        not isinstance(prompt[0], int) else 1
    suffix = body.get("suffix")
    total = input_bound(prompt) + (utf8_len(suffix) if isinstance(suffix, str) else 0)
    n, best_of = lenient_int(body.get("n")), lenient_int(body.get("best_of"))
    choices = prompts * max(n or 1, 1) * max(best_of or 1, 1)
    output = lenient_int(body.get("max_tokens"))
    return RequestBound(text_tokens=total + PRIMING * prompts, choices=choices,
                        max_output=max(output, 0) if output is not None
                        else COMPLETIONS_DEFAULT_MAX_TOKENS)


def input_bound(items: Any) -> int:
    """Tokens of an embeddings `input` or a completions `prompt` at most: the bytes of each
    string (and one for its end), the length of each array of token ids."""
    items = items if isinstance(items, list) else [items]
    total = 0
    for item in items:
        if isinstance(item, str):
            total += utf8_len(item) + 1
        elif isinstance(item, list):  # token ids, or arrays of them
            total += sum(len(ids) if isinstance(ids, list) else 1 for ids in item)
        elif isinstance(item, int):
            total += 1
    return total


def chat_bound(body: Mapping[str, Any]) -> RequestBound:
    """The bound of an OpenAI chat-completions request body (already checked to be an
    object with a `messages` list)."""
    walk = _Walk()
    total = PRIMING
    for message in body.get("messages") or ():
        total += PER_MESSAGE
        if isinstance(message, dict):
            for key, value in message.items():
                # A string (role, most contents) measured here, not in a walk: every message.
                if isinstance(value, str):
                    total += len(value) if value.isascii() else utf8_len(value)
                else:
                    total += walk.value(value)
                if key == "name":
                    total += PER_NAME
    for value in billed_fields(body):
        total += json_bytes(value)
    total += tool_overhead(body)
    outputs = [n for n in (lenient_int(body.get("max_tokens")),
                           lenient_int(body.get("max_completion_tokens"))) if n is not None]
    choices = lenient_int(body.get("n"))
    prediction = body.get("prediction")
    return RequestBound(
        text_tokens=total, images_low=walk.images_low, images_high=walk.images_high,
        media_tokens=walk.media_tokens,
        choices=choices if choices is not None and choices > 1 else 1,
        max_output=max(max(outputs), 0) if outputs else None,
        extra_output=json_bytes(prediction) if prediction is not None else 0, countable=True)


class _Walk:
    """Bytes of every string in a message, with media parts counted apart."""

    __slots__ = ("images_low", "images_high", "media_tokens")

    def __init__(self) -> None:
        self.images_low = self.images_high = self.media_tokens = 0

    def value(self, value: Any) -> int:
        # Iterative: client JSON may nest as deep as the parser allows (1,024 levels).
        total, stack = 0, [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                total += utf8_len(item)
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict) and not self._media(item):
                stack.extend(item.values())
        return total

    def _media(self, part: dict) -> bool:
        """Count a media part (an image, audio, a file — in chat, Messages or Responses
        shape); False when `part` is not one."""
        kind = part.get("type")
        if kind in ("image_url", "image", "input_image") or "image_url" in part:
            image = part.get("image_url")
            detail = image.get("detail") if isinstance(image, dict) else part.get("detail")
            if detail == "low":
                self.images_low += 1
            else:
                self.images_high += 1
            return True
        if kind in ("document", "input_file"):
            self.media_tokens += FILE_TOKENS
            return True
        if kind == "input_audio" or "input_audio" in part:
            audio = part.get("input_audio")
            data = audio.get("data") if isinstance(audio, dict) else None
            size = len(data) if isinstance(data, str) else 0
            self.media_tokens += AUDIO_FLOOR + size // AUDIO_BYTES_PER_TOKEN
            return True
        if kind == "file" or "file" in part:
            self.media_tokens += FILE_TOKENS
            return True
        return False


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def json_bytes(value: Any) -> int:
    """The size of `value` as JSON (strings: their bytes)."""
    if isinstance(value, str):
        return utf8_len(value)
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:  # nested past orjson's depth limit: count by hand
        total, stack = 0, [value]
        while stack:
            item = stack.pop()
            total += 2  # punctuation around and between items
            if isinstance(item, str):
                total += utf8_len(item)
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                total += 24  # a number's digits
        return total
