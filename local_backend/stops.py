"""Stop strings (the request's ``stop``): a generation ends where one first appears in its
text. Two halves, so the match is cut exactly however the tokens split it:

- the **engine** checks its decoded text after every token (:func:`find_stop`) and ends the
  generation with ``finish_reason="stop"`` and ``Generated.text`` cut before the match;
- the **chat layer**, which hands text out as it comes, holds back any tail that may still
  become a stop string (:func:`held_back`), so a match split across tokens (or chunks) never
  reaches the client, even in part.
"""

from __future__ import annotations

from collections.abc import Sequence


def find_stop(text: str, stops: Sequence[str], since: int = 0) -> int | None:
    """Where the first stop string in ``text`` begins, or None. ``since``: how much of
    ``text`` was checked before (a match must end after it, so only the tail is searched)."""
    best: int | None = None
    for s in stops:
        i = text.find(s, max(0, since - len(s) + 1))
        if i >= 0 and (best is None or i < best):
            best = i
    return best


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` may be the start of a stop string (the
    longest such tail); those must wait for the next piece."""
    keep = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), keep, -1):
            if text.endswith(s[:n]):
                keep = n
                break
    return keep


def may_be_call(data: bytes | bytearray, marker: bytes) -> bool:
    """Whether an output beginning ``data`` is, or may still become, a tool call (whose first
    characters are ``marker``): stop strings are not looked for inside calls."""
    return bool(marker) and (data.startswith(marker) or marker.startswith(bytes(data)))
