"""PluginHost: everything plugins, hooks and MCP servers give one session, assembled once.

``open_session`` makes one (:meth:`PluginHost.open`) and, unless it is :attr:`empty`, adds
:meth:`tools` after the built-in tools, :meth:`prompt_section` to the system prompt and
:meth:`roles` to the ``task`` tool, hands :attr:`hooks` to the main conversation (the loop's
:class:`~mcode.agent.hooks.TurnHooks`: slash commands expanded, then the hook commands run),
and :meth:`attach` es it to the Session: its events go out through ``Session.emit`` (those
said while the session opened follow ``plugins.loaded``, right after ``session.started``), a
``permission.asked`` runs the Notification hooks, the watcher starts, and closing the session
stops the MCP servers and the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcode import events as ev
from mcode.agent.hooks import PromptGate, ToolGate
from mcode.plugin_host.commands import Command, command_table, expand, load_commands
from mcode.plugin_host.discovery import Discovered, discover
from mcode.plugin_host.hooks import HookCommand, HookRunner, parse_hooks
from mcode.plugin_host.mcp import McpHub, McpServerSpec, mcp_policy, parse_mcp_servers
from mcode.plugin_host.probe import entry_point_refs
from mcode.plugin_host.pytools import load_entry_points, load_tool_refs
from mcode.plugin_host.skills import Skill, SkillTool, load_skills, prompt_section
from mcode.plugin_host.sources import Found, gather
from mcode.roles import Role, RoleError, RoleSource, load_roles
from mcode.tools.sandbox import SandboxPolicy, policy_for

if TYPE_CHECKING:
    from mcode.config import Settings
    from mcode.events import Event
    from mcode.runtime.session import Session
    from mcode.tools.base import FileStamp, Tool, ToolResult


@dataclass(slots=True)
class Contents:
    """What the enabled plugins and the config hold, read from disk (again on a reload)."""

    discovered: Discovered
    found: Found
    commands: list[Command] = field(default_factory=list)
    skills: list[Skill] = field(default_factory=list)
    roles: list[Role] = field(default_factory=list)
    hooks: list[HookCommand] = field(default_factory=list)
    servers: list[McpServerSpec] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ignored(self) -> list[str]:
        return [*self.found.ignored, *self.discovered.ignored]


def read_contents(
    workspace: Path,
    config_dir: Path,
    *,
    trusted: bool,
    with_tools: bool = True,
    data_dir: Path | None = None,
) -> Contents:
    """Read every source: config tables, plugins (only the enabled ones' parts), their files;
    with ``with_tools``, the Python tools too (plugins' and installed entry points')."""
    found = gather(workspace, config_dir, trusted=trusted)
    discovered = discover(workspace, config_dir, trusted=trusted, settings=found.plugin_settings)
    out = Contents(discovered, found, problems=[*found.problems, *discovered.problems])
    settings = _plugin_settings(found.plugin_settings)
    servers: dict[str, McpServerSpec] = {}
    for plugin in discovered.enabled:
        for folder in plugin.commands:
            more, problems = load_commands(folder, plugin.name)
            out.commands += more
            out.problems += problems
        for folder in plugin.skills:
            skills, problems = load_skills(folder, plugin.name)
            out.skills += skills
            out.problems += problems
        for folder in plugin.agents:
            errors: list[RoleError] = []
            out.roles += load_roles([RoleSource(folder, f"plugin {plugin.name}")], errors).values()
            out.problems += [e.message for e in errors]
        if plugin.hooks is not None:
            hooks, problems = parse_hooks(plugin.hooks, str(plugin.manifest), plugin.root)
            out.hooks += hooks
            out.problems += problems
        if plugin.mcp_servers is not None:
            specs, problems = parse_mcp_servers(
                plugin.mcp_servers, str(plugin.manifest), plugin.root
            )
            out.problems += problems
            servers.update((s.name, s) for s in specs)
        if plugin.tools and with_tools:
            tools, problems = load_tool_refs(
                plugin.tools, plugin.root, plugin.name, settings.get(plugin.name, {})
            )
            out.tools += tools
            out.problems += problems
    if with_tools:
        cache = None if data_dir is None else data_dir / "entry-points.json"
        tools, problems = load_entry_points(entry_point_refs(cache), settings)
        out.tools += tools
        out.problems += problems
    for table, source, root in found.hooks:
        hooks, problems = parse_hooks(table, source, root)
        out.hooks += hooks
        out.problems += problems
    for table, source, base in found.mcp:
        specs, problems = parse_mcp_servers(table, source, base)
        out.problems += problems
        servers.update((s.name, s) for s in specs)  # the config (the project last) wins by name
    out.servers = list(servers.values())
    return out


def _plugin_settings(tables: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``[plugins.NAME]`` tables merged, the project's over the user's."""
    merged: dict[str, dict[str, Any]] = {}
    for table in tables:
        for name, value in table.items():
            if isinstance(value, dict):
                merged.setdefault(name, {}).update(value)
    return merged


class PluginHost:
    def __init__(
        self,
        contents: Contents,
        *,
        workspace: Path,
        config_dir: Path,
        trusted: bool,
        env: dict[str, str],
        data_dir: Path | None,
        permission_mode: str,
        resumed: bool,
        sandbox: SandboxPolicy | None = None,
        hook_sandbox: SandboxPolicy | None = None,
    ) -> None:
        self.contents = contents
        self.workspace = workspace
        self.config_dir = config_dir
        self.trusted = trusted
        self.env = env
        self.runner = HookRunner(
            contents.hooks,
            workspace=workspace,
            env=env,
            permission_mode=permission_mode,
            resumed=resumed,
            sandbox=hook_sandbox,
        )
        self.commands = command_table(contents.commands)
        self.hub = (
            McpHub(
                contents.servers,
                env,
                None if data_dir is None else data_dir / "mcp-tools.json",
                sandbox=None if sandbox is None else mcp_policy(sandbox),
            )
            if contents.servers
            else None
        )
        self.skill_tool = SkillTool(contents.skills) if contents.skills else None
        # The file stamps of the session's tools (set by open_session): what the model has seen.
        self.file_stamps: dict[str, FileStamp] = {}
        self._told: set[tuple[str, str]] = set()
        self._tools: list[Tool] | None = None
        self._mcp_tools: list[Tool] = []  # the hub's part of _tools (its tail)
        self._session: Session | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        # Events said before session.started (an MCP server listed while the session opened),
        # emitted right after plugins.loaded.
        self._held: list[ev.Payload] | None = []
        self.runner.emit = self._emit
        if self.hub is not None:
            self.hub.emit = self._emit
        self.watcher: Any = None
        # Builds the system prompt again and sets it (open_session): AGENTS.md or skills changed.
        self.refresh_prompt: Callable[[], None] | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        env: dict[str, str],
        data_dir: Path | None,
        resumed: bool = False,
        extra_mcp: list[McpServerSpec] | None = None,
    ) -> PluginHost:
        """``extra_mcp``: servers for this session alone (an editor's, over ACP)."""
        from mcode.config import config_home

        config_dir = config_home()
        contents = read_contents(
            settings.workspace, config_dir, trusted=settings.trusted, data_dir=data_dir
        )
        if extra_mcp:
            # The session's own servers win a name both have: the user configured them in
            # the editor they are using now, and it sends them with this very session: the
            # more specific choice, as the project's config wins over the user's above.
            servers = {s.name: s for s in contents.servers}
            servers.update((s.name, s) for s in extra_mcp)
            contents.servers = list(servers.values())
        return cls(
            contents,
            workspace=settings.workspace,
            config_dir=config_dir,
            trusted=settings.trusted,
            env=env,
            data_dir=data_dir,
            permission_mode=settings.permission_mode,
            resumed=resumed,
            sandbox=policy_for(settings),
            hook_sandbox=policy_for(settings, at_least="workspace-write"),
        )

    @property
    def empty(self) -> bool:
        """Nothing to load and nothing to say: the session runs as without a plugin host."""
        c = self.contents
        return not (
            c.commands
            or c.skills
            or c.roles
            or c.hooks
            or c.servers
            or c.tools
            or c.problems
            or c.ignored
        )

    @property
    def hooks(self) -> SessionHooks:
        return SessionHooks(self)

    def roles(self) -> list[Role]:
        return list(self.contents.roles)

    def prompt_section(self) -> str:
        return prompt_section(self.contents.skills)

    def tools(self) -> list[Tool]:
        """Plugin tools, the skill tool, then MCP tools as known now: an MCP server whose list
        is cached is not started; one never seen before is started to list its tools, which
        :meth:`learn_tools` adds before the first model call (nothing here waits for it)."""
        if self._tools is None:
            tools: list[Tool] = list(self.contents.tools)
            if self.skill_tool is not None:
                tools.append(self.skill_tool)
            if self.hub is not None:
                self._mcp_tools = self.hub.tools()
                tools += self._mcp_tools
            self._tools = tools
        return self._tools

    def learn_tools(self, tools: list[Tool]) -> Callable[[], Awaitable[None]] | None:
        """What a conversation with ``tools`` (the session's list, ending with these) awaits
        before its first model call (``Conversation.prepare``): the lists of the servers still
        starting, put in their place in ``tools``; None if none is. The list the model sees is
        then the same for the rest of the session."""
        hub = self.hub
        if hub is None or not hub.pending:
            return None

        async def learn() -> None:
            learned = await hub.learned()
            old = {id(t) for t in self._mcp_tools}
            tools[:] = [t for t in tools if id(t) not in old] + learned
            if self._tools is not None:
                self._tools[:] = [t for t in self._tools if id(t) not in old] + learned
            self._mcp_tools = learned

        return learn

    # -- the session -------------------------------------------------------------------------
    def _emit(self, payload: ev.Payload) -> None:
        if self._held is not None or self._session is None:
            if self._held is not None:
                self._held.append(payload)
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
        c = self.contents
        session.emit(
            ev.PluginsLoaded(
                plugins=tuple(p.name for p in c.discovered.enabled),
                commands=tuple(sorted({cmd.name for cmd in c.commands})),
                skills=tuple(s.name for s in c.skills),
                roles=tuple(r.name for r in c.roles),
                tools=tuple(t.name for t in self._tools or []),
                mcp_servers=tuple(s.name for s in c.servers),
                hooks=len(self.runner),
                problems=tuple(c.problems),
                ignored=tuple(c.ignored),
            )
        )
        held, self._held = self._held or [], None
        for payload in held:
            session.emit(payload)
        from mcode.plugin_host.reload import start_watcher

        self.watcher = start_watcher(self)

    def reload(self, paths: list[str]) -> None:
        """Read the plugins' files and the config again (a watched file changed): commands,
        skills' list, roles and hooks take effect from the next use. New tools and MCP servers
        wait for the next session (the tool list is the request's stable prefix)."""
        fresh = read_contents(
            self.workspace, self.config_dir, trusted=self.trusted, with_tools=False
        )
        what: list[str] = []
        if [c.path for c in fresh.commands] != [c.path for c in self.contents.commands]:
            what.append("commands")
        self.commands = command_table(fresh.commands)
        if fresh.skills != self.contents.skills:
            what.append("skills")
            if self.skill_tool is not None:
                self.skill_tool.skills = {s.name: s for s in fresh.skills}
        if fresh.roles != self.contents.roles:
            what.append("roles")
        if fresh.hooks != self.contents.hooks:
            what.append("hooks")
            self.runner.hooks = list(fresh.hooks)
        fresh.tools = self.contents.tools
        fresh.servers = self.contents.servers
        self.contents = fresh
        if any(Path(p).name == "AGENTS.md" for p in paths):
            what.append("agents_md")
        if ("agents_md" in what or "skills" in what) and self.refresh_prompt is not None:
            self.refresh_prompt()
        if self._session is not None:
            self._session.emit(
                ev.PluginsReloaded(
                    paths=tuple(paths),
                    what=tuple(what) or ("nothing",),
                    problems=tuple(fresh.problems),
                )
            )

    def changed_files(self) -> list[str]:
        """Files the model read or wrote that someone else changed since (said once each)."""
        changed = []
        for path, stamp in list(self.file_stamps.items()):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if (st.st_mtime_ns, st.st_size) == (stamp.mtime_ns, stamp.size):
                continue
            try:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                continue
            if digest == stamp.sha256 or (path, digest) in self._told:
                continue
            self._told.add((path, digest))
            try:
                changed.append(str(Path(path).relative_to(self.workspace)))
            except ValueError:
                changed.append(path)
        return changed

    def close(self) -> None:
        for task in self._pending:
            task.cancel()
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                self.watcher.stop()
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


