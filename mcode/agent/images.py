"""Which tool-result images the next request carries: the newest few, older ones as a note.

A computer-use run returns a screenshot with every call; sent whole, fifty calls are fifty
images (~1,400 tokens each at 1280x800) in every request. The model needs the screen as it is
now and a little of how it got there, so a request keeps the newest ``keep`` tool images and
each older one becomes a one-line note in its place. History itself is untouched (the store and
``--resume`` keep every reference); only what is sent changes.

Pruning rewrites earlier messages, which breaks the byte-stable prefix that prompt caches match:
from the first rewritten message on, the request is new to the server. Cutting one image per
call would move that point every call, so no cache entry past it would ever be read. Instead
the cut moves in steps of ``step`` images (Anthropic's reference agent does the same): between
steps the pruned prefix is byte-identical, and a request holds between ``keep`` and
``keep + step - 1`` images. A pruned message is made once and reused (same object, so the
request builders' memo serves its bytes too).
"""

from __future__ import annotations

import dataclasses

from mcode.messages import ImagePart, Message, Part, TextPart

__all__ = ["ImagePruner"]


class ImagePruner:
    """Keeps the newest ``keep`` tool-result images of a history (``step``: see above)."""

    def __init__(self, keep: int = 3, step: int | None = None) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.keep = keep
        self.step = step if step is not None else keep
        # id(original) -> (original, pruned): the original is held so its id is never reused.
        self._pruned: dict[int, tuple[Message, Message]] = {}

    def prune(self, history: list[Message]) -> list[Message]:
        """``history`` as the next request sends it (the same list when nothing is pruned)."""
        total = sum(_images(m) for m in history)
        drop = total - self.keep
        drop -= drop % self.step if drop > 0 else drop
        if drop <= 0:
            return history
        out: list[Message] = []
        for m in history:
            n = _images(m)
            if drop <= 0 or n == 0:
                out.append(m)
                continue
            if n <= drop:
                out.append(self._without_images(m))
                drop -= n
            else:  # a message with several images, cut in the middle: not memoised
                out.append(_pruned(m, drop))
                drop = 0
        return out

    def _without_images(self, m: Message) -> Message:
        hit = self._pruned.get(id(m))
        if hit is not None and hit[0] is m:
            return hit[1]
        pruned = _pruned(m, _images(m))
        self._pruned[id(m)] = (m, pruned)
        return pruned


def _images(m: Message) -> int:
    if m.role != "tool":
        return 0  # the user's own images always go
    return sum(isinstance(p, ImagePart) for p in m.parts)


def _pruned(m: Message, drop: int) -> Message:
    parts: list[Part] = []
    for p in m.parts:
        if isinstance(p, ImagePart) and drop > 0:
            drop -= 1
            name = p.source or "an image"
            parts.append(TextPart(f"[{name}: omitted, newer screenshots follow]"))
        else:
            parts.append(p)
    return dataclasses.replace(m, parts=tuple(parts))
