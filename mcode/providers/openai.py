"""OpenAI Chat Completions over httpx (MiniMax ``/v1``, OpenAI, DeepSeek, vLLM, our local server).

Three pieces, in wire order:

- :func:`build_body` turns a :class:`ModelRequest` into request bytes. The serialisation is
  deterministic and ``messages`` is the last key, so a longer history produces a body whose bytes
  start with the previous body's bytes minus its closing ``]}``: server-side prompt caches hit.
- :class:`ThinkSplitter` and :class:`ChatAssembler` turn streamed chunks (or one JSON answer) into
  ``TextDelta`` / ``ThinkingDelta`` / ``ToolCallStarted`` events and a final ``Completion``,
  tolerating the quirks listed in MINIMAX_API.md (tags split across chunks, repeated tool-call
  ids, reasoning sent twice or cumulatively, errors inside a 200, a missing finish).
- :class:`OpenAIProvider` sends, retries and times out (see :mod:`mcode.providers.retry`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx

from mcode import __version__
from mcode.errors import ProviderError
from mcode.messages import (
    ImagePart,
    Message,
    Part,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolSpec,
    Usage,
)
from mcode.providers.base import (
    Completion,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    TextDelta,
    ThinkingDelta,
    ToolCallStarted,
)
from mcode.providers.http import HttpClient
from mcode.providers.retry import (
    NetworkSettings,
    classify_body_error,
    classify_minimax_code,
    hint_for,
    retrying,
    scrub,
)

__all__ = ["ChatAssembler", "OpenAIProvider", "ThinkSplitter", "build_body"]

_OPEN, _CLOSE = "<think>", "</think>"
_REPLAY_MODES = ("reasoning_content", "reasoning", "think_tags", "none")


# ============================================================================ request


def build_body(
    request: ModelRequest,
    *,
    model: str,
    stream: bool = True,
    thinking_style: str = "none",
    max_tokens_field: str = "max_tokens",
    reasoning_replay: str = "reasoning_content",
    supports_images: bool = True,
    extra_body: Mapping[str, Any] | None = None,
) -> bytes:
    """The request body, as bytes. Same request, same bytes; ``messages`` is serialised last."""
    body: dict[str, Any] = {"model": request.model or model}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if request.max_output_tokens is not None:
        body[max_tokens_field] = request.max_output_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if thinking_style == "minimax" and request.thinking is not None:
        body["thinking"] = {"type": "adaptive" if request.thinking else "disabled"}
    if extra_body:
        body.update(extra_body)
    if request.tools:
        body["tools"] = [_wire_tool(t) for t in request.tools]
        choice = getattr(request, "tool_choice", None)
        if choice in ("auto", "none", "required"):
            body["tool_choice"] = choice
        elif choice:
            body["tool_choice"] = {"type": "function", "function": {"name": choice}}
    body["messages"] = _wire_messages(
        request.system, request.messages, reasoning_replay, supports_images
    )
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=False).encode()


def _wire_tool(tool: ToolSpec) -> dict[str, Any]:
    params = tool.parameters or {"type": "object", "properties": {}}
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": params},
    }


def _wire_messages(
    system: str, messages: Iterable[Message], replay: str, supports_images: bool
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    # OpenAI accepts no images in tool messages, so a run of tool results is followed by one
    # user message carrying their images. It depends only on earlier history: bytes stay stable.
    tool_images: list[ImagePart] = []
    for msg in messages:
        if msg.role != "tool" and tool_images:
            out.append(_images_message(tool_images))
            tool_images = []
        if msg.role == "user":
            out.append({"role": "user", "content": _user_content(msg.parts)})
        elif msg.role == "assistant":
            out.append(_assistant(msg, replay))
        else:
            text = msg.text
            if msg.is_error and not text.startswith("Error"):
                text = "Error: " + text
            images = [p for p in msg.parts if isinstance(p, ImagePart)]
            if images and supports_images:
                tool_images.extend(images)
            elif images:
                text += f"\n[{len(images)} image(s) omitted: this model has no image input]"
            out.append({"role": "tool", "tool_call_id": msg.tool_call_id or "", "content": text})
    if tool_images:
        out.append(_images_message(tool_images))
    return out


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
    reasoning: list[str] = []
    for p in msg.parts:
        if isinstance(p, TextPart):
            content.append(p.text)
        elif isinstance(p, ThinkingPart) and replay != "none":
            extra = p.extra or {}
            if replay == "think_tags" or extra.get("format") == "think_tags":
                # Rebuild the content exactly as it arrived (MiniMax wants it back verbatim).
                opening = _OPEN if extra.get("open", True) else ""
                content.append(f"{opening}{p.text}{_CLOSE}{extra.get('tail', '')}")
            else:
                reasoning.append(p.text)
    d: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
    if reasoning:
        d[replay] = "".join(reasoning)
    if msg.tool_calls:
        d["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in msg.tool_calls
        ]
    return d


# ============================================================================ response


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
    """

    __slots__ = ("_held", "_literal", "_state")

    def __init__(self) -> None:
        self._state = "start"  # start | think | tail | text
        self._held = ""
        self._literal = False  # tags are plain text from now on

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
                i, j = s.find(_CLOSE), s.find(_OPEN)
                if j >= 0 and (i < 0 or j < i):
                    self._literal = True
                    continue
                if i >= 0:
                    if i:
                        out.append(("text", s[:i]))
                    out.append(("stray", ""))
                    s, self._state, self._literal = s[i + len(_CLOSE) :], "tail", True
                    continue
                keep = _partial_tag(s, _OPEN, _CLOSE)
                if keep < len(s):
                    out.append(("text", s[: len(s) - keep]))
                self._held = s[len(s) - keep :]
                return out
            if state == "think":
                i = s.find(_CLOSE)
                if i < 0:
                    keep = _partial_tag(s, _CLOSE)
                    if keep < len(s):
                        out.append(("thinking", s[: len(s) - keep]))
                    self._held = s[len(s) - keep :]
                    return out
                if i:
                    out.append(("thinking", s[:i]))
                s, self._state, self._literal = s[i + len(_CLOSE) :], "tail", True
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
            if not stripped or (_OPEN.startswith(stripped) and stripped != _OPEN):
                self._held = s
                return out
            if stripped.startswith(_OPEN):
                s, self._state = stripped[len(_OPEN) :], "think"
            else:
                self._state = "text"
        return out

    def flush(self) -> list[tuple[str, str]]:
        """End of content: release anything held back."""
        held, self._held = self._held, ""
        if not held:
            return []
        kind = {"think": "thinking", "tail": "tail"}.get(self._state, "text")
        return [(kind, held)]


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


