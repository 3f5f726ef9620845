"""Keeping API keys out of everything mcode writes: events, the store, logs, error messages.

Two strengths, one implementation:

- :func:`redact` replaces the keys we hold, exactly. The session runs it over every event line:
  anything stronger would also mangle real content (a test fixture's ``sk-test-...`` string in a
  file the model read), and history rebuilt from the store must match what the model saw.
- :func:`scrub` also masks anything shaped like a bearer token or an ``sk-`` key. Error messages
  get it, because a proxy may echo back a key we were never told about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PATTERNS = (
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), "sk-***"),
)


def redact(text: str, secrets: Iterable[str | None], marker: str = "[REDACTED]") -> str:
    """``text`` with each secret replaced by ``marker``, longest first. Secrets shorter than 4
    characters are ignored: replacing them would mangle ordinary text."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, marker)
    return text


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """:func:`redact` with ``***``, plus masking of bearer tokens and ``sk-`` keys, and of a
    secret's first or last 12 or more characters (a server echoing part of the key it got)."""
    secrets = tuple(secrets)
    text = redact(text, secrets, "***")
    for secret in secrets:
        if secret and len(secret) >= 2 * _PIECE:
            text = _mask_pieces(text, secret)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


_PIECE = 12  # shorter fragments reveal little, and would mask ordinary text by accident


def _mask_pieces(text: str, secret: str) -> str:
    """``text`` with each run of at least ``_PIECE`` characters that starts or ends ``secret``
    replaced by ``***``."""
    size = len(text)
    ends = [(size - b, size - a) for a, b in _runs(text[::-1], secret[::-1])]
    spans = sorted([*_runs(text, secret), *ends])
    if not spans:
        return text
    out: list[str] = []
    done = 0
    for a, b in spans:
        if a >= done:
            out += [text[done:a], "***"]
        done = max(done, b)
    out.append(text[done:])
    return "".join(out)


def _runs(text: str, secret: str) -> list[tuple[int, int]]:
    """Spans of ``text`` that hold a start of ``secret`` at least ``_PIECE`` characters long."""
    spans: list[tuple[int, int]] = []
    i = text.find(secret[:_PIECE])
    while i >= 0:
        n = _PIECE
        while i + n < len(text) and n < len(secret) and text[i + n] == secret[n]:
            n += 1
        spans.append((i, i + n))
        i = text.find(secret[:_PIECE], i + n)
    return spans


class StreamRedactor:
    """:func:`redact` for text that arrives in pieces (an answer's deltas, a command's output),
    where a key may be split across two pieces and neither holds it whole.

    :meth:`feed` returns the piece redacted, minus any tail that could be the start of a secret;
    that tail is held back and put in front of the next piece. :meth:`flush` releases it when
    the stream ends: a tail that never became a whole secret is ordinary text."""

    __slots__ = ("_held", "_secrets")

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self._held = ""

    def feed(self, piece: str) -> str:
        text = redact(self._held + piece, self._secrets)
        size = len(text)
        keep = 0  # the longest tail of text that begins some secret (and is not all of it)
        for secret in self._secrets:
            # Only where the secret's first character stands can such a tail start: a find
            # per candidate, leftmost (longest) first, instead of trying every length
            # (this runs for every streamed delta: the rounds benchmark's profile).
            i = text.find(secret[0], max(0, size - len(secret) + 1))
            while i >= 0 and size - i > keep:
                if secret.startswith(text[i:]):
                    keep = size - i
                    break
                i = text.find(secret[0], i + 1)
        self._held = text[size - keep :] if keep else ""
        return text[: size - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
