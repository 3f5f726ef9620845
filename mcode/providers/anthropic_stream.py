"""Anthropic Messages: streamed events (or one JSON message) in, model events out.

:class:`MessageAssembler` turns the event sequence ``message_start``, ``content_block_start`` /
``_delta`` / ``_stop`` per block, ``message_delta``, ``message_stop`` into ``TextDelta`` /
``ThinkingDelta`` / ``ToolCallStarted`` events and a final ``Completion``, tolerating what
MINIMAX_API.md lists: text pre-filled in ``content_block_start`` and repeated by the deltas,
cumulative ``message_delta`` usage, ``error`` events and MiniMax ``base_resp`` inside a 200, and a
stream that ends before ``message_stop``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mcode.errors import ProviderError
from mcode.messages import Message, Part, TextPart, ThinkingPart, ToolCall, Usage
from mcode.providers.base import Completion, ModelEvent, TextDelta, ThinkingDelta, ToolCallStarted
from mcode.providers.classify import (
    classify_body_error,
    error_message_from_body,
    hint_for,
    looks_like_context_overflow,
    minimax_code_in,
    raise_for_base_resp,
)
from mcode.secrets import scrub

__all__ = ["PROTOCOL_HINT", "MessageAssembler", "classify_anthropic_error"]

PROTOCOL_HINT = (
    "the server's answer was not valid Anthropic Messages output: check that the base URL points "
    "at an Anthropic-compatible API"
)

# Anthropic's error types: https://docs.anthropic.com/en/api/errors
_ERROR_KINDS: dict[str, tuple[str, bool]] = {
    "overloaded_error": ("overloaded", True),
    "rate_limit_error": ("rate_limit", True),
    "api_error": ("server", True),
    "timeout_error": ("timeout", True),
    "invalid_request_error": ("bad_request", False),
    "authentication_error": ("auth", False),
    "permission_error": ("auth", False),
    "not_found_error": ("bad_request", False),
    "request_too_large": ("context_overflow", False),
    "billing_error": ("billing", False),
}

# delta type -> (the block kind it belongs to, the field holding its payload)
_DELTAS = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "signature_delta": ("thinking", "signature"),
    "input_json_delta": ("tool", "partial_json"),
}

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}


def classify_anthropic_error(error: Any, *, secrets: Iterable[str | None] = ()) -> ProviderError:
    """The ProviderError for an Anthropic ``error`` object received inside a 200 (an ``error``
    event or a ``{"type": "error"}`` body). A MiniMax code in the message (``... (2056)``) is
    more specific than the error type and decides, as for HTTP errors; unknown types fall back
    to the generic text-based classification."""
    secrets = tuple(secrets)
    etype = error.get("type") if isinstance(error, dict) else None
    text = error_message_from_body(json.dumps({"error": error}, ensure_ascii=False))
    if etype not in _ERROR_KINDS or minimax_code_in(text) is not None:
        return classify_body_error(error, secrets=secrets)
    kind, retryable = _ERROR_KINDS[etype]
    if etype == "invalid_request_error" and looks_like_context_overflow(text):
        kind = "context_overflow"
    return ProviderError(
        scrub(f"model API error inside the stream: {text}", secrets),
        kind=kind,
        retryable=retryable,
        hint=hint_for(kind),
    )


@dataclass(slots=True)
class _Block:
    """One content block being received. ``kind``: text, thinking, redacted, tool or other."""

    kind: str
    pieces: list[str] = field(default_factory=list)  # text, thinking or input JSON fragments
    echo: str = ""  # pre-filled text the next deltas may repeat (not yet matched)
    signature: list[str] = field(default_factory=list)
    data: str = ""  # redacted_thinking payload
    id: str = ""
    name: str = ""
    prefilled_input: Any = None  # tool_use input given whole in content_block_start
    arguments: str | None = None  # set at content_block_stop


class MessageAssembler:
    """Accumulates one answer. Feed each parsed event to :meth:`feed` (or a whole
    non-streamed message to :meth:`feed_whole`); each returns the events to show now.
    :meth:`finish` builds the Completion, or raises a retryable ``truncated`` error when the
    answer never got its stop reason, so a half-received tool call is
    never returned. Errors inside the answer raise ProviderError.
    """

    def __init__(self, secrets: Iterable[str | None] = (), *, origin: str = "") -> None:
        self._secrets = tuple(secrets)
        self._origin = origin
        self._blocks: list[_Block] = []
        self._by_index: dict[int, _Block] = {}
        self._calls = 0
        self.stop_reason: str | None = None
        self.stopped = False
        self.usage: dict[str, Any] | None = None

    # ---------------------------------------------------------------- input

    def feed(self, event: dict[str, Any]) -> list[ModelEvent]:
        """One parsed SSE event (its JSON data). Unknown event types are ignored."""
        self._check_error(event)
        etype = event.get("type")
        out: list[ModelEvent] = []
        if etype == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                self._merge_usage(message.get("usage"))
        elif etype == "content_block_start":
            self._start(event, out)
        elif etype == "content_block_delta":
            self._delta(event, out)
        elif etype == "content_block_stop":
            block = self._block(event)
            if block is not None:
                self._close(block)
        elif etype == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self.stop_reason = str(delta["stop_reason"])
            self._merge_usage(event.get("usage"))
        elif etype == "message_stop":
            self.stopped = True
        return out  # "ping" and event types added after this was written: nothing to do

    def feed_whole(self, message: Any) -> list[ModelEvent]:
        """A whole non-streamed answer (``{"type": "message", "content": [...], ...}``), replayed
        as the events that would have streamed it."""
        if not isinstance(message, dict):
            raise self._protocol(f"the answer is not a JSON object: {str(message)[:200]!r}")
        self._check_error(message)
        content = message.get("content")
        if not isinstance(content, list):
            raise self._protocol("the answer has no content list")
        out = self.feed({"type": "message_start", "message": {"usage": message.get("usage")}})
        for index, block in enumerate(content):
            out += self.feed(
                {"type": "content_block_start", "index": index, "content_block": block}
            )
            out += self.feed({"type": "content_block_stop", "index": index})
        out += self.feed(
            {"type": "message_delta", "delta": {"stop_reason": message.get("stop_reason")}}
        )
        out += self.feed({"type": "message_stop"})
        return out

    def _check_error(self, event: dict[str, Any]) -> None:
        if event.get("type") == "error" or (event.get("error") and "type" not in event):
            error = event.get("error") or {k: v for k, v in event.items() if k != "type"}
            raise classify_anthropic_error(error, secrets=self._secrets)
        raise_for_base_resp(event, secrets=self._secrets)

    def _merge_usage(self, usage: Any) -> None:
        """Usage is cumulative (``message_delta`` repeats and updates ``message_start``'s), so the
        latest value of each counter wins; never sum. A counter never goes down, so a later 0 or
        ``null`` (seen from some servers) does not erase a real count."""
        if not isinstance(usage, dict):
            return
        merged = dict(self.usage or {})
        for key, value in usage.items():
            old = merged.get(key)
            if isinstance(value, int) and isinstance(old, int):
                merged[key] = max(old, value)
            elif value is not None or key not in merged:
                merged[key] = value
        self.usage = merged

    def _block(self, event: dict[str, Any]) -> _Block | None:
        index = event.get("index")
        return self._by_index.get(index) if isinstance(index, int) else None

    def _start(self, event: dict[str, Any], out: list[ModelEvent]) -> None:
        cb = event.get("content_block")
        cb = cb if isinstance(cb, dict) else {}
        btype = cb.get("type")
        if btype == "text":
            block = _Block("text")
            self._prefill(block, cb.get("text"), TextDelta, out)
        elif btype == "thinking":
            block = _Block("thinking")
            self._prefill(block, cb.get("thinking"), ThinkingDelta, out)
            if isinstance(cb.get("signature"), str) and cb["signature"]:
                block.signature.append(cb["signature"])
        elif btype == "redacted_thinking":
            block = _Block("redacted", data=str(cb.get("data") or ""))
        elif btype == "tool_use":
            block = _Block("tool", id=str(cb.get("id") or ""), name=str(cb.get("name") or ""))
            block.prefilled_input = cb.get("input")
            out.append(ToolCallStarted(self._calls, block.id, block.name))
            self._calls += 1
        else:
            block = _Block("other")  # server tools, citations...: not ours to replay
        index = event.get("index")
        self._by_index[index if isinstance(index, int) else len(self._blocks)] = block
        self._blocks.append(block)

    @staticmethod
    def _prefill(
        block: _Block,
        text: Any,
        event: type[TextDelta] | type[ThinkingDelta],
        out: list[ModelEvent],
    ) -> None:
        if isinstance(text, str) and text:
            block.pieces.append(text)
            block.echo = text
            out.append(event(text))

    def _delta(self, event: dict[str, Any], out: list[ModelEvent]) -> None:
        block = self._block(event)
        delta = event.get("delta")
        if block is None or not isinstance(delta, dict):
            return
        dtype = delta.get("type")
        kind, key = _DELTAS.get(str(dtype), ("", ""))
        value = delta.get(key)
        if block.kind != kind or not isinstance(value, str):
            return  # a delta for another kind of block, or one added after this was written
        if dtype == "signature_delta":
            block.signature.append(value)
        elif dtype == "input_json_delta":
            block.pieces.append(value)
        else:
            text = _new_text(block, value)
            if text:
                block.pieces.append(text)
                out.append(TextDelta(text) if kind == "text" else ThinkingDelta(text))

    @staticmethod
    def _close(block: _Block) -> None:
        """Tool input is parsed once, when its block ends: fragments are not JSON on their own."""
        if block.kind != "tool" or block.arguments is not None:
            return
        raw = "".join(block.pieces)
        if raw.strip():
            # The fragments are the input. Kept raw when malformed: the loop answers the model
            # with an error tool result instead of running a guessed call.
            try:
                block.arguments = _compact(json.loads(raw))
            except ValueError:
                block.arguments = raw
        elif isinstance(block.prefilled_input, dict):
            block.arguments = _compact(block.prefilled_input)
        else:
            block.arguments = "{}"

    def _protocol(self, what: str) -> ProviderError:
        return ProviderError(
            scrub(f"model API protocol error: {what}", self._secrets),
            kind="protocol",
            retryable=True,
            hint=PROTOCOL_HINT,
        )

    # ---------------------------------------------------------------- output

    def finish(self) -> list[ModelEvent]:
        """The Completion, as a one-element list. Raises a retryable ``truncated`` ProviderError
        when the stream ended without a stop reason. A clean end after the stop reason is
        complete even without ``message_stop`` (some gateways omit it): ``message_delta`` comes
        after every block is closed. A connection cut mid-body never gets here."""
        if self.stop_reason is None:
            missing = "message_stop" if not self.stopped else "stop_reason"
            where = " in the middle of a tool call" if self._calls else ""
            raise ProviderError(
                f"the answer stream ended before the model finished{where} (no {missing})",
                kind="truncated",
                retryable=True,
                hint=hint_for("truncated"),
            )
        parts: list[Part] = []
        calls: list[ToolCall] = []
        for block in self._blocks:
            if block.kind == "tool":
                self._close(block)
                calls.append(
                    ToolCall(_unique_id(block.id, calls), block.name, block.arguments or "")
                )
            else:
                part = _part(block, self._origin)
                if part is not None:
                    parts.append(part)
        finish = _FINISH.get(self.stop_reason, "stop")
        if calls and finish not in ("length", "content_filter"):
            finish = "tool_calls"
        elif not calls and finish == "tool_calls":
            finish = "stop"
        message = Message(role="assistant", parts=tuple(parts), tool_calls=tuple(calls))
        return [Completion(message, _usage(self.usage), finish, raw_usage=self.usage)]


def _new_text(block: _Block, text: Any) -> str:
    """The part of a delta not already received as pre-filled text.

    Some servers put the first text in ``content_block_start`` and then send it again as deltas
    (whole or in pieces); the repeat is dropped. A delta that does not repeat it ends the check.
    """
    if not isinstance(text, str):
        return ""
    echo = block.echo
    if echo:
        if text.startswith(echo):
            block.echo = ""
            return text[len(echo) :]
        if echo.startswith(text):
            block.echo = echo[len(text) :]
            return ""
        block.echo = ""
    return text


def _part(block: _Block, origin: str) -> Part | None:
    text = "".join(block.pieces)
    extra: dict[str, Any] = {"format": "anthropic"}
    if origin:
        extra["origin"] = origin
    if block.kind == "text":
        return TextPart(text) if text else None
    if block.kind == "thinking":
        signature = "".join(block.signature) or None
        if not text and signature is None:
            return None
        return ThinkingPart(text, signature=signature, extra=extra)
    if block.kind == "redacted" and block.data:
        return ThinkingPart("", extra={**extra, "redacted": block.data})
    return None


def _unique_id(cid: str, calls: list[ToolCall]) -> str:
    # Results are matched to calls by id: a missing or repeated id gets a fresh one.
    if not cid or any(cid == c.id for c in calls):
        return f"toolu_{uuid.uuid4().hex[:24]}"
    return cid


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _count(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    return value if isinstance(value, int) else 0


def _usage(raw: dict[str, Any] | None) -> Usage:
    """Anthropic's ``input_tokens`` excludes cached tokens; mcode's counts all input."""
    if not raw:
        return Usage()
    read = _count(raw, "cache_read_input_tokens")
    written = _count(raw, "cache_creation_input_tokens")
    return Usage(
        input_tokens=_count(raw, "input_tokens") + read + written,
        output_tokens=_count(raw, "output_tokens"),
        cached_tokens=read,
        cache_write_tokens=written,
    )
