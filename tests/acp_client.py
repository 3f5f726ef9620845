"""An ACP client for tests: `mcode acp` as a real subprocess, driven through the
agent-client-protocol package's client side (its ClientSideConnection over the child's stdio).

    async with editor(server, cwd=repo, env=env) as ed:
        sid = (await ed.conn.new_session(cwd=str(repo))).session_id
        reply = await ed.conn.prompt(session_id=sid, prompt=[text_block("hi")])
        assert ed.text(sid) == "Hello"

The client records every ``session/update`` (``ed.updates``), answers
``session/request_permission`` with ``ed.answer`` (an option id, or None to cancel the
question; once ``ed.hold`` is set, if there is one), and, when made with ``fs=True``, serves ``fs/read_text_file`` from ``ed.buffers``
(else the disk) and writes what ``fs/write_text_file`` sends to disk, recording each write.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import acp
from acp import schema as s
from acp.connection import StreamDirection, StreamEvent


class Recorder:
    """The client half: what the agent sent, and the answers it gets."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, Any]] = []
        self.asked: list[s.RequestPermissionRequest] = []
        self.answer: str | None = "allow_once"
        self.buffers: dict[str, str] = {}
        self.reads: list[str] = []
        self.writes: list[tuple[str, str]] = []
        self.changed = asyncio.Event()
        self.hold: asyncio.Event | None = None  # set: questions wait for it before the answer

    def on_connect(self, conn: Any) -> None:
        pass

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append((session_id, update))
        self.changed.set()

    async def request_permission(
        self, session_id: str, tool_call: Any, options: list[Any], **kwargs: Any
    ) -> s.RequestPermissionResponse:
        self.asked.append(
            s.RequestPermissionRequest(session_id=session_id, tool_call=tool_call, options=options)
        )
        self.changed.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.answer is None:
            return s.RequestPermissionResponse(outcome=s.DeniedOutcome(outcome="cancelled"))
        return s.RequestPermissionResponse(
            outcome=s.AllowedOutcome(outcome="selected", option_id=self.answer)
        )

    async def read_text_file(
        self, session_id: str, path: str, line: int | None = None, limit: int | None = None,
        **kwargs: Any,
    ) -> s.ReadTextFileResponse:  # fmt: skip
        self.reads.append(path)
        if path in self.buffers:
            return s.ReadTextFileResponse(content=self.buffers[path])
        try:
            return s.ReadTextFileResponse(content=Path(path).read_text())
        except FileNotFoundError:
            raise acp.RequestError.resource_not_found(path) from None

    async def write_text_file(
        self, session_id: str, path: str, content: str, **kwargs: Any
    ) -> s.WriteTextFileResponse:
        self.writes.append((path, content))
        self.buffers[path] = content
        Path(path).write_text(content)  # and saves it, as Zed does
        return s.WriteTextFileResponse()

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise acp.RequestError.method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None


class Editor:
    def __init__(self, conn: Any, process: Any, client: Recorder, wire: list[Any]) -> None:
        self.conn = conn
        self.process = process
        self.client = client
        self.wire = wire  # every message from the agent, as it arrived

    def arrival(self, match: Any) -> int:
        """The position on the wire of the first message from the agent that ``match``es."""
        return next(i for i, m in enumerate(self.wire) if match(m))

    @property
    def updates(self) -> list[tuple[str, Any]]:
        return self.client.updates

    def of(self, session_id: str, kind: str | None = None) -> list[Any]:
        """The updates of one session (of one ``sessionUpdate`` kind)."""
        return [
            u for sid, u in self.updates
            if sid == session_id and (kind is None or u.session_update == kind)
        ]  # fmt: skip

    def text(self, session_id: str, kind: str = "agent_message_chunk") -> str:
        return "".join(u.content.text for u in self.of(session_id, kind))

    async def until(self, check: Any, timeout: float = 30) -> None:
        """Wait until ``check()`` is true (re-checked at each update or question)."""
        async with asyncio.timeout(timeout):
            while not check():
                self.client.changed.clear()
                await self.client.changed.wait()

    async def new(self, cwd: Path) -> str:
        return str((await self.conn.new_session(cwd=str(cwd), mcp_servers=[])).session_id)

    async def prompt(self, session_id: str, text: str) -> Any:
        return await self.conn.prompt(session_id=session_id, prompt=[acp.text_block(text)])


def acp_args(server: Any, *extra: str, wire: str = "openai") -> list[str]:
    base = server.base_url if wire == "openai" else server.anthropic_base_url
    return ["acp", "--provider", wire, "--base-url", base, "--model", "test-model", *extra]


@contextlib.asynccontextmanager
async def editor(
    server: Any,
    *,
    cwd: Path,
    env: dict[str, str],
    fs: bool = False,
    extra: tuple[str, ...] = (),
    wire: str = "openai",
) -> AsyncIterator[Editor]:
    """`mcode acp` started against ``server``, initialized (with the fs capability if ``fs``)."""
    client = Recorder()
    heard_messages: list[Any] = []

    def heard(event: StreamEvent) -> None:
        if event.direction is StreamDirection.INCOMING:
            heard_messages.append(event.message)

    async with acp.spawn_agent_process(
        client, sys.executable, "-m", "mcode", *acp_args(server, *extra, wire=wire), env=env, cwd=cwd,
        transport_kwargs={"stderr": None, "shutdown_timeout": 15.0}, observers=[heard],
    ) as (conn, process):  # fmt: skip
        fs_caps = s.FileSystemCapabilities(read_text_file=fs, write_text_file=fs)
        await conn.initialize(
            protocol_version=acp.PROTOCOL_VERSION,
            client_capabilities=s.ClientCapabilities(fs=fs_caps),
        )
        yield Editor(conn, process, client, heard_messages)
