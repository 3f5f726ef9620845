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

Parameter values in the XML forms are raw text: they are coerced by the tool's JSON schema
(integer, number, boolean from their text; array and object as JSON) and strings are kept
verbatim but for one leading and one trailing newline, as MiniMax's own parser does.

:func:`recover_tool_calls` turns a finished :class:`~mcode.providers.base.Completion` into one
with real tool calls, or raises a retryable ``malformed_tool_call`` ProviderError when the markup
is there but unusable, so the provider's retry loop asks the model again. :class:`LeakGuard`
does that for a provider's event stream and also stops showing streamed text once a leaked call
begins, so front ends never show raw markup. Both are wire-neutral: any provider may use them.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from mcode.errors import ProviderError
from mcode.messages import Part, TextPart, ToolCall, ToolSpec
from mcode.providers.base import Completion, ModelEvent, TextDelta, ToolCallStarted
from mcode.providers.classify import hint_for

__all__ = ["LeakGuard", "find_leaked_call", "recover_tool_calls"]

MINIMAX_OPEN, MINIMAX_CLOSE = "<minimax:tool_call>", "</minimax:tool_call>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
_OPENERS = (MINIMAX_OPEN, TOOL_CALL_OPEN)
_CLOSER = {MINIMAX_OPEN: MINIMAX_CLOSE, TOOL_CALL_OPEN: TOOL_CALL_CLOSE}
# What must follow an opening tag that is not at the start of a line for it to count as a call:
# "Use <tool_call> tags" in prose is not one, "Reading it now.<tool_call>{..." is.
_INNER_STARTS = {MINIMAX_OPEN: ("<invoke",), TOOL_CALL_OPEN: ("{", "<function=")}

_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")
_BACKTICKS = re.compile(r"`+")
_SPACE = re.compile(r"\s*")
_ATTR = r"\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))\s*>"
_INVOKE = re.compile(r"<invoke\s+name" + _ATTR)
_MINIMAX_PARAM = re.compile(r"<parameter\s+name" + _ATTR)
_FUNCTION = re.compile(r"<function\s*=\s*([^>\s]+)\s*>")
_QWEN_PARAM = re.compile(r"<parameter\s*=\s*([^>]+?)\s*>")
_MAX_NAMES = 20  # tool names listed in an error


# ----------------------------------------------------------------------------- finding markup


class _Scanner:
    """Finds the first top-level opening tag of a leaked call in a text that may still grow.

    Works line by line, keeping the code-fence state of the lines already passed, so a streamed
    answer is scanned once, not once per chunk. :meth:`scan` returns ``(found, pending)``:
    ``found`` is where a call's markup starts; ``pending`` is where text *might* become markup
    once more of it arrives (a partial tag at the end, a tag whose inside has not arrived yet).
    With ``final`` the text is complete and nothing is pending.
    """

    __slots__ = ("fence", "pos")

    def __init__(self) -> None:
        self.pos = 0  # start of the first line not yet passed
        self.fence = ""  # the open code fence ("```", "~~~~"), "" outside one

    def scan(self, text: str, *, final: bool) -> tuple[int | None, int | None]:
        n = len(text)
        while self.pos < n:
            start = self.pos
            nl = text.find("\n", start)
            end = nl if nl >= 0 else n
            complete = nl >= 0 or final
            line = text[start:end]
            fence = _FENCE.match(line)
            if self.fence:
                if not complete:
                    return None, None  # inside a fence nothing is a call, whatever follows
                if (
                    fence
                    and fence.group(1)[0] == self.fence[0]
                    and len(fence.group(1)) >= len(self.fence)
                    and not line[fence.end() :].strip()
                ):
                    self.fence = ""
            elif fence:
                if not complete:
                    return None, None
                self.fence = fence.group(1)
            else:
                found, pending = _scan_line(text, start, end, complete=complete, final=final)
                if found is not None or pending is not None:
                    return found, pending
            if nl < 0:
                return None, None  # the last line, not passed: it may still grow
            self.pos = nl + 1
        return None, None


def _scan_line(
    text: str, start: int, end: int, *, complete: bool, final: bool
) -> tuple[int | None, int | None]:
    line = text[start:end]
    if "<" not in line:
        return None, None
    spans, unclosed = _code_spans(line)
    hits = sorted((i, tag) for tag in _OPENERS for i in _find_all(line, tag))
    for i, tag in hits:
        if any(a <= i < b for a, b in spans):
            continue
        p = start + i
        if unclosed is not None and unclosed < i and not complete:
            return None, p  # may be inside an inline code span that closes later
        if not line[:i].strip():
            return p, None
        inner = _inner_state(tag, text[p + len(tag) :], final=final)
        if inner == "yes":
            return p, None
        if inner == "maybe":
            return None, p
    if not complete:
        # A proper prefix of an opening tag at the very end: hold it until it is decided.
        for tag in _OPENERS:
            for k in range(min(len(tag) - 1, len(line)), 0, -1):
                if line.endswith(tag[:k]):
                    i = len(line) - k
                    if not any(a <= i < b for a, b in spans):
                        return None, start + i
                    break
    return None, None


