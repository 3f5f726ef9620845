"""The plugin host: what users already have for Claude Code, and mcode's own plugins, loaded
into a session.

    probe.py      is anything configured? (stdlib only: a session with nothing pays nothing)
    sources.py    hooks and MCP servers outside plugins (config, .claude/settings.json, .mcp.json)
    discovery.py  plugin folders, bundled < user < trusted project, and which are on
    manifest.py   mcode-plugin.toml and .claude-plugin/plugin.json
    commands.py   slash commands (Markdown templates)    skills.py   SKILL.md and the skill tool
                  (front matter: mcode/frontmatter.py; a plugin's agents/*.md: mcode/roles.py)
    hooks.py      Claude Code's hook events and I/O, run as commands
    mcp.py        MCP servers through the official SDK: tools mcp__<server>__<tool>, resources
    mcp_config.py what starts each MCP server (.mcp.json, [mcp_servers], a plugin)
    pytools.py    Python tools: module paths and the mcode.tools entry points
    reload.py     hot reload with watchdog
    host.py       PluginHost: the tools, prompt, hooks and events one session gets
    cli.py        mcode plugins list|enable|disable

Nothing here is imported by ``mcode --version``, nor by a session with nothing configured;
the MCP SDK only when a server is configured, watchdog only while a session with plugins runs.
Project files that run code or instruct the model (hooks, MCP servers, plugins, ``.claude/``)
take effect only in a trusted folder (``mcode/trust.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcode.plugin_host.commands import Command
    from mcode.plugin_host.host import PluginHost

__all__ = ["PluginHost", "expand_command", "list_commands"]


def list_commands(workspace: Path, *, trusted: bool) -> list[Command]:
    """The slash commands a session in ``workspace`` offers (for a front end's command
    registry: ``name``, ``aliases``, ``description``, ``argument_hint``, ``plugin``), sorted
    by name. The session itself expands them; a front end only lists them."""
    from mcode.config import config_home
    from mcode.plugin_host.host import read_contents

    contents = read_contents(workspace, config_home(), trusted=trusted, with_tools=False)
    table = {c.name: c for c in contents.commands}  # later sources win, as in the session
    return sorted(table.values(), key=lambda c: c.name)


def expand_command(text: str, commands: list[Command]) -> str | None:
    """``text`` with its slash command expanded, or None if it names none of ``commands``."""
    from mcode.plugin_host.commands import command_table, expand

    return expand(text, command_table(commands))


def __getattr__(name: str) -> Any:
    if name == "PluginHost":
        from mcode.plugin_host.host import PluginHost

        return PluginHost
    raise AttributeError(name)
