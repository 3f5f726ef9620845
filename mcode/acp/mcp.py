"""The MCP servers an editor sends with ``session/new`` and ``session/load`` (``mcpServers``), as
mcode's own server specs:

    McpServerStdio {name, command, args, env: [{name, value}]}   -> McpServerSpec("stdio")
    HttpMcpServer  {type: "http", name, url, headers: [...]}     -> McpServerSpec("http")
    SseMcpServer, AcpMcpServer                                   -> a problem: not started

From there they are the session's servers like those of ``.mcp.json`` (``open_session``'s
``mcp_servers``): listed or started lazily by the McpHub, a stdio one inside the sandbox, all
stopped when the session closes. mcode's hub speaks stdio and streamable HTTP only, so
``initialize`` advertises ``http`` and not ``sse`` (:data:`CAPABILITIES`); a client that sends
an SSE server anyway gets it named in ``plugins.loaded``'s problems and the agent's log.

The editor's ``env`` and ``headers`` are where its user puts tokens, under any name: their values
become secrets of the session (``mcp_config.spec_secrets``), redacted from every event and the
store.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from acp import schema as s

from mcode.plugin_host.mcp_config import McpServerSpec

# What mcode's McpHub can talk to (mcode/plugin_host/mcp.py): stdio always, streamable HTTP.
CAPABILITIES = s.McpCapabilities(http=True, sse=False)
SOURCE = "the editor (mcpServers)"


def editor_servers(servers: list[Any] | None, cwd: Path) -> tuple[list[McpServerSpec], list[str]]:
    """The specs of the servers an editor sent, in its order, and a problem for each one mcode
    does not start (a transport it does not speak, two of one name)."""
    specs: dict[str, McpServerSpec] = {}
    problems: list[str] = []
    for server in servers or []:
        # ACP's name is "human-readable" (Zed sends the user's "GitHub MCP"); mcode's names the
        # tools (mcp__<name>__...) and the server's log file, so only the safe characters stay.
        name = re.sub(r"[^A-Za-z0-9_-]", "_", str(server.name))[:40] or "editor"
        where = f"{SOURCE}: {server.name!r}"
        if name in specs:
            problems.append(f"{where}: a second server of the name {name!r} is not started")
            continue
        if isinstance(server, s.McpServerStdio):
            specs[name] = McpServerSpec(
                name,
                "stdio",
                command=server.command,
                args=tuple(server.args),
                env={v.name: v.value for v in server.env},
                cwd=str(cwd),
                source=SOURCE,
            )
        elif isinstance(server, s.HttpMcpServer):
            specs[name] = McpServerSpec(
                name,
                "http",
                url=server.url,
                headers={h.name: h.value for h in server.headers},
                source=SOURCE,
            )
        else:
            kind = getattr(server, "type", type(server).__name__)
            problems.append(
                f"{where}: mcode does not speak MCP over {kind!r}; it is not started "
                "(mcode takes stdio and streamable HTTP servers, as initialize says)"
            )
    return list(specs.values()), problems