def _find_all(s: str, sub: str) -> Iterable[int]:
    i = s.find(sub)
    while i >= 0:
        yield i
        i = s.find(sub, i + 1)


def _code_spans(line: str) -> tuple[list[tuple[int, int]], int | None]:
    """Inline code spans of one line (a backtick run closed by the next run of the same length,
    as in CommonMark) and the position of the first run left unclosed, if any."""
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(line)]
    spans: list[tuple[int, int]] = []
    unclosed: int | None = None
    i = 0
    while i < len(runs):
        a, b = runs[i]
        for j in range(i + 1, len(runs)):
            if runs[j][1] - runs[j][0] == b - a:
                spans.append((a, runs[j][1]))
                i = j + 1
                break
        else:
            if unclosed is None:
                unclosed = a
            i += 1
    return spans, unclosed


def _inner_state(tag: str, rest: str, *, final: bool) -> str:
    """Whether what follows an opening tag looks like that form's call: yes, no, or maybe
    (not enough text yet)."""
    s = rest.lstrip()
    for head in _INNER_STARTS[tag]:
        if s.startswith(head):
            return "yes"
        if not final and head.startswith(s):
            return "maybe"
    return "no"


def find_leaked_call(text: str) -> int | None:
    """Where the first leaked tool call's markup starts in a complete answer ``text``, or None.

    Only markup at the top level counts: an opening tag outside code fences and inline code
    spans, at the start of a line or directly followed by the form's inside (``<invoke``, ``{``
    or ``<function=``)."""
    if "<" not in text:
        return None
    return _Scanner().scan(text, final=True)[0]


# ----------------------------------------------------------------------------- parsing


class _Malformed(Exception):
    """The markup is a call but cannot be used; the text says why."""


def _malformed(reason: str) -> ProviderError:
    return ProviderError(
        "the model wrote a tool call as text instead of a real tool call, and it could not be "
        f"used: {reason}",
        kind="malformed_tool_call",
        retryable=True,
        hint=hint_for("malformed_tool_call"),
    )


def _parse_blocks(text: str, start: int) -> list[tuple[str, dict[str, Any]]]:
    """``(name, arguments)`` of every call in the markup from ``start``: that block and any
    blocks directly after it (text after the last one is dropped). XML-form arguments are raw
    strings per parameter; a JSON-form call's arguments are already typed."""
    calls: list[tuple[str, dict[str, Any]]] = []
    pos: int | None = start
    while pos is not None:
        end = _parse_block(text, pos, calls)
        after = _skip_space(text, end)
        pos = after if text.startswith(_OPENERS, after) else None
    return calls


def _skip_space(text: str, i: int) -> int:
    m = _SPACE.match(text, i)
    return m.end() if m else i


def _parse_block(text: str, pos: int, calls: list[tuple[str, dict[str, Any]]]) -> int:
    """Parse the block opening at ``pos`` into ``calls``; return where the block ends."""
    tag = MINIMAX_OPEN if text.startswith(MINIMAX_OPEN, pos) else TOOL_CALL_OPEN
    closer = _CLOSER[tag]
    body_start = pos + len(tag)
    if tag == TOOL_CALL_OPEN:
        json_at = _skip_space(text, body_start)
        if text.startswith(("{", "["), json_at):
            # The JSON decoder finds the object's end itself, so a string argument holding
            # "</tool_call>" (say, docs about this very format) does not cut the call short.
            try:
                value, end = json.JSONDecoder().raw_decode(text, json_at)
            except json.JSONDecodeError:
                pass  # the bounded body below gets a repair attempt and a precise error
            else:
                calls += _json_calls(value)
                after = _skip_space(text, end)
                return after + len(closer) if text.startswith(closer, after) else end
    close = text.find(closer, body_start)
    again = text.find(tag, body_start)  # the next block, when this one was never closed
    body_end = min(i for i in (close, again, len(text)) if i >= 0)
    body = text[body_start:body_end]
    if tag == MINIMAX_OPEN:
        calls += _parse_minimax(body)
    elif body.lstrip().startswith("<function"):
        calls += _parse_qwen_xml(body)
    else:
        calls += _parse_json_call(body)
    return body_end + len(closer) if body_end == close else body_end


def _group(m: re.Match[str]) -> str:
    return next(g for g in m.groups() if g is not None)


def _sections(body: str, opener: re.Pattern[str], closer: str, what: str) -> list[tuple[str, str]]:
    """``(name, inner)`` for each ``opener`` in ``body``. An element's inner text ends at the
    *last* ``closer`` before the next opener, so a value that itself contains the closing tag
    (a file with ``</parameter>`` in it) survives."""
    opens = list(opener.finditer(body))
    out: list[tuple[str, str]] = []
    for k, m in enumerate(opens):
        stop = opens[k + 1].start() if k + 1 < len(opens) else len(body)
        segment = body[m.end() : stop]
        close = segment.rfind(closer)
        name = _group(m).strip()
        if close < 0:
            raise _Malformed(f"{what} {name!r} has no closing {closer}")
        out.append((name, segment[:close]))
    return out


