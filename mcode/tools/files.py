"""read, write and edit: the file tools, and the stamps that keep edits honest.

Every read or write records a :class:`FileStamp` (mtime, size, sha256) in ``ctx.file_stamps``
under the absolute path. ``write`` over an existing file and every ``edit`` require a stamp that
still matches the file on disk, so the model never overwrites text it has not seen: a change by
the user, an editor or a bash command since the last read makes the tool refuse and ask for a
fresh read. Stat equality is trusted only for stamps taken well after the file's mtime (the
"racy git" rule); otherwise the content hash decides.

When an editor holds the files (``ctx.read_override`` / ``ctx.apply_edit``, set by ``mcode
lsp``), a file open there is read from the editor's buffer (its unsaved text is the truth, and
freshness is then checked by hash against the buffer), and every change is made in the editor
first, then written to disk with the same bytes, so the editor's undo works and a command run
afterwards sees what the editor shows. Without them, only the disk counts.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from mcode.atomic import atomic_write
from mcode.errors import MCodeError, ToolError
from mcode.messages import ImagePart
from mcode.tools.base import FileStamp, Tool, ToolContext, ToolResult
from mcode.tools.workspace import Workspace

DEFAULT_LIMIT = 2000
MAX_LINE_CHARS = 2000
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_TEXT_BYTES = 100 * 1024 * 1024
DIFF_MAX_LINES = 40
DIFF_MAX_CHARS = 3000
# Coarser than any common filesystem's mtime granularity (FAT's is 2 s).
_RACY_NS = 2_000_000_000

_IMAGE_MAGIC: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
]
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


def make_stamp(st: os.stat_result, data: bytes) -> FileStamp:
    """The stamp of a file whose bytes are ``data`` and whose stat is ``st``."""
    return FileStamp(st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest(), time.time_ns())


def stamp_matches(st: os.stat_result, stamp: FileStamp, load: Callable[[], bytes]) -> bool:
    """Whether the file described by ``st`` still holds what ``stamp`` recorded.

    Same mtime and size on a non-racy stamp: unchanged, without reading. Different size:
    changed. Otherwise ``load()`` is called and the hashes compared (a ``touch`` is no change).
    """
    if st.st_size != stamp.size:
        return False
    if st.st_mtime_ns == stamp.mtime_ns and stamp.taken_ns - stamp.mtime_ns >= _RACY_NS:
        return True
    return hashlib.sha256(load()).hexdigest() == stamp.sha256


def read_bytes(path: Path) -> tuple[bytes, os.stat_result]:
    """The file's bytes and its stat taken after reading (so a write during the read shows)."""
    with open(path, "rb") as f:
        data = f.read()
        st = os.fstat(f.fileno())
    return data, st


def _image_type(head: bytes) -> str | None:
    for magic, media_type in _IMAGE_MAGIC:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _is_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def _split_lines(text: str) -> list[str]:
    # Split on "\n" only, like grep and editors: str.splitlines would also split on form
    # feeds and Unicode separators and put line numbers out of step with grep's.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _buffered(ctx: ToolContext, p: Path) -> bytes | None:
    """The editor's text for ``p`` when an editor holds it, else None."""
    return None if ctx.read_override is None else ctx.read_override(p)


def _load(ctx: ToolContext, p: Path) -> tuple[bytes, os.stat_result | None]:
    """The file's bytes as the user sees them: the editor's buffer (stat None) or the disk."""
    data = _buffered(ctx, p)
    if data is not None:
        return data, None
    return read_bytes(p)


def _stamp(st: os.stat_result | None, data: bytes) -> FileStamp:
    # A buffer has no stat: size and hash only (mtime 0 never matches a file's, so a stamp of a
    # buffer checked against the disk, once the buffer is closed, is decided by the hash).
    if st is None:
        return FileStamp(0, len(data), hashlib.sha256(data).hexdigest(), 0)
    return make_stamp(st, data)


