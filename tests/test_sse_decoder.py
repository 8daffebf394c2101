"""The SSE decoder: events complete only at a blank line, however the bytes are split."""

from __future__ import annotations

import time

from circuit.providers.sse import SSEDecoder, SSEEvent

STREAM = b'data: {"a": 1}\n\n: keep-alive\n\nevent: ping\ndata: {"b": 2}\n\ndata: [DONE]\n\n'


def _events(chunks):
    decoder = SSEDecoder()
    return [(e.event, e.data) for chunk in chunks for e in decoder.feed(chunk)]


def test_whole_stream_in_one_read():
    assert _events([STREAM]) == [(None, b'{"a": 1}'), (b"ping", b'{"b": 2}'), (None, b"[DONE]")]


def test_stream_split_at_every_byte_gives_the_same_events():
    assert _events([STREAM[i:i + 1] for i in range(len(STREAM))]) == _events([STREAM])


def test_crlf_line_endings_split_between_reads():
    crlf = STREAM.replace(b"\n", b"\r\n")
    assert _events([crlf[i:i + 1] for i in range(len(crlf))]) == _events([STREAM])


def test_multiline_data_is_joined_with_newlines():
    assert _events([b"data: one\ndata: two\n\n"]) == [(None, b"one\ntwo")]


def test_unterminated_event_stays_pending():
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"half"') == []
    assert decoder.pending == b'data: {"half"'


def test_an_event_growing_past_the_bound_is_dropped_before_it_ends():
    decoder = SSEDecoder(max_event_bytes=1000)
    assert decoder.feed(b'data: {"a": 1}\n\ndata: ' + b"x" * 600) == [SSEEvent(b'{"a": 1}')]
    assert not decoder.too_large
    assert decoder.feed(b"x" * 600) == []
    assert decoder.too_large
    assert decoder.pending == b"", "what it held is let go at once"
    assert decoder.feed(b'\n\ndata: {"b": 2}\n\n') == [], "nothing is decoded after it"


def test_a_whole_event_over_the_bound_in_one_read_ends_decoding_after_the_events_before_it():
    decoder = SSEDecoder(max_event_bytes=1000)
    events = decoder.feed(b'data: {"a": 1}\n\ndata: ' + b"x" * 1000 + b'\n\ndata: {"b": 2}\n\n')
    assert events == [SSEEvent(b'{"a": 1}')] and decoder.too_large


def test_events_up_to_the_bound_pass_however_they_are_split():
    event = b"data: " + b"x" * 994 + b"\n\n"  # 1000 bytes before its blank line
    decoder = SSEDecoder(max_event_bytes=1000)
    chunks = [event[i:i + 7] for i in range(0, len(event), 7)] * 3
    assert [e.data for chunk in chunks for e in decoder.feed(chunk)] == [b"x" * 994] * 3


def test_a_large_event_in_small_reads_is_joined_once_not_once_per_read():
    # Joining the pending bytes on every read costs O(n^2): 12 MB in 4 KiB reads would copy
    # and scan ~18 GB, seconds of CPU. Kept as the reads and joined at its end: milliseconds.
    decoder = SSEDecoder()
    piece = b"x" * 4096
    started = time.process_time()
    assert decoder.feed(b"data: ") == []
    for _ in range(3000):
        assert decoder.feed(piece) == []
    (event,) = decoder.feed(b"\n\n")
    assert time.process_time() - started < 1.0
    assert len(event.data) == 4096 * 3000


def test_named_events_read_alike_whether_or_not_they_take_the_short_path():
    # One event line and one data line take a short path; anything else the general one.
    raw = (b"event: a\ndata: {}\n\n" b"event: b\ndata: x\ndata: y\n\n"
           b"event:  c\ndata: z\n\n" b"event: d\n: comment\ndata: w\n\n" b"event: e\ndata: \n\n")
    assert SSEDecoder().feed(raw) == [SSEEvent(b"{}", b"a"), SSEEvent(b"x\ny", b"b"),
                                      SSEEvent(b"z", b" c"), SSEEvent(b"w", b"d"),
                                      SSEEvent(b"", b"e")]
