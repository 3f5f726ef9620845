"""Where hooks and MCP servers are configured, outside plugins: mcode's config files and what a
Claude Code project already has.

    $XDG_CONFIG_HOME/mcode/config.toml    [hooks.EVENT] / [[hooks.EVENT]], [mcp_servers.NAME]
    <workspace>/.mcode/config.toml        the same, for the project       (trusted folder only)
    <workspace>/.claude/settings.json     "hooks" (and settings.local.json) (trusted folder only)
    <workspace>/.mcp.json                 "mcpServers"                     (trusted folder only)

``mcode/config.py`` leaves the ``hooks``, ``mcp_servers`` and ``plugins`` tables of its files to
this module, which reads them with their own shapes (Claude Code's). A project's hooks and
servers run code, so they take effect only once the folder is trusted (``mcode trust``); until
then they are listed as ignored in the ``plugins.loaded`` event.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLUGIN_TABLES = ("hooks", "mcp_servers", "plugins")


@dataclass(slots=True)
class Found:
    """What the files hold, with each problem as one sentence naming the file and the field."""

    hooks: list[tuple[Any, str, Path | None]] = field(default_factory=list)  # table, source, root
    mcp: list[tuple[Any, str, Path]] = field(default_factory=list)  # table, source, base folder
    plugin_settings: list[dict[str, Any]] = field(default_factory=list)  # [plugins], lowest first
    problems: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def read_toml_tables(path: Path, found: Found) -> dict[str, Any]:
    """The plugin tables of one mcode config file ({} when there is none)."""
    if not path.is_file():
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}  # mcode/config.py has already said what is wrong with it, and stopped
    return {k: doc[k] for k in PLUGIN_TABLES if k in doc}


def read_json(path: Path, found: Found) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        found.problems.append(f"{path}: not valid JSON ({e}); it was not loaded")
        return None
    if not isinstance(doc, dict):
        found.problems.append(f"{path}: expected a JSON object; it was not loaded")
        return None
    return doc


def gather(workspace: Path, config_dir: Path, *, trusted: bool) -> Found:
    """Hooks, MCP servers and plugin settings from the config files and the project's Claude
    Code files, user before project."""
    found = Found()
    user = config_dir / "config.toml"
    for path, is_project in ((user, False), (workspace / ".mcode" / "config.toml", True)):
        tables = read_toml_tables(path, found)
        if not tables:
            continue
        if is_project and not trusted:
            runs = [k for k in ("hooks", "mcp_servers") if k in tables]
            found.ignored += [f"{path} [{k}]" for k in runs]
            tables = {k: v for k, v in tables.items() if k not in runs}
        if "hooks" in tables:
            found.hooks.append((tables["hooks"], str(path), None))
        if "mcp_servers" in tables:
            found.mcp.append((tables["mcp_servers"], str(path), workspace))
        if "plugins" in tables:
            if isinstance(tables["plugins"], dict):
                found.plugin_settings.append(tables["plugins"])
            else:
                found.problems.append(f"{path}: [plugins] must be a table")
    claude = workspace / ".claude"
    for name in ("settings.json", "settings.local.json"):
        path = claude / name
        if not path.is_file():
            continue
        if not trusted:
            found.ignored.append(f"{path} hooks")
            continue
        doc = read_json(path, found)
        if doc is not None and "hooks" in doc:
            found.hooks.append((doc["hooks"], str(path), None))
    mcp_json = workspace / ".mcp.json"
    if mcp_json.is_file():
        if not trusted:
            found.ignored.append(str(mcp_json))
        else:
            doc = read_json(mcp_json, found)
            if doc is not None:
                found.mcp.append((doc.get("mcpServers", {}), str(mcp_json), workspace))
    return found
