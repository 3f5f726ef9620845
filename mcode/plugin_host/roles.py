"""Agent roles: Markdown files with front matter (Claude Code's ``.claude/agents/*.md``), for
the ``task`` tool's sub-agents and for the team.

    ---
    name: review
    description: Reviews a change and tries to break it
    tools: Read, Grep, Glob, Bash
    model: inherit
    ---
    You are a reviewer. ...           <- the sub-agent's system prompt

``tools`` may use Claude Code's names or mcode's; left out, the role gets the parent's tools
(never ``task``: sub-agents go one level deep). ``model`` is read and kept, but a sub-agent
runs on its parent's model for now. No role loader existed elsewhere in mcode when this was
written; the team can use :func:`load_roles` and :class:`Role` as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcode.plugin_host.hooks import CLAUDE_NAMES
from mcode.plugin_host.markdown import as_list, read_document

ROLE_KEYS = ("name", "description", "tools", "model", "color")
_MCODE_NAMES = {claude.lower(): name for name, claude in CLAUDE_NAMES.items()}
_MCODE_NAMES["multiedit"] = "edit"


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    description: str
    prompt: str  # the sub-agent's system prompt
    tools: tuple[str, ...] | None  # mcode tool names; None: the parent's
    model: str | None
    path: Path
    plugin: str


def load_roles(folder: Path, plugin: str) -> tuple[list[Role], list[str]]:
    """The roles in ``folder`` (``*.md``), and the problems found."""
    if not folder.is_dir():
        return [], []
    roles: list[Role] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*.md")):
        doc = read_document(path, ROLE_KEYS)
        problems += doc.problems
        name = str(doc.meta.get("name") or path.stem)
        description = " ".join(str(doc.meta.get("description") or "").split())
        if not doc.body.strip():
            problems.append(f"{path}: the role has no prompt (the body is empty); not loaded")
            continue
        tools = None
        if "tools" in doc.meta:
            tools = tuple(dict.fromkeys(_mcode_name(t) for t in as_list(doc.meta["tools"])))
        model = doc.meta.get("model")
        roles.append(
            Role(
                name=name,
                description=description,
                prompt=doc.body,
                tools=tools,
                model=None if model in (None, "inherit") else str(model),
                path=path,
                plugin=plugin,
            )
        )
    return roles, problems


def _mcode_name(tool: str) -> str:
    return _MCODE_NAMES.get(tool.lower(), tool)
