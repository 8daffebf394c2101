"""TokenCounter: exact OpenAI token counts, offline, on whatever clients send."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiktoken_ext import openai_public

from circuit.accounting.tokens import _SPECS, TokenCounter


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    # Loading both encodings is the slow part; one counter serves the whole module.
    return TokenCounter.load()


# Published in the OpenAI cookbook "How to count tokens with tiktoken" (sections 3 and 5).
COOKBOOK_TEXTS = [
    ("gpt-4", "tiktoken is great!", [83, 1609, 5963, 374, 2294, 0]),
    ("gpt-4o", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
    ("gpt-4", "antidisestablishmentarianism", [519, 85342, 34500, 479, 8997, 2191]),
    ("gpt-4o", "antidisestablishmentarianism", [493, 129901, 376, 160388, 21203, 2367]),
    ("gpt-4", "2 + 2 = 4", [17, 489, 220, 17, 284, 220, 19]),
    ("gpt-4o", "2 + 2 = 4", [17, 659, 220, 17, 314, 220, 19]),
    (
        "gpt-4",
        "お誕生日おめでとう",
        [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699],
    ),
    ("gpt-4o", "お誕生日おめでとう", [8930, 9697, 243, 128225, 8930, 17693, 4344, 48669]),
]

# The cookbook's example conversation (section 6), whose prompt_tokens the API reported.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(("model", "text", "token_ids"), COOKBOOK_TEXTS)
def test_text_count_matches_the_cookbook(counter, model, text, token_ids):
    assert counter.count_text(model, text) == len(token_ids)


@pytest.mark.parametrize(("model", "text", "token_ids"), COOKBOOK_TEXTS)
def test_encoding_produces_the_cookbook_token_ids(counter, model, text, token_ids):
    encoding = counter._resolve(model)[0]
    assert encoding.encode_ordinary(text) == token_ids


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4-0613", "gpt-3.5-turbo"])
def test_cookbook_conversation_is_129_prompt_tokens_on_cl100k_models(counter, model):
    assert counter.count_messages(model, COOKBOOK_MESSAGES) == 129


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "gpt-4o-2024-08-06"])
def test_cookbook_conversation_is_124_prompt_tokens_on_o200k_models(counter, model):
    assert counter.count_messages(model, COOKBOOK_MESSAGES) == 124


@pytest.mark.parametrize("name", sorted(_SPECS))
def test_encoding_spec_matches_installed_tiktoken_ext(monkeypatch, name):
    # Call tiktoken's own constructor with the download stubbed out, and compare what it
    # would build with what we build.
    requested = {}

    def fake_load(url, expected_hash=None):
        requested["hash"] = expected_hash
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", fake_load)
    reference = openai_public.ENCODING_CONSTRUCTORS[name]()
    spec = _SPECS[name]
    assert spec.pat_str == reference["pat_str"]
    assert dict(spec.special_tokens) == reference["special_tokens"]
    assert spec.sha256 == requested["hash"]


_OFFLINE_LOAD = textwrap.dedent(
    """
    import json, os, socket, sys

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    before = dict(os.environ)
    from circuit.accounting.tokens import TokenCounter
    counter = TokenCounter.load(cache_dir=sys.argv[1])
    print(json.dumps({
        "count": counter.count_text("gpt-4o", "tiktoken is great!"),
        "environ_unchanged": dict(os.environ) == before,
        "cached": sorted(os.listdir(sys.argv[1])),
    }))
    """
)


def test_loading_makes_no_network_call_and_leaves_environ_alone(tmp_path):
    # A fresh interpreter with sockets disabled, an empty cache dir and an empty tiktoken
    # cache: the only way to load is from the wheel's files.
    repo = Path(__file__).resolve().parents[1]
    env = {"TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken"), "PYTHONPATH": str(repo)}
    result = subprocess.run(
        [sys.executable, "-c", _OFFLINE_LOAD, str(tmp_path / "bpe")],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == 6
    assert report["environ_unchanged"]
    assert len(report["cached"]) == 2


def test_corrupt_cached_bpe_file_is_rebuilt_from_the_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    TokenCounter.load(cache_dir=tmp_path)
    for path in tmp_path.glob("*.tiktoken"):
        path.write_bytes(b"not a bpe file\n")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # no second copy to fall back on
    counter = TokenCounter.load(cache_dir=tmp_path)
    assert counter.count_text("gpt-4o", "tiktoken is great!") == 6


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-mini-2024-07-18",
        "chatgpt-4o-latest",
        "gpt-4.1-nano",
        "gpt-4.5-preview",
        "o1",
        "o1-mini",
        "o3-mini",
        "o4-mini-2025-04-16",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5.1",
        "openai/gpt-4o",
        "ft:gpt-4o-mini-2024-07-18:acme::abc123",
    ],
)
def test_current_openai_models_count_exactly_with_o200k(counter, model):
    assert counter.encoding_name(model) == "o200k_base"
    assert counter.is_exact(model)


@pytest.mark.parametrize(
    "model", ["gpt-4", "gpt-4-0613", "gpt-4-turbo", "gpt-4-32k", "gpt-3.5-turbo-0125"]
)
def test_older_openai_models_count_exactly_with_cl100k(counter, model):
    assert counter.encoding_name(model) == "cl100k_base"
    assert counter.is_exact(model)


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "llama-3.1-70b", "", "gpt-4omega"])
def test_other_models_are_estimated_with_o200k(counter, model):
    assert counter.encoding_name(model) == "o200k_base"
    assert not counter.is_exact(model)


def test_special_token_text_is_counted_as_plain_text(counter):
    # Clients may legitimately send "<|endoftext|>"; the API encodes it as text, not as a
    # control token, and tiktoken's default encode() would raise instead.
    assert counter.count_text("gpt-4o", "<|endoftext|>") == 7
    messages = [{"role": "user", "content": "a <|endoftext|> b <|endofprompt|>"}]
    assert counter.count_messages("gpt-4", messages) > 3 + 3 + 1


def test_lone_surrogates_are_counted_not_rejected(counter):
    assert counter.count_text("gpt-4o", "bad \ud800 text") > 0


def test_empty_conversation_is_just_the_reply_priming(counter):
    assert counter.count_messages("gpt-4o", []) == 3


def test_each_message_costs_three_tokens_of_framing(counter):
    one = [{"role": "user", "content": "hi"}]
    two = one + [{"role": "user", "content": "hi"}]
    text = counter.count_text("gpt-4o", "user") + counter.count_text("gpt-4o", "hi")
    assert counter.count_messages("gpt-4o", two) - counter.count_messages("gpt-4o", one) == 3 + text


def test_a_name_costs_one_token_beyond_its_text(counter):
    plain = [{"role": "user", "content": "hi"}]
    named = [{"role": "user", "content": "hi", "name": "bob"}]
    extra = counter.count_messages("gpt-4o", named) - counter.count_messages("gpt-4o", plain)
    assert extra == counter.count_text("gpt-4o", "bob") + 1


def test_null_content_counts_nothing(counter):
    assert counter.count_messages("gpt-4o", [{"role": "assistant", "content": None}]) == (
        3 + counter.count_text("gpt-4o", "assistant") + 3
    )


def test_text_parts_count_like_the_same_text_sent_as_strings(counter):
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Describe"}, {"type": "text", "text": " this."}],
        }
    ]
    strings = [{"role": "user", "content": "Describe"}]
    expected = counter.count_messages("gpt-4o", strings) + counter.count_text("gpt-4o", " this.")
    assert counter.count_messages("gpt-4o", parts) == expected


def test_image_parts_are_ignored_for_now(counter):
    with_image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    text_only = [{"role": "user", "content": "What is this?"}]
    assert counter.count_messages("gpt-4o", with_image) == counter.count_messages(
        "gpt-4o", text_only
    )


def test_tool_call_name_and_arguments_are_counted(counter):
    arguments = '{"location": "Paris, France", "unit": "celsius"}'
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": arguments},
            }
        ],
    }
    bare = {"role": "assistant", "content": None}
    extra = counter.count_messages("gpt-4o", [call]) - counter.count_messages("gpt-4o", [bare])
    assert extra == counter.count_text("gpt-4o", "get_weather") + counter.count_text(
        "gpt-4o", arguments
    )


def test_legacy_function_call_arguments_are_counted(counter):
    message = {"role": "assistant", "function_call": {"name": "f", "arguments": '{"x": 1}'}}
    bare = {"role": "assistant"}
    extra = counter.count_messages("gpt-4o", [message]) - counter.count_messages("gpt-4o", [bare])
    assert extra == counter.count_text("gpt-4o", "f") + counter.count_text("gpt-4o", '{"x": 1}')


@pytest.mark.parametrize(
    "messages",
    [
        None,
        "hello",
        42,
        {"role": "user", "content": "not a list"},
        [None, 42, "text", ["nested"]],
        [{"role": 5, "content": 7, "name": None}],
        [{"role": "user", "content": [None, 5, "raw string part", {"type": "text", "text": None}]}],
        [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}]}],
        [{"role": "assistant", "tool_calls": "oops"}],
        [
            {
                "role": "assistant",
                "tool_calls": [None, {"function": None}, {"function": {"arguments": 5}}],
            }
        ],
        [{"role": "assistant", "function_call": "oops"}],
        [{1: "non-string key", ("t",): object()}],
    ],
)
def test_odd_message_shapes_never_raise(counter, messages):
    assert counter.count_messages("gpt-4o", messages) >= 3


def test_non_string_text_counts_as_zero(counter):
    assert counter.count_text("gpt-4o", None) == 0
    assert counter.count_text("gpt-4o", 123) == 0


def test_unhashable_model_does_not_raise(counter):
    assert counter.count_messages(["gpt-4o"], [{"role": "user", "content": "hi"}]) > 0


@pytest.mark.parametrize("text", ["x" * 300_000, "".join(chr(97 + (i * 7) % 26)
                                                          for i in range(300_000))])
def test_long_runs_without_whitespace_count_in_linear_time_and_never_below_exact(text):
    # BPE on one long piece is quadratic (a 5 MB "xxxx…" prompt took 40 s): windows keep
    # the count linear, and a token per window keeps it an upper bound.
    from circuit.accounting.tokens import token_len

    encoding = TokenCounter.load()._resolve("gpt-4o")[0]
    counted = token_len(encoding.encode_ordinary, text)
    exact = len(encoding.encode_ordinary(text))
    assert exact <= counted <= exact + len(text) // 1024 + 1
