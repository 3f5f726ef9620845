"""OpenAI Chat Completions: streamed chunks (or one JSON answer) in, model events out.

:class:`ThinkSplitter` and :class:`ChatAssembler` turn chunks into ``TextDelta`` /
``ThinkingDelta`` / ``ToolCallStarted`` events and a final ``Completion``, tolerating the quirks
listed in MINIMAX_API.md (tags split across chunks, repeated tool-call ids, reasoning sent twice
or cumulatively, errors inside a 200, a missing finish).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcode.errors import ProviderError
from mcode.messages import (
    Message,
    Part,
    TextPart,
    ThinkingPart,
    ToolCall,
    Usage,
)
from mcode.providers.base import (
    Completion,
    ModelEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallStarted,
)
from mcode.providers.classify import (
    classify_body_error,
    hint_for,
    raise_for_base_resp,
)

__all__ = ["THINK_CLOSE", "THINK_OPEN", "ChatAssembler", "ThinkOpening", "ThinkSplitter"]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def _partial_tag(s: str, *tags: str) -> int:
    """Length of the longest suffix of ``s`` that is a proper prefix of one of ``tags``."""
    if "<" not in s[-8:]:
        return 0
    best = 0
    for tag in tags:
        for k in range(min(len(s), len(tag) - 1), best, -1):
            if s.endswith(tag[:k]):
                best = k
                break
    return best


class ThinkSplitter:
    """Splits streamed ``content`` into visible text and ``<think>`` reasoning.

    ``feed`` returns ``(kind, text)`` segments: ``"text"``, ``"thinking"``, ``"tail"`` (the
    whitespace right after ``</think>``, kept for a verbatim replay but not shown) and
    ``"stray"`` (a ``</think>`` with no opening tag: everything before it was reasoning, as with
    chat templates that put ``<think>`` in the prompt). A tag split across chunks is held back
    until it is complete. ``<think>`` opens a block only at the start of the answer, and tags stop
    being special after the first block or after a literal ``<think>`` in prose, so an answer that
    talks about the tags is not mangled.

    ``opened`` (settable until the first content arrives): the prompt is known to open
    ``<think>`` (see :class:`ThinkOpening`), so the answer starts inside the reasoning and its
    first ``</think>`` ends it; :attr:`unopened` then says the block had no opening tag. If the
    answer ends still inside it, :meth:`flush` says ``"unclosed"``: it was the answer after all.
    """

    __slots__ = ("_held", "_literal", "_state", "opened", "tagged", "unopened")

    def __init__(self, *, opened: bool = False) -> None:
        self._state = "start"  # start | think | tail | text
        self._held = ""
        self._literal = False  # tags are plain text from now on
        self.opened = opened
        self.unopened = False  # the reasoning block had no opening tag (the prompt opened it)
        self.tagged = False  # the answer opened its own <think>

    def feed(self, s: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self._held:
            s, self._held = self._held + s, ""
        while s:
            state = self._state
            if state == "text":
                if self._literal:
                    out.append(("text", s))
                    return out
                i, j = s.find(THINK_CLOSE), s.find(THINK_OPEN)
                if j >= 0 and (i < 0 or j < i):
                    self._literal = True
                    continue
                if i >= 0:
                    if i:
                        out.append(("text", s[:i]))
                    out.append(("stray", ""))
                    s, self._state, self._literal = s[i + len(THINK_CLOSE) :], "tail", True
                    continue
                keep = _partial_tag(s, THINK_OPEN, THINK_CLOSE)
                if keep < len(s):
                    out.append(("text", s[: len(s) - keep]))
                self._held = s[len(s) - keep :]
                return out
            if state == "think":
                i = s.find(THINK_CLOSE)
                if i < 0:
                    keep = _partial_tag(s, THINK_CLOSE)
                    if keep < len(s):
                        out.append(("thinking", s[: len(s) - keep]))
                    self._held = s[len(s) - keep :]
                    return out
                if i:
                    out.append(("thinking", s[:i]))
                s, self._state, self._literal = s[i + len(THINK_CLOSE) :], "tail", True
                continue
            stripped = s.lstrip()
            if state == "tail":
                if len(stripped) < len(s):
                    out.append(("tail", s[: len(s) - len(stripped)]))
                if stripped:
                    self._state = "text"
                s = stripped
                continue
            # start: decide whether the answer opens with <think> (leading whitespace dropped)
            if not stripped or (THINK_OPEN.startswith(stripped) and stripped != THINK_OPEN):
                self._held = s
                return out
            if stripped.startswith(THINK_OPEN):
                s, self._state, self.tagged = stripped[len(THINK_OPEN) :], "think", True
            elif self.opened:  # the reasoning as it came, leading whitespace and all
                self._state, self.unopened = "think", True
            else:
                self._state = "text"
        return out

    def flush(self) -> list[tuple[str, str]]:
        """End of content: release anything held back."""
        held, self._held = self._held, ""
        kind = {"think": "thinking", "tail": "tail"}.get(self._state, "text")
        out = [(kind, held)] if held else []
        if self._state == "think" and self.unopened:
            out.append(("unclosed", ""))
        return out


@dataclass(slots=True)
class _PartBuf:
    kind: str  # text | thinking
    pieces: list[str]
    meta: dict[str, Any]


@dataclass(slots=True)
class _CallBuf:
    id: str = ""
    name: str = ""
    args: list[str] = field(default_factory=list)


_FINISH = {
    "stop": "stop",
    "end_turn": "stop",
    "eos": "stop",
    "stop_sequence": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "tool_use": "tool_calls",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
    "sensitive": "content_filter",
}
# Finish reasons that mean the server gave up on the answer: what came so far is not the answer.
# DeepSeek: insufficient_system_resource; vLLM, SGLang: abort; OpenRouter: error.
_FAILED = frozenset(("insufficient_system_resource", "abort", "error"))


@dataclass(slots=True)
class ThinkOpening:
    """Whether one endpoint's chat template ends the prompt with ``<think>``, learned from it.

    Such templates (DeepSeek-R1, Qwen3's thinking models) make every answer start inside the
    reasoning, with only the closing ``</think>`` in the stream. Until such an answer has been
    seen it looks like any answer: the first one streams as text and is filed as thinking when
    its stray ``</think>`` comes. From then on, and in a resumed session whose history shows one,
    answers start as thinking and stream as ``thinking.delta``, never as text. An answer that
    opens its own ``<think>``, or ends without closing the one the prompt was thought to open
    (then it was the answer, and is shown as text at its end), says the template does not.
    One provider's calls share one.
    """

    in_prompt: bool = False

    def learn_from(self, history: Sequence[Message]) -> None:
        """What the last inline reasoning in ``history`` (a resumed session's) says."""
        for message in reversed(history):
            for part in message.parts if message.role == "assistant" else ():
                extra = part.extra if isinstance(part, ThinkingPart) else None
                if extra and extra.get("format") == "think_tags":
                    self.in_prompt = extra.get("open", True) is False
                    return


class ChatAssembler:
    """Accumulates one answer. Feed each parsed chunk to :meth:`feed` (or a whole non-streamed
    response to :meth:`feed_whole`); each returns the events to show now. :meth:`finish` builds
    the Completion, or raises a retryable ``truncated`` error if no finish reason ever came.

    In-body errors (``{"error": ...}``, MiniMax ``base_resp.status_code != 0``) raise
    ProviderError. Reasoning: per chunk the most trusted field wins (``reasoning_details`` >
    ``reasoning_content`` > ``reasoning``); once a structured field has been seen, ``<think>``
    text in ``content`` is the same reasoning again and is dropped.

    Each thinking part records the form it arrived in, ``extra["format"]``: ``think_tags``
    (with ``open: False`` when only the ``</think>`` came, and the ``tail`` after it),
    ``reasoning_details`` (with the items themselves, merged by index, in ``details``),
    ``reasoning_content`` or ``reasoning``, so the next request can send it back the same way.
    """

    def __init__(
        self, secrets: Iterable[str | None] = (), *, opening: ThinkOpening | None = None
    ) -> None:
        self._secrets = tuple(secrets)
        self._opening = opening if opening is not None else ThinkOpening()
        self._splitter = ThinkSplitter(opened=self._opening.in_prompt)
        self._parts: list[_PartBuf] = []
        self._structured = False
        self._reasoning: list[str] = []  # structured reasoning so far (for cumulative resends)
        self._reasoning_len = 0
        self._calls: list[_CallBuf] = []
        self._by_index: dict[int, int] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    # ---------------------------------------------------------------- input

    def feed(self, chunk: dict[str, Any]) -> list[ModelEvent]:
        self._check_error(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, dict) and (self.usage is None or any(usage.values())):
            self.usage = usage  # intermediate chunks may carry all-zero usage: keep a real one
        out: list[ModelEvent] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta is None:
                delta = choice.get("message")
            if isinstance(delta, dict):
                self._delta(delta, out)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return out

    def feed_whole(self, data: Any) -> list[ModelEvent]:
        """A complete non-streamed ``chat.completion`` body."""
        if not isinstance(data, dict):
            raise self._protocol("the answer is not a JSON object")
        self._check_error(data)
        choices = data.get("choices") or ()
        if not choices or not isinstance(choices[0], dict):
            raise self._protocol("the answer has no choices")
        message = dict(choices[0].get("message") or {})
        if isinstance(message.get("tool_calls"), list):
            message["tool_calls"] = [
                {"index": i, **c} if isinstance(c, dict) else c
                for i, c in enumerate(message["tool_calls"])
            ]
        return self.feed(
            {
                "choices": [
                    {"index": 0, "delta": message, "finish_reason": choices[0].get("finish_reason")}
                ],
                "usage": data.get("usage"),
            }
        )

    def _check_error(self, chunk: dict[str, Any]) -> None:
        if chunk.get("error"):
            raise classify_body_error(chunk["error"], secrets=self._secrets)
        raise_for_base_resp(chunk, secrets=self._secrets)

    def _protocol(self, what: str) -> ProviderError:
        return ProviderError(
            f"model API protocol error: {what}",
            kind="protocol",
            retryable=True,
            hint=hint_for("protocol"),
        )

    def _delta(self, delta: dict[str, Any], out: list[ModelEvent]) -> None:
        reasoning = _structured_reasoning(delta)
        resent = False
        if reasoning is not None:
            source, text = reasoning
            self._structured = True
            self._splitter.opened = False  # the server splits reasoning out: content is answer
            new = self._new_reasoning(text)
            resent = new != text
            if new:
                self._add("thinking", new, {"format": source})
                out.append(ThinkingDelta(new))
        details = delta.get("reasoning_details")
        if isinstance(details, list) and details:
            self._keep_details(details, resent)
        content = delta.get("content")
        if isinstance(content, list):  # some servers stream content parts
            content = "".join(
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
        if isinstance(content, str) and content:
            self._content(self._splitter.feed(content), out)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    self._tool_delta(call, out)

    def _new_reasoning(self, text: str) -> str:
        # Some servers resend everything so far; keep only what is new.
        if self._reasoning_len and len(text) >= self._reasoning_len:
            so_far = "".join(self._reasoning)
            if text.startswith(so_far):
                text = text[self._reasoning_len :]
        if text:
            self._reasoning.append(text)
            self._reasoning_len += len(text)
        return text

    def _keep_details(self, items: list[Any], resent: bool) -> None:
        """Merge streamed ``reasoning_details`` items into the current part's ``details``: an item
        with a known ``index`` (or, without one, the last item's type) continues it, its text
        appended (replaced when the server ``resent`` everything so far); other fields keep their
        latest value. Items with no text (encrypted reasoning) are kept too, to go back as sent."""
        last = self._parts[-1] if self._parts else None
        current = last is not None and last.meta.get("format") == "reasoning_details"
        if last is None or last.kind != "thinking" or not current:
            last = _PartBuf("thinking", [], {"format": "reasoning_details"})
            self._parts.append(last)
        merged: list[dict[str, Any]] = last.meta.setdefault("details", [])
        for item in items:
            if not isinstance(item, dict):
                continue
            if "index" in item:
                slot = next((m for m in merged if m.get("index") == item["index"]), None)
            else:
                slot = merged[-1] if merged and merged[-1].get("type") == item.get("type") else None
            if slot is None:
                merged.append(dict(item))
                continue
            for key, value in item.items():
                old = slot.get(key)
                if key in ("text", "summary", "data") and isinstance(value, str):
                    slot[key] = old + value if isinstance(old, str) and not resent else value
                elif value is not None and value != "":
                    slot[key] = value

    def _content(self, segments: list[tuple[str, str]], out: list[ModelEvent]) -> None:
        for kind, text in segments:
            if kind == "text":
                self._add("text", text, {})
                out.append(TextDelta(text))
            elif self._structured:
                if kind == "stray":  # the text so far was the same reasoning, inline
                    self._parts = [p for p in self._parts if p.kind != "text"]
            elif kind == "thinking":
                meta: dict[str, Any] = {"format": "think_tags"}
                if self._splitter.unopened:
                    meta["open"] = False
                self._add("thinking", text, meta)
                out.append(ThinkingDelta(text))
            elif kind == "unclosed":
                self._unclosed(out)
            elif kind == "tail":
                for p in reversed(self._parts):
                    if p.kind == "thinking":
                        p.meta["tail"] = p.meta.get("tail", "") + text
                        break
            elif kind == "stray":
                # Shown live as text already; the Completion files it where it belongs, and the
                # next answers start as thinking.
                self._opening.in_prompt = True
                text_so_far = "".join(t for p in self._parts if p.kind == "text" for t in p.pieces)
                rest = [p for p in self._parts if p.kind != "text"]
                meta = {"format": "think_tags", "open": False}
                self._parts = [_PartBuf("thinking", [text_so_far], meta), *rest]

    def _unclosed(self, out: list[ModelEvent]) -> None:
        """The answer ended inside reasoning the prompt was thought to open. Cut off at the
        token limit, it is reasoning; otherwise the prompt opened none this time, and what
        streamed as reasoning was the answer: shown now, as text."""
        if self.finish_reason == "length":
            return
        self._opening.in_prompt = False
        unopened = [p for p in self._parts if p.kind == "thinking" and p.meta.get("open") is False]
        self._parts = [p for p in self._parts if all(p is not u for u in unopened)]
        answer = "".join(t for p in unopened for t in p.pieces)
        if answer:
            self._add("text", answer, {})
            out.append(TextDelta(answer))

    def _add(self, kind: str, text: str, meta: dict[str, Any]) -> None:
        last = self._parts[-1] if self._parts else None
        if last is not None and last.kind == kind and last.meta.get("format") == meta.get("format"):
            last.pieces.append(text)
        else:
            self._parts.append(_PartBuf(kind, [text], dict(meta)))

    def _tool_delta(self, tc: dict[str, Any], out: list[ModelEvent]) -> None:
        fn: dict[str, Any] = tc["function"] if isinstance(tc.get("function"), dict) else {}
        index, cid, name = tc.get("index"), tc.get("id") or "", fn.get("name") or ""
        pos: int | None
        if isinstance(index, int):
            pos = self._by_index.get(index)
            if pos is not None and cid and self._calls[pos].id and cid != self._calls[pos].id:
                pos = None  # a new id at a used index is a new call
        else:  # no index: an id other than the last call's starts a call, and so does an id
            # with a name; anything else continues the last one (its id may come late)
            last = self._calls[-1] if self._calls else None
            same = last is not None and (
                not cid or cid == last.id or not (last.id or (name and last.name))
            )
            pos = len(self._calls) - 1 if same else None
        if pos is None:
            pos = len(self._calls)
            self._calls.append(_CallBuf())
            if isinstance(index, int):
                self._by_index[index] = pos
        call = self._calls[pos]
        if cid and not call.id:
            call.id = cid
        if name and not call.name:  # set once: some servers repeat the name on every fragment
            call.name = name
            out.append(ToolCallStarted(pos, call.id, name))
        args = fn.get("arguments")
        if isinstance(args, str):
            if args:
                call.args.append(args)
        elif args is not None:
            call.args.append(json.dumps(args, ensure_ascii=False, separators=(",", ":")))

    # ---------------------------------------------------------------- output

    def finish(self) -> list[ModelEvent]:
        """The last events: any text held back (a possible partial tag), then the Completion.
        Raises a retryable ``truncated`` ProviderError when the answer never got a finish reason,
        so a half-received tool call is never returned."""
        if self.finish_reason is None:
            where = " in the middle of a tool call" if self._calls else ""
            raise ProviderError(
                f"the answer stream ended before the model finished{where} (no finish_reason)",
                kind="truncated",
                retryable=True,
                hint=hint_for("truncated"),
            )
        if self.finish_reason in _FAILED:
            raise ProviderError(
                f"the model API gave up on the answer (finish_reason {self.finish_reason!r})",
                kind="server",
                retryable=True,
                hint=hint_for("server"),
            )
        events: list[ModelEvent] = []
        self._content(self._splitter.flush(), events)
        if self._splitter.tagged:
            self._opening.in_prompt = False
        parts: list[Part] = []
        for p in self._parts:
            text = "".join(p.pieces)
            if p.kind == "text":
                if text:
                    parts.append(TextPart(text))
            elif text or p.meta.get("tail") or p.meta.get("details"):
                parts.append(ThinkingPart(text, extra=p.meta or None))
        # Results are matched to calls by id: a missing or repeated id gets a fresh one.
        calls: list[ToolCall] = []
        for c in self._calls:
            cid = c.id
            if not cid or any(cid == other.id for other in calls):
                cid = f"call_{uuid.uuid4().hex[:24]}"
            calls.append(ToolCall(cid, c.name, "".join(c.args)))
        finish = _FINISH.get(self.finish_reason, "stop")
        if calls and finish not in ("length", "content_filter"):
            finish = "tool_calls"
        elif not calls and finish == "tool_calls":
            finish = "stop"
        message = Message(role="assistant", parts=tuple(parts), tool_calls=tuple(calls))
        events.append(Completion(message, _usage(self.usage), finish, raw_usage=self.usage))
        return events


def _structured_reasoning(delta: dict[str, Any]) -> tuple[str, str] | None:
    details = delta.get("reasoning_details")
    if isinstance(details, list):
        text = "".join(
            d["text"] for d in details if isinstance(d, dict) and isinstance(d.get("text"), str)
        )
        if text:
            return "reasoning_details", text
    for key in ("reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str) and value:
            return key, value
    return None


def _usage(raw: dict[str, Any] | None) -> Usage:
    if not raw:
        return Usage()
    details = raw.get("prompt_tokens_details") or {}
    cached = (
        (details.get("cached_tokens") if isinstance(details, dict) else 0)
        or raw.get("prompt_cache_hit_tokens")
        or 0
    )
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(cached),
    )