class ChatAssembler:
    """Accumulates one answer. Feed each parsed chunk to :meth:`feed_chunk` (or a whole non-streamed
    response to :meth:`feed_response`); each returns the events to show now. :meth:`finish` builds
    the Completion, or raises a retryable ``truncated`` error if no finish reason ever came.

    In-body errors (``{"error": ...}``, MiniMax ``base_resp.status_code != 0``) raise
    ProviderError. Reasoning: per chunk the most trusted field wins (``reasoning_details`` >
    ``reasoning_content`` > ``reasoning``); once a structured field has been seen, ``<think>``
    text in ``content`` is the same reasoning again and is dropped.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = tuple(secrets)
        self._splitter = ThinkSplitter()
        self._parts: list[_PartBuf] = []
        self._structured = False
        self._reasoning: list[str] = []  # structured reasoning so far (for cumulative resends)
        self._reasoning_len = 0
        self._calls: list[_CallBuf] = []
        self._by_index: dict[int, int] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    # ---------------------------------------------------------------- input

    def feed_chunk(self, chunk: dict[str, Any]) -> list[ModelEvent]:
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

    def feed_response(self, data: Any) -> list[ModelEvent]:
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
        return self.feed_chunk(
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
        base = chunk.get("base_resp")
        if isinstance(base, dict):
            try:
                code = int(base.get("status_code") or 0)
            except (TypeError, ValueError):
                code = -1
            if code:
                raise classify_minimax_code(
                    code, str(base.get("status_msg") or ""), secrets=self._secrets
                )

    def _protocol(self, what: str) -> ProviderError:
        return ProviderError(
            f"model API protocol error: {what}",
            kind="protocol",
            retryable=True,
            hint=hint_for("protocol"),
        )

    def _delta(self, delta: dict[str, Any], out: list[ModelEvent]) -> None:
        reasoning = _structured_reasoning(delta)
        if reasoning is not None:
            source, text = reasoning
            self._structured = True
            text = self._new_reasoning(text)
            if text:
                self._add("thinking", text, {"format": source})
                out.append(ThinkingDelta(text))
        content = delta.get("content")
        if isinstance(content, list):  # some servers stream content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
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

    def _content(self, segments: list[tuple[str, str]], out: list[ModelEvent]) -> None:
        for kind, text in segments:
            if kind == "text":
                self._add("text", text, {})
                out.append(TextDelta(text))
            elif self._structured:
                if kind == "stray":  # the text so far was the same reasoning, inline
                    self._parts = [p for p in self._parts if p.kind != "text"]
            elif kind == "thinking":
                self._add("thinking", text, {"format": "think_tags"})
                out.append(ThinkingDelta(text))
            elif kind == "tail":
                for p in reversed(self._parts):
                    if p.kind == "thinking":
                        p.meta["tail"] = p.meta.get("tail", "") + text
                        break
            elif kind == "stray":
                # Shown live as text already; the Completion files it where it belongs.
                text_so_far = "".join(t for p in self._parts if p.kind == "text" for t in p.pieces)
                rest = [p for p in self._parts if p.kind != "text"]
                meta = {"format": "think_tags", "open": False}
                self._parts = [_PartBuf("thinking", [text_so_far], meta), *rest]

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
        else:  # no index: a new id starts a call, anything else continues the last one
            last = self._calls[-1] if self._calls else None
            pos = len(self._calls) - 1 if last and (not cid or cid == last.id) else None
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
        events: list[ModelEvent] = []
        self._content(self._splitter.flush(), events)
        parts: list[Part] = []
        for p in self._parts:
            text = "".join(p.pieces)
            if p.kind == "text":
                if text:
                    parts.append(TextPart(text))
            elif text or p.meta.get("tail"):
                parts.append(ThinkingPart(text, extra=p.meta or None))
        calls = tuple(
            ToolCall(c.id or f"call_{uuid.uuid4().hex[:24]}", c.name, "".join(c.args))
            for c in self._calls
        )
        finish = _FINISH.get(self.finish_reason, "stop")
        if calls and finish not in ("length", "content_filter"):
            finish = "tool_calls"
        elif not calls and finish == "tool_calls":
            finish = "stop"
        message = Message(role="assistant", parts=tuple(parts), tool_calls=calls)
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


# ============================================================================ provider


_SECRET_HEADER_WORDS = ("key", "token", "auth", "secret")


class OpenAIProvider:
    """A :class:`~mcode.providers.base.Provider` for OpenAI-compatible Chat Completions.

    - ``thinking_style``: ``"none"`` sends no thinking switch; ``"minimax"`` sends
      ``thinking: {"type": "adaptive" | "disabled"}`` when ``request.thinking`` is set.
    - ``reasoning_replay``: how earlier thinking goes back: ``"reasoning_content"`` (DeepSeek,
      MiniMax), ``"reasoning"`` (vLLM >= 0.16), ``"think_tags"`` (all of it inline in content) or
      ``"none"``. Thinking that arrived inline as ``<think>`` goes back inline in every mode but
      ``"none"``.
    - ``max_tokens_field``: MiniMax wants ``"max_completion_tokens"``.
    - ``extra_body``: keys merged into every request (e.g. ``{"reasoning_split": True}``).
    - ``transport``: an httpx transport to use instead of the network one.

    One instance may serve concurrent calls; it must stay on the event loop that first used it.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key: str | None,
        info: ModelInfo,
        network: NetworkSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        stream: bool = True,
        thinking_style: str = "none",
        max_tokens_field: str = "max_tokens",
        extra_headers: dict[str, str] | None = None,
        reasoning_replay: str = "reasoning_content",
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if reasoning_replay not in _REPLAY_MODES:
            raise ValueError(f"reasoning_replay must be one of {_REPLAY_MODES}")
        if thinking_style not in ("none", "minimax"):
            raise ValueError("thinking_style must be 'none' or 'minimax'")
        self.info = info
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._network = network
        self._stream = stream
        self._thinking_style = thinking_style
        self._max_tokens_field = max_tokens_field
        self._reasoning_replay = reasoning_replay
        self._extra_body = dict(extra_body or {})
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": f"mcode/{__version__}",
            **(extra_headers or {}),
        }
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        secrets = [api_key] + [
            v
            for k, v in (extra_headers or {}).items()
            if any(w in k.lower() for w in _SECRET_HEADER_WORDS)
        ]
        self._http = HttpClient(network=network, transport=transport, secrets=secrets)

    def build_body(self, request: ModelRequest) -> bytes:
        """The exact bytes :meth:`stream` sends for ``request``."""
        return build_body(
            request,
            model=self.model,
            stream=self._stream,
            thinking_style=self._thinking_style,
            max_tokens_field=self._max_tokens_field,
            reasoning_replay=self._reasoning_replay,
            supports_images=self.info.supports_images,
            extra_body=self._extra_body,
        )

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        """Stream one model call; see :mod:`mcode.providers.base` for the contract."""
        body = self.build_body(request)
        events = retrying(lambda: self._attempt(body), self._network, secrets=self._http.secrets)
        async with aclosing(events):
            async for event in events:
                yield event

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _attempt(self, body: bytes) -> AsyncGenerator[ModelEvent, None]:
        loop = asyncio.get_running_loop()
        n = self._network
        wait = n.first_event_timeout if self._stream else n.first_event_timeout + n.idle_timeout
        deadline = loop.time() + wait
        assembler = ChatAssembler(self._http.secrets)
        async with self._http.post(self.url, body, self._headers, deadline=deadline) as response:
            ctype = response.headers.get("content-type", "")
            if not self._stream or ("json" in ctype and "event-stream" not in ctype):
                # Also taken when a server ignores stream=true and answers in one JSON body.
                data = await self._http.read_json(response, deadline=deadline)
                for event in assembler.feed_response(data):
                    yield event
            else:
                sse = self._http.iter_sse(response, deadline=deadline, until="[DONE]")
                received = False
                async with aclosing(sse):
                    async for message in sse:
                        received = True
                        if message.data.strip() == "[DONE]":
                            continue
                        chunk = self._parse(message.data, message.event)
                        if chunk is not None:
                            for event in assembler.feed_chunk(chunk):
                                yield event
                if not received and "event-stream" not in ctype:
                    # An HTML login page or the like, not a cut stream: retrying will not help.
                    raise ProviderError(
                        f"model API protocol error: {self.url} answered with "
                        f"{ctype or 'no content type'}, not an event stream",
                        kind="protocol",
                        retryable=False,
                        hint=hint_for("protocol"),
                    )
        for event in assembler.finish():
            yield event

    def _parse(self, data: str, event: str) -> dict[str, Any] | None:
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if event == "error":
            if isinstance(chunk, dict) and chunk.get("error"):
                chunk = chunk["error"]
            raise classify_body_error(
                chunk if chunk is not None else data, secrets=self._http.secrets
            )
        if isinstance(chunk, dict):
            return chunk
        if event != "message" or not data.strip():
            return None  # unknown named events and empty keep-alive data are ignored
        snippet = scrub(data[:200], self._http.secrets)
        raise ProviderError(
            f"model API protocol error: a stream event is not a JSON object: {snippet!r}",
            kind="protocol",
            retryable=True,
            hint=hint_for("protocol"),
        )