def _params(tool: str, inner: str, opener: re.Pattern[str]) -> dict[str, Any]:
    params = _sections(inner, opener, "</parameter>", "parameter")
    if not params and inner.strip():
        raise _Malformed(f"the parameters of {tool!r} are not in the form the call uses")
    return {name: _strip_newline(value) for name, value in params}


def _strip_newline(value: str) -> str:
    # Exactly one on each side: the template puts the value on its own lines; any more newlines
    # (or other whitespace) are part of the value, e.g. a file's content.
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def _parse_minimax(body: str) -> list[tuple[str, dict[str, Any]]]:
    invokes = _sections(body, _INVOKE, "</invoke>", "the call to")
    if not invokes:
        raise _Malformed(f'no <invoke name="..."> inside {MINIMAX_OPEN}')
    return [(name, _params(name, inner, _MINIMAX_PARAM)) for name, inner in invokes]


def _parse_qwen_xml(body: str) -> list[tuple[str, dict[str, Any]]]:
    functions = _sections(body, _FUNCTION, "</function>", "the call to")
    if not functions:
        raise _Malformed(f"no <function=NAME> inside {TOOL_CALL_OPEN}")
    return [(name, _params(name, inner, _QWEN_PARAM)) for name, inner in functions]


def _parse_json_call(body: str) -> list[tuple[str, dict[str, Any]]]:
    text = body.strip()
    try:
        value, _ = json.JSONDecoder().raw_decode(text)  # trailing junk after the object is ignored
    except json.JSONDecodeError as e:
        value = _close_json(text)
        if value is None:
            raise _Malformed(
                f"the JSON inside {TOOL_CALL_OPEN} is not valid ({e.msg} at character {e.pos})"
            ) from None
    return _json_calls(value)


def _json_calls(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """Calls from a Hermes-style object (``{"name", "arguments"}``; ``parameters`` and an
    OpenAI-style ``function`` wrapper are accepted too) or a list of them."""
    items = value if isinstance(value, list) else [value]
    calls: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if not isinstance(item, dict):
            raise _Malformed(f"{TOOL_CALL_OPEN} holds JSON that is not a call object")
        fn = item["function"] if isinstance(item.get("function"), dict) else item
        name = fn.get("name")
        args = fn.get("arguments", fn.get("parameters", {}))
        if not isinstance(name, str) or not name:
            raise _Malformed(f'the JSON inside {TOOL_CALL_OPEN} has no "name"')
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as e:
                raise _Malformed(
                    f"the arguments of {name!r} are not valid JSON ({e.msg})"
                ) from None
        if not isinstance(args, dict):
            raise _Malformed(f"the arguments of {name!r} are not a JSON object")
        calls.append((name, args))
    return calls


def _close_json(text: str) -> Any:
    # The usual slip: the final brace(s) left off, often because the model stopped right there.
    for suffix in ("}", "}}", '"}}'):
        try:
            return json.loads(text + suffix)
        except json.JSONDecodeError:
            continue
    return None


# ----------------------------------------------------------------------------- schema coercion


def _types(schema: Any) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    t = schema.get("type")
    types = {t} if isinstance(t, str) else {x for x in t if isinstance(x, str)} if t else set()
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key) or ():
            types |= _types(sub)
    return types


def _coerce(value: str, schema: Any) -> Any:
    """A raw text value as the type its schema asks for. Strings (and values whose schema allows
    a string or says nothing) stay verbatim; a value that does not read as its type stays text,
    so the tool's argument check tells the model precisely what was wrong."""
    types = _types(schema)
    if not types or "string" in types:
        return value
    text = value.strip()
    if "null" in types and text == "null":
        return None
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            try:
                f = float(text)
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
    if "number" in types:
        try:
            number = json.loads(text)
            if isinstance(number, int | float) and not isinstance(number, bool):
                return number
        except json.JSONDecodeError:
            pass
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if types & {"array", "object"}:
        wanted = tuple(t for name, t in (("array", list), ("object", dict)) if name in types)
        for parse in (json.loads, ast.literal_eval):  # literal_eval: ['a', 'b'] with quotes '
            try:
                parsed = parse(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(parsed, wanted):
                return parsed
    return value


def _arguments(tool: ToolSpec, args: dict[str, Any]) -> str:
    props = tool.parameters.get("properties") or {}
    typed = {
        key: _coerce(value, props.get(key)) if isinstance(value, str) else value
        for key, value in args.items()
    }
    return json.dumps(typed, ensure_ascii=False, separators=(",", ":"))


# ----------------------------------------------------------------------------- the API


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
        parsed = _parse_blocks(text, start)
    except _Malformed as e:
        raise _malformed(str(e)) from None
    calls: list[ToolCall] = []
    for name, args in parsed:
        tool = by_name.get(name)
        if tool is None:
            names = sorted(by_name)
            listed = ", ".join(names[:_MAX_NAMES]) + (", ..." if len(names) > _MAX_NAMES else "")
            raise _malformed(f"it calls {name!r}, which is not one of the tools ({listed})")
        calls.append(ToolCall(f"call_{uuid.uuid4().hex[:24]}", name, _arguments(tool, args)))
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
        self._scanner = _Scanner()

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
