"""Agent roles: Markdown files with front matter that say who an agent is.

A role is one file, ``NAME.md``, whose front matter names it and whose body is its
instructions (Claude Code's ``.claude/agents/*.md`` are read as they are)::

    ---
    name: verifier
    description: Tries to break a result before it is accepted.
    model: MiniMax-M3          # optional: another model for this role
    thinking: on               # optional: on / off
    tools: read, grep, bash    # optional: a comma list or a YAML list; Claude's names work too
    ---
    You are the verifier. Run the tests...

Where they are looked for, later folders winning over earlier ones for the same name: the user
dir (``$XDG_CONFIG_HOME/mcode/agents``, ``~/.claude/agents``), then the project's
(``.claude/agents``, ``.mcode/agents``) when the folder is trusted (a cloned repository must not
instruct its own agents, as with AGENTS.md). The front matter is the small YAML subset these
files use (``key: value`` lines, ``- item`` lists, quoted strings); anything else is a
:class:`RoleError` naming the file and line. Self-contained on purpose: the team and the plugin
host both load roles with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcode.errors import ConfigError

__all__ = ["Role", "RoleError", "load_role", "load_roles", "role_dirs"]

# Claude Code's tool names, as its agent files spell them, and ours.
_CLAUDE_TOOLS = {
    "read": "read",
    "write": "write",
    "edit": "edit",
    "multiedit": "edit",
    "grep": "grep",
    "glob": "glob",
    "ls": "ls",
    "bash": "bash",
    "todowrite": "todo",
    "task": "task",
}


class RoleError(ConfigError):
    """A role file that cannot be read as one."""


@dataclass(frozen=True, slots=True)
class Role:
    """One agent role. ``tools`` None: the role's default tool set; ``model`` None: the
    session's model; ``thinking`` None: the session's setting."""

    name: str
    description: str
    instructions: str
    model: str | None = None
    thinking: bool | None = None
    tools: tuple[str, ...] | None = None
    path: Path | None = None


def role_dirs(workspace: Path, config_home: Path, home: Path, *, trusted: bool) -> list[Path]:
    """The folders roles are read from, lowest precedence first."""
    dirs = [home / ".claude" / "agents", config_home / "agents"]
    if trusted:
        dirs += [workspace / ".claude" / "agents", workspace / ".mcode" / "agents"]
    return dirs


def load_roles(dirs: list[Path]) -> dict[str, Role]:
    """Every role in ``dirs`` by name; a later folder's role replaces an earlier one's."""
    roles: dict[str, Role] = {}
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.md")):
            role = load_role(path)
            roles[role.name] = role
    return roles


def load_role(path: Path) -> Role:
    text = path.read_text(encoding="utf-8", errors="replace")
    meta, body = _split(text, path)
    name = meta.get("name") or path.stem
    if not isinstance(name, str):
        raise RoleError(f"{path}: name must be a string", hint="write name: NAME")
    tools = meta.get("tools")
    return Role(
        name=name,
        description=_text(meta.get("description", ""), path, "description"),
        instructions=(_text(meta.get("instructions", ""), path, "instructions") or body).strip(),
        model=_text(meta["model"], path, "model") or None if "model" in meta else None,
        thinking=_switch(meta.get("thinking"), path),
        tools=None if tools is None else _tools(tools, path),
        path=path,
    )


def _split(text: str, path: Path) -> tuple[dict[str, str | list[str]], str]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text  # no front matter: the whole file is the instructions
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise RoleError(
            f"{path}: the front matter is not closed", hint="end it with a line '---'"
        ) from None
    meta: dict[str, str | list[str]] = {}
    key: str | None = None
    for number, line in enumerate(lines[1:end], start=2):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("- ") and key is not None:
            value = meta.get(key)
            items = value if isinstance(value, list) else []
            items.append(_unquote(stripped[2:]))
            meta[key] = items
            continue
        head, sep, rest = line.partition(":")
        if not sep or not head.strip() or head.startswith((" ", "\t")):
            raise RoleError(
                f"{path}:{number}: cannot read {stripped!r} as 'key: value'",
                hint="front matter lines are 'key: value' or '- item' under a key",
            )
        key = head.strip().lower()
        meta[key] = _unquote(rest.split(" #", 1)[0].strip())
    return meta, "\n".join(lines[end + 1 :])


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _text(value: str | list[str], path: Path, key: str) -> str:
    if isinstance(value, list):
        raise RoleError(f"{path}: {key} must be one line of text, not a list")
    return value


def _switch(value: str | list[str] | None, path: Path) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.lower() in ("on", "true", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("off", "false", "no"):
        return False
    raise RoleError(f"{path}: thinking must be on or off, not {value!r}")


def _tools(value: str | list[str], path: Path) -> tuple[str, ...]:
    names = value if isinstance(value, list) else value.strip("[]").split(",")
    tools: list[str] = []
    for raw in names:
        name = _unquote(raw.strip()).split("(", 1)[0].strip()
        if not name:
            continue
        ours = _CLAUDE_TOOLS.get(name.lower())
        if ours is None:
            known = ", ".join(sorted(set(_CLAUDE_TOOLS.values())))
            raise RoleError(f"{path}: unknown tool {name!r}", hint=f"the tools are: {known}")
        if ours not in tools:
            tools.append(ours)
    return tuple(tools)