def _existing_file(ws: Workspace, path: str, ctx: ToolContext | None = None) -> Path:
    p = ws.resolve(path)
    if ctx is not None and _buffered(ctx, p) is not None:
        return p  # open in the editor: its buffer counts, saved or not
    if p.is_dir():
        raise ToolError(f"{ws.relative(p)} is a directory", hint="use ls to list it")
    if not p.exists():
        raise ToolError(f"file not found: {ws.relative(p)}", hint="check the path with glob or ls")
    if not p.is_file():
        # A FIFO or device would block or never end.
        raise ToolError(f"{ws.relative(p)} is not a regular file")
    if p.stat().st_size > MAX_TEXT_BYTES:
        raise ToolError(
            f"{ws.relative(p)} is {p.stat().st_size} bytes, too big to load",
            hint="search it with grep, or look at parts with bash (head, tail, sed -n)",
        )
    return p


def _check_fresh(
    ws: Workspace, p: Path, ctx: ToolContext, data: bytes, st: os.stat_result | None
) -> None:
    """Refuse unless the model has seen exactly these bytes (read first, nothing changed since);
    ``st`` None: ``data`` is the editor's buffer, compared by hash."""
    rel = ws.relative(p)
    stamp = ctx.file_stamps.get(str(p))
    if stamp is None:
        raise ToolError(
            f"{rel} has not been read in this session",
            hint=f"read {rel} first, then retry",
        )
    if st is None:
        fresh = hashlib.sha256(data).hexdigest() == stamp.sha256
    else:
        fresh = stamp_matches(st, stamp, lambda: data)
    if not fresh:
        where = "in the editor" if st is None else "on disk"
        raise ToolError(
            f"{rel} changed {where} since it was last read",
            hint=f"read {rel} again to see its current content, then retry",
        )


def _checkpoint(
    ctx: ToolContext, p: Path, rel: str, before: bytes | None, mode: int | None, after: bytes
) -> int | None:
    """Save the file's before-image through the session before changing it; the checkpoint's
    id, or None when the session keeps none. If it cannot be saved the tool refuses (the file
    is untouched): an edit that ``mcode undo`` could not restore is never made silently."""
    if ctx.checkpoint is None:
        return None
    try:
        return ctx.checkpoint(p, before, mode, after)
    except MCodeError as e:
        raise ToolError(
            f"{rel} was not changed: its checkpoint could not be saved, so the change could "
            f"not be undone ({e.message})",
            hint="nothing was written; tell the user that mcode cannot save checkpoints"
            + (f" ({e.hint})" if e.hint else ""),
        ) from None


def _not_written(ctx: ToolContext, p: Path, content: bytes | None, mode: int | None) -> None:
    """The change announced to the checkpoint was not made: point its after-hash back at what
    the file still holds, so undo does not take the file for one changed by someone else."""
    if ctx.checkpoint is None:
        return
    try:
        ctx.checkpoint(p, content, mode, content)
    except MCodeError:
        # The store failed as well; the worst outcome is that undo reports this file as
        # changed since the turn and asks for --force. The write's own error matters more.
        pass


def _save(
    ctx: ToolContext,
    p: Path,
    rel: str,
    before: bytes | None,
    mode: int | None,
    data: bytes,
    last_look: Callable[[], None] | None = None,
) -> int | None:
    """How write and edit change a file: save its before-image for undo, take ``last_look``
    (after the checkpoint, so that the store's commit does not widen the gap: anything that
    changed the file meanwhile wins), make the change in the editor when one holds the
    files, write ``data`` atomically (a failure points the checkpoint back at the unchanged
    file), remember the new stamp. The checkpoint's id."""
    checkpoint = _checkpoint(ctx, p, rel, before, mode, data)
    try:
        try:
            if last_look is not None:
                last_look()
            if ctx.apply_edit is not None:
                try:
                    ctx.apply_edit(p, before, data)
                except MCodeError as e:
                    raise ToolError(
                        f"{rel} was not changed: the editor did not take the edit ({e.message})",
                        hint=e.hint or "nothing was written; tell the user what the editor said",
                    ) from None
            p.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(p, data)
        except BaseException:
            _not_written(ctx, p, before, mode)
            raise
        st = p.stat()
    except OSError as e:
        raise ToolError(f"cannot write {rel}: {e.strerror}", hint="nothing was changed") from None
    ctx.file_stamps[str(p)] = make_stamp(st, data)
    return checkpoint


