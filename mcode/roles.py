"""Agent roles: Markdown files with front matter that say who an agent is.

A role is one file, ``NAME.md``, whose front matter names it and whose body is its
instructions (Claude Code's ``.claude/agents/*.md`` are read as they are)::

    ---
    name: verifier
    description: Tries to break a result before it is accepted.
    model: MiniMax-M3          # optional: another model (PRESET:MODEL for another provider)
    thinking: on               # optional: on / off
    tools: read, grep, bash    # optional: a comma list or a YAML list; Claude's names work too
    ---
    You are the verifier. Run the tests...

One loader for every user of roles: the ``task`` tool's sub-agents (a role's instructions are
the sub-agent's system prompt), the team's planner, producer and verifier (they follow the
role's first line) and the plugin host (a plugin's ``agents/*.md``). Where roles come from,
lowest precedence first; a later source's role replaces an earlier one's of the same name::

    plugin    an enabled plugin's agents/          (the plugin host reads them)
    user      ~/.claude/agents, $XDG_CONFIG_HOME/mcode/agents
    project   .claude/agents, .mcode/agents        only in a trusted folder (mcode/trust.py):
                                                   a cloned repository must not instruct its
                                                   own agents, as with AGENTS.md

``model: inherit`` (Claude Code's word) and no ``model`` both mean the session's model;
``tools`` left out means the default tools of whoever runs the role. The front matter is read
by :mod:`mcode.frontmatter`; a file it cannot read, a value of the wrong shape or an unknown
tool is a :class:`RoleError` naming the file (and the line where there is one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcode.errors import ConfigError
from mcode.frontmatter import FrontMatterError, read_front_matter

__all__ = ["Role", "RoleError", "RoleSource", "load_role", "load_roles", "role_dirs"]

# Tool names as Claude Code's agent files spell them (any case), and mcode's own, to mcode's.
_TOOL_NAMES = {
    "read": "read",
    "write": "write",
    "edit": "edit",
    "multiedit": "edit",
    "grep": "grep",
    "glob": "glob",
    "ls": "ls",
    "bash": "bash",
    "todo": "todo",
    "todowrite": "todo",
    "task": "task",
    "webfetch": "web_fetch",
    "web_fetch": "web_fetch",
    "websearch": "web_search",
    "web_search": "web_search",
    "skill": "skill",
    "computer": "computer",
}
# Keys a role file may have: ours and Claude Code's (``color`` is its UI's; read and unused).
KEYS = ("name", "description", "instructions", "model", "thinking", "tools", "color")


class RoleError(ConfigError):
    """A role file that cannot be read as one."""


@dataclass(frozen=True, slots=True)
class RoleSource:
    """A folder of role files and where it stands: ``project``, ``user`` or ``plugin NAME``."""

    folder: Path
    origin: str


@dataclass(frozen=True, slots=True)
class Role:
    """One agent role. ``instructions``: the body (a sub-agent's system prompt); ``tools``
    None: the default tool set of whoever runs it; ``model`` None: the session's model;
    ``thinking`` None: the session's setting; ``origin``: where it was found (RoleSource)."""

    name: str
    description: str
    instructions: str
    model: str | None = None
    thinking: bool | None = None
    tools: tuple[str, ...] | None = None
    path: Path | None = None
    origin: str = "user"


def role_dirs(
    workspace: Path,
    config_home: Path,
    home: Path,
    *,
    trusted: bool,
    plugins: Iterable[RoleSource] = (),
) -> list[RoleSource]:
    """The folders roles are read from, lowest precedence first: ``plugins``' (as given), the
    user's, then the project's when it is trusted."""
    return [
        *plugins,
        RoleSource(home / ".claude" / "agents", "user"),
        RoleSource(config_home / "agents", "user"),
        *(
            [
                RoleSource(workspace / ".claude" / "agents", "project"),
                RoleSource(workspace / ".mcode" / "agents", "project"),
            ]
            if trusted
            else []
        ),
    ]


def load_roles(
    sources: Iterable[RoleSource], errors: list[RoleError] | None = None
) -> dict[str, Role]:
    """Every role in ``sources`` by name, a later source's replacing an earlier one's. A file
    that is not a role raises RoleError; with ``errors`` given it is added there and skipped
    (a session goes on without it), and so is a key a role file does not have."""
    roles: dict[str, Role] = {}
    for source in sources:
        if not source.folder.is_dir():
            continue
        for path in sorted(source.folder.glob("*.md")):
            try:
                role, unknown = _read(path, source.origin)
            except RoleError as e:
                if errors is None:
                    raise
                errors.append(e)
                continue
            if errors is not None:
                errors += [
                    RoleError(f"{path}: front matter: unknown key {k!r} (known: {', '.join(KEYS)})")
                    for k in unknown
                ]
            roles[role.name] = role
    return roles


def load_role(path: Path, origin: str = "user") -> Role:
    """The role in the file at ``path``; RoleError if it is not one."""
    return _read(path, origin)[0]


def _read(path: Path, origin: str) -> tuple[Role, list[str]]:
    """The role at ``path`` and the front-matter keys a role does not have."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RoleError(f"{path}: cannot be read ({e})") from None
    try:
        meta, body = read_front_matter(text, path)
    except FrontMatterError as e:
        raise RoleError(e.message, hint=e.hint) from None
    name = meta.get("name") or path.stem
    if not isinstance(name, str) or not name.strip():
        raise RoleError(f"{path}: name must be a word, not {name!r}", hint="write name: NAME")
    tools = meta.get("tools")
    model = _text(meta.get("model"), path, "model")
    role = Role(
        name=name.strip(),
        description=" ".join(_text(meta.get("description"), path, "description").split()),
        instructions=(_text(meta.get("instructions"), path, "instructions") or body).strip(),
        model=None if model in ("", "inherit") else model,
        thinking=_switch(meta.get("thinking"), path),
        tools=None if tools is None else _tools(tools, path),
        path=path,
        origin=origin,
    )
    return role, [key for key in meta if key not in KEYS]


def _text(value: Any, path: Path, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        raise RoleError(f"{path}: {key} must be one line of text, not a list")
    return str(value).strip()


def _switch(value: Any, path: Path) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):  # YAML's reading of true / on / yes
        return value
    if isinstance(value, str) and value.lower() in ("on", "true", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("off", "false", "no"):
        return False
    raise RoleError(f"{path}: thinking must be on or off, not {value!r}")


def _tools(value: Any, path: Path) -> tuple[str, ...]:
    names = value if isinstance(value, list) else str(value).strip("[]").split(",")
    tools: list[str] = []
    for raw in names:
        # Claude Code writes a tool with a pattern as Bash(git *): the pattern is its own.
        name = str(raw).strip().strip("\"'").split("(", 1)[0].strip()
        if not name:
            continue
        ours = name if name.startswith("mcp__") else _TOOL_NAMES.get(name.lower())
        if ours is None:
            known = ", ".join(sorted(set(_TOOL_NAMES.values())))
            raise RoleError(
                f"{path}: unknown tool {name!r}", hint=f"the tools are: {known}, mcp__SERVER__TOOL"
            )
        if ours not in tools:
            tools.append(ours)
    return tuple(tools)
