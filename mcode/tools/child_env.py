"""The environment of the processes mcode starts for the model (bash, ripgrep): mcode's own,
minus every credential.

A command the model runs can print its environment, and what it prints goes into the model's
context, the events and the store. Redaction there matches only the literal key
(``echo $OPENAI_API_KEY | base64`` walks past it), so keys must not reach the child at all.
Dropped:

- the variables mcode reads provider keys from (every preset's ``*_API_KEY``, and a
  configured ``api_key_env``), and any variable holding a key mcode resolved, whatever its name;
- variables whose names look secret, judged by ``_``-separated segments, case-insensitive:
  a segment ``KEY``, ``TOKEN``, ``SECRET`` (and plurals), ``APIKEY``, ``PASSWD``,
  ``PASSPHRASE``, a trailing ``PWD`` (``MYSQL_PWD``, not ``PWD``), or
  ``PASSWORD`` anywhere in the name (``PGPASSWORD``). Segments keep ``KEYBOARD``,
  ``TOKENIZERS_PARALLELISM`` and ``SSH_AUTH_SOCK`` (a socket, which git over ssh needs).

A variable named in ``pass_env`` (exact names or shell patterns, ``[tools] pass_env`` in the
user config or ``MCODE_TOOLS_PASS_ENV``) is passed through whatever it holds: the user decided.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping

__all__ = ["child_environment", "environment_secrets", "looks_secret"]

_SECRET_SEGMENTS = frozenset(
    {
        "KEY",
        "KEYS",
        "APIKEY",
        "TOKEN",
        "TOKENS",
        "SECRET",
        "SECRETS",
        "PASSWD",
        "PASSPHRASE",
    }
)


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says it holds a credential."""
    upper = name.upper()
    if "PASSWORD" in upper:
        return True
    segments = [s for s in re.split(r"[_\-.]", upper) if s]
    if any(s in _SECRET_SEGMENTS for s in segments):
        return True
    return len(segments) > 1 and segments[-1] == "PWD"


# A credential's value shorter than this is not redacted from events: "true" or "1" in a
# SOME_TOKEN_ENABLED variable would otherwise blank out ordinary words everywhere.
_MIN_SECRET = 12


def environment_secrets(base: Mapping[str, str], pass_env: Iterable[str] = ()) -> list[str]:
    """The values of ``base``'s variables whose names look secret, but those ``pass_env`` lets
    through (the user wants them seen): the session redacts them from every event like its own
    API key. A command never sees them (:func:`child_environment`), but a file the model reads
    can hold the same token (a ``.env``)."""
    patterns = list(pass_env)
    return [
        value
        for name, value in base.items()
        if looks_secret(name)
        and len(value) >= _MIN_SECRET
        and not any(c.isspace() for c in value)
        and not any(fnmatch.fnmatchcase(name, p) for p in patterns)
    ]


def child_environment(
    base: Mapping[str, str],
    *,
    drop: Iterable[str] = (),
    secrets: Iterable[str | None] = (),
    pass_env: Iterable[str] = (),
) -> dict[str, str]:
    """``base`` without the variables named in ``drop``, those holding one of ``secrets`` and
    those whose names look secret, except what ``pass_env`` names."""
    dropped = set(drop)
    held = [s for s in secrets if s and len(s) >= 4]
    patterns = list(pass_env)
    out: dict[str, str] = {}
    for name, value in base.items():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            out[name] = value
        elif name in dropped or looks_secret(name) or any(s in value for s in held):
            continue
        else:
            out[name] = value
    return out
