"""The seam between the Session and Textual: each event the Session publishes becomes a
:class:`SessionEvent` message posted to the app.

The Session runs in the app's own event loop (its turns are tasks there), so a subscriber is
called on the loop's thread, from inside whatever emitted the event; posting a message only
queues it, so no widget work happens inside the agent's step and the order of events is the
order of messages.
"""

from __future__ import annotations

from textual.message import Message
from textual.message_pump import MessagePump

from mcode.events import Event
from mcode.runtime.session import Session


class SessionEvent(Message):
    """One event of the session (``event.payload`` is its typed data)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


def attach(session: Session, target: MessagePump) -> None:
    """Post every event ``session`` emits from now on to ``target``."""

    def post(event: Event, line: str) -> None:
        target.post_message(SessionEvent(event))

    session.subscribe(post)
