"""What a headless run reads besides its flags: image files, and with ``--input-format
stream-json`` the JSON lines on standard input (user messages, steer, cancel, compact, approve;
the formats are in README.md, "Steering and cancelling a headless run")."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mcode.errors import UsageError
from mcode.messages import ImagePart, clean_text

__all__ = [
    "ACCEPTED_LINES",
    "IMAGE_SUFFIXES",
    "BadLine",
    "InputMessage",
    "StdinLines",
    "load_image",
    "parse_line",
]

MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# The names those files go by. load_image trusts the first bytes, not the name; the name is
# for guessing, before reading, that a path is meant as an image (a pasted path, in the TUI).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")


def load_image(path_text: str, label: str = "--image") -> ImagePart:
    """The image file at ``path_text``; its type comes from its first bytes, not its name
    (a renamed file, or a web page saved as ``.png``, is caught here and not by the API)."""
    path = Path(path_text).expanduser()
    what = f"{label} {path_text}"
    try:
        with path.open("rb") as f:
            data = f.read(MAX_IMAGE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"{what}: cannot read it ({e.strerror})") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise UsageError(f"{what}: it is over the 10 MB limit", hint="scale it down first")
    media_type = image_type(data)
    if media_type is None:
        raise UsageError(
            f"{what}: not a PNG, JPEG, GIF or WebP image ({_what_it_is(data)})",
            hint="attach an image file of one of those types",
        )
    return ImagePart(media_type, base64.b64encode(data).decode("ascii"), source=path.name)


def image_type(data: bytes) -> str | None:
    """The media type the magic bytes of ``data`` say, if it is one the APIs take."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


# What a file that is not an image usually is, told by its first bytes.
_OTHER_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x7fELF", "an executable"),
)


def _what_it_is(data: bytes) -> str:
    if not data:
        return "the file is empty"
    for magic, name in _OTHER_MAGIC:
        if data.startswith(magic):
            return f"it is {name}"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "it is a HEIC/AVIF image"
    head = data[:64]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"its first bytes are {head[:8].hex(' ')}"
    if "<svg" in text or text.lstrip().startswith("<?xml"):
        return "it is SVG or XML text"
    line = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"it is text, starting {line!r}"


ACCEPTED_LINES = (
    'send one JSON object per line: {"type":"user","text":"..."} (optionally with '
    '"images":["file.png"]), {"type":"steer","text":"..."}, {"type":"cancel"}, '
    '{"type":"compact"} (optionally with "instructions":"...") or '
    '{"type":"approve","request_id":"...","decision":"allow"|"deny"} (optionally with "reason"; '
    'a team.plan.asked also takes "decision":"edit" with "plan": the whole plan object)'
)


