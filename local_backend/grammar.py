"""The local model's output format, and the GBNF grammar that makes it impossible to break.

A local model answers in one of two shapes, and nothing else:

    free text ........ any text whose first character is not ``<``
    one tool call .... <tool_call>{"name": "ls", "arguments": {"path": "."}}</tool_call>

The grammar handed to llama.cpp is ``root ::= answer | toolcall`` (or just ``toolcall`` when a
tool is required). ``toolcall`` alternates over the tools: each branch is the tool's name as a
literal followed by a rule generated from that tool's JSON schema, so whatever a sampled call
says is valid JSON, names a tool that exists and has every required argument, with the declared
types. Strings cannot hold raw control characters (``json.loads`` would reject them).

Only the first character decides the branch, which the engine uses: once an answer has started
with something other than ``<`` the grammar can no longer reject anything, so sampling drops it
(scanning the whole vocabulary against a grammar halves the speed of a small model).

The wrapper around the arguments is fixed byte for byte (no optional whitespace), so
:func:`format_tool_call` re-renders a call exactly as it was sampled: history stays a prefix of
the next prompt and the KV cache is reused across turns.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mcode.messages import ToolSpec

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
# The first character of every tool call, and the one character a free-text answer may not
# start with.
TOOL_CALL_MARKER = "<"
_CALL_OPEN = TOOL_CALL_OPEN + '{"name": '
_ARGS_SUFFIX = "}" + TOOL_CALL_CLOSE

# Stricter than llama-cpp-python's built-in ``char`` rule, which lets raw newlines and other
# control characters into strings: valid GBNF, invalid JSON.
_JSON_CHAR_RULE = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'  # noqa: E501

_NAME_RE = re.compile(r'^<tool_call>\{"name": ("(?:[^"\\]|\\.)*")')
_CALL_RE = re.compile(_NAME_RE.pattern + r', "arguments": ')


def tool_call_prefix(name: str) -> str:
    """The fixed text that precedes a call's arguments."""
    return f'{TOOL_CALL_OPEN}{{"name": {json.dumps(name)}, "arguments": '


def format_tool_call(name: str, arguments: str) -> str:
    """Render a call in the output format; ``arguments`` is the raw JSON text (``""`` = ``{}``).

    A call sampled by the local model comes back byte-identical, which keeps the KV cache warm;
    a call made by another model is rendered the same way so the local model can follow it.
    """
    # Unstripped: a sampled call may end its arguments with a space, and must re-render as is.
    return tool_call_prefix(name) + (arguments if arguments.strip() else "{}") + _ARGS_SUFFIX


def parse_tool_call(text: str) -> tuple[str, str] | None:
    """Split a complete tool call into ``(name, raw JSON arguments)``; None if ``text`` is not
    one (for example, a call cut off by the token limit)."""
    m = _CALL_RE.match(text)
    if m is None or not text.endswith(_ARGS_SUFFIX):
        return None
    name = json.loads(m.group(1))
    return name, text[m.end() : -len(_ARGS_SUFFIX)]


def tool_name_so_far(text: str) -> str | None:
    """The tool's name once the model has written all of it (for ``ToolCallStarted``)."""
    m = _NAME_RE.match(text)
    return json.loads(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class ToolGrammar:
    """A compiled-once grammar for one tool set.

    ``allows_text`` is False when the grammar forces a tool call; ``tool_names`` are the tools a
    call may name (the whole set, or the one tool ``tool_choice`` named).
    """

    gbnf: str
    tool_names: tuple[str, ...]
    allows_text: bool


def build_grammar(tools: Sequence[ToolSpec], *, require_tool: bool = False) -> ToolGrammar:
    """The grammar for ``tools``; cached per tool set because converting JSON schemas to GBNF
    costs milliseconds per tool and every step of an agent run sends the same tools.

    Raises ValueError for an empty tool list or a schema llama.cpp cannot express.
    """
    if not tools:
        raise ValueError("a tool grammar needs at least one tool")
    # No sort_keys: property order is part of the grammar (arguments are written in it).
    key = json.dumps([[t.name, t.parameters] for t in tools])
    return _build_cached(key, require_tool)


@functools.lru_cache(maxsize=32)
def _build_cached(key: str, require_tool: bool) -> ToolGrammar:
    from llama_cpp.llama_grammar import SchemaConverter  # lazy: llama_cpp is heavy

    specs: list[list[Any]] = json.loads(key)
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    branches: list[str] = []
    for i, (name, parameters) in enumerate(specs):
        # Rule names come from the index, not the tool name: tool names may hold characters
        # GBNF rule names cannot, and must not collide with our own rules.
        schema = copy.deepcopy(parameters) or {"type": "object", "properties": {}}
        try:
            schema = converter.resolve_refs(schema, f"tool{i}")
            args_rule = converter.visit(schema, f"tool{i}-args")
        except (AssertionError, KeyError, ValueError) as e:
            raise ValueError(
                f"tool {name!r}: its JSON schema cannot be turned into a grammar: {e}"
            ) from e
        literal = _gbnf_literal(tool_call_prefix(name)[len(_CALL_OPEN) :])
        branches.append(f"{literal} {args_rule}")

    rules = converter.format_grammar().splitlines()
    rules = [f"char ::= {_JSON_CHAR_RULE}" if r.startswith("char ::= ") else r for r in rules]
    calls = " | ".join(f"call{i}" for i in range(len(branches)))
    head = [
        "root ::= toolcall" if require_tool else "root ::= answer | toolcall",
        f"answer ::= [^{TOOL_CALL_MARKER}] .*",
        f"toolcall ::= {_gbnf_literal(_CALL_OPEN)} ( {calls} ) {_gbnf_literal(_ARGS_SUFFIX)}",
        *(f"call{i} ::= {b}" for i, b in enumerate(branches)),
    ]
    gbnf = "\n".join(head + rules) + "\n"
    check_grammar(gbnf)
    return ToolGrammar(gbnf, tuple(s[0] for s in specs), allows_text=not require_tool)


# An answer that cannot open a tool call: for tool_choice "none" while tools are in the prompt
# (the model has seen the call format and would otherwise write one as text).
ANSWER_ONLY = ToolGrammar(
    f"root ::= answer\nanswer ::= [^{TOOL_CALL_MARKER}] .*\n", (), allows_text=True
)


def check_grammar(gbnf: str) -> None:
    """Compile ``gbnf`` with llama.cpp's parser (no model needed); raise ValueError carrying the
    parser's own message if it fails."""
    import llama_cpp

    with _captured_stderr() as captured:
        sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf.encode("utf-8"), b"root")
    if not sampler:
        detail = captured.read().strip() or "no detail from llama.cpp"
        raise ValueError(f"llama.cpp rejected the tool grammar: {detail}")
    llama_cpp.llama_sampler_free(sampler)


class _Captured:
    text = ""

    def read(self) -> str:
        return self.text


@contextmanager
def _captured_stderr() -> Iterator[_Captured]:
    """Route file descriptor 2 to a temporary file while llama.cpp's C code writes to it: its
    grammar parser prints errors with fprintf, which would otherwise land on the user's terminal
    (and inside a full-screen TUI)."""
    captured = _Captured()
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.text = tmp.read().decode("utf-8", "replace")


def _gbnf_literal(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'