def _mode(p: Path, st: os.stat_result | None) -> int | None:
    """The file's permission bits (from the disk when its text came from the editor; None for a
    buffer never saved)."""
    if st is None:
        try:
            st = p.stat()
        except OSError:
            return None
    return st.st_mode & 0o7777


class ReadTool(Tool):
    name = "read"
    description = (
        "Read a text file; lines come numbered like cat -n (the number and tab are not part of "
        "the file). offset is the 1-based first line, limit the line count (default 2000). "
        "Images (png/jpg/gif/webp) are shown to you."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
        },
        "required": ["path"],
        "additionalProperties": False,
    }
    permission = "read"

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return await asyncio.to_thread(self._run, args, ctx)

    def _run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        ws: Workspace = ctx.workspace
        offset = args.get("offset") or 1
        limit = args.get("limit") or DEFAULT_LIMIT
        if offset < 1 or limit < 1:
            raise ToolError("offset and limit must be positive (offset counts lines from 1)")
        p = _existing_file(ws, args["path"], ctx)
        rel = ws.relative(p)
        try:
            data, st = _load(ctx, p)
        except OSError as e:
            raise ToolError(f"cannot read {rel}: {e.strerror}") from None
        media_type = _image_type(data[:16])
        if media_type is not None and p.suffix.lower() in _IMAGE_SUFFIXES:
            if len(data) > MAX_IMAGE_BYTES:
                raise ToolError(
                    f"{rel} is a {len(data)} byte image; the limit is {MAX_IMAGE_BYTES} bytes",
                    hint="scale it down with bash (e.g. ImageMagick) and read the copy",
                )
            ctx.file_stamps[str(p)] = _stamp(st, data)
            image = ImagePart(media_type, base64.b64encode(data).decode("ascii"), source=rel)
            return ToolResult(
                f"[image {rel}: {media_type}, {len(data)} bytes]",
                summary=f"read image {rel}",
                images=[image],
            )
        if _is_binary(data):
            raise ToolError(
                f"{rel} is a binary file ({len(data)} bytes); read shows text only",
                hint="inspect it with bash (file, xxd, strings) if you must",
            )
        ctx.file_stamps[str(p)] = _stamp(st, data)
        try:
            text, note = data.decode("utf-8"), ""
        except UnicodeDecodeError:
            text = data.decode("utf-8", errors="replace")
            note = (
                f"[{rel} is not valid UTF-8: undecodable bytes are shown as \ufffd; edit refuses "
                "this file and write would replace those bytes]\n"
            )
        lines = _split_lines(text)
        total = len(lines)
        if total == 0:
            return ToolResult(f"[{rel} is empty]", summary=f"read {rel} (empty)")
        if offset > total:
            raise ToolError(
                f"offset {offset} is past the end of {rel}, which has {total} lines",
                hint=f"use an offset from 1 to {total}",
            )
        out: list[str] = []
        size = 0
        end = offset - 1
        for n in range(offset, min(total, offset + limit - 1) + 1):
            line = lines[n - 1]
            if len(line) > MAX_LINE_CHARS:
                line = line[:MAX_LINE_CHARS] + f"… [line cut: {len(line)} characters]"
            entry = f"{n:>6}\t{line}"
            # Stop at a line boundary before the session's output cap; always show one line.
            if out and size + len(entry) + 1 > ctx.output_cap:
                break
            out.append(entry)
            size += len(entry) + 1
            end = n
        if end < total:
            out.append(
                f"[lines {offset}-{end} of {total}; {total - end} more, "
                f"read with offset={end + 1} to continue]"
            )
        return ToolResult(
            note + "\n".join(out), summary=f"read {rel} (lines {offset}-{end} of {total})"
        )


