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
    """:func:`redact` with ``***``, plus masking of bearer tokens and ``sk-`` keys."""
    text = redact(text, secrets, "***")
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text
