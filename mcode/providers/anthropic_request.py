"""Anthropic Messages: a :class:`ModelRequest` as request bytes.

The serialisation is deterministic and ``messages`` is the last key, so a longer history produces
the same messages again followed by new ones: server-side prompt caches (matched by prefix in the
order tools -> system -> messages) hit. ``cache_control`` breakpoints mark where the caller wants
cache entries written; they move as the conversation grows and are the only bytes that change in
earlier messages. Each history message's blocks are serialised once and reused by later requests
(:mod:`.fragments`), in a memo each provider owns.

Thinking goes back byte-exact (with its signature, if the server sent one) to the endpoint and model
that produced it; thinking from any other source is dropped (the server cannot validate it and
rejects a foreign or unsigned block), text and tool history are kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from mcode.messages import (
    ImagePart,
    Message,
    Part,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolSpec,
)
from mcode.providers.base import ModelRequest
from mcode.providers.fragments import FragmentMemo, body_with_list, dumps
from mcode.providers.options import AnthropicOptions

__all__ = [
    "MIN_THINKING_BUDGET",
    "AnthropicRequestBuilder",
    "strip_cache_control",
    "thinking_budget_for",
    "wire_messages",
    "wire_tool_id",
]

MIN_THINKING_BUDGET = 1024  # Anthropic rejects a smaller budget_tokens
EPHEMERAL = {"type": "ephemeral"}
NO_CONTENT = "(no content)"
NO_OUTPUT = "(no output)"
_UNMARKABLE = ("thinking", "redacted_thinking")  # block types that may not carry cache_control
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")

Block = dict[str, Any]
WireMessage = dict[str, Any]

_NO_CONTENT_BLOCK: tuple[Block, bytes] = (
    {"type": "text", "text": NO_CONTENT},
    dumps({"type": "text", "text": NO_CONTENT}),
)


class AnthropicRequestBuilder:
    """The request bodies of one provider: its model, its :class:`AnthropicOptions`, whether the
    model takes images and the origin its thinking is replayed to (see :func:`_thinking_block`)
    are fixed; each :meth:`build` gets the conversation. It owns the memo of serialised history
    blocks (:mod:`.fragments`), so what one session rendered is never another's and goes when
    the provider goes."""

    __slots__ = ("_memo", "model", "options", "origin", "supports_images")

    def __init__(
        self,
        model: str,
        options: AnthropicOptions,
        *,
        supports_images: bool = True,
        origin: str = "",
    ) -> None:
        self.model = model
        self.options = options
        self.supports_images = supports_images
        self.origin = origin
        self._memo = FragmentMemo()

    def build(self, request: ModelRequest) -> bytes:
        """The request body, as bytes. Same request, same bytes; ``messages`` is serialised last.

        ``options.max_output_tokens`` is ``max_tokens`` when the request sets none (the API
        requires one). With ``thinking_style="anthropic"`` and thinking on, ``budget_tokens`` is
        ``options.thinking_budget`` clamped into ``[1024, max_tokens)`` (see
        :func:`thinking_budget_for`); ``temperature`` is then not sent (Anthropic accepts only 1
        with thinking), and thinking is not sent at all when ``tool_choice`` forces a call
        (Anthropic rejects that combination).
        """
        o = self.options
        max_tokens = request.max_output_tokens or o.max_output_tokens
        choice = _tool_choice(request.tool_choice) if request.tools else None
        thinking = _thinking(request.thinking, o.thinking_style, choice)
        if thinking is not None and thinking.get("type") == "enabled":
            budget, max_tokens = thinking_budget_for(o.thinking_budget, max_tokens)
            thinking["budget_tokens"] = budget
        body: dict[str, Any] = {"model": request.model or self.model, "max_tokens": max_tokens}
        if o.stream:
            body["stream"] = True
        if thinking is not None:
            body["thinking"] = thinking
        if request.temperature is not None and not (thinking and thinking["type"] == "enabled"):
            body["temperature"] = request.temperature
        if choice is not None:
            body["tool_choice"] = choice
        if request.tools:
            tools = [_wire_tool(t, o.computer_tool) for t in request.tools]
            tools[-1]["cache_control"] = dict(EPHEMERAL)
            body["tools"] = tools
        if request.system:
            body["system"] = [
                {"type": "text", "text": request.system, "cache_control": dict(EPHEMERAL)}
            ]
        # json.dumps(body) with "messages" last, the history's blocks from the memo.
        messages = self._fragments(request.messages)
        self._memo.built()
        return body_with_list(body, "messages", messages)

    def _fragments(self, messages: Iterable[Message]) -> list[bytes]:
        """The serialised ``messages`` list: :func:`wire_messages` with its cache breakpoints,
        each message's blocks rendered once (the memo) and only the marked ones again.

        ``cache_control`` goes on the last block of the last message and of the user message
        before it. The last message's mark writes a cache entry for this request's whole prefix;
        on the next request (two messages longer) that message is the earlier user message,
        whose mark reads it back. With the tools and system marks that makes at most 4, the
        API's limit.
        """
        supports_images, origin = self.supports_images, self.origin

        def render(msg: Message) -> list[tuple[Block, bytes]]:
            return [(b, dumps(b)) for b in _message_blocks(msg, supports_images, origin)]

        memo = self._memo
        wire = _grouped(messages, lambda m: memo.get(m, render), _NO_CONTENT_BLOCK)
        last = len(wire) - 1
        earlier_user = next((i for i in range(last - 1, -1, -1) if wire[i][0] == "user"), None)
        for i in (last, earlier_user):
            if i is None or i < 0:
                continue
            blocks = wire[i][1]
            for j in range(len(blocks) - 1, -1, -1):
                block = blocks[j][0]
                if block.get("type") not in _UNMARKABLE:
                    marked = {**block, "cache_control": dict(EPHEMERAL)}
                    blocks[j] = (marked, dumps(marked))
                    break
        return [
            b'{"role":"%s","content":[%s]}' % (role.encode(), b",".join(b for _, b in blocks))
            for role, blocks in wire
        ]


def thinking_budget_for(budget: int, max_tokens: int) -> tuple[int, int]:
    """``(budget_tokens, max_tokens)`` for enabled thinking.

    ``max_tokens`` includes the thinking budget and the budget must be below it, so the budget is
    clamped to ``max_tokens - 1``, but never under the API's minimum of 1024. When ``max_tokens``
    is too small for even that, it is raised to ``1024 + max_tokens``: thinking gets its minimum
    and the answer keeps the tokens the caller asked for.
    """
    clamped = max(MIN_THINKING_BUDGET, min(budget, max_tokens - 1))
    if clamped >= max_tokens:
        max_tokens = clamped + max_tokens
    return clamped, max_tokens


def strip_cache_control(value: Any) -> Any:
    """``value`` (a parsed body or part of one) without any ``cache_control`` key: what must stay
    identical between consecutive requests for the prompt cache to hit."""
    if isinstance(value, dict):
        return {k: strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [strip_cache_control(v) for v in value]
    return value


# ----------------------------------------------------------------------------- top-level fields


def _thinking(on: bool | None, style: str, choice: dict[str, Any] | None) -> dict[str, Any] | None:
    if on is None or style == "none":
        return None
    if style == "minimax":
        return {"type": "adaptive" if on else "disabled"}
    if on and choice is not None and choice["type"] in ("any", "tool"):
        return None  # "Thinking may not be enabled when tool_choice forces tool use."
    return {"type": "enabled"} if on else {"type": "disabled"}


def _tool_choice(choice: str | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _wire_tool(tool: ToolSpec, computer_tool: str | None = None) -> dict[str, Any]:
    if tool.display is not None and computer_tool is not None:
        # Anthropic's own computer tool: the model knows its schema; it is told the screen.
        width, height = tool.display
        return {
            "type": computer_tool,
            "name": tool.name,
            "display_width_px": width,
            "display_height_px": height,
        }
    schema = tool.parameters or {"type": "object", "properties": {}}
    return {"name": tool.name, "description": tool.description, "input_schema": schema}


# ----------------------------------------------------------------------------- messages


def wire_messages(
    messages: Iterable[Message], supports_images: bool = True, origin: str = ""
) -> list[WireMessage]:
    """The ``messages`` list without cache breakpoints.

    Tool results become ``tool_result`` blocks of one user message (the API wants every result of
    an assistant turn in the message right after it); a user message directly after them joins
    that message, after the results. Other consecutive user messages stay separate.
    """
    return [
        {"role": role, "content": blocks}
        for role, blocks in _grouped(
            messages, lambda m: _message_blocks(m, supports_images, origin), _text(NO_CONTENT)
        )
    ]


B = TypeVar("B")


def _grouped(
    messages: Iterable[Message], blocks_of: Callable[[Message], list[B]], no_content: B
) -> list[tuple[str, list[B]]]:
    """``(role, blocks)`` of each wire message, as :func:`wire_messages` groups them; the lists
    are new (``blocks_of``'s are copied, never changed)."""
    wire: list[tuple[str, list[B]]] = []
    open_results = False  # the last wire message is a user message holding tool results
    for msg in messages:
        blocks = blocks_of(msg)
        if msg.role == "assistant":
            wire.append(("assistant", list(blocks)))
        elif open_results:
            wire[-1][1].extend(blocks)  # a result, or user text, joins the open results
        else:
            wire.append(("user", list(blocks) or [no_content]))
        open_results = msg.role == "tool"
    return wire


def _message_blocks(msg: Message, supports_images: bool, origin: str) -> list[Block]:
    """The blocks one history message contributes (a user message's may be none)."""
    if msg.role == "tool":
        return [_tool_result(msg, supports_images)]
    if msg.role == "user":
        return _user_blocks(msg.parts, supports_images)
    return _assistant_blocks(msg, origin)


def _text(text: str) -> Block:
    return {"type": "text", "text": text}


def _image(part: ImagePart) -> Block:
    source = {"type": "base64", "media_type": part.media_type, "data": part.data}
    return {"type": "image", "source": source}


def _omitted(count: int) -> Block:
    return _text(f"[{count} image(s) omitted: this model has no image input]")


def _user_blocks(parts: Iterable[Part], supports_images: bool) -> list[Block]:
    blocks: list[Block] = []
    omitted = 0
    for p in parts:
        if isinstance(p, TextPart):
            if p.text:
                blocks.append(_text(p.text))
        elif isinstance(p, ImagePart):
            if supports_images:
                blocks.append(_image(p))
            else:
                omitted += 1
    if omitted:
        blocks.append(_omitted(omitted))
    return blocks


def _tool_result(msg: Message, supports_images: bool) -> Block:
    content = _user_blocks(msg.parts, supports_images) or [_text(NO_OUTPUT)]
    block: Block = {
        "type": "tool_result",
        "tool_use_id": wire_tool_id(msg.tool_call_id or ""),
        "content": content,
    }
    if msg.is_error:
        block["is_error"] = True
    return block


def _assistant_blocks(msg: Message, origin: str) -> list[Block]:
    blocks: list[Block] = []
    for p in msg.parts:
        if isinstance(p, ThinkingPart):
            block = _thinking_block(p, origin)
            if block is not None:
                blocks.append(block)
        elif isinstance(p, TextPart) and p.text:
            blocks.append(_text(p.text))
    blocks.extend(_tool_use(c) for c in msg.tool_calls)
    return blocks or [_text(NO_CONTENT)]


def _thinking_block(part: ThinkingPart, origin: str) -> Block | None:
    """The block that replays ``part``, or ``None`` when the target could not validate it.

    ``origin`` names the target (provider, model, URL); a part records the origin that produced
    it. A different origin's block is dropped (its signature means nothing here). A block from
    this origin without a signature goes back as it came: MiniMax's endpoint signs nothing but
    wants its interleaved thinking back. With no origin on either side, only signed blocks go.
    """
    extra = part.extra or {}
    if extra.get("format") != "anthropic":
        return None  # another wire format's reasoning: the API would reject it
    source = extra.get("origin")
    if source and origin and source != origin:
        return None
    redacted = extra.get("redacted")
    if isinstance(redacted, str) and redacted:
        return {"type": "redacted_thinking", "data": redacted}
    if part.signature:
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if source and source == origin:
        return {"type": "thinking", "thinking": part.text}
    return None


def _tool_use(call: ToolCall) -> Block:
    return {
        "type": "tool_use",
        "id": wire_tool_id(call.id),
        "name": call.name,
        "input": _input_object(call.arguments),
    }


def _input_object(arguments: str) -> dict[str, Any]:
    """The arguments as the JSON object ``input`` must be. A malformed call was already answered
    with an error tool result, so ``{}`` keeps the history valid without changing its meaning."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def wire_tool_id(call_id: str) -> str:
    """``call_id`` as the API accepts it (``^[a-zA-Z0-9_-]+$``): ids minted by other providers
    (``functions.read:0``) are rewritten the same way in ``tool_use`` and ``tool_result``."""
    return _BAD_ID_CHARS.sub("_", call_id) or "toolu_missing"
