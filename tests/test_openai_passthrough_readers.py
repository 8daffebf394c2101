"""What the passthrough doors read of an answer, and what they reserve before it."""

from __future__ import annotations

import orjson
import pytest

from circuit.accounting.bound import completions_bound, embeddings_bound
from circuit.errors import UpstreamFailed
from circuit.providers.openai_passthrough import CompletionsReader, EmbeddingsReader, tail_usage
from circuit.providers.upstream_errors import WINDOW
from circuit.wire import Usage

SECRET = "sk-provider-secret-abcdefghijklmnop"


def _embeddings(usage: dict | None = None, vectors: int = 1, size: int = 4) -> bytes:
    answer = {"object": "list", "model": "m", "data": [
        {"object": "embedding", "index": i, "embedding": [0.5] * size} for i in range(vectors)]}
    if usage is not None:
        answer["usage"] = usage
    return orjson.dumps(answer)


def test_usage_is_read_from_the_tail_of_an_embeddings_answer():
    body = _embeddings({"prompt_tokens": 7, "total_tokens": 7})
    assert EmbeddingsReader().completion(body).usage == Usage(input_tokens=7)


def test_a_usage_with_nested_details_is_read_too():
    body = _embeddings({"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0},
                        "total_tokens": 3})
    assert tail_usage(body) == Usage(input_tokens=3)


def test_an_answer_without_usage_has_none():
    assert EmbeddingsReader().completion(_embeddings()).usage is None


def test_a_large_answer_without_usage_is_not_parsed_whole():
    body = _embeddings(vectors=300, size=1536)  # ~ 2 MB
    assert len(body) > 1024 * 1024
    assert EmbeddingsReader().completion(body).usage is None


@pytest.mark.parametrize("body", [b"not json", b'{"object": "list"}', b"[1, 2]", b""])
def test_an_unreadable_embeddings_answer_is_an_upstream_failure(body):
    with pytest.raises(UpstreamFailed):
        EmbeddingsReader().completion(body)


def test_a_legacy_completion_gives_its_text_finish_and_usage():
    body = orjson.dumps({"object": "text_completion", "choices": [
        {"text": "Hello", "index": 0, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}})
    answer = CompletionsReader(False).completion(body)
    assert (answer.text, answer.finish_reason, answer.usage.output_tokens) == ("Hello",
                                                                              "length", 1)


def test_a_completions_stream_hides_the_usage_chunk_it_was_not_asked_for():
    events = CompletionsReader(forward_usage=False).transform()
    text = events.feed(b'{"choices": [{"text": "Hi", "index": 0, "finish_reason": null}]}')
    usage = events.feed(b'{"choices": [], "usage": {"prompt_tokens": 1, '
                        b'"completion_tokens": 1, "total_tokens": 2}}')
    assert (text[0].text, text[0].outputs, text[0].relay) == ("Hi", 1, True)
    assert usage[0].relay is False and usage[0].usage.output_tokens == 1
    assert events.feed(b"[DONE]") == [] and events.done


def test_a_completions_stream_error_event_marks_it_failed():
    events = CompletionsReader(False).transform()
    [event] = events.feed(b'{"error": {"message": "boom", "type": "server_error"}}')
    assert event.error["message"] == "boom" and events.failed


def test_a_passthrough_stream_event_quoting_the_provider_key_is_redacted():
    events = CompletionsReader(False).transform(SECRET)
    [event] = events.feed(orjson.dumps({"error": {"message": f"bad key {SECRET[:20]}…"}}))
    assert SECRET[:WINDOW] not in event.data.decode()
    assert SECRET[:WINDOW] not in event.error["message"] and events.failed



def test_completions_reserve_sixteen_tokens_a_choice_by_default():
    bound = completions_bound({"model": "m", "prompt": "hello"})
    assert bound.output_tokens(4096) == 16


def test_completions_reserve_every_prompt_times_n_times_best_of():
    bound = completions_bound({"prompt": ["a", "b", "c"], "n": 2, "best_of": 4,
                               "max_tokens": 10})
    assert bound.output_tokens(4096) == 3 * 2 * 4 * 10


def test_a_token_array_prompt_is_one_prompt():
    bound = completions_bound({"prompt": [1, 2, 3], "max_tokens": 5})
    assert bound.output_tokens(4096) == 5 and bound.text_tokens >= 3


def test_a_suffix_counts_as_prompt():
    plain = completions_bound({"prompt": "x"}).text_tokens
    assert completions_bound({"prompt": "x", "suffix": "y" * 100}).text_tokens == plain + 100


def test_dimensions_and_encoding_do_not_change_what_embeddings_reserve():
    body = {"model": "text-embedding-3-large", "input": ["some text", [1, 2, 3]]}
    wide = {**body, "dimensions": 3072, "encoding_format": "float"}
    assert embeddings_bound(body) == embeddings_bound(wide)
    assert embeddings_bound(body).output_tokens(8192) == 0


def test_a_responses_answer_counts_its_reasoning_text_as_output_and_skips_odd_shapes():
    from circuit.providers.responses_wire import output_text
    output = [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "Sum. "}],
               "content": [{"type": "reasoning_text", "text": "Think. "}]},
              {"type": "reasoning", "summary": "not a list", "content": 7},
              {"type": "message", "content": 7}, "not an item",
              {"type": "message", "content": [{"type": "output_text", "text": "Say."}]}]
    assert output_text(output) == "Sum. Think. Say."
