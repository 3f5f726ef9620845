"""A plugin: a folder with a manifest, ``mcode-plugin.toml`` or Claude Code's
``.claude-plugin/plugin.json`` (read as it is).

    web/
      mcode-plugin.toml      name = "web", description, version, enabled = false, tools = [...]
      commands/*.md          slash commands          (mcode/plugin_host/commands.py)
      agents/*.md            agent roles             (mcode/roles.py)
      skills/*/SKILL.md      skills                  (mcode/plugin_host/skills.py)
      hooks/hooks.json       hooks, Claude Code's shape, or [hooks] in the manifest
      .mcp.json              MCP servers, or [mcp_servers.NAME] in the manifest

``tools`` (mcode's manifest only) names Python tools: ``"package.module:attr"`` or
``"file.py:attr"`` (a file of the plugin), where ``attr`` is a Tool class or a function taking
the plugin's settings (``[plugins.NAME]`` in the config) and returning a list of tools.
``enabled = false`` makes a plugin opt-in (``mcode plugins enable NAME``).

A manifest that cannot be read, or a field of the wrong type, is a problem naming the file and
the field; the plugin is skipped (or the field, where the rest stands) and every other plugin
still loads.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "mcode-plugin.toml"
CLAUDE_MANIFEST = Path(".claude-plugin") / "plugin.json"
TOML_KEYS = (
    "name",
    "version",
    "description",
    "author",
    "enabled",
    "commands",
    "agents",
    "skills",
    "hooks",
    "mcp_servers",
    "tools",
)
CLAUDE_KEYS = (
    "name",
    "version",
    "description",
    "author",
    "homepage",
    "repository",
    "license",
    "keywords",
    "commands",
    "agents",
    "skills",
    "hooks",
    "mcpServers",
    "outputStyles",
)


@dataclass(slots=True)
class Plugin:
    """A plugin as its manifest describes it; folders are absolute, a table is kept as given."""

    name: str
    root: Path
    manifest: Path
    source: str  # bundled, user, project
    description: str = ""
    version: str = ""
    default_enabled: bool = True
    commands: list[Path] = field(default_factory=list)
    agents: list[Path] = field(default_factory=list)
    skills: list[Path] = field(default_factory=list)
    hooks: Any = None  # a table, or None
    mcp_servers: Any = None  # a table, or None
    tools: list[str] = field(default_factory=list)


def find_manifest(folder: Path) -> Path | None:
    for candidate in (folder / MANIFEST, folder / CLAUDE_MANIFEST):
        if candidate.is_file():
            return candidate
    return None


def read_plugin(folder: Path, source: str) -> tuple[Plugin | None, list[str]]:
    """The plugin in ``folder`` (None if it has no usable manifest), and the problems found."""
    manifest = find_manifest(folder)
    if manifest is None:
        return None, [f"{folder}: no {MANIFEST} or {CLAUDE_MANIFEST}; not a plugin"]
    claude = manifest.name == "plugin.json"
    problems: list[str] = []
    try:
        text = manifest.read_text(encoding="utf-8")
        doc = json.loads(text) if claude else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as e:  # TOMLDecodeError is a ValueError
        return None, [f"{manifest}: cannot be read ({e}); the plugin was not loaded"]
    if not isinstance(doc, dict):
        return None, [f"{manifest}: expected an object; the plugin was not loaded"]
    known = CLAUDE_KEYS if claude else TOML_KEYS
    for key in doc:
        if key not in known:
            problems.append(f"{manifest}: unknown field {key!r} (known: {', '.join(known)})")
    name = doc.get("name", folder.name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        return None, [
            *problems,
            f"{manifest}: field 'name' must be letters, digits, '.', '_' or '-', not {name!r}; "
            "the plugin was not loaded",
        ]
    plugin = Plugin(name=name, root=folder, manifest=manifest, source=source)
    for key in ("description", "version"):
        value = doc.get(key, "")
        if isinstance(value, str):
            setattr(plugin, key, value)
        else:
            problems.append(f"{manifest}: field {key!r} must be a string")
    enabled = doc.get("enabled", True)
    if isinstance(enabled, bool):
        plugin.default_enabled = enabled
    else:
        problems.append(f"{manifest}: field 'enabled' must be true or false; taken as true")
    for key, default in (("commands", "commands"), ("agents", "agents"), ("skills", "skills")):
        folders, problem = _folders(doc.get(key), folder, default, f"{manifest}: field {key!r}")
        setattr(plugin, key, folders)
        if problem:
            problems.append(problem)
    hooks = doc.get("hooks")
    if hooks is None and (folder / "hooks" / "hooks.json").is_file():
        hooks = "hooks/hooks.json"
    plugin.hooks, problem = _table(hooks, folder, "hooks", f"{manifest}: field 'hooks'")
    if problem:
        problems.append(problem)
    servers = doc.get("mcpServers" if claude else "mcp_servers")
    if servers is None and (folder / ".mcp.json").is_file():
        servers = ".mcp.json"
    plugin.mcp_servers, problem = _table(
        servers,
        folder,
        "mcpServers",
        f"{manifest}: field {'mcpServers' if claude else 'mcp_servers'!r}",
    )
    if problem:
        problems.append(problem)
    tools = doc.get("tools", [])
    if isinstance(tools, list) and all(isinstance(t, str) and ":" in t for t in tools):
        plugin.tools = list(tools)
    else:
        problems.append(f"{manifest}: field 'tools' must be a list of \"module:attr\" strings")
    return plugin, problems


def _folders(value: Any, root: Path, default: str, where: str) -> tuple[list[Path], str]:
    """The folders a manifest field names (a path or a list of them), relative to ``root``;
    the default folder when the field is absent."""
    if value is None:
        return [root / default], ""
    paths = [value] if isinstance(value, str) else value
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return [root / default], f"{where} must be a path or a list of paths"
    out = []
    for p in paths:
        path = (root / p).resolve()
        if root.resolve() not in (path, *path.parents):
            return [], f"{where}: {p!r} is outside the plugin's folder"
        # Claude Code's manifests may name single files: their folder is what is read.
        out.append(path if path.is_dir() or not path.suffix else path.parent)
    return out, ""


def _table(value: Any, root: Path, inner: str, where: str) -> tuple[Any, str]:
    """A table given inline, or the JSON file a path names (its ``inner`` key if it has one)."""
    if value is None or isinstance(value, dict):
        return value, ""
    if not isinstance(value, str):
        return None, f"{where} must be a table or the path of a JSON file"
    path = (root / value).resolve()
    if root.resolve() not in path.parents:
        return None, f"{where}: {value!r} is outside the plugin's folder"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return None, f"{where}: {path} cannot be read ({e})"
    if isinstance(doc, dict) and isinstance(doc.get(inner), dict):
        return doc[inner], ""
    return doc, ""
