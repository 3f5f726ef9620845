"""MCP servers: their tools offered to the model as ``mcp__<server>__<tool>``, through the
official ``mcp`` SDK (stdio and streamable HTTP).

    open_session -> McpHub.tools (the cached lists; a new server starts listing its own)
    first turn   -> McpHub.learned (awaited: the new servers' lists, each until its
                      |            startup_timeout; then the list is the session's)
                      |   model calls mcp__docs__search
                      v
                    McpHub (one thread, its own event loop; started on the first need)
                      '- _Server per configured server: a task holding one ``mcp.Client`` open,
                         reconnecting after a crash with backoff (0.5 s, 1, 2, ... 30 s)

Started lazily: nothing here is imported unless a server is configured, and a server whose
tool list is cached (``<data dir>/mcp-tools.json``, keyed by what starts it) is not started
until the model first calls one of its tools; only a server never seen before is started while
the session opens, to learn its tools, and nothing blocks on it: the session's loop goes on (an
editor's other requests are answered) and the first turn awaits the list before its first model
call. One that has not answered within its ``startup_timeout`` is said as ``failed`` with its
log, and the session goes on without its tools. The list the model sees from the first turn on
is the session's (the request prefix stays byte-stable); a server that changed its tools
updates the cache for the next session.

A dead server never ends a turn: a call to it is answered as a tool error the model can read
("the MCP server docs is not running: ...; mcode is restarting it"), and the restart goes on in
the background, so a later call finds it up again. Its state changes are ``mcp.server`` events.
Servers start with the scrubbed child environment plus the ``env`` their config names; a stdio
server's stderr goes to ``<data dir>/mcp-logs/<server>.log``.

A stdio server runs inside the OS sandbox (``mcode/tools/sandbox.py``) with the session's
files policy: in ``workspace-write`` it writes the workspace and /tmp, not ``~`` (so not the
user's shell profile or ssh keys). Its network is always on (:func:`mcp_policy`): most servers
exist to reach a service (an issue tracker, docs, a search API), the user configured it by name,
and Codex and Claude Code leave MCP servers' network alone too; ``[sandbox] network`` governs
the model's own commands. A sandbox that cannot start is that server's ``failed`` state with
the reason, never an unsandboxed start. An HTTP server is not a process of mcode's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mcode import events as ev
from mcode.errors import SandboxError, ToolError
from mcode.plugin_host.mcp_config import McpServerSpec, parse_mcp_servers, tool_name
from mcode.tools.base import Tool, ToolContext, ToolResult
from mcode.tools.sandbox import SandboxPolicy, sandboxed_argv

__all__ = ["McpHub", "McpResourceTool", "McpServerSpec", "McpTool", "parse_mcp_servers"]
# How long a call waits for its server to come (back) up before it is answered as an error.
READY_TIMEOUT = 60.0
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
CACHE_NAME = "mcp-tools.json"
RESULT_CAP = 50_000  # characters of one tool result given to the model


@dataclass(frozen=True, slots=True)
class ListedTool:
    name: str  # the server's own name for it
    description: str
    input_schema: dict[str, Any]


class McpTool(Tool):
    """One tool of one MCP server. It runs in the server, so it counts as ``execute``."""

    permission: ClassVar[Any] = "execute"

    def __init__(self, hub: McpHub, server: str, listed: ListedTool) -> None:
        self.hub = hub
        self.server = server
        self.remote_name = listed.name
        self.name = tool_name(server, listed.name)  # type: ignore[misc]
        self.description = (  # type: ignore[misc]
            listed.description or f"the {listed.name} tool of the MCP server {server}"
        )
        schema = dict(listed.input_schema or {"type": "object", "properties": {}})
        schema.setdefault("type", "object")
        self.parameters = schema  # type: ignore[misc]

    def subject(self, args: dict[str, Any]) -> str:
        return json.dumps(args, sort_keys=True, ensure_ascii=False)[:200]

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return await self.hub.call(self.server, self.remote_name, args)


class McpResourceTool(Tool):
    """Resources of the MCP servers: listed without a uri, read with one."""

    name = "mcp_resource"
    description = (
        "List the resources an MCP server offers (give only server), or read one (server and "
        "uri). Servers: {servers}."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "server": {"type": "string", "description": "the MCP server's name"},
            "uri": {"type": "string", "description": "the resource to read; leave out to list"},
        },
        "required": ["server"],
        "additionalProperties": False,
    }
    permission = "read"

    def __init__(self, hub: McpHub, servers: list[str]) -> None:
        self.hub = hub
        self.description = self.description.format(servers=", ".join(servers))  # type: ignore[misc]

    def subject(self, args: dict[str, Any]) -> str:
        return str(args.get("uri") or args.get("server", ""))

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return await self.hub.resource(str(args["server"]), args.get("uri"))


class McpHub:
    """The MCP servers of one session, served from one thread with its own event loop (the SDK
    is anyio; a server's ``Client`` is entered and left by the one task that owns it).
    ``emit`` is called on the session's loop with ``mcp.server`` payloads."""

    def __init__(
        self,
        specs: list[McpServerSpec],
        env: dict[str, str],
        cache: Path | None,
        *,
        sandbox: SandboxPolicy | None = None,
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.env = env
        self.sandbox = sandbox
        self.cache_path = cache
        self.log_dir = None if cache is None else cache.parent / "mcp-logs"
        self.emit: Callable[[ev.Payload], Any] = lambda payload: None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: dict[str, _Server] = {}
        self._lock = threading.Lock()
        self._lists: dict[str, Any] = {}  # the tool list of each server known, by spec.key
        # The servers being listed for this session: the hub's future, and when to give up.
        self._listing: dict[str, tuple[concurrent.futures.Future[Any], float]] = {}

    # -- the tool list ----------------------------------------------------------------------
    def tools(self) -> list[Tool]:
        """The MCP tools as known now, without waiting for any server: the cached lists, server
        by server in config order. A server never seen before is started here, in the hub's
        thread, to list its tools; :meth:`learned` waits for those (:attr:`pending`)."""
        cache = self._read_cache()
        self._lists = {s.key: cache[s.key] for s in self.specs.values() if s.key in cache}
        for spec in self.specs.values():
            if spec.key not in self._lists and spec.name not in self._listing:
                deadline = time.monotonic() + spec.startup_timeout
                self._listing[spec.name] = (self._submit(self._on(spec.name, "listed")), deadline)
        return self._known()

    @property
    def pending(self) -> bool:
        """Servers started by :meth:`tools` whose lists :meth:`learned` has not taken yet."""
        return bool(self._listing)

    async def learned(self) -> list[Tool]:
        """The MCP tools once the servers :meth:`tools` started have listed theirs, each waited
        for until its ``startup_timeout`` (counted from the start) and never past it: one
        that did not answer in time (or failed) offers no tools this session, and one that timed
        out says so in an ``mcp.server`` event naming its log. It is not stopped: if it answers
        later its list is cached for the next session. Awaited, not blocking: the loop goes
        on serving meanwhile; a cancel leaves the waits to the next call."""
        if self._session_loop is None:  # opened outside a loop: say its events on this one
            self._session_loop = asyncio.get_running_loop()
        waits = {
            name: (asyncio.wrap_future(fut), deadline)
            for name, (fut, deadline) in self._listing.items()
        }
        for name, (wait, deadline) in waits.items():
            left = max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait({wait}, timeout=left)
            del self._listing[name]
            spec = self.specs[name]
            if not done:
                log = "" if self.log_dir is None else f" (its log: {self.log_dir}/{name}.log)"
                # An editor's server (ACP) has no startup_timeout to raise: only its log helps.
                editor = spec.source.startswith("the editor") or not spec.source
                slow = (
                    ""
                    if editor
                    else f"; if it is only slow, raise startup_timeout in {spec.source}"
                )
                self._say(
                    name,
                    "failed",
                    f"it did not list its tools within {spec.startup_timeout:g} s{log}; the "
                    f"session goes on without them{slow}",
                )
            elif not wait.cancelled() and wait.exception() is None:  # a failure: said already
                self._lists[spec.key] = wait.result()
        return self._known()

    def _known(self) -> list[Tool]:
        tools: list[Tool] = []
        for spec in self.specs.values():
            for item in self._lists.get(spec.key, {}).get("tools", []):
                listed = ListedTool(item["name"], item.get("description", ""), item["schema"])
                tools.append(McpTool(self, spec.name, listed))
        if self.specs:
            tools.append(McpResourceTool(self, list(self.specs)))
        return tools

    # -- calls from the session's loop -------------------------------------------------------
    async def call(self, server: str, tool: str, args: dict[str, Any]) -> ToolResult:
        return await asyncio.wrap_future(self._submit(self._on(server, "call", tool, args)))

    async def resource(self, server: str, uri: str | None) -> ToolResult:
        if server not in self.specs:
            raise ToolError(
                f"there is no MCP server named {server!r}; the servers are: {', '.join(self.specs)}"
            )
        return await asyncio.wrap_future(self._submit(self._on(server, "resource", uri)))

    def close(self) -> list[str]:
        """Stop every server (the session ended) and the thread; the servers that were up."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return []
        self._session_loop = None  # what they say from now on has nowhere to go
        up = [name for name, server in self._servers.items() if server.client is not None]
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop_all(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        return up

    async def _stop_all(self) -> None:
        await asyncio.gather(*(s.stop() for s in self._servers.values()), return_exceptions=True)

    # -- plumbing ----------------------------------------------------------------------------
    def _submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._hub_loop())

    def _hub_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                with contextlib.suppress(RuntimeError):
                    self._session_loop = asyncio.get_running_loop()
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name="mcode-mcp", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    async def _on(self, name: str, method: str, *args: Any) -> Any:
        """``_Server.method(*args)`` of server ``name``, on the hub's loop (which alone makes
        and touches the servers)."""
        if name not in self._servers:
            self._servers[name] = _Server(self, self.specs[name])
        return await getattr(self._servers[name], method)(*args)

    def _say(self, server: str, state: ev.McpState, message: str, tools: int = 0) -> None:
        payload = ev.McpServer(server=server, state=state, message=message, tools=tools)
        loop = self._session_loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                # self.emit as it is when it runs: the session may attach meanwhile.
                loop.call_soon_threadsafe(lambda: self.emit(payload))

    def _read_cache(self) -> dict[str, Any]:
        if self.cache_path is None:
            return {}
        try:
            data = json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_cache(self, cache: dict[str, Any]) -> None:
        if self.cache_path is None:
            return
        with contextlib.suppress(OSError):
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_name(f".{self.cache_path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
            os.replace(tmp, self.cache_path)

    def _remember(self, spec: McpServerSpec, listed: dict[str, Any]) -> None:
        cache = self._read_cache()
        if cache.get(spec.key) != listed:
            cache[spec.key] = listed
            self._write_cache(cache)


def mcp_policy(session: SandboxPolicy) -> SandboxPolicy:
    """The sandbox of a stdio MCP server: the session's files policy, the network on."""
    return dataclasses.replace(session, network=True)


class _Server:
    """One server on the hub's loop: ``_run`` holds its client open and reconnects after a
    crash; callers wait for ``_up`` (bounded) and get a readable error when it is down."""

    def __init__(self, hub: McpHub, spec: McpServerSpec) -> None:
        self.hub = hub
        self.spec = spec
        self.client: Any = None
        self._up = asyncio.Event()
        self._down = asyncio.Event()  # set by a caller that saw the connection die
        self._listed: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.last_error = ""
        self._refused = False  # the sandbox cannot start: it never runs this session
        self._was_up = False  # it ran once: a call waits for its restart
        self._log: Any = None  # the server's stderr, kept in <data dir>/mcp-logs/NAME.log

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def listed(self) -> dict[str, Any]:
        self._start()
        return await asyncio.shield(self._listed)

    async def _run(self) -> None:
        attempt = 0
        was_up = False
        while not self._stopping:
            self._down.clear()
            try:
                async with self._client() as client:
                    listing = await client.list_tools()
                    listed = {
                        "tools": [
                            {
                                "name": t.name,
                                "description": t.description or "",
                                "schema": t.input_schema,
                            }
                            for t in listing.tools
                        ]
                    }
                    self.client = client
                    self._up.set()
                    attempt, was_up = 0, True
                    self._was_up = True
                    if not self._listed.done():
                        self._listed.set_result(listed)
                    self.hub._remember(self.spec, listed)
                    self.hub._say(self.spec.name, "started", self._describe(), len(listing.tools))
                    await self._down.wait()
            except asyncio.CancelledError:
                raise
            except SandboxError as e:
                # No retry: the sandbox's verdict is the same every time (problem() is checked
                # once per process), and the server must not start without it.
                self.last_error = f"{e.message} (hint: {e.hint})" if e.hint else e.message
                self._refused = True
            except BaseException as e:  # the SDK raises exception groups from its task groups
                self.last_error = _reason(e)
            finally:
                self.client = None
                self._up.clear()
            if self._stopping:
                break
            if not self._listed.done():
                self._listed.set_exception(ToolError(self.last_error))
            if self._refused:
                self.hub._say(self.spec.name, "failed", self.last_error)
                return
            wait = BACKOFF[min(attempt, len(BACKOFF) - 1)]
            attempt += 1
            # restarting: it ran and died; failed: it never came up (retried all the same).
            state: ev.McpState = "restarting" if was_up else "failed"
            self.hub._say(
                self.spec.name,
                state,
                f"{self.last_error or 'the connection ended'}; retrying in {wait:g} s",
            )
            await asyncio.sleep(wait)

    def _client(self) -> Any:
        from mcp.client import Client

        spec = self.spec
        if spec.transport == "http":
            return Client(_http_transport(spec))
        from mcp.client.stdio import StdioServerParameters, stdio_client

        argv = [spec.command, *spec.args]
        where = os.path.join(spec.cwd or "", spec.command) if "/" in spec.command else spec.command
        if shutil.which(where, path=self.hub.env.get("PATH", os.defpath)) is None:
            # Said plainly: inside the sandbox it would only be "connection closed".
            raise FileNotFoundError(f"its command {spec.command!r} was not found")
        if self.hub.sandbox is not None:
            # Raises SandboxError when the sandbox cannot start: _run says so as "failed".
            argv = sandboxed_argv(argv, self.hub.sandbox)
        params = StdioServerParameters(
            command=argv[0],
            args=argv[1:],
            env={**self.hub.env, **spec.env},
            cwd=spec.cwd,
        )
        # The server's stderr (its logging) goes to a file, not over mcode's own output.
        return Client(stdio_client(params, errlog=self._errlog()))

    def _errlog(self) -> Any:
        if self._log is None:
            folder = self.hub.log_dir
            try:
                if folder is None:
                    raise OSError
                folder.mkdir(parents=True, exist_ok=True)
                self._log = open(folder / f"{self.spec.name}.log", "a", encoding="utf-8")  # noqa: SIM115
            except OSError:
                self._log = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        return self._log

    def _describe(self) -> str:
        spec = self.spec
        return spec.url if spec.transport == "http" else " ".join([spec.command, *spec.args])

    async def _ready(self) -> Any:
        self._start()
        # One that never came up and failed already is not waited for: it fails the same way
        # each retry (a missing command, a bad URL), and the call would hang a minute.
        never = not self._was_up and bool(self.last_error)
        if self.client is None and not self._refused and not never:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), READY_TIMEOUT)
        if self._refused:
            raise ToolError(f"the MCP server {self.spec.name} was not started: {self.last_error}")
        if self.client is None and never:
            log = (
                ""
                if self.hub.log_dir is None
                else f"; its log: {self.hub.log_dir}/{self.spec.name}.log"
            )
            raise ToolError(
                f"the MCP server {self.spec.name} did not start: {self.last_error}",
                hint=f"check how {self.spec.source or 'the config'} starts it{log}; "
                "do without it meanwhile",
            )
        if self.client is None:
            raise ToolError(
                f"the MCP server {self.spec.name} is not running: "
                f"{self.last_error or 'it did not start in time'}",
                hint="mcode keeps restarting it; try again later, or do without it",
            )
        return self.client

    async def call(self, tool: str, args: dict[str, Any]) -> ToolResult:
        client = await self._ready()
        try:
            result = await asyncio.wait_for(client.call_tool(tool, args), self.spec.timeout)
        except TimeoutError:
            raise ToolError(
                f"the MCP server {self.spec.name} did not answer {tool} within "
                f"{self.spec.timeout:g} s"
            ) from None
        except Exception as e:
            raise self._died(e) from None
        text = _content_text(result.content)
        if getattr(result, "structured_content", None) and not text:
            text = json.dumps(result.structured_content, ensure_ascii=False)
        summary = f"{self.spec.name}: {tool}"
        if result.is_error:
            return ToolResult(f"Error: {text or 'the tool failed'}", summary, is_error=True)
        return ToolResult(text[:RESULT_CAP] or "(no output)", summary)

    async def resource(self, uri: str | None) -> ToolResult:
        client = await self._ready()
        try:
            if uri is None:
                listing = await client.list_resources()
                lines = [
                    f"{r.uri}  {r.name}" + (f": {r.description}" if r.description else "")
                    for r in listing.resources
                ]
                return ToolResult("\n".join(lines) or "(no resources)", f"{self.spec.name}: list")
            read = await client.read_resource(uri)
        except Exception as e:
            if _is_connection_error(e):
                raise self._died(e) from None
            raise ToolError(f"the MCP server {self.spec.name} refused: {_reason(e)}") from None
        parts = [
            getattr(c, "text", None) or f"[binary {c.mime_type or 'data'}]" for c in read.contents
        ]
        return ToolResult("\n".join(parts)[:RESULT_CAP], f"{self.spec.name}: {uri}")

    def _died(self, e: BaseException) -> ToolError:
        if not _is_connection_error(e):
            return ToolError(f"the MCP server {self.spec.name} failed: {_reason(e)}")
        self.last_error = f"it exited ({_reason(e)})"
        self.client = None
        self._up.clear()
        self._down.set()  # the runner reconnects, with backoff
        return ToolError(
            f"the MCP server {self.spec.name} is not running: {self.last_error}; mcode is "
            "restarting it",
            hint="try the call again in a moment, or do without it",
        )

    async def stop(self) -> None:
        self._stopping = True
        self._down.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._log is not None:
            self._log.close()


def _http_transport(spec: McpServerSpec) -> Any:
    from mcp.client.streamable_http import streamable_http_client

    if not spec.headers:
        return streamable_http_client(spec.url)
    import httpx2  # the SDK's HTTP client

    return streamable_http_client(spec.url, http_client=httpx2.AsyncClient(headers=spec.headers))


def _content_text(content: list[Any]) -> str:
    parts = []
    for item in content:
        text = getattr(item, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(item, 'type', 'content')}]")
    return "\n".join(parts)


def _is_connection_error(e: BaseException) -> bool:
    text = _reason(e).lower()
    return any(w in text for w in ("connection closed", "closed", "broken", "eof", "connect"))


def _reason(e: BaseException) -> str:
    """One line for an exception, looking inside the SDK's exception groups."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
