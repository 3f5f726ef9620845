"""The ACP wire: JSON-RPC 2.0, one message per line, on the process's stdin and stdout.

The package's own stdio framing skips a line that is not JSON without a word, and a line that
is JSON but not an object (``[1]``, ``"x"``) or carries an id that cannot be one (``{"id":
{}}``) ends its receive loop, and with it the agent. This transport stands in front of the
connection and answers each of those itself, as JSON-RPC says (parse error -32700, invalid
request -32600, with the offending id where there is one), so nothing a client sends can stop
``mcode acp``. It also tells the agent when the reply to a request has been written
(``on_reply``, with the request's method and params): Zed drops a session's updates that
arrive before the ``session/new`` reply, so the available commands are sent only after it (and
after a ``session/load`` reply, for the session loaded).

stdout is the wire alone: :func:`open_stdio` moves the real stdout to a private descriptor
and points descriptor 1 at stderr, so a stray print (or a child process that inherits it)
cannot corrupt the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

# Messages a client may send at once (an image prompt); longer lines are refused, not read.
LINE_LIMIT = 50 * 1024 * 1024

# on_reply(method, the request's params, the reply)
Reply = Callable[[str, dict[str, Any], dict[str, Any]], None]


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int) and not isinstance(value, bool))


class StdioWire:
    """A message transport (``acp.connection.Connection`` reads and writes dicts through it)
    over a reader and a writer of newline-delimited JSON."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_reply: Reply
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_reply = on_reply
        # The method and params of each request not answered yet.
        self._requests: dict[str | int, tuple[str, dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    async def receive(self) -> dict[str, Any] | None:
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                line = e.partial  # the last line, without its newline
                if not line.strip():
                    return None
            except asyncio.LimitOverrunError as e:
                await self._skip_long_line(e.consumed)
                continue
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError as e:
                await self._error(None, -32700, "Parse error", f"not JSON: {e}")
                continue
            if not isinstance(message, dict):
                await self._error(None, -32600, "Invalid request", "a message is a JSON object")
                continue
            if "id" in message and not _valid_id(message["id"]):
                await self._error(None, -32600, "Invalid request", "an id is a string or number")
                continue
            method = message.get("method")
            if "method" in message and not isinstance(method, str):
                if "id" in message:
                    await self._error(
                        message["id"], -32600, "Invalid request", "method must be a string"
                    )
                continue
            if method is not None and message.get("id") is not None:
                params = message.get("params")
                self._requests[message["id"]] = (method, params if isinstance(params, dict) else {})
            return message

    async def _skip_long_line(self, consumed: int) -> None:
        """Throw away a line longer than :data:`LINE_LIMIT` and say so."""
        await self._reader.readexactly(consumed)
        while True:
            try:
                await self._reader.readuntil(b"\n")
                break
            except asyncio.LimitOverrunError as e:
                await self._reader.readexactly(e.consumed)
            except asyncio.IncompleteReadError:
                break
        await self._error(
            None, -32600, "Invalid request", f"a message longer than {LINE_LIMIT} bytes"
        )

    async def _error(self, id: Any, code: int, message: str, details: str) -> None:
        error = {"code": code, "message": message, "data": {"details": details}}
        await self.send({"jsonrpc": "2.0", "id": id, "error": error})

    async def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
        async with self._lock:  # one message at a time, each drained before the next
            self._writer.write(data)
            await self._writer.drain()
        if "method" not in message and message.get("id") is not None:
            request = self._requests.pop(message["id"], None)
            if request is not None:
                self._on_reply(request[0], request[1], message)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()


class _WriteProtocol(asyncio.Protocol):
    """Flow control for the stdout pipe (``StreamWriter.drain`` waits on it)."""

    def __init__(self) -> None:
        self._paused = False
        self._waiters: list[asyncio.Future[None]] = []

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()

    async def _drain_helper(self) -> None:
        if self._paused:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter


async def open_stdio(on_reply: Reply) -> StdioWire:
    """The wire on this process's stdin and stdout (descriptor 1 then points at stderr)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    wire_fd = os.dup(sys.stdout.fileno())
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    protocol = _WriteProtocol()
    transport, _ = await loop.connect_write_pipe(
        lambda: protocol, os.fdopen(wire_fd, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return StdioWire(reader, writer, on_reply)
