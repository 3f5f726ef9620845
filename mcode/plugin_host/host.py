"""PluginHost: everything plugins, hooks and MCP servers give one session, assembled once.

``open_session`` makes one (:meth:`PluginHost.open`), adds :meth:`tools` after the built-in
tools, hands :attr:`hooks` to the main conversation (the loop's
:class:`~mcode.agent.hooks.TurnHooks`), and :meth:`attach` es it to the Session: events go out
through ``Session.emit``, ``plugins.loaded`` follows ``session.started``, a ``permission.asked``
runs the Notification hooks, and closing the session stops the MCP servers and the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcode import events as ev
from mcode.plugin_host.hooks import HookCommand, HookRunner, parse_hooks
from mcode.plugin_host.mcp import McpHub, McpServerSpec, parse_mcp_servers
from mcode.plugin_host.sources import Found, gather

if TYPE_CHECKING:
    from mcode.config import Settings
    from mcode.events import Event
    from mcode.runtime.session import Session
    from mcode.tools.base import Tool


class PluginHost:
    def __init__(
        self,
        *,
        workspace: Path,
        found: Found,
        hooks: list[HookCommand],
        servers: list[McpServerSpec],
        env: dict[str, str],
        data_dir: Path | None,
        permission_mode: str,
        resumed: bool,
    ) -> None:
        self.workspace = workspace
        self.problems = list(found.problems)
        self.ignored = list(found.ignored)
        self.env = env
        self.runner = HookRunner(
            hooks, workspace=workspace, env=env, permission_mode=permission_mode, resumed=resumed
        )
        self.hub = (
            McpHub(servers, env, None if data_dir is None else data_dir / "mcp-tools.json")
            if servers
            else None
        )
        self._tools: list[Tool] | None = None
        self._session: Session | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        # Events said before session.started (an MCP server listed while the session opened),
        # emitted right after plugins.loaded.
        self._held: list[ev.Payload] | None = []
        self.runner.emit = self._emit
        if self.hub is not None:
            self.hub.emit = self._emit

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        env: dict[str, str],
        data_dir: Path | None,
        resumed: bool = False,
    ) -> PluginHost:
        from mcode.config import config_home

        workspace = settings.workspace
        found = gather(workspace, config_home(), trusted=settings.trusted)
        hooks: list[HookCommand] = []
        for table, source, root in found.hooks:
            more, problems = parse_hooks(table, source, root)
            hooks += more
            found.problems += problems
        servers: dict[str, McpServerSpec] = {}
        for table, source, base in found.mcp:
            specs, problems = parse_mcp_servers(table, source, base)
            found.problems += problems
            for spec in specs:
                servers[spec.name] = spec  # a later source (the project) wins by name
        return cls(
            workspace=workspace,
            found=found,
            hooks=hooks,
            servers=list(servers.values()),
            env=env,
            data_dir=data_dir,
            permission_mode=settings.permission_mode,
            resumed=resumed,
        )

    @property
    def empty(self) -> bool:
        """Nothing configured: the session runs exactly as without a plugin host."""
        return not self.runner.hooks and self.hub is None and not self.problems and not self.ignored

    @property
    def hooks(self) -> HookRunner | None:
        """The conversation's TurnHooks, or None when no hook is configured."""
        return self.runner if len(self.runner) else None

    def tools(self) -> list[Tool]:
        """Plugin tools, then MCP tools (an MCP server never seen before is started now to
        list its tools; one whose list is cached is not)."""
        if self._tools is None:
            tools: list[Tool] = []
            if self.hub is not None:
                tools += self.hub.tools()
            self._tools = tools
        return self._tools

    # -- the session -------------------------------------------------------------------------
    def _emit(self, payload: ev.Payload) -> None:
        if self._held is not None or self._session is None:
            (self._held if self._held is not None else []).append(payload)
            return
        self._session.emit(payload)

    def attach(self, session: Session) -> None:
        self._session = session
        self.runner.session_id = session.id
        session.subscribe(self._on_event)
        session.on_close.append(self.close)

    def _on_event(self, event: Event, line: str) -> None:
        if event.type == ev.SESSION_STARTED:
            self._session_started()
        elif event.type == ev.PERMISSION_ASKED and self.runner.has("Notification"):
            name = event.data.get("name", "a tool")
            task = asyncio.ensure_future(
                self.runner.notify(f"mcode needs your permission to use {name}")
            )
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _session_started(self) -> None:
        session = self._session
        if session is None:
            return
        tools = tuple(t.name for t in self._tools or [])
        session.emit(
            ev.PluginsLoaded(
                plugins=(),
                commands=(),
                skills=(),
                roles=(),
                tools=tools,
                mcp_servers=tuple(self.hub.specs) if self.hub is not None else (),
                hooks=len(self.runner),
                problems=tuple(self.problems),
                ignored=tuple(self.ignored),
            )
        )
        held, self._held = self._held or [], None
        for payload in held:
            session.emit(payload)

    def close(self) -> None:
        for task in self._pending:
            task.cancel()
        if self.hub is None:
            return
        stopped: list[str] = []
        with contextlib.suppress(Exception):
            stopped = self.hub.close()
        if self._session is not None:
            for name in stopped:
                self._session.emit(
                    ev.McpServer(server=name, state="stopped", message="the session ended")
                )
