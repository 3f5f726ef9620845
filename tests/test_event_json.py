"""Event.to_json writes the envelope by hand (it runs for every event, text deltas included): the
line must be exactly what ``json.dumps`` of ``to_dict()`` writes, and always UTF-8-encodable."""

from __future__ import annotations

import json

import pytest

from mcode.events import Event
from mcode.messages import clean_text


@pytest.mark.parametrize(
    "event",
    [
        Event("text.delta", {"text": 'hé "q"\n\t\\ \u2028 \ud800'}, 7, "abc", None, 1764140000.125),
        Event("turn.started", {}, 1, "s", "t", 12),
        Event("usage", {"a": [1, 2.5, None, True, {"k": "v"}]}, 10**20, "s", "t", 1764140000.0),
        Event("error", {"n": float("nan")}, 3, "s\ud800", "t\u00e9", float("inf")),
        Event("retry", {"wait": 0.1 + 0.2}, 3, "s", "t", 0.1 + 0.2),
        Event("turn.started", {"resumed": False}, 4, "s", "t", 12.5, "task-1\u00e9"),
    ],
)
def test_the_line_is_json_dumps_of_the_dict(event: Event) -> None:
    line = event.to_json()
    expected = clean_text(json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":")))
    assert line == expected
    line.encode()  # no lone surrogate survives
    back = Event.from_json(line)
    assert (back.type, back.seq, back.session_id.replace("\ufffd", "\ud800")) == (
        event.type,
        event.seq,
        event.session_id,
    )


def test_the_agent_field_is_there_only_for_another_conversation() -> None:
    # The main conversation's events are byte-for-byte what they were before agents existed.
    main = Event("turn.started", {"resumed": False}, 1, "s", "t", 12.5)
    assert main.to_json() == (
        '{"v":1,"seq":1,"ts":12.5,"session_id":"s","turn_id":"t","type":"turn.started",'
        '"data":{"resumed":false}}'
    )
    child = Event("turn.started", {"resumed": False}, 2, "s", "t", 12.5, "task-1")
    line = child.to_json()
    assert line == (
        '{"v":1,"seq":2,"ts":12.5,"session_id":"s","turn_id":"t","agent":"task-1",'
        '"type":"turn.started","data":{"resumed":false}}'
    )
    assert Event.from_json(line) == child and Event.from_json(main.to_json()).agent is None
