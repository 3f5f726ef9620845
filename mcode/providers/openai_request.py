"""OpenAI Chat Completions: a :class:`ModelRequest` as request bytes.

The serialisation is deterministic and ``messages`` is the last key, so a longer history produces
a body whose bytes start with the previous body's bytes minus its closing ``]}``: server-side
prompt caches hit. Thinking goes back the way each server needs (``reasoning_replay``): by
default (``mirror``) each thinking part the way it arrived, which its ``extra["format"]``
records (see :mod:`.openai_stream`), since a server reads back only the form it sends: inline
``<think>`` (MiniMax ``/v1``), ``reasoning_details`` (MiniMax with ``reasoning_split``,
OpenRouter), ``reasoning_content`` (DeepSeek) or ``reasoning`` (vLLM >= 0.16). A part that
records no form (thinking from another wire format, or stored by an older mcode) goes back as
``reasoning_content``, as it always did. Each history message is serialised once and reused by
later requests (:mod:`.fragments`), in a memo each provider owns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcode.messages import (
    ImagePart,
    Message,
    Part,
    TextPart,
    ThinkingPart,
    ToolSpec,
)
from mcode.providers.base import ModelRequest
from mcode.providers.fragments import FragmentMemo, body_with_list, dumps
from mcode.providers.openai_stream import THINK_CLOSE, THINK_OPEN
from mcode.providers.options import OpenAIOptions

__all__ = ["OpenAIRequestBuilder"]


class OpenAIRequestBuilder:
    """The request bodies of one provider: its model, its :class:`OpenAIOptions` and whether the
    model takes images are fixed; each :meth:`build` gets the conversation. It owns the memo of
    serialised history messages (:mod:`.fragments`), so what one session rendered is never
    another's and goes when the provider goes."""

    __slots__ = ("_memo", "model", "options", "supports_images")

    def __init__(self, model: str, options: OpenAIOptions, *, supports_images: bool = True) -> None:
        self.model = model
        self.options = options
        self.supports_images = supports_images
        self._memo = FragmentMemo()

    def build(self, request: ModelRequest) -> bytes:
        """The request body, as bytes. Same request, same bytes; ``messages`` is serialised
        last."""
        o = self.options
        body: dict[str, Any] = {"model": request.model or self.model}
        if o.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        max_tokens = request.max_output_tokens or o.default_max_tokens
        if max_tokens is not None:
            body[o.max_tokens_field] = max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if o.thinking_style == "minimax" and request.thinking is not None:
            body["thinking"] = {"type": "adaptive" if request.thinking else "disabled"}
        if o.extra_body:
            body.update(o.extra_body)
        if request.tools:
            body["tools"] = [_wire_tool(t) for t in request.tools]
            choice = getattr(request, "tool_choice", None)
            if choice in ("auto", "none", "required"):
                body["tool_choice"] = choice
            elif choice:
                body["tool_choice"] = {"type": "function", "function": {"name": choice}}
        # json.dumps(body) with "messages" last, the history messages from the memo.
        messages = self._fragments(request.system, request.messages)
        self._memo.built()
        return body_with_list(body, "messages", messages)

    def _fragments(self, system: str, messages: Iterable[Message]) -> list[bytes]:
        """The serialised ``messages`` list items."""
        out: list[bytes] = []
        if system:
            out.append(dumps({"role": "system", "content": system}))
        replay, supports_images = self.options.reasoning_replay, self.supports_images

        def render(msg: Message) -> bytes:
            return dumps(_wire_message(msg, replay, supports_images))

        # OpenAI accepts no images in tool messages, so a run of tool results is followed by one
        # user message carrying their images. It depends only on earlier history: bytes stay
        # stable.
        tool_images: list[ImagePart] = []
        for msg in messages:
            if msg.role != "tool" and tool_images:
                out.append(dumps(_images_message(tool_images)))
                tool_images = []
            out.append(self._memo.get(msg, render))
            if msg.role == "tool" and supports_images:
                tool_images.extend(p for p in msg.parts if isinstance(p, ImagePart))
        if tool_images:
            out.append(dumps(_images_message(tool_images)))
        return out


def _wire_tool(tool: ToolSpec) -> dict[str, Any]:
    params = tool.parameters or {"type": "object", "properties": {}}
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": params},
    }


def _wire_message(msg: Message, replay: str, supports_images: bool) -> dict[str, Any]:
    """One history message on the wire (a tool result's images go in a message after it)."""
    if msg.role == "user":
        return {"role": "user", "content": _user_content(msg.parts)}
    if msg.role == "assistant":
        return _assistant(msg, replay)
    text = msg.text
    if msg.is_error and not text.startswith("Error"):
        text = "Error: " + text
    images = sum(isinstance(p, ImagePart) for p in msg.parts)
    if images and not supports_images:
        text += f"\n[{images} image(s) omitted: this model has no image input]"
    return {"role": "tool", "tool_call_id": msg.tool_call_id or "", "content": text}


def _image_url(p: ImagePart) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:{p.media_type};base64,{p.data}"}}


def _images_message(images: list[ImagePart]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": "Images returned by the tools:"}]
    content.extend(_image_url(p) for p in images)
    return {"role": "user", "content": content}


def _user_content(parts: tuple[Part, ...]) -> str | list[dict[str, Any]]:
    if all(isinstance(p, TextPart) for p in parts) and len(parts) <= 1:
        return parts[0].text if parts else ""  # type: ignore[union-attr]
    content: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart):
            content.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            content.append(_image_url(p))
    return content


def _assistant(msg: Message, replay: str) -> dict[str, Any]:
    content: list[str] = []
    reasoning: dict[str, list[str]] = {}  # wire field -> texts, in the order first seen
    details: list[Any] = []
    for p in msg.parts:
        if isinstance(p, TextPart):
            content.append(p.text)
        elif isinstance(p, ThinkingPart) and replay != "none":
            extra = p.extra or {}
            form = extra.get("format")
            if replay == "think_tags" or form == "think_tags":
                # Rebuild the content exactly as it arrived (MiniMax wants it back verbatim).
                opening = THINK_OPEN if extra.get("open", True) else ""
                content.append(f"{opening}{p.text}{THINK_CLOSE}{extra.get('tail', '')}")
            elif replay != "mirror":
                if p.text:
                    reasoning.setdefault(replay, []).append(p.text)
            elif form == "reasoning_details" and isinstance(extra.get("details"), list):
                details.extend(extra["details"])
            elif p.text:
                field = form if form in ("reasoning_content", "reasoning") else "reasoning_content"
                reasoning.setdefault(field, []).append(p.text)
    d: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
    for field, texts in reasoning.items():
        d[field] = "".join(texts)
    if details:
        d["reasoning_details"] = details
    if msg.tool_calls:
        d["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in msg.tool_calls
        ]
    return d
