"""Markdown files with front matter: the form of commands, agent roles and skills.

    ---
    description: Write a commit message for the staged changes
    argument-hint: [scope]
    ---
    Look at `git diff --cached` and ...

The block between the ``---`` lines is YAML (PyYAML when installed; else a reader of the plain
``key: value`` lines these files use). Each kind of file knows its keys; one it does not know
is reported as a problem naming the file and the key, and the file still loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Document:
    path: Path
    meta: dict[str, Any]
    body: str
    problems: list[str] = field(default_factory=list)


def read_document(path: Path, known: tuple[str, ...]) -> Document:
    """``path`` split into front matter and body; problems for unreadable front matter and
    for keys not in ``known``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return Document(path, {}, "", [f"{path}: cannot be read ({e})"])
    meta: dict[str, Any] = {}
    problems: list[str] = []
    body = text
    m = re.match(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", text, re.DOTALL)
    if m:
        body = text[m.end() :]
        try:
            parsed = _parse(m.group(1))
        except ValueError as e:
            problems.append(f"{path}: front matter is not valid YAML ({e}); it was ignored")
            parsed = {}
        if not isinstance(parsed, dict):
            problems.append(f"{path}: front matter must be key: value lines; it was ignored")
            parsed = {}
        meta = {str(k): v for k, v in parsed.items()}
    for key in meta:
        if key not in known:
            problems.append(
                f"{path}: front matter: unknown key {key!r} (known: {', '.join(known)})"
            )
    return Document(path, meta, body.strip("\n"), problems)


def _parse(block: str) -> Any:
    # Most front matter is plain key: value lines, read here without importing PyYAML (~30 ms
    # on a busy machine, for every session that loads a command). YAML proper (block scalars,
    # nested keys, flow maps, anchors) goes to PyYAML.
    if not re.search(r"^\s|[|>]\s*$|^\S+:\s*[{&*!]", block, re.MULTILINE):
        try:
            return _simple(block)
        except ValueError:
            pass
    try:
        import yaml
    except ImportError:
        return _simple(block)
    try:
        return yaml.safe_load(block) or {}
    except yaml.YAMLError as e:
        raise ValueError(str(e).splitlines()[0]) from None


def _simple(block: str) -> dict[str, Any]:
    """``key: value`` lines: values as strings, ``[a, b]`` as a list, true/false as booleans,
    whole numbers as ints (what YAML makes of them)."""
    out: dict[str, Any] = {}
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"expected key: value, got {line.strip()!r}")
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            items = value[1:-1].split(",")
            out[key.strip()] = [v.strip().strip("\"'") for v in items if v.strip()]
        elif value in ("true", "false"):
            out[key.strip()] = value == "true"
        elif re.fullmatch(r"-?[0-9]+", value):
            out[key.strip()] = int(value)
        elif value.startswith(("'", '"')) and value.endswith(value[0]) and len(value) > 1:
            out[key.strip()] = value[1:-1]
        elif " #" in value:
            out[key.strip()] = value.split(" #", 1)[0].strip()
        else:
            out[key.strip()] = value
    return out


def as_list(value: Any) -> list[str]:
    """A front-matter list: ``[a, b]`` or ``"a, b"``."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [str(value)]
