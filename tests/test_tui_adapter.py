"""The adapter's delta merging, on its own: which events become which queued messages."""

from __future__ import annotations

from typing import Any

from mcode import events as ev
from mcode.tui.adapter import Poster, SessionEvent


class Queue:
    """What Poster posts to: a message pump's queue, in order."""

    def __init__(self) -> None:
        self.messages: list[SessionEvent] = []

    def post_message(self, message: Any) -> bool:
        self.messages.append(message)
        return True


def _event(payload: ev.Payload, seq: int, agent: str | None = None) -> ev.Event:
    return ev.Event.of(payload, seq, "s1", "t1", 0.0, agent)


def _shown(queue: Queue) -> list[tuple[str, str, str | None]]:
    out = []
    for m in queue.messages:
        e = m.event
        out.append((e.type, getattr(e.payload, "text", ""), e.agent))
    return out


def test_deltas_of_one_stream_merge_and_every_other_event_keeps_its_place() -> None:
    queue = Queue()
    post = Poster(queue)  # type: ignore[arg-type]
    payloads: list[tuple[ev.Payload, str | None]] = [
        (ev.TextDelta(text="a"), None),
        (ev.TextDelta(text="b"), None),
        (ev.ThinkingDelta(text="t"), None),  # another stream: its own message
        (ev.TextDelta(text="c"), None),
        (ev.TextDelta(text="sub"), "agent-1"),  # a sub-agent's text is another stream too
        (ev.TextDelta(text="d"), None),
        (ev.TurnStarted(), None),  # not a delta: it splits the text around it
        (ev.TextDelta(text="e"), None),
        (ev.TextDelta(text="f"), None),
    ]
    for seq, (payload, agent) in enumerate(payloads, 1):
        post(_event(payload, seq, agent))
    assert _shown(queue) == [
        (ev.TEXT_DELTA, "ab", None),
        (ev.THINKING_DELTA, "t", None),
        (ev.TEXT_DELTA, "c", None),
        (ev.TEXT_DELTA, "sub", "agent-1"),
        (ev.TEXT_DELTA, "d", None),
        (ev.TURN_STARTED, "", None),
        (ev.TEXT_DELTA, "ef", None),
    ]


def test_a_message_the_app_has_read_takes_no_more_text() -> None:
    queue = Queue()
    post = Poster(queue)  # type: ignore[arg-type]
    post(_event(ev.TextDelta(text="one "), 1))
    post(_event(ev.TextDelta(text="two "), 2))
    first = queue.messages[0].event  # the app handles it: what it read is all it gets
    post(_event(ev.TextDelta(text="three"), 3))
    assert first.payload.text == "one two "  # type: ignore[attr-defined]
    assert [m.event.payload.text for m in queue.messages] == ["one two ", "three"]  # type: ignore[attr-defined]