class WriteTool(Tool):
    name = "write"
    description = (
        "Create or overwrite a file with content (parent dirs are created). To change part of "
        "a file use edit. An existing file must be read first."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
        "additionalProperties": False,
    }
    permission = "edit"

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return await asyncio.to_thread(self._run, args, ctx)

    def _run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        ws: Workspace = ctx.workspace
        p = ws.resolve(args["path"])
        rel = ws.relative(p)
        if p.is_dir():
            raise ToolError(f"{rel} is a directory", hint="give a file path")
        data = args["content"].encode("utf-8")
        buffered = _buffered(ctx, p) is not None
        existed = buffered or p.exists()
        if existed and not buffered and not p.is_file():
            raise ToolError(f"{rel} is not a regular file")
        old: bytes | None = None
        mode: int | None = None
        if existed:
            try:
                old, st = _load(ctx, p)
            except OSError as e:
                raise ToolError(f"cannot read {rel}: {e.strerror}") from None
            _check_fresh(ws, p, ctx, old, st)
            mode = _mode(p, st)
        checkpoint = _save(ctx, p, rel, old, mode, data)
        lines = _split_lines(args["content"])
        verb = "wrote" if existed else "created"
        # The size and the last line let the model see a truncated argument (MiniMax M2.1+ may
        # cut a string that contains a literal "</parameter>") without reading the file back.
        last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
        tail = f"; last line: {last[:80]!r}" if last else ""
        return ToolResult(
            f"{verb} {rel} ({len(lines)} lines, {len(data)} bytes{tail})",
            summary=f"{verb} {rel} ({len(lines)} lines)",
            changed_files=[rel],
            checkpoints={} if checkpoint is None else {rel: checkpoint},
        )


class EditTool(Tool):
    name = "edit"
    description = (
        "Replace old_string with new_string in a file you have read. old_string must match the "
        "file exactly (no line-number prefix) and once, unless replace_all is true."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "old_string": {"type": "string"},
            "new_string": {"type": "string"},
            "replace_all": {"type": "boolean"},
        },
        "required": ["path", "old_string", "new_string"],
        "additionalProperties": False,
    }
    permission = "edit"

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return await asyncio.to_thread(self._run, args, ctx)

    def _run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        ws: Workspace = ctx.workspace
        old: str = args["old_string"]
        new: str = args["new_string"]
        replace_all = bool(args.get("replace_all", False))
        if old == new:
            raise ToolError("old_string and new_string are the same; nothing to change")
        if not old:
            raise ToolError(
                "old_string is empty", hint="quote the text to replace; to create a file use write"
            )
        p = _existing_file(ws, args["path"], ctx)
        rel = ws.relative(p)
        try:
            before, st = _load(ctx, p)
        except OSError as e:
            raise ToolError(f"cannot read {rel}: {e.strerror}") from None
        _check_fresh(ws, p, ctx, before, st)
        if _is_binary(before):
            raise ToolError(f"{rel} is a binary file; edit changes text only")
        try:
            text = before.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(
                f"{rel} is not valid UTF-8 text", hint="rewrite it with write, or use bash"
            ) from None

        count = text.count(old)
        if count == 0 and "\r\n" in text and "\r" not in old:
            # read shows CRLF files without the \r; match what the model saw, keep the file's
            # line endings.
            old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")
            count = text.count(old)
        if count == 0:
            raise ToolError(f"old_string was not found in {rel}", hint=_no_match_hint(text, old))
        if count > 1 and not replace_all:
            lines = _match_lines(text, old)
            raise ToolError(
                f"old_string matches {count} times in {rel} (lines {', '.join(map(str, lines))})",
                hint="include more surrounding lines to make it unique, or set replace_all to true",
            )
        after_text = text.replace(old, new) if replace_all else text.replace(old, new, 1)
        after = after_text.encode("utf-8")

        mode = _mode(p, st)

        def unchanged_since_read() -> None:
            if st is None:  # the editor's buffer: the user may have typed meanwhile
                if _buffered(ctx, p) == before:
                    return
                raise ToolError(
                    f"{rel} changed in the editor while it was being edited; nothing was written",
                    hint=f"read {rel} again, then retry",
                )
            try:
                now = p.stat()
            except OSError as e:
                raise ToolError(f"cannot stat {rel}: {e.strerror}") from None
            if not stamp_matches(now, make_stamp(st, before), lambda: read_bytes(p)[0]):
                raise ToolError(
                    f"{rel} changed on disk while it was being edited; nothing was written",
                    hint=f"read {rel} again, then retry",
                )

        checkpoint = _save(ctx, p, rel, before, mode, after, last_look=unchanged_since_read)

        diff, added, removed = _diff(text, after_text, rel)
        times = f", {count} replacements" if count > 1 else ""
        summary = f"edited {rel} (+{added} \u2212{removed}{times})"
        return ToolResult(
            f"{summary}\n{diff}",
            summary=summary,
            changed_files=[rel],
            checkpoints={} if checkpoint is None else {rel: checkpoint},
        )


