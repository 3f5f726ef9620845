"""The turn queue: what the session's main conversation runs next, one thing at a time.

A front end hands the Session what the user says as it comes (``Session.send``): while a turn
runs, a message steers it; otherwise it becomes a turn. What cannot run yet waits here, in
order, with a compaction asked for between turns (``Session.compact``) taking its place in the
line among the messages. A cancel empties the line: what the user queued was meant to follow the
work they stopped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mcode.messages import ImagePart


@dataclass(slots=True)
class Queued:
    """A turn to run: a user message, or ``text`` None to continue an interrupted turn; or, with
    ``compact``, a compaction (``text``: its instructions). ``done`` gets the turn's outcome
    (None if it never ran), or whether the compaction compacted."""

    text: str | None
    images: tuple[ImagePart, ...] = ()
    compact: bool = False
    done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class TurnQueue:
    def __init__(self) -> None:
        self._waiting: deque[Queued] = deque()

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def put(self, item: Queued) -> asyncio.Future[Any]:
        self._waiting.append(item)
        return item.done

    def take(self) -> Queued:
        return self._waiting.popleft()

    def clear(self) -> None:
        """Drop what waits: a turn's future gets None (it never ran), a compaction's is
        cancelled (as one cancelled while it runs)."""
        while self._waiting:
            item = self._waiting.popleft()
            if item.done.done():
                continue
            if item.compact:
                item.done.cancel()
            else:
                item.done.set_result(None)
