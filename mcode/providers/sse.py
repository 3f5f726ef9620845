"""An incremental Server-Sent Events parser (the WHATWG ``text/event-stream`` rules).

Feed it chunks exactly as they come off the socket (bytes or str, split anywhere, even inside a
UTF-8 sequence or between the ``\\r`` and ``\\n`` of a line ending) and it returns the events each
chunk completes::

    parser = SSEParser()
    for chunk in chunks:
        for event in parser.feed(chunk):
            handle(event.event, event.data)

Rules implemented: lines end in ``\\r\\n``, ``\\r`` or ``\\n``; a blank line dispatches; several
``data:`` lines join with ``\\n``; one space after the colon is dropped; ``:`` lines are comments
(keep-alives); ``event:``, ``id:`` and ``retry:`` are kept; unknown fields are ignored; a BOM at
the very start is skipped. An event that the stream ends in the middle of is discarded, as the
spec says (a cut stream must not yield half an event).

This is a hot path, so the work is done by ``str.split`` and ``str.partition``, never by a
Python loop over characters.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

__all__ = ["MAX_EVENT_CHARS", "SSEEvent", "SSEParser", "SSETooLarge"]

# No model API sends an event near this size (deltas are small); a server that streams without
# ever ending a line or an event must not grow mcode's memory without bound.
MAX_EVENT_CHARS = 32 * 1024 * 1024


class SSETooLarge(ValueError):
    """The event being received passed :data:`MAX_EVENT_CHARS` without being completed."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. ``event`` is ``"message"`` unless the server named it; ``id`` is the
    last event id seen so far in the stream (the spec's semantics), or ``""``."""

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None


class SSEParser:
    """Incremental parser; one instance per response. Not thread-safe."""

    __slots__ = (
        "_data",
        "_decoder",
        "_event",
        "_id",
        "_pending",
        "_pending_cr",
        "_retry",
        "_started",
        "_tail",
    )

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._tail: list[str] = []  # text of an unfinished line, in pieces (no newline yet)
        self._pending_cr = False  # the last chunk ended in "\r": a leading "\n" next is its pair
        self._started = False  # past the point where a BOM may appear
        self._data: list[str] = []
        self._event = ""
        self._id = ""
        self._retry: int | None = None
        self._pending = 0  # characters held for the event not yet dispatched (tail + data)

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        """Parse one chunk; return the events it completed (often none, sometimes several)."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if not text:
            return []
        if not self._started:
            if not self._tail and text[0] == "\ufeff":
                text = text[1:]
            self._started = True
            if not text:
                return []
        if self._pending_cr:
            self._pending_cr = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if "\r" in text:
            self._pending_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        self._pending += len(text)
        if self._pending > MAX_EVENT_CHARS:
            raise SSETooLarge(f"an event of over {MAX_EVENT_CHARS} characters")
        if "\n" not in text:
            # Keep pieces rather than concatenating: a long data line arriving in many small
            # chunks would otherwise cost quadratic time.
            self._tail.append(text)
            return []
        if self._tail:
            self._tail.append(text)
            text = "".join(self._tail)
            self._tail.clear()
        lines = text.split("\n")
        rest = lines.pop()
        if rest:
            self._tail.append(rest)
        return self._lines(lines)

    def close(self) -> list[SSEEvent]:
        """End of stream. Returns nothing: an event without its blank line is incomplete and
        dropped; the parser is reset so it could be reused."""
        self._decoder.reset()
        self._tail.clear()
        self._pending_cr = False
        self._data.clear()
        self._event = ""
        self._pending = 0
        return []

    def _lines(self, lines: list[str]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(
                        SSEEvent("\n".join(data), self._event or "message", self._id, self._retry)
                    )
                    data.clear()
                self._event = ""
                self._pending = sum(map(len, self._tail))  # what follows is the next event's
                continue
            if line[0] == ":":
                continue
            name, colon, value = line.partition(":")
            if colon and value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id":
                if "\0" not in value:
                    self._id = value
            elif name == "retry" and value.isdigit():
                self._retry = int(value)
        return events
