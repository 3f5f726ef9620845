"""The seam between the Session and Textual: each event the Session publishes becomes a
:class:`SessionEvent` message posted to the app, and a burst of deltas becomes one.

The Session runs in the app's own event loop (its turns are tasks there), so a subscriber is
called on the loop's thread, from inside whatever emitted the event; posting a message only
queues it, so no widget work happens inside the agent's step and the order of events is the
order of messages.

Textual's queue is first in, first out: a key pressed behind four thousand queued 64-character
deltas waits for all of them. So a delta that follows a delta of the same stream (same type,
agent, turn) still waiting in the queue is merged into that message instead of queued
behind it::

    posted:  TurnStarted  Δ"ab"  Δ"cd"  Δ"ef"  ToolRequested  Δ"gh"
    queued:  TurnStarted  Δ"abcdef"            ToolRequested  Δ"gh"

A message is closed to merging once the app has read its ``event`` (it is being handled),
so nothing merges into a message behind the app's back, and only the newest message can take
more text, so every event that is not a delta keeps its place.
"""

from __future__ import annotations

from textual.message import Message
from textual.message_pump import MessagePump

from mcode import events as ev
from mcode.events import Event
from mcode.runtime.session import Session

_DELTAS = {ev.TEXT_DELTA: ev.TextDelta, ev.THINKING_DELTA: ev.ThinkingDelta}


class SessionEvent(Message):
    """One event of the session (``event.payload`` is its typed data); for a delta, every
    delta of its burst, as one."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self._event = event
        self._more: list[str] = []  # the texts of the deltas merged into this one
        self._open = event.type in _DELTAS

    @property
    def event(self) -> Event:
        """The event, its merged deltas' text joined; reading it closes the message."""
        if self._open:
            self._open = False
            if self._more:
                first = self._event
                text = "".join([first.payload.text, *self._more])  # type: ignore[attr-defined]
                payload = _DELTAS[first.type](text=text)
                self._event = Event.of(
                    payload, first.seq, first.session_id, first.turn_id, first.ts, first.agent
                )
                self._more = []
        return self._event

    def merge(self, event: Event) -> bool:
        """Take ``event``'s text into this still-queued delta of the same stream; False when
        it is not one (it is then posted as a message of its own)."""
        mine = self._event
        if not (
            self._open
            and event.type == mine.type
            and event.agent == mine.agent
            and event.turn_id == mine.turn_id
            and event.session_id == mine.session_id
        ):
            return False
        self._more.append(event.payload.text)  # type: ignore[attr-defined]
        return True


class Poster:
    """A Session subscriber that posts each event to ``target``, a burst of deltas as one
    message."""

    def __init__(self, target: MessagePump) -> None:
        self.target = target
        self._last: SessionEvent | None = None  # the newest message posted

    def __call__(self, event: Event, line: str = "") -> None:
        last = self._last
        if last is not None and last.merge(event):
            return
        self._last = SessionEvent(event)
        self.target.post_message(self._last)


def attach(session: Session, target: MessagePump) -> None:
    """Post every event ``session`` emits from now on to ``target``."""
    session.subscribe(Poster(target))