def _match_lines(text: str, old: str, limit: int = 10) -> list[int]:
    lines: list[int] = []
    start = 0
    while len(lines) < limit:
        i = text.find(old, start)
        if i < 0:
            break
        lines.append(text.count("\n", 0, i) + 1)
        start = i + len(old)
    return lines


def _no_match_hint(text: str, old: str) -> str:
    if re.match(r"\s*\d+\t", old):
        return (
            "old_string starts with a line number and tab from read's output; "
            "send the file text only"
        )

    def squash(s: str) -> str:
        return " ".join(s.split())

    file_lines = _split_lines(text)
    first = next((line for line in _split_lines(old) if line.strip()), "")
    if squash(old) and squash(old) in squash(text):
        for i, line in enumerate(file_lines):
            if squash(line) and squash(line) == squash(first):
                return (
                    f"it matches if whitespace is ignored (line {i + 1}: {line.strip()[:120]!r}); "
                    "copy indentation, tabs and line breaks exactly"
                )
        return "it matches if whitespace is ignored; copy indentation, tabs and line breaks exactly"
    stripped = [line.strip() for line in file_lines]
    close = difflib.get_close_matches(first.strip(), stripped, n=1, cutoff=0.6)
    if close:
        i = stripped.index(close[0])
        return (
            f"the closest line is {i + 1}: {file_lines[i].strip()[:160]!r}; "
            "read the file again and copy the text exactly"
        )
    return "no similar line either; read the file again to see its current text"


def _diff(before: str, after: str, rel: str) -> tuple[str, int, int]:
    """A capped unified diff plus the full counts of added and removed lines."""
    lines = list(
        difflib.unified_diff(
            _split_lines(before), _split_lines(after), f"a/{rel}", f"b/{rel}", n=2, lineterm=""
        )
    )
    added = sum(1 for line in lines[2:] if line.startswith("+"))
    removed = sum(1 for line in lines[2:] if line.startswith("-"))
    shown: list[str] = []
    size = 0
    for line in lines:
        if len(shown) >= DIFF_MAX_LINES or size + len(line) > DIFF_MAX_CHARS:
            shown.append(f"[diff cut: {len(lines) - len(shown)} more lines]")
            break
        shown.append(line)
        size += len(line) + 1
    return "\n".join(shown), added, removed