def _changed_note(paths: list[str]) -> str:
    return (
        "Note: since you last read them, someone else changed "
        + ", ".join(paths)
        + "; read them again before you edit them."
    )


class SessionHooks:
    """The TurnHooks a conversation gets: slash commands expanded before the hook commands see
    the prompt, files changed by someone else said to the model, then the hooks themselves."""

    def __init__(self, host: PluginHost) -> None:
        self.host = host
        self.runner = host.runner

    async def before_prompt(self, text: str, *, agent: str | None) -> PromptGate:
        expanded = expand(text, self.host.commands) if agent is None else None
        gate = await self.runner.before_prompt(expanded or text, agent=agent)
        notes = [gate.context] if gate.context else []
        changed = self.host.changed_files()
        if changed:
            notes.append(_changed_note(changed))
        return PromptGate(gate.block, gate.reason, "\n\n".join(notes), expanded)

    async def before_tool(
        self, name: str, args: dict[str, Any], call_id: str, *, agent: str | None
    ) -> ToolGate:
        return await self.runner.before_tool(name, args, call_id, agent=agent)

    async def after_tool(
        self, name: str, args: dict[str, Any], result: ToolResult, call_id: str
    ) -> str:
        feedback = await self.runner.after_tool(name, args, result, call_id)
        changed = self.host.changed_files()
        if name == "bash":
            return feedback  # its own command changed them: nobody else
        if changed:
            feedback = "\n".join(f for f in (feedback, _changed_note(changed)) if f)
        return feedback

    async def on_stop(self, text: str, *, agent: str | None, again: bool) -> str:
        return await self.runner.on_stop(text, agent=agent, again=again)

    async def before_compact(self, reason: str, instructions: str | None) -> None:
        await self.runner.before_compact(reason, instructions)
