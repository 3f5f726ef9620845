"""Request bodies from memoised pieces: each history message is serialised once, not once per
request.

History is append-only and every request sends all of it, so re-serialising the whole history
each round costs O(rounds²) — on a long session more than everything else mcode does per round.
The request builders render each message's wire JSON once and keep it in a :class:`FragmentMemo`
keyed by the message's identity (messages are immutable once appended); a body is then the
fresh top-level fields plus the joined fragments, byte for byte what ``json.dumps`` of the
whole body writes (the builders' tests compare the two). Each builder owns its memo, and each
provider its builder: what a session's requests rendered lives as long as its provider.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from mcode.messages import clean_text

__all__ = ["FragmentMemo", "body_with_list", "dumps", "encode"]

T = TypeVar("T")

# json.dumps(..., ensure_ascii=False, separators=(",", ":")) without building an encoder per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode(value: Any) -> str:
    """``value`` as compact JSON text (``ensure_ascii=False``), lone surrogates replaced."""
    return clean_text(_encode(value))


def dumps(value: Any) -> bytes:
    """:func:`encode` as UTF-8 bytes."""
    return encode(value).encode()


def body_with_list(fields: dict[str, Any], last_key: str, items: list[bytes]) -> bytes:
    """``dumps({**fields, last_key: [...]})`` where the list's items are already serialised
    (``items``): the whole body is copied once, however long the list."""
    text = encode(fields)
    head = ((text[:-1] + "," if fields else "{") + encode(last_key) + ":[").encode()
    if not items:
        return head + b"]}"
    if len(items) == 1:
        return head + items[0] + b"]}"
    return b",".join([head + items[0], *items[1:-1], items[-1] + b"]}"])


class FragmentMemo:
    """What a render function made of a message, kept while the message is in use.

    Entries are keyed by ``id(message)`` and hold the message itself, so an id is never reused
    while its entry lives and a hit is checked by identity. One memo serves one request builder,
    whose options fix everything else a rendering depends on (the replay mode, image support,
    the origin). An entry not used for :attr:`KEEP` builds is dropped: a compacted conversation
    does not stay in memory. Safe to share between threads: every operation on the table is a
    single dict operation, and a lost update is only a miss.
    """

    KEEP = 8

    def __init__(self) -> None:
        self._entries: dict[int, tuple[object, int, Any]] = {}
        self._build = 0

    def get(self, message: object, render: Callable[[Any], T]) -> T:
        key = id(message)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is message:
            value: T = entry[2]
            if entry[1] != self._build:
                self._entries[key] = (message, self._build, value)
            return value
        value = render(message)
        self._entries[key] = (message, self._build, value)
        return value

    def built(self) -> None:
        """One body is done: count it, and now and then forget entries not used lately."""
        self._build += 1
        if self._build % self.KEEP == 0:
            oldest = self._build - self.KEEP
            entries = list(self._entries.items())
            self._entries = {k: e for k, e in entries if e[1] >= oldest}

    def __len__(self) -> int:
        return len(self._entries)
