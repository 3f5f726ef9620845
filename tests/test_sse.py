"""The SSE parser follows the event-stream rules whatever the chunking."""

from __future__ import annotations

import random

import pytest

from mcode.providers.sse import SSEEvent, SSEParser


def parse(*chunks: bytes | str) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.close())
    return events


def datas(*chunks: bytes | str) -> list[str]:
    return [e.data for e in parse(*chunks)]


def test_multiline_data_joined_with_newline() -> None:
    assert datas("data: one\ndata: two\ndata:\n\n") == ["one\ntwo\n"]


def test_all_three_line_endings() -> None:
    stream = "data: a\r\n\r\ndata: b\r\rdata: c\n\n"
    assert datas(stream) == ["a", "b", "c"]


def test_crlf_split_between_chunks_is_one_line_ending() -> None:
    # The "\n" after a chunk-final "\r" must not be read as a second, dispatching, blank line.
    assert datas("data: a\r", "\ndata: b\r", "\n\r", "\n") == ["a\nb"]


def test_comments_unknown_fields_and_colon_rules() -> None:
    stream = ": keep-alive\nfoo: bar\ndata:x\ndata:  y\ndata\n\n"
    assert datas(stream) == ["x\n y\n"]


def test_event_name_id_and_retry() -> None:
    events = parse("event: ping\nid: 7\nretry: 1500\ndata: {}\n\ndata: next\n\n")
    assert events[0] == SSEEvent("{}", "ping", "7", 1500)
    assert events[1].event == "message" and events[1].id == "7"  # the last id persists


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert datas("\n\nevent: x\n\n\ndata: y\n\n") == ["y"]


def test_bom_at_start_skipped_even_when_split() -> None:
    bom = "\ufeff".encode()
    assert datas(bom[:1], bom[1:] + b"data: a\n\n") == ["a"]
    assert datas("\ufeffdata: a\n\n") == ["a"]


def test_utf8_sequence_split_across_chunks() -> None:
    raw = "data: héllo ✓\n\n".encode()
    cut = raw.index("✓".encode()) + 1
    assert datas(raw[:cut], raw[cut:]) == ["héllo ✓"]


def test_incomplete_event_at_end_is_dropped() -> None:
    assert datas('data: {"a":1}\n\ndata: {"cut"') == ['{"a":1}']
    assert datas('data: {"a":1}\n\ndata: whole line\n') == ['{"a":1}']


def test_line_separators_inside_data_are_not_line_endings() -> None:
    # JSON sent with ensure_ascii=False may carry U+2028 raw; str.splitlines would break it.
    assert datas("data: a\u2028b\x0cc\n\n") == ["a\u2028b\x0cc"]


def test_any_chunking_gives_the_same_events() -> None:
    stream = (
        '\ufeff: hi\r\nevent: delta\r\ndata: {"t": "é"}\r\n\r\n'
        "data: line1\rdata: line2\r\r"
        "id: 3\ndata: [DONE]\n\n"
    ).encode()
    expected = parse(stream)
    assert [e.data for e in expected] == ['{"t": "é"}', "line1\nline2", "[DONE]"]
    rng = random.Random(1)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 12)))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert parse(*pieces) == expected
    assert parse(*[stream[i : i + 1] for i in range(len(stream))]) == expected


def test_long_line_in_many_small_chunks() -> None:
    body = "x" * 100_000
    chunks = ["data: "] + [body[i : i + 7] for i in range(0, len(body), 7)] + ["\n\n"]
    assert datas(*chunks) == [body]


def test_an_event_that_never_ends_is_refused_not_buffered_for_ever(monkeypatch):
    import mcode.providers.sse as sse

    monkeypatch.setattr(sse, "MAX_EVENT_CHARS", 1000)
    p = sse.SSEParser()
    # Events of normal size, however many, are fine: the count starts again after each one.
    for _ in range(50):
        assert len(p.feed("data: " + "x" * 500 + "\n\n")) == 1
    p.feed("data: " + "y" * 600)
    with pytest.raises(sse.SSETooLarge):
        p.feed("y" * 600)  # still the same line: 1200 characters held
