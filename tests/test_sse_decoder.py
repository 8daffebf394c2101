"""The SSE decoder: events complete only at a blank line, however the bytes are split."""

from __future__ import annotations

from circuit.providers.sse import SSEDecoder

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
