"""Writing to a config file without losing what is in it: an "always allow" answer becomes an
``allow`` rule in the project's ``.mcode/config.toml``.

The standard library reads TOML but does not write it, and a rewrite from parsed values would
drop the user's comments, order and spelling. So the file is edited as text, in the smallest
way that adds the rule, and the edit is proved before it is written: the new text must parse,
and parse to the old values with exactly the one rule appended. A file this cannot edit safely
(``permissions`` as an inline table, say) is left alone and the error says how to add the rule
by hand. Three shapes are edited::

    allow = ["bash(git status*)"]        an existing array: the rule goes before its ``]``
    [permissions]                        the table without ``allow``: a line after the header
    (neither)                            ``permissions.allow = [...]`` above the first table

The write is atomic (temp file, fsync, rename), like every file mcode writes.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from mcode.errors import ConfigError

__all__ = ["add_allow_rule", "project_config_path"]

_TABLE_HEADER = re.compile(r"^\s*\[")
_PERMISSIONS_HEADER = re.compile(r"^\s*\[\s*permissions\s*\]\s*(#.*)?$")
_ALLOW_KEY = re.compile(r"^\s*(permissions\s*\.\s*)?allow\s*=\s*\[")


def project_config_path(workspace: Path) -> Path:
    return workspace / ".mcode" / "config.toml"


def add_allow_rule(workspace: Path, rule: str) -> Path:
    """Append ``rule`` to ``permissions.allow`` in ``workspace``'s project config (created if
    missing), keeping everything else in the file as it was; the file's path. A rule already
    there is not added twice. Raises ConfigError when the rule is not a valid rule or the file
    cannot be edited safely (nothing is written then)."""
    from mcode.atomic import atomic_write
    from mcode.permissions import Rule

    Rule.parse(rule)  # a bad rule fails here, before the file is touched
    path = project_config_path(workspace)
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    before = _parse(path, text)
    allow = before.get("permissions", {}).get("allow", [])
    if rule in allow:
        return path
    edited = _with_rule(text, rule)
    expected = _appended(before, rule)
    if edited is None or _parse_or_none(edited) != expected:
        raise ConfigError(
            f"could not add the rule {rule!r} to {path} without changing what else it says",
            hint=f'add it by hand: under [permissions], allow = [..., "{rule}"]',
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, edited.encode("utf-8"))
    return path


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            f"{path}: not valid TOML: {e}", hint="fix the line it names, then answer again"
        ) from None


def _parse_or_none(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def _appended(values: dict[str, Any], rule: str) -> dict[str, Any]:
    permissions = dict(values.get("permissions", {}))
    permissions["allow"] = [*permissions.get("allow", []), rule]
    return {**values, "permissions": permissions}


def _with_rule(text: str, rule: str) -> str | None:
    """``text`` with ``rule`` added to the allow array, or None when no edit fits."""
    quoted = json.dumps(rule)  # a JSON string is a TOML basic string
    lines = text.splitlines(keepends=True)
    table = None  # the table the current line is in ("" before the first header)
    for i, line in enumerate(lines):
        if _TABLE_HEADER.match(line):
            table = "permissions" if _PERMISSIONS_HEADER.match(line) else line.strip()
            continue
        match = _ALLOW_KEY.match(line)
        dotted = match is not None and match.group(1) is not None
        if match and ((table is None and dotted) or (table == "permissions" and not dotted)):
            head = "".join(lines[:i])
            rest = "".join(lines[i:])
            close = _closing_bracket(rest, match.end())
            if close is None:
                return None
            inside = rest[match.end() : close]
            empty = not _strip_comments(inside).strip()
            trailing = _strip_comments(inside).rstrip().endswith(",")
            sep = "" if empty or trailing else ", "
            if "\n" in inside and not empty:  # a multi-line array: one item per line
                indent = re.search(r"\n([ \t]*)\S", inside)
                pad = indent.group(1) if indent else "    "
                # The comma goes after the last value, before a comment that may follow it.
                code = _strip_comments(inside).rstrip()
                last = len(code)
                item = inside[:last] + ("" if trailing else ",")
                tail = inside[last:].rstrip(" \t")
                tail = tail if tail.endswith("\n") else tail + "\n"
                new = f"{item}{tail.rstrip(chr(10))}\n{pad}{quoted},\n"
                return head + rest[: match.end()] + new + rest[close:]
            return head + rest[:close].rstrip() + sep + quoted + rest[close:]
    for i, line in enumerate(lines):
        if _PERMISSIONS_HEADER.match(line):
            return "".join(lines[: i + 1]) + f"allow = [{quoted}]\n" + "".join(lines[i + 1 :])
    first_table = next((i for i, line in enumerate(lines) if _TABLE_HEADER.match(line)), None)
    entry = f"permissions.allow = [{quoted}]\n"
    if first_table is None:
        glue = "" if not text or text.endswith("\n") else "\n"
        return text + glue + entry
    return "".join(lines[:first_table]) + entry + "".join(lines[first_table:])


def _closing_bracket(text: str, start: int) -> int | None:
    """The index of the ``]`` that closes the array opened just before ``start`` (strings,
    comments and nested arrays skipped), or None."""
    depth = 1
    i = start
    while i < len(text):
        c = text[i]
        if c in "\"'":
            triple = text[i : i + 3] == c * 3
            end = text.find(c * 3 if triple else c, i + (3 if triple else 1))
            while end != -1 and c == '"' and not triple and _escaped(text, end):
                end = text.find(c, end + 1)
            if end == -1:
                return None
            i = end + (3 if triple else 1)
            continue
        if c == "#":
            newline = text.find("\n", i)
            i = len(text) if newline == -1 else newline
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _escaped(text: str, i: int) -> bool:
    backslashes = 0
    while i - 1 - backslashes >= 0 and text[i - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _strip_comments(text: str) -> str:
    """``text`` with each ``#`` comment blanked out (same length, so offsets still hold);
    a ``#`` inside a string is kept."""
    out = []
    quote = None
    i = 0
    while i < len(text):
        c = text[i]
        if quote is None and c == "#":
            end = text.find("\n", i)
            end = len(text) if end == -1 else end
            out.append(" " * (end - i))
            i = end
            continue
        if quote is None and c in "\"'":
            quote = c
        elif quote == c and not (c == '"' and _escaped(text, i)):
            quote = None
        out.append(c)
        i += 1
    return "".join(out)
