"""Markdown files with front matter: the one reader of agent roles, slash commands and skills.

    ---                                   <- line 1
    name: reviewer                        <- key: value
    description: "Reviews a change"       <- quotes are taken off
    tools: [Read, Grep]                   <- a flow list, or a block list:
    model: inherit                        # a comment
    ---
    You review code. ...                  <- the body

The block between the ``---`` lines is the small YAML subset these files use, read here
without importing PyYAML (about 30 ms on a busy machine, for every session that loads one):
``key: value`` lines, ``- item`` lists under a key, ``[a, b]`` lists, quoted strings,
``true``/``false`` and whole numbers as YAML reads them. YAML proper (block scalars, nested
keys, flow maps, anchors, tags) goes to PyYAML when it is installed. Whatever cannot be read
is a :class:`FrontMatterError` naming the file and the line, so the user can go straight to it.

:func:`read_front_matter` raises (an agent role: a broken one must not run half-configured);
:func:`read_document` turns the error into a problem and still gives the body (a command or a
skill: the rest of the plugin loads), and reports keys its kind of file does not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcode.errors import ConfigError

__all__ = ["Document", "FrontMatterError", "as_list", "read_document", "read_front_matter"]

HINT = "front matter lines are 'key: value', or '- item' lines under a key"

# What the plain reader leaves to PyYAML: an indented line that is not a list item (a nested
# key, a continued value), a block scalar (``key: |``), a flow map, an anchor, alias or tag.
_YAML_PROPER = re.compile(r"^\s+(?!-\s|-$)\S|:\s*[|>][-+0-9]*\s*$|^[^\s:]+:\s*[{&*!]", re.MULTILINE)


class FrontMatterError(ConfigError):
    """Front matter that cannot be read; the message starts with ``FILE:LINE:``."""


@dataclass(slots=True)
class Document:
    path: Path
    meta: dict[str, Any]
    body: str
    problems: list[str] = field(default_factory=list)


def read_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    """``text`` (the file at ``path``) split into its front matter and its body, which keeps
    its inner blank lines and loses the outer ones. Without a first ``---`` line the whole text
    is the body. Raises FrontMatterError naming ``path`` and the line."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text.strip("\n")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise FrontMatterError(
            f"{path}:1: the front matter is not closed", hint="end it with a line '---'"
        )
    body = "\n".join(lines[end + 1 :]).strip("\n")
    block = lines[1:end]
    if _YAML_PROPER.search("\n".join(block)):
        return _yaml(block, path), body
    return _plain(block, path), body


def read_document(path: Path, known: tuple[str, ...]) -> Document:
    """The file at ``path``, its problems listed rather than raised: front matter that cannot be
    read (then ignored: the body still loads) and keys not in ``known``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return Document(path, {}, "", [f"{path}: cannot be read ({e})"])
    try:
        meta, body = read_front_matter(text, path)
    except FrontMatterError as e:
        lines = text.splitlines()
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), 0)
        rest = "\n".join(lines[end + 1 :] if end else lines).strip("\n")
        return Document(path, {}, rest, [f"{e.message}; the front matter was ignored"])
    problems = [
        f"{path}: front matter: unknown key {key!r} (known: {', '.join(known)})"
        for key in meta
        if key not in known
    ]
    return Document(path, meta, body, problems)


def as_list(value: Any) -> list[str]:
    """A front-matter list: ``[a, b]``, a block list, or ``"a, b"``."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [str(value)]


def _plain(block: list[str], path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    key: str | None = None
    for number, line in enumerate(block, start=2):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if (stripped == "-" or stripped.startswith("- ")) and key is not None:
            items = meta[key]
            if not isinstance(items, list):
                if items != "":
                    raise FrontMatterError(
                        f"{path}:{number}: {key} has both a value and list items", hint=HINT
                    )
                items = []
            items.append(_scalar(stripped[1:].strip()))
            meta[key] = items
            continue
        head, sep, rest = line.partition(":")
        if not sep or not head.strip() or head[0].isspace():
            raise FrontMatterError(
                f"{path}:{number}: cannot read {stripped!r} as 'key: value'", hint=HINT
            )
        key = head.strip()
        meta[key] = _value(rest.strip())
    return meta


def _value(raw: str) -> Any:
    if raw[:1] in ("'", '"'):
        close = raw.find(raw[0], 1)
        if close > 0:
            return raw[1:close]  # a quoted string, whatever follows it (a comment)
    raw = raw.split(" #", 1)[0].strip()
    if raw.startswith("[") and raw.endswith("]"):
        return [_scalar(v.strip()) for v in raw[1:-1].split(",") if v.strip()]
    return _scalar(raw)


def _scalar(raw: str) -> Any:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if raw in ("true", "false"):
        return raw == "true"
    if re.fullmatch(r"-?[0-9]+", raw):
        return int(raw)
    return raw


def _yaml(block: list[str], path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:  # read what the plain reader can; it names the line it cannot
        return _plain(block, path)
    try:
        parsed = yaml.safe_load("\n".join(block)) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2  # the block starts on the file's line 2
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise FrontMatterError(
            f"{path}:{line}: front matter is not valid YAML ({what})",
            hint="check that line's indentation; quote a value holding ': ' or ' #'",
        ) from None
    if not isinstance(parsed, dict):
        raise FrontMatterError(f"{path}:2: front matter must be key: value lines", hint=HINT)
    return {str(k): v for k, v in parsed.items()}
