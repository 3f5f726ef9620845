"""The editor's buffers as the truth about files, and edits made through the editor.

The agent's tools reach files through two :class:`~mcode.tools.base.ToolContext` callables
that this module implements for a running ``mcode lsp``:

    read_override(path)        the text of the editor's buffer for ``path`` (from didOpen and
                               didChange, full or incremental, kept by pygls), None when the
                               editor has no buffer for it: the tool reads the disk
    apply_edit(path, before, after)
                               the change as a ``workspace/applyEdit`` (one text edit over the
                               lines that differ), and only once the editor has applied it does
                               the tool write the same bytes to disk: write-through, so the
                               editor's undo takes the change back and a command run next (tests,
                               a build) sees what the editor shows

Tools run in worker threads; both callables hand their work to the server's event loop and wait
for it. An editor that applied an edit may send the didChange for it after it answered; until
that version arrives, the buffer reads as the text the edit produced.

A file the editor has not opened is edited through it too (a versionless text edit: editors
open a buffer for it). A file that does not exist yet is created on disk only; the editor sees
it when it is opened.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from mcode.errors import MCodeError
from mcode.tools.base import ToolContext

# How long a tool waits for the editor to answer an applyEdit.
APPLY_TIMEOUT = 30.0


class EditorFiles:
    def __init__(self, server: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        # uri -> (the document version when our edit was applied, the text it produced)
        self._applied: dict[str, tuple[int | None, str]] = {}
        self._lock = threading.Lock()

    def attach(self, ctx: ToolContext) -> None:
        """Route ``ctx``'s file tools through the editor: reads always, edits when the client
        can apply them (``workspace.applyEdit``; without it, edits go to disk only and the
        editor reloads the file as it would after any other program's change)."""
        ctx.read_override = self.read
        caps = self.server.client_capabilities
        ws = caps.workspace if caps is not None else None
        ctx.apply_edit = self.apply if ws is not None and ws.apply_edit else None

    # -- buffers -------------------------------------------------------------------------------
    def document(self, path: Path) -> Any | None:
        """The editor's open document for ``path`` (a pygls TextDocument), or None."""
        try:
            documents = dict(self.server.workspace.text_documents)
        except RuntimeError:  # not initialized
            return None
        target = os.path.realpath(path)
        for uri, doc in documents.items():
            local = to_fs_path(uri)
            if local is not None and os.path.realpath(local) == target:
                return doc
        return None

    def text(self, path: Path) -> str | None:
        doc = self.document(path)
        if doc is None:
            return None
        with self._lock:
            applied = self._applied.get(doc.uri)
            if applied is not None:
                version, text = applied
                if version is None or doc.version is None or doc.version <= version:
                    return text  # the editor's didChange for our edit has not arrived yet
                del self._applied[doc.uri]
        return str(doc.source)

    def read(self, path: Path) -> bytes | None:
        text = self.text(path)
        return None if text is None else text.encode("utf-8")

    # -- edits ---------------------------------------------------------------------------------
    def apply(self, path: Path, before: bytes | None, after: bytes) -> None:
        """Make the change in the editor (from a tool's thread); MCodeError if it refused or
        did not answer within :data:`APPLY_TIMEOUT` seconds."""
        if before is None and self.document(path) is None:
            return  # a new file: created on disk, shown by the editor once opened
        future = asyncio.run_coroutine_threadsafe(self.apply_async(path, before, after), self.loop)
        try:
            future.result(APPLY_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise MCodeError(
                f"the editor did not answer the edit within {APPLY_TIMEOUT:g} s",
                hint="check the editor; nothing was written",
            ) from None

    async def apply_async(self, path: Path, before: bytes | None, after: bytes) -> None:
        doc = self.document(path)
        settled = doc is None or await self._settled(doc)
        old = (before or b"").decode("utf-8", errors="replace")
        new = after.decode("utf-8", errors="replace")
        uri = doc.uri if doc is not None else from_fs_path(str(path))
        # Without the editor's word on our last edit, no version: the editor applies it as is.
        version = doc.version if doc is not None and settled else None
        edit = text_edit(old, new, self._encoding())
        if edit is None:
            return
        if self._document_changes():
            workspace_edit = types.WorkspaceEdit(
                document_changes=[
                    types.TextDocumentEdit(
                        text_document=types.OptionalVersionedTextDocumentIdentifier(
                            uri=uri, version=version
                        ),
                        edits=[edit],
                    )
                ]
            )
        else:
            workspace_edit = types.WorkspaceEdit(changes={uri: [edit]})
        result = await self.server.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=workspace_edit, label="mcode")
        )
        if result is None or not result.applied:
            reason = getattr(result, "failure_reason", None) or "no reason given"
            raise MCodeError(
                f"the editor refused the edit ({reason})",
                hint="the file may have changed in the editor; nothing was written",
            )
        if doc is not None:
            with self._lock:
                self._applied[doc.uri] = (doc.version, new)

    async def _settled(self, doc: Any, seconds: float = 2.0) -> bool:
        """Wait until the editor has reported our last edit of ``doc`` (its didChange), so the
        next edit can name the buffer's current version (an editor drops an edit made for an
        older one). False if it did not come within ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.text_pending(doc):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def text_pending(self, doc: Any) -> bool:
        """Whether an edit we applied to ``doc`` is not yet in its reported text."""
        with self._lock:
            applied = self._applied.get(doc.uri)
        if applied is None:
            return False
        version = applied[0]
        return version is None or doc.version is None or doc.version <= version

    def _document_changes(self) -> bool:
        caps = self.server.client_capabilities
        ws = caps.workspace if caps is not None else None
        edit = ws.workspace_edit if ws is not None else None
        return bool(edit is not None and edit.document_changes)

    def _encoding(self) -> str:
        try:
            encoding = self.server.workspace.position_encoding
        except RuntimeError:
            encoding = None
        return str(encoding.value if hasattr(encoding, "value") else encoding or "utf-16")


def text_edit(old: str, new: str, encoding: str = "utf-16") -> types.TextEdit | None:
    """One edit that turns ``old`` into ``new``: the lines between their common head and
    common tail (whole lines, so the edit reads as the lines that changed). None when equal."""
    if old == new:
        return None
    head = len(os.path.commonprefix([old, new]))  # noqa: RUF071 (texts, not paths)
    head = old.rfind("\n", 0, head) + 1  # whole lines: the editor keeps the cursor's column
    room = min(len(old), len(new)) - head
    tail = len(os.path.commonprefix([old[head:][::-1], new[head:][::-1]]))  # noqa: RUF071
    tail = min(tail, room)
    end = len(old) - tail
    line_end = old.find("\n", end)
    line_end = len(old) if line_end < 0 else line_end
    tail -= line_end - end  # to the end of the last changed line: whole lines are replaced
    end = line_end
    return types.TextEdit(
        range=types.Range(start=position(old, head, encoding), end=position(old, end, encoding)),
        new_text=new[head : len(new) - tail],
    )


def position(text: str, offset: int, encoding: str = "utf-16") -> types.Position:
    """The LSP position of character ``offset`` in ``text`` (columns in ``encoding`` units)."""
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    column = text[start:offset]
    if encoding == "utf-8":
        width = len(column.encode("utf-8"))
    elif encoding == "utf-32":
        width = len(column)
    else:
        width = len(column.encode("utf-16-le")) // 2
    return types.Position(line=line, character=width)


def offset_of(text: str, pos: types.Position, encoding: str = "utf-16") -> int:
    """The character offset of LSP position ``pos`` in ``text`` (clamped to the text)."""
    lines = text.split("\n")
    if pos.line >= len(lines):
        return len(text)
    start = sum(len(line) + 1 for line in lines[: pos.line])
    line = lines[pos.line]
    if encoding == "utf-32":
        return start + min(pos.character, len(line))
    units = 0
    for i, ch in enumerate(line):
        if units >= pos.character:
            return start + i
        units += len(ch.encode("utf-8")) if encoding == "utf-8" else (2 if ord(ch) > 0xFFFF else 1)
    return start + len(line)
