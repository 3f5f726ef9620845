"""Trusted folders: whether a repository's own files may change what mcode is allowed to do.

A cloned repository is someone else's text. Its ``.mcode/config.toml`` could ask for full-auto
and its ``AGENTS.md`` could tell the model what to run; mcode must not take either from a folder
the user never vouched for. The user vouches once per folder, as with Claude Code's "Do you
trust the files in this folder?" and Codex's trusted projects: ``mcode trust [DIR]`` (or, later,
the TUI's first prompt) calls :func:`grant`, and the folder and everything inside it count as
trusted from then on::

    $XDG_DATA_HOME/mcode/trust.json
    {"version": 1, "folders": {"/home/me/src/app": {"since": "2026-12-01T22:40:00Z"}}}

Paths are kept resolved (symlinks followed), so a link into a trusted folder is trusted and a
folder merely named like one is not. Everything that loads project files asks one question,
:func:`is_trusted`: the config layer (which project keys widen permissions, see
``mcode/config.py``), the system prompt (AGENTS.md), and project hooks and plugins when they
come. The record is the user's: it lives beside the session store (0600 in a 0700 folder),
never in the repository.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcode.errors import ConfigError

__all__ = ["grant", "is_trusted", "record_path", "revoke", "trusted_folders", "trusted_root"]

RECORD_NAME = "trust.json"
VERSION = 1


def record_path(env: Mapping[str, str] | None = None) -> Path:
    from mcode.config import data_home

    return data_home(env) / RECORD_NAME


def trusted_folders(env: Mapping[str, str] | None = None) -> list[Path]:
    """Every folder the user trusted, in the order they were trusted."""
    return [Path(p) for p in _load(record_path(env))]


def trusted_root(path: Path | str, env: Mapping[str, str] | None = None) -> Path | None:
    """The trusted folder that covers ``path`` (itself or its nearest trusted parent), or None."""
    target = _resolved(path)
    covering = [t for t in trusted_folders(env) if t == target or t in target.parents]
    return max(covering, key=lambda t: len(t.parts), default=None)


def is_trusted(path: Path | str, env: Mapping[str, str] | None = None) -> bool:
    """True when the user trusted ``path`` or a folder above it: its project config may widen
    permissions and its AGENTS.md (and project hooks and plugins) may take effect."""
    return trusted_root(path, env) is not None


def grant(path: Path | str, env: Mapping[str, str] | None = None) -> Path:
    """Trust ``path`` (a folder that exists) and everything inside it; the resolved path."""
    target = _resolved(path)
    if not target.is_dir():
        raise ConfigError(f"{target} is not a folder", hint="give the repository's folder")
    if target in (Path(target.anchor), Path.home().resolve()):
        # It would cover every repository cloned below it, which is what trust guards against.
        raise ConfigError(
            f"{target} holds every repository below it, so mcode does not trust it as a whole",
            hint="trust each project folder you vouch for: mcode trust ~/src/app",
        )
    with _locked(record_path(env)) as folders:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        folders.setdefault(str(target), {"since": since})
    return target


def revoke(path: Path | str, env: Mapping[str, str] | None = None) -> bool:
    """Stop trusting ``path`` itself; False if it was not in the record (a trusted parent, if
    any, still covers it: :func:`trusted_root` says which)."""
    target = _resolved(path)
    with _locked(record_path(env)) as folders:
        return folders.pop(str(target), None) is not None


def _resolved(path: Path | str) -> Path:
    return Path(path).expanduser().resolve()


def _load(record: Path) -> dict[str, Any]:
    try:
        text = record.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the trust record {record}: {e}") from None
    try:
        doc = json.loads(text)
        folders = doc["folders"]
        if doc.get("version") != VERSION or not isinstance(folders, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        # Never guess: a record that cannot be read trusts nothing, and says so.
        raise ConfigError(
            f"the trust record {record} is damaged",
            hint="delete it and run `mcode trust DIR` again for the folders you trust",
        ) from None
    return folders


@contextmanager
def _locked(record: Path) -> Iterator[dict[str, Any]]:
    """The record's folders, to change in place; written back atomically under a lock, so two
    `mcode trust` runs at once both land."""
    from mcode.atomic import atomic_write

    record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(record.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        folders = _load(record)
        yield folders
        data = json.dumps({"version": VERSION, "folders": folders}, indent=2) + "\n"
        atomic_write(record, data.encode("utf-8"), mode=0o600)
    finally:
        os.close(fd)


def main(args: Any) -> int:
    """``mcode trust [DIR]``, ``--list``, ``--revoke [DIR]``: 0 done, 1 nothing to revoke,
    2 a bad folder or a damaged record."""
    from mcode.errors import MCodeError

    folder = Path(args.dir or os.getcwd())
    try:
        if args.list:
            folders = trusted_folders()
            print("\n".join(map(str, folders)) if folders else "no trusted folders")
            return 0
        if args.revoke:
            if revoke(folder):
                print(f"mcode: {_resolved(folder)} is no longer trusted")
                return 0
            parent = trusted_root(folder)
            if parent is None:
                print(f"mcode: {_resolved(folder)} was not trusted", file=sys.stderr)
            else:
                print(
                    f"mcode: {_resolved(folder)} is trusted through {parent}, which covers it; "
                    f"run `mcode trust --revoke {parent}` to stop trusting both",
                    file=sys.stderr,
                )
            return 1
        target = grant(folder)
    except MCodeError as e:
        print(f"mcode: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"mcode: {e.hint}", file=sys.stderr)
        return e.exit_code
    print(
        f"mcode: trusted {target} and every folder inside it: its .mcode/config.toml may set "
        "permissions and its AGENTS.md reaches the model (`mcode trust --revoke` undoes it)"
    )
    return 0
