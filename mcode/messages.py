"""The provider-neutral conversation: what the agent keeps and each provider translates.

History is append-only: a message, once appended, is never edited, so each request's prefix stays
byte-identical and server-side prompt caches hit. Every type round-trips through ``to_dict`` /
``from_dict`` so the store can persist it and ``--resume`` can rebuild it exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so that it encodes as UTF-8.

    Lone surrogates are valid in a Python ``str`` but not in UTF-8: a model may send one as a
    JSON ``\\ud800`` escape, and a file name or argument that is not UTF-8 arrives with its bad
    bytes as surrogates (``surrogateescape``). Everything mcode writes out as UTF-8 (events,
    request bodies, output) goes through this first.
    """
    return text if text.isascii() else _LONE_SURROGATE.sub("\ufffd", text)


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image as base64 data. ``source`` is a display name (a path), never sent to the model.

    ``ref``, when set, is the file that holds the image (a screenshot under the session's data
    folder): the image is then stored by reference, ``to_dict`` writing the path instead of
    the data, and read back from the file by ``from_dict``."""

    media_type: str
    data: str
    source: str = ""
    type: Literal["image"] = "image"
    ref: str = ""


@dataclass(frozen=True, slots=True)
class ThinkingPart:
    """Model reasoning, kept so it can be sent back (interleaved thinking).

    ``signature`` is the Anthropic signature (sent back byte-exact); ``extra`` holds any
    provider-specific payload needed for a faithful replay (e.g. raw ``reasoning_details``).
    """

    text: str
    signature: str | None = None
    extra: dict[str, Any] | None = None
    type: Literal["thinking"] = "thinking"


Part = TextPart | ImagePart | ThinkingPart


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call as the model produced it. ``arguments`` is the raw JSON text; parse it with
    :func:`mcode.tools.base.parse_arguments` at execution time so a malformed call reaches the
    model as a tool error instead of crashing the run."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One conversation entry.

    - ``user``: parts (text, images).
    - ``assistant``: parts (thinking, text) in the order produced, plus ``tool_calls``.
    - ``tool``: the result of one tool call (``tool_call_id``, ``name``); parts hold text/images;
      ``is_error`` marks a failed call.
    """

    role: Literal["user", "assistant", "tool"]
    parts: tuple[Part, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def thinking(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, ThinkingPart))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "parts": [part_to_dict(p) for p in self.parts]}
        if self.tool_calls:
            d["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            d["name"] = self.name
        if self.is_error:
            d["is_error"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Message:
        return cls(
            role=d["role"],
            parts=tuple(part_from_dict(p) for p in d.get("parts", ())),
            tool_calls=tuple(
                ToolCall(c["id"], c["name"], c["arguments"]) for c in d.get("tool_calls", ())
            ),
            tool_call_id=d.get("tool_call_id"),
            name=d.get("name"),
            is_error=bool(d.get("is_error", False)),
        )


def user_message(text: str, images: tuple[ImagePart, ...] = ()) -> Message:
    return Message(role="user", parts=(TextPart(text), *images))


def part_to_dict(p: Part) -> dict[str, Any]:
    if isinstance(p, TextPart):
        return {"type": "text", "text": p.text}
    if isinstance(p, ImagePart):
        if p.ref:
            return {"type": "image", "media_type": p.media_type, "ref": p.ref, "source": p.source}
        return {"type": "image", "media_type": p.media_type, "data": p.data, "source": p.source}
    d: dict[str, Any] = {"type": "thinking", "text": p.text}
    if p.signature is not None:
        d["signature"] = p.signature
    if p.extra is not None:
        d["extra"] = p.extra
    return d


def part_from_dict(d: dict[str, Any]) -> Part:
    t = d["type"]
    if t == "text":
        return TextPart(d["text"])
    if t == "image":
        if "ref" in d:
            return _image_from_file(d)
        return ImagePart(d["media_type"], d["data"], d.get("source", ""))
    if t == "thinking":
        return ThinkingPart(d["text"], d.get("signature"), d.get("extra"))
    raise ValueError(f"unknown message part type {t!r}")


def _image_from_file(d: dict[str, Any]) -> Part:
    """An image stored by reference, read back; a file since deleted becomes a note saying so
    (the conversation stays valid, the model hears the image is gone)."""
    import base64
    from pathlib import Path

    ref, source = str(d["ref"]), d.get("source", "")
    try:
        data = Path(ref).read_bytes()
    except OSError:
        return TextPart(f"[{source or 'image'}: its file {ref} is no longer there]")
    return ImagePart(d["media_type"], base64.b64encode(data).decode("ascii"), source, ref=ref)


@dataclass(slots=True)
class Usage:
    """Token counts for one model call. ``cached_tokens`` are input tokens served from the
    provider's prompt cache (a subset of ``input_tokens``); ``cache_write_tokens`` were written."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cache_write_tokens += other.cache_write_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }


@dataclass(slots=True)
class ToolSpec:
    """What the model is told about a tool: name, description, JSON schema of the arguments."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    # A computer-use tool: the size (width, height) of the screen as the model is shown it. A
    # wire format with a native computer tool (Anthropic's) offers it as that.
    display: tuple[int, int] | None = None
