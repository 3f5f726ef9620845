"""The plugin host: what users already have for Claude Code, and mcode's own plugins, loaded
into a session.

    hooks.py     Claude Code's hook events and I/O, run as commands (PreToolUse blocks, ...)
    mcp.py       MCP servers through the official SDK: tools mcp__<server>__<tool>, resources
    sources.py   hooks and servers configured outside plugins (config, .claude/, .mcp.json)
    host.py      PluginHost: the tools, hooks and events one session gets

Nothing here is imported by ``mcode --version``, and the MCP SDK only when a server is
configured. Project files that run code (hooks, MCP servers, plugins) take effect only in a
trusted folder (``mcode/trust.py``).
"""

from __future__ import annotations

from mcode.plugin_host.host import PluginHost

__all__ = ["PluginHost"]
