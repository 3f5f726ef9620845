"""MCP server configuration: what starts each server, read from ``.mcp.json``'s
``mcpServers``, a config file's ``[mcp_servers.NAME]`` or a plugin, and the names its tools get
(``mcp__<server>__<tool>``). The servers themselves are ``mcp.py``'s."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Transport = Literal["stdio", "http"]


@dataclass(frozen=True, slots=True)
class McpServerSpec:
    """One configured server: ``command`` + ``args`` (stdio) or ``url`` (streamable HTTP)."""

    name: str
    transport: Transport
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0  # seconds one tool call may take
    startup_timeout: float = 60.0  # seconds its first tool list may take (mcp.py's learned)
    source: str = ""

    @property
    def key(self) -> str:
        """What identifies the server's tool list in the cache: what starts it (the values of
        ``env`` and ``headers`` are left out: they may hold credentials)."""
        what = [self.transport, self.command, *self.args, self.url, *sorted(self.env)]
        return hashlib.sha256("\0".join(what).encode()).hexdigest()[:24]


def parse_mcp_servers(table: Any, source: str, base: Path) -> tuple[list[McpServerSpec], list[str]]:
    """The servers of one table (``.mcp.json``'s ``mcpServers``, a config's ``[mcp_servers]``,
    a plugin's), each name -> ``{command, args, env, cwd, timeout}`` or ``{type: "http", url,
    headers}``, either with ``startup_timeout`` (seconds its tool list may take, 60);
    a problem naming ``source`` and the field for each server that cannot be used."""
    specs: list[McpServerSpec] = []
    problems: list[str] = []
    if not isinstance(table, dict):
        return [], [f"{source}: mcpServers: expected a table of servers"]
    for name, conf in table.items():
        where = f"{source}: mcpServers.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name):
            problems.append(f"{where}: a server name is letters, digits, _ and - (at most 40)")
            continue
        if not isinstance(conf, dict):
            problems.append(f"{where}: expected a table")
            continue
        startup = conf.get("startup_timeout", 60.0)
        if isinstance(startup, bool) or not isinstance(startup, int | float) or startup <= 0:
            problems.append(f"{where}.startup_timeout: expected seconds above 0")
            continue
        kind = conf.get("type") or ("http" if "url" in conf else "stdio")
        if kind in ("http", "streamable-http", "streamable_http"):
            url = conf.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                problems.append(f"{where}.url: expected an http(s) URL")
                continue
            headers = conf.get("headers", {})
            if not _str_map(headers):
                problems.append(f"{where}.headers: expected a table of strings")
                continue
            specs.append(
                McpServerSpec(
                    name,
                    "http",
                    url=url,
                    headers=dict(headers),
                    startup_timeout=float(startup),
                    source=source,
                )
            )
            continue
        if kind != "stdio":
            problems.append(f"{where}.type: {kind!r} is not supported (stdio or http)")
            continue
        command = conf.get("command")
        args = conf.get("args", [])
        env = conf.get("env", {})
        if not isinstance(command, str) or not command.strip():
            problems.append(f"{where}.command: expected the command that starts the server")
            continue
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            problems.append(f"{where}.args: expected a list of strings")
            continue
        if not _str_map(env):
            problems.append(f"{where}.env: expected a table of strings")
            continue
        cwd = conf.get("cwd")
        timeout = conf.get("timeout", 120.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            problems.append(f"{where}.timeout: expected seconds above 0")
            continue
        specs.append(
            McpServerSpec(
                name,
                "stdio",
                command=os.path.expandvars(command),
                args=tuple(os.path.expandvars(a) for a in args),
                env={k: os.path.expandvars(v) for k, v in env.items()},
                cwd=str(base / cwd) if isinstance(cwd, str) else str(base),
                timeout=float(timeout),
                startup_timeout=float(startup),
                source=source,
            )
        )
    return specs, problems


# A value this short is a flag ("1", "true", "debug"): redacting it would mangle ordinary text.
_MIN_SECRET = 8


def spec_secrets(specs: list[McpServerSpec]) -> list[str]:
    """The values of the servers' ``env`` and ``headers``, for a session to redact: an editor's
    servers (over ACP) come with no word on which value is a credential, so each is taken as
    one (an ``Authorization: Bearer ...`` header also by its token alone). A flag redacted from
    an event costs less than a token in the store. Absolute paths are the exception: no token
    starts with ``/``, and a workspace or home path redacted would blank out every event that
    names a file."""
    found: list[str] = []
    for spec in specs:
        for value in [*spec.env.values(), *spec.headers.values()]:
            if value.startswith(("/", "~/")):
                continue
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token.strip() and scheme.isalpha():
                found.append(token.strip())
    return [v for v in dict.fromkeys(found) if len(v) >= _MIN_SECRET]


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def tool_name(server: str, tool: str) -> str:
    """``mcp__<server>__<tool>``, in the characters every API takes, at most 64 long."""
    raw = f"mcp__{server}__{tool}"
    return re.sub(r"[^A-Za-z0-9_-]", "_", raw)[:64]