class BadLine(Exception):
    """A line of standard input that is not a message; ``str(e)`` says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class InputMessage:
    """One message read from standard input."""

    type: Literal["user", "steer", "cancel", "compact", "approve"]
    # A compact's instructions (what the summary should focus on), an approve's reason.
    text: str = ""
    images: tuple[ImagePart, ...] = ()
    request_id: str = ""  # approve: the permission.asked (or team.plan.asked) it answers
    allow: bool = False  # approve: its decision
    plan: Any = None  # approve with decision edit: the whole plan that replaces the asked one


def parse_line(line: str) -> InputMessage:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadLine(f"not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise BadLine(f"a JSON {type(obj).__name__}, not an object")
    kind = obj.get("type")
    if kind == "cancel":
        return InputMessage("cancel")
    if kind == "compact":
        instructions = obj.get("instructions", "")
        if not isinstance(instructions, str):
            raise BadLine('a compact\'s "instructions" must be a string')
        return InputMessage("compact", clean_text(instructions.strip()))
    if kind == "approve":
        return _approve(obj)
    if kind not in ("user", "steer"):
        raise BadLine(f"unknown type {kind!r}" if "type" in obj else 'no "type" field')
    if kind == "user" and "text" not in obj and "message" in obj:
        text, images = _claude_message(obj["message"])
    else:
        given = obj.get("text")
        if not isinstance(given, str):
            raise BadLine(f'a {kind} message needs "text", a string')
        text, images = given, _image_files(obj.get("images"), kind)
    text = clean_text(text)
    if not text.strip():
        raise BadLine(f"the {kind} message's text is empty")
    return InputMessage(kind, text, images)


def _approve(obj: dict[str, Any]) -> InputMessage:
    request_id, decision, reason = obj.get("request_id"), obj.get("decision"), obj.get("reason", "")
    if not isinstance(request_id, str) or not request_id:
        raise BadLine('an approve needs "request_id", the one its permission.asked event carries')
    if decision not in ("allow", "deny", "edit"):
        raise BadLine(
            f'an approve\'s "decision" must be "allow", "deny" or "edit", not {decision!r}'
        )
    if not isinstance(reason, str):
        raise BadLine('an approve\'s "reason" must be a string')
    plan = obj.get("plan")
    if (decision == "edit") != (plan is not None):
        raise BadLine('"plan" goes with "decision": "edit", and an edit needs it')
    if plan is not None and not isinstance(plan, dict):
        raise BadLine('an edit\'s "plan" must be a JSON object: {"stages": [...]}')
    return InputMessage(
        "approve",
        clean_text(reason.strip()),
        request_id=request_id,
        allow=decision == "allow",
        plan=plan,
    )


def _image_files(paths: Any, kind: str) -> tuple[ImagePart, ...]:
    if paths is None:
        return ()
    if kind == "steer":
        # Session.steer takes text: an image would be dropped without a word.
        raise BadLine("a steer carries text only; send images with a user message")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BadLine('"images" must be a list of file paths')
    try:
        return tuple(load_image(p, "image") for p in paths)
    except UsageError as e:
        raise BadLine(str(e)) from None


def _claude_message(message: Any) -> tuple[str, tuple[ImagePart, ...]]:
    """The text and images of Claude Code's shape: {"role":"user","content": str | blocks}."""
    if not isinstance(message, dict) or message.get("role", "user") != "user":
        raise BadLine('"message" must be an object with "role": "user" and "content"')
    content = message.get("content")
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise BadLine('"message.content" must be a string or a list of content blocks')
    texts: list[str] = []
    images: list[ImagePart] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "image":
            images.append(_base64_image(block.get("source")))
        else:
            raise BadLine(
                f"content block {json.dumps(block)[:80]} is not supported "
                "(text blocks and base64 image blocks are)"
            )
    return "\n".join(texts), tuple(images)


def _base64_image(source: Any) -> ImagePart:
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise BadLine('an image block needs "source": {"type": "base64", "media_type", "data"}')
    media_type, data = source.get("media_type"), source.get("data")
    if not isinstance(media_type, str) or media_type not in IMAGE_TYPES:
        raise BadLine(f"image media_type {media_type!r} is not one of {', '.join(IMAGE_TYPES)}")
    try:
        if not isinstance(data, str):
            raise ValueError
        size = len(base64.b64decode(data, validate=True))
    except ValueError:
        raise BadLine("an image block's data is not base64 text") from None
    if size > MAX_IMAGE_BYTES:
        raise BadLine(f"an image of {size} bytes is over the 10 MB limit; scale it down first")
    found = image_type(base64.b64decode(data[:64]))
    if found != media_type:
        what = f"a {found.split('/')[1].upper()} image" if found else "not an image"
        raise BadLine(f"an image block says {media_type}, but its data is {what}")
    return ImagePart(media_type, data, source="image")


class StdinLines:
    """The lines of standard input, read by a daemon thread into an asyncio queue (None at the
    end), so the event loop keeps running the turn while a line is awaited.

    A thread rather than ``loop.connect_read_pipe``: that refuses regular files and /dev/null
    (epoll cannot watch them), and standard input may be either. The thread reads the file
    descriptor with ``os.read``, not ``sys.stdin``: a daemon thread blocked inside a buffered
    reader can abort the interpreter at exit, and a bare read holds no lock.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = loop
        threading.Thread(target=self._read, name="mcode-stdin", daemon=True).start()

    async def get(self) -> str | None:
        return await self.queue.get()

    def _put(self, item: str | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:
            pass  # the run is over and its loop closed: nobody is reading any more

    def _read(self) -> None:
        fd = 0
        partial: list[bytes] = []
        try:
            while True:
                try:
                    chunk = os.read(fd, 1 << 16)
                except BlockingIOError:  # a non-blocking descriptor inherited from the parent
                    select.select([fd], [], [])
                    continue
                except OSError:
                    break  # unreadable (closed under us): the same as its end
                if not chunk:
                    break
                # Split only the new chunk, so a long line (a base64 image) is not rescanned.
                *complete, rest = chunk.split(b"\n")
                for piece in complete:
                    # Decoded per line: a character split between two reads stays whole.
                    line = b"".join([*partial, piece]).decode("utf-8", errors="replace")
                    partial = []
                    self._put(line)
                partial.append(rest)
            tail = b"".join(partial)
            if tail.strip():
                self._put(tail.decode("utf-8", errors="replace"))
        finally:
            self._put(None)
