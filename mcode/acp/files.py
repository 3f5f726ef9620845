"""The client's file system as the tools' editor seam (``ToolContext.read_override`` and
``apply_edit``, the same seam ``mcode lsp`` fills with its buffers).

Where the client offers ``fs/read_text_file``, ``read``, ``write`` and ``edit`` take a file's
text from the editor (what it shows, unsaved changes included); where it offers
``fs/write_text_file``, every change is made in the editor first (its buffer, its undo), and the
tool then writes the same bytes to disk, so a command run next sees what the editor shows.

The tools run in worker threads and the seam is synchronous: each call is run on the event
loop, where the connection lives, and the thread waits for it (at most :data:`TIMEOUT`). A
call made on the loop's own thread would wait for itself; it reads the disk instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from acp import RequestError

from mcode.errors import MCodeError

# How long a tool waits for the editor to hand over or take a file's text.
TIMEOUT = 60.0


class ClientFiles:
    def __init__(self, conn: Any, session_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn
        self._session_id = session_id
        self._loop = loop
        self._loop_thread = threading.get_ident()  # made on the loop's thread

    def _wait(self, call: Awaitable[Any], what: str) -> Any:
        future = asyncio.run_coroutine_threadsafe(_awaited(call), self._loop)
        try:
            return future.result(timeout=TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise MCodeError(
                f"the editor did not {what} within {TIMEOUT:g} s",
                hint="check that the editor is responding, then retry",
            ) from None

    def read(self, path: Path) -> bytes | None:
        """The editor's text of ``path``, or None (it has none: the tool reads the disk)."""
        if threading.get_ident() == self._loop_thread:
            return None
        try:
            reply = self._wait(
                self._conn.read_text_file(session_id=self._session_id, path=str(path)),
                "hand over the file",
            )
        except (RequestError, MCodeError):
            return None  # not a text file it can open, or gone: the disk decides
        return str(reply.content).encode("utf-8")

    def write(self, path: Path, before: bytes | None, after: bytes) -> None:
        """Put ``after`` into the editor's ``path``; MCodeError when it refuses (the tool then
        writes nothing)."""
        try:
            self._wait(
                self._conn.write_text_file(
                    session_id=self._session_id, path=str(path), content=after.decode("utf-8")
                ),
                "take the file",
            )
        except RequestError as e:
            raise MCodeError(
                f"the editor refused it: {e}", hint="nothing was written; see the editor"
            ) from None
        except UnicodeDecodeError:
            raise MCodeError(
                "the new content is not UTF-8 text, which an editor's buffer holds",
                hint="write it with bash instead",
            ) from None


async def _awaited(call: Awaitable[Any]) -> Any:
    return await call
