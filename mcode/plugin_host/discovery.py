"""Discovery: every plugin and loose Claude Code file a session may load, in precedence order.

    bundled    mcode.plugins (the top-level plugins/ folder)          always may load
    user       $XDG_CONFIG_HOME/mcode/plugins/<name>/                 always may load
               ~/.claude/commands, agents, skills   (as plugin "claude-user")
    project    <workspace>/.mcode/plugins/<name>/                     trusted folder only
               <workspace>/.claude/commands, agents, skills (as plugin "claude-project")
    installed  the mcode.tools entry-point group                      always may load

A later source wins a name over an earlier one (a project's plugin named ``git`` replaces the
bundled one). Whether a plugin is on: its manifest's ``enabled`` (true unless it says so),
then ``mcode plugins enable|disable`` (``plugins.json`` in the config folder), then
``[plugins] enabled / disabled`` in the user's and the project's config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcode.plugin_host.manifest import Plugin, find_manifest, read_plugin

STATE_NAME = "plugins.json"
CLAUDE_USER = "claude-user"
CLAUDE_PROJECT = "claude-project"


def bundled_dir() -> Path:
    import mcode.plugins

    return Path(mcode.plugins.__file__).parent


@dataclass(slots=True)
class Discovered:
    plugins: list[Plugin] = field(default_factory=list)  # every plugin found, on or off
    enabled: list[Plugin] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def discover(
    workspace: Path,
    config_dir: Path,
    *,
    trusted: bool,
    settings: list[dict[str, Any]] | None = None,
    home: Path | None = None,
) -> Discovered:
    """The plugins of a session in ``workspace``; ``settings`` are the ``[plugins]`` tables of
    the config files, lowest precedence first."""
    found = Discovered()
    by_name: dict[str, Plugin] = {}

    def add(folder: Path, source: str) -> None:
        plugin, problems = read_plugin(folder, source)
        found.problems.extend(problems)
        if plugin is not None:
            by_name.pop(plugin.name, None)
            by_name[plugin.name] = plugin

    try:
        bundled = bundled_dir()
    except ImportError:  # an install without the bundled plugins
        bundled = None
    for folder in _plugin_folders(bundled):
        add(folder, "bundled")
    for folder in _plugin_folders(config_dir / "plugins"):
        add(folder, "user")
    home = Path.home() if home is None else home
    loose = _loose(home / ".claude", CLAUDE_USER, "user")
    if loose is not None:
        by_name[loose.name] = loose
    project_plugins = _plugin_folders(workspace / ".mcode" / "plugins")
    project_loose = _loose(workspace / ".claude", CLAUDE_PROJECT, "project")
    if trusted:
        for folder in project_plugins:
            add(folder, "project")
        if project_loose is not None:
            by_name[project_loose.name] = project_loose
    else:
        found.ignored += [str(f) for f in project_plugins]
        if project_loose is not None:
            found.ignored.append(f"{workspace / '.claude'} commands, agents and skills")
    found.plugins = list(by_name.values())
    state = read_state(config_dir)
    for plugin in found.plugins:
        if is_enabled(plugin, state, settings or [], found.problems):
            found.enabled.append(plugin)
    return found


def _plugin_folders(parent: Path | None) -> list[Path]:
    if parent is None or not parent.is_dir():
        return []
    return [p for p in sorted(parent.iterdir()) if p.is_dir() and find_manifest(p) is not None]


def _loose(claude: Path, name: str, source: str) -> Plugin | None:
    """Claude Code's own folders of commands, agents and skills, as one plugin."""
    parts = {k: claude / k for k in ("commands", "agents", "skills")}
    if not any(p.is_dir() for p in parts.values()):
        return None
    return Plugin(
        name=name,
        root=claude,
        manifest=claude,
        source=source,
        description=f"Claude Code's commands, agents and skills in {claude}",
        commands=[parts["commands"]],
        agents=[parts["agents"]],
        skills=[parts["skills"]],
    )


def read_state(config_dir: Path) -> dict[str, bool]:
    """What ``mcode plugins enable|disable`` recorded: name -> on."""
    try:
        doc = json.loads((config_dir / STATE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    plugins = doc.get("plugins", {}) if isinstance(doc, dict) else {}
    return {k: v for k, v in plugins.items() if isinstance(v, bool)}


def write_state(config_dir: Path, name: str, on: bool) -> Path:
    path = config_dir / STATE_NAME
    state = read_state(config_dir)
    state[name] = on
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATE_NAME}.tmp")
    tmp.write_text(json.dumps({"version": 1, "plugins": dict(sorted(state.items()))}, indent=1))
    tmp.replace(path)
    return path


def is_enabled(
    plugin: Plugin, state: dict[str, bool], settings: list[dict[str, Any]], problems: list[str]
) -> bool:
    on = state.get(plugin.name, plugin.default_enabled)
    for table in settings:
        for key, value in (("enabled", True), ("disabled", False)):
            names = table.get(key, [])
            if not isinstance(names, list):
                problems.append(f"[plugins] {key} must be a list of plugin names")
                continue
            if plugin.name in names:
                on = value
    return on
