"""Custom slash commands: Markdown prompt templates (Claude Code's ``.claude/commands/*.md``).

A prompt ``/review-pr 42 carefully`` whose first word names a command is replaced, before the
model or any hook sees it, by the command's body with ``$ARGUMENTS`` set to ``42 carefully``
and ``$1``, ``$2``, ... to its words (a body without ``$ARGUMENTS`` gets them appended). A
command file ``commands/git/commit.md`` of plugin ``tools`` answers to ``/commit``, to
``/git:commit`` and to ``/tools:commit``; when two sources give the same short name, the
project's wins over the user's, the user's over a bundled plugin's.

The body is read again on every use, so an edited file takes effect at once (hot reload needs
nothing more for commands); a new or removed file is picked up by the watcher.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from mcode.frontmatter import read_document

COMMAND_KEYS = (
    "description",
    "argument-hint",
    "allowed-tools",
    "model",
    "disable-model-invocation",
)


@dataclass(frozen=True, slots=True)
class Command:
    """One slash command: its names, where it comes from, and its file."""

    name: str  # the short name: /name
    path: Path
    plugin: str  # the plugin (or source) it belongs to
    description: str = ""
    argument_hint: str = ""
    aliases: tuple[str, ...] = field(default=())  # namespaced names

    def body(self) -> str:
        return read_document(self.path, COMMAND_KEYS).body


def load_commands(folder: Path, plugin: str) -> tuple[list[Command], list[str]]:
    """The commands under ``folder`` (recursively), and the problems of their files."""
    if not folder.is_dir():
        return [], []
    commands: list[Command] = []
    problems: list[str] = []
    for path in sorted(folder.rglob("*.md")):
        doc = read_document(path, COMMAND_KEYS)
        problems += doc.problems
        rel = path.relative_to(folder).with_suffix("")
        name = rel.name
        spaces = [*rel.parts[:-1]]
        aliases = [f"{plugin}:{name}"]
        if spaces:
            aliases.insert(0, ":".join([*spaces, name]))
        commands.append(
            Command(
                name=name,
                path=path,
                plugin=plugin,
                description=str(doc.meta.get("description") or _first_line(doc.body)),
                argument_hint=str(doc.meta.get("argument-hint") or ""),
                aliases=tuple(dict.fromkeys(aliases)),
            )
        )
    return commands, problems


def _first_line(body: str) -> str:
    for line in body.splitlines():
        if line.strip():
            return line.strip().lstrip("# ")[:80]
    return ""


def command_table(commands: list[Command]) -> dict[str, Command]:
    """Every name each command answers to. ``commands`` come lowest precedence first, so a
    later one takes a short name over an earlier one."""
    table: dict[str, Command] = {}
    for command in commands:
        for alias in command.aliases:
            table.setdefault(alias, command)
        table[command.name] = command
    return table


_INVOCATION = re.compile(r"\A/([A-Za-z0-9_.:-]+)(?:[ \t]+(.*))?\Z", re.DOTALL)


def expand(text: str, table: dict[str, Command]) -> str | None:
    """``text`` with its command expanded, or None when it does not start with a known one."""
    m = _INVOCATION.match(text.strip())
    if m is None or m.group(1) not in table:
        return None
    arguments = (m.group(2) or "").strip()
    body = table[m.group(1)].body()
    try:
        words = shlex.split(arguments)
    except ValueError:
        words = arguments.split()

    def positional(match: re.Match[str]) -> str:
        i = int(match.group(1)) - 1
        return words[i] if i < len(words) else ""

    had_arguments = "$ARGUMENTS" in body
    out = body.replace("$ARGUMENTS", arguments)
    out = re.sub(r"\$([1-9])(?![0-9])", positional, out)
    if arguments and not had_arguments and out == body:
        out += f"\n\nARGUMENTS: {arguments}"
    return out
