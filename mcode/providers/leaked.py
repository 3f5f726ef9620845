"""Tool calls a model wrote into its answer text instead of the structured tool-call field.

Models trained on a chat template with textual tool calls sometimes emit that syntax as plain
text: the server's tool-call parser is off (vLLM, SGLang), missed it, or the model slipped. Three
forms are recognised, each at the top level of the answer (never inside a code fence or an
inline code span, so an answer that *talks about* the tags is left alone):

- MiniMax M2/M3::

      <minimax:tool_call>
      <invoke name="read">
      <parameter name="path">a.py</parameter>
      </invoke>
      </minimax:tool_call>

- Hermes / Qwen 2.5: ``<tool_call>{"name": "read", "arguments": {"path": "a.py"}}</tool_call>``
- Qwen3-Coder: ``<tool_call><function=read><parameter=path>a.py</parameter></function></tool_call>``

Three modules, one step each: :mod:`.leaked_scan` finds where markup starts (also in a text
still streaming), :mod:`.leaked_parse` reads it into calls with arguments typed by the tool's
schema, and this one guards a model call with them.

:func:`recover_tool_calls` turns a finished :class:`~mcode.providers.base.Completion` into one
with real tool calls, or raises a retryable ``malformed_tool_call`` ProviderError when the markup
is there but unusable, so the provider's retry loop asks the model again. :class:`LeakGuard`
does that for a provider's event stream and also stops showing streamed text once a leaked call
begins, so front ends never show raw markup. Both are wire-neutral: any provider may use them.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

from mcode.errors import ProviderError
from mcode.messages import Part, TextPart, ToolCall, ToolSpec
from mcode.providers.base import Completion, ModelEvent, TextDelta, ToolCallStarted
from mcode.providers.classify import hint_for
from mcode.providers.leaked_parse import Malformed, arguments_json, parse_calls
from mcode.providers.leaked_scan import LeakScanner, find_leaked_call

__all__ = ["LeakGuard", "recover_tool_calls"]

_MAX_NAMES = 20  # tool names listed in an error


def _malformed(reason: str) -> ProviderError:
    return ProviderError(
        "the model wrote a tool call as text instead of a real tool call, and it could not be "
        f"used: {reason}",
        kind="malformed_tool_call",
        retryable=True,
        hint=hint_for("malformed_tool_call"),
    )


def recover_tool_calls(completion: Completion, tools: Sequence[ToolSpec]) -> Completion:
    """``completion`` with the tool calls its text holds as markup turned into real ones.

    Returns ``completion`` itself when it already has structured calls, when no tools were
    offered, or when its text holds no leaked call. Otherwise the new message keeps the thinking
    and the text before the markup, carries the calls (fresh ``call_<hex>`` ids, arguments as
    compact JSON coerced by each tool's schema) and finishes with ``tool_calls`` (``length`` and
    ``content_filter`` are kept: the loop treats a cut-off answer's calls with care).

    Raises a retryable ProviderError (kind ``malformed_tool_call``) when the markup cannot be
    parsed or names a tool that does not exist.
    """
    message = completion.message
    if message.tool_calls or not tools:
        return completion
    text = message.text
    start = find_leaked_call(text)
    if start is None:
        return completion
    by_name = {t.name: t for t in tools}
    try:
        parsed = parse_calls(text, start)
    except Malformed as e:
        raise _malformed(str(e)) from None
    calls: list[ToolCall] = []
    for name, args in parsed:
        tool = by_name.get(name)
        if tool is None:
            names = sorted(by_name)
            listed = ", ".join(names[:_MAX_NAMES]) + (", ..." if len(names) > _MAX_NAMES else "")
            raise _malformed(f"it calls {name!r}, which is not one of the tools ({listed})")
        calls.append(ToolCall(f"call_{uuid.uuid4().hex[:24]}", name, arguments_json(tool, args)))
    finish = completion.finish_reason
    if finish not in ("length", "content_filter"):
        finish = "tool_calls"
    return dataclasses.replace(
        completion,
        message=dataclasses.replace(
            message, parts=_text_before(message.parts, start), tool_calls=tuple(calls)
        ),
        finish_reason=finish,
    )


def _text_before(parts: Sequence[Part], cut: int) -> tuple[Part, ...]:
    """``parts`` with the text from offset ``cut`` (in the joined text) on removed; thinking and
    other parts are kept in place. Trailing whitespace before the markup goes too."""
    out: list[Part] = []
    offset = 0
    for part in parts:
        if not isinstance(part, TextPart):
            out.append(part)
            continue
        size = len(part.text)
        if offset < cut:
            out.append(part if offset + size <= cut else TextPart(part.text[: cut - offset]))
        offset += size
    for i in range(len(out) - 1, -1, -1):
        part = out[i]
        if isinstance(part, TextPart):
            stripped = part.text.rstrip()
            if stripped:
                out[i] = TextPart(stripped)
                break
            del out[i]  # nothing but whitespace: look at the text part before it
    return tuple(out)


class LeakGuard:
    """Applies :func:`recover_tool_calls` to one model call's event stream.

    Make one per attempt and pass each event through :meth:`feed`, yielding what it returns.
    ``TextDelta`` text is held back while it might be the start of a leaked call and dropped once
    one has begun, so front ends never show the raw markup; the ``Completion`` is recovered
    (raising a retryable error when the markup is unusable) and preceded by ``ToolCallStarted``
    for each recovered call. Without tools it passes everything through unchanged.
    """

    __slots__ = ("_hidden", "_scanner", "_shown", "_text", "_tools")

    def __init__(self, tools: Sequence[ToolSpec]) -> None:
        self._tools = tuple(tools)
        self._text = ""  # all streamed text so far
        self._shown = 0  # how much of it went out
        self._hidden = False  # a leaked call has begun: show no more
        self._scanner = LeakScanner()

    def feed(self, event: ModelEvent) -> list[ModelEvent]:
        if not self._tools:
            return [event]
        if isinstance(event, TextDelta):
            return self._delta(event.text)
        if isinstance(event, Completion):
            completion = recover_tool_calls(event, self._tools)
            out: list[ModelEvent] = []
            if completion is event:
                # No call after all: what was held back (or hidden) is plain text.
                if self._shown < len(self._text):
                    out.append(TextDelta(self._text[self._shown :]))
                    self._shown = len(self._text)
            else:
                calls = completion.message.tool_calls
                out += [ToolCallStarted(i, c.id, c.name) for i, c in enumerate(calls)]
            out.append(completion)
            return out
        return [event]

    def _delta(self, text: str) -> list[ModelEvent]:
        if self._hidden:
            return []
        self._text += text
        found, pending = self._scanner.scan(self._text, final=False)
        if found is not None:
            end, self._hidden = found, True
        else:
            end = pending if pending is not None else len(self._text)
        if end <= self._shown:
            return []
        shown, self._shown = self._text[self._shown : end], end
        return [TextDelta(shown)]
