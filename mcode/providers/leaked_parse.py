"""Reading a leaked tool call's markup: each call's name and its arguments, typed by the tool's
schema.

The three forms (see :mod:`.leaked`): MiniMax ``<minimax:tool_call><invoke name=...>``, Hermes
JSON in ``<tool_call>`` and Qwen3-Coder ``<tool_call><function=...>``. :func:`parse_calls` reads
the block at a position :mod:`.leaked_scan` found and any blocks directly after it, raising
:class:`Malformed` (with the reason) for markup that is a call but cannot be used.
:func:`arguments_json` types XML-form values, which are raw text, by the tool's JSON schema
(integer, number, boolean from their text; array and object as JSON); strings are kept verbatim
but for one leading and one trailing newline, as MiniMax's own parser does.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from mcode.messages import ToolSpec
from mcode.providers.leaked_scan import CLOSER, MINIMAX_OPEN, OPENERS, TOOL_CALL_OPEN

__all__ = ["Malformed", "arguments_json", "parse_calls"]

_SPACE = re.compile(r"\s*")
_ATTR = r"\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))\s*>"
_INVOKE = re.compile(r"<invoke\s+name" + _ATTR)
_MINIMAX_PARAM = re.compile(r"<parameter\s+name" + _ATTR)
_FUNCTION = re.compile(r"<function\s*=\s*([^>\s]+)\s*>")
_QWEN_PARAM = re.compile(r"<parameter\s*=\s*([^>]+?)\s*>")


class Malformed(Exception):
    """The markup is a call but cannot be used; the text says why."""


def parse_calls(text: str, start: int) -> list[tuple[str, dict[str, Any]]]:
    """``(name, arguments)`` of every call in the markup from ``start``: that block and any
    blocks directly after it (text after the last one is dropped). XML-form arguments are raw
    strings per parameter; a JSON-form call's arguments are already typed."""
    calls: list[tuple[str, dict[str, Any]]] = []
    pos: int | None = start
    while pos is not None:
        end = _parse_block(text, pos, calls)
        after = _skip_space(text, end)
        pos = after if text.startswith(OPENERS, after) else None
    return calls


def _skip_space(text: str, i: int) -> int:
    m = _SPACE.match(text, i)
    return m.end() if m else i


def _parse_block(text: str, pos: int, calls: list[tuple[str, dict[str, Any]]]) -> int:
    """Parse the block opening at ``pos`` into ``calls``; return where the block ends."""
    tag = MINIMAX_OPEN if text.startswith(MINIMAX_OPEN, pos) else TOOL_CALL_OPEN
    closer = CLOSER[tag]
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
            raise Malformed(f"{what} {name!r} has no closing {closer}")
        out.append((name, segment[:close]))
    return out


def _params(tool: str, inner: str, opener: re.Pattern[str]) -> dict[str, Any]:
    params = _sections(inner, opener, "</parameter>", "parameter")
    if not params and inner.strip():
        raise Malformed(f"the parameters of {tool!r} are not in the form the call uses")
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
        raise Malformed(f'no <invoke name="..."> inside {MINIMAX_OPEN}')
    return [(name, _params(name, inner, _MINIMAX_PARAM)) for name, inner in invokes]


def _parse_qwen_xml(body: str) -> list[tuple[str, dict[str, Any]]]:
    functions = _sections(body, _FUNCTION, "</function>", "the call to")
    if not functions:
        raise Malformed(f"no <function=NAME> inside {TOOL_CALL_OPEN}")
    return [(name, _params(name, inner, _QWEN_PARAM)) for name, inner in functions]


def _parse_json_call(body: str) -> list[tuple[str, dict[str, Any]]]:
    text = body.strip()
    try:
        value, _ = json.JSONDecoder().raw_decode(text)  # trailing junk after the object is ignored
    except json.JSONDecodeError as e:
        value = _close_json(text)
        if value is None:
            raise Malformed(
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
            raise Malformed(f"{TOOL_CALL_OPEN} holds JSON that is not a call object")
        fn = item["function"] if isinstance(item.get("function"), dict) else item
        name = fn.get("name")
        args = fn.get("arguments", fn.get("parameters", {}))
        if not isinstance(name, str) or not name:
            raise Malformed(f'the JSON inside {TOOL_CALL_OPEN} has no "name"')
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as e:
                raise Malformed(f"the arguments of {name!r} are not valid JSON ({e.msg})") from None
        if not isinstance(args, dict):
            raise Malformed(f"the arguments of {name!r} are not a JSON object")
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


def arguments_json(tool: ToolSpec, args: dict[str, Any]) -> str:
    props = tool.parameters.get("properties") or {}
    typed = {
        key: _coerce(value, props.get(key)) if isinstance(value, str) else value
        for key, value in args.items()
    }
    return json.dumps(typed, ensure_ascii=False, separators=(",", ":"))
