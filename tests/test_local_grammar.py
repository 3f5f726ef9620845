"""The local model's output format, grammar and prompt rendering, checked without loading a model
(llama.cpp's grammar parser runs without one; only llama-cpp-python must be installed)."""

from __future__ import annotations

import json

import pytest
from mcode.local_backend.chat_template import (
    Segment,
    conversation,
    describe_tools,
    is_chatml,
    render_chatml,
    render_jinja,
)
from mcode.local_backend.grammar import (
    build_grammar,
    check_grammar,
    format_tool_call,
    parse_tool_call,
    tool_name_so_far,
)

from mcode.errors import ProviderError
from mcode.messages import (
    ImagePart,
    Message,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolSpec,
    user_message,
)

try:
    import llama_cpp  # noqa: F401

    HAVE_LLAMA_CPP = True
except ImportError:
    HAVE_LLAMA_CPP = False

needs_llama_cpp = pytest.mark.skipif(
    not HAVE_LLAMA_CPP, reason="llama-cpp-python is not installed (pip install 'mcode[local]')"
)

TOOLS = [
    ToolSpec(
        "ls",
        "List the files in a directory. Hidden files are skipped.",
        {
            "type": "object",
            "properties": {"path": {"type": "string"}},
        },
    ),
    ToolSpec(
        "read",
        "Read a text file.",
        {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "offset": {"type": "integer"},
                "limit": {"type": "integer"},
            },
            "required": ["path"],
        },
    ),
    ToolSpec(
        "todo",
        "Replace the todo list.",
        {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "string"},
                            "status": {"enum": ["pending", "done"]},
                        },
                        "required": ["text", "status"],
                    },
                }
            },
            "required": ["items"],
        },
    ),
    ToolSpec("mcp__srv.odd-name", "A tool whose name is not a GBNF identifier.", {}),
]


@needs_llama_cpp
def test_grammar_names_every_tool_and_compiles() -> None:
    grammar = build_grammar(TOOLS)
    for tool in TOOLS:
        assert json.dumps(tool.name).replace('"', '\\"') in grammar.gbnf
    assert grammar.tool_names == tuple(t.name for t in TOOLS)
    assert grammar.allows_text
    assert "root ::= answer | toolcall" in grammar.gbnf
    check_grammar(grammar.gbnf)  # raises if llama.cpp's parser rejects it


@needs_llama_cpp
def test_required_grammar_has_no_text_branch() -> None:
    grammar = build_grammar(TOOLS, require_tool=True)
    assert grammar.gbnf.startswith("root ::= toolcall\n")
    assert not grammar.allows_text


@needs_llama_cpp
def test_grammar_is_cached_per_tool_set() -> None:
    assert build_grammar(TOOLS) is build_grammar(list(TOOLS))
    assert build_grammar(TOOLS) is not build_grammar(TOOLS[:2])


@needs_llama_cpp
def test_json_strings_in_the_grammar_refuse_raw_control_characters() -> None:
    # llama-cpp-python's own char rule lets a raw newline into a JSON string: json.loads would
    # then reject the arguments.
    gbnf = build_grammar(TOOLS).gbnf
    char_rule = next(line for line in gbnf.splitlines() if line.startswith("char ::= "))
    assert "\\x00-\\x1F" in char_rule


@needs_llama_cpp
def test_a_broken_grammar_is_reported_with_the_parser_message() -> None:
    with pytest.raises(ValueError, match="Undefined rule identifier 'nowhere'"):
        check_grammar("root ::= nowhere\n")


def test_tool_call_format_round_trips_byte_for_byte() -> None:
    arguments = '{ "path": "src/a b.py", "limit": 3 } '
    text = format_tool_call("read", arguments)
    assert (
        text
        == '<tool_call>{"name": "read", "arguments": { "path": "src/a b.py", "limit": 3 } }</tool_call>'
    )
    assert parse_tool_call(text) == ("read", arguments)
    assert tool_name_so_far(text[:40]) == "read"
    assert tool_name_so_far('<tool_call>{"name": "re') is None
    assert parse_tool_call(text[:-3]) is None  # cut off by the token limit
    assert format_tool_call("ls", "") == '<tool_call>{"name": "ls", "arguments": {}}</tool_call>'


def test_describe_tools_is_one_compact_line_per_tool() -> None:
    text = describe_tools(TOOLS)
    assert "- ls(path?: string): List the files in a directory." in text
    assert "Hidden files" not in text  # only the first sentence
    assert "- read(path: string, offset?: integer, limit?: integer): Read a text file." in text
    assert '- todo(items: {text: string, status: "pending"|"done"}[])' in text
    assert '<tool_call>{"name": "TOOL", "arguments": {...}}</tool_call>' in text
    assert len(text) < 1200


def _history() -> list[Message]:
    call = ToolCall("call_1", "read", '{"path": "a.py"}')
    return [
        user_message("Show me a.py"),
        Message(
            role="assistant",
            parts=(ThinkingPart("the user wants a.py"), TextPart("Reading it.")),
            tool_calls=(call,),
        ),
        Message(
            role="tool", parts=(TextPart("print('hi')\n"),), tool_call_id="call_1", name="read"
        ),
        Message(
            role="tool",
            parts=(TextPart("no such file"),),
            tool_call_id="call_9",
            name="ls",
            is_error=True,
        ),
    ]


def test_chatml_rendering_of_calls_results_and_thinking() -> None:
    segments = render_chatml(conversation("Be brief.", _history(), TOOLS[:1]))
    text = "".join(s.text for s in segments)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    assert (
        "<|im_start|>assistant\nReading it.\n"
        '<tool_call>{"name": "read", "arguments": {"path": "a.py"}}</tool_call><|im_end|>\n'
    ) in text
    assert "<|im_start|>user\nResult of read(path=\"a.py\"):\nprint('hi')<|im_end|>\n" in text
    assert "<|im_start|>user\nError from ls:\nno such file<|im_end|>\n" in text
    assert "the user wants" not in text  # thinking is dropped
    assert text.endswith("<|im_start|>assistant\n")
    # Markup is tokenized as control tokens; conversation text never is.
    assert all(s.special == s.text.startswith("<|im_") for s in segments if s.text)


def test_a_user_image_is_refused_and_a_tool_image_is_noted() -> None:
    image = ImagePart("image/png", "iVBORw0KGgo=", "shot.png")
    with pytest.raises(ProviderError) as info:
        conversation("", [user_message("what is this?", (image,))], [])
    assert info.value.kind == "bad_request" and not info.value.retryable
    assert "no image input" in str(info.value)
    result = Message(
        role="tool", parts=(TextPart("a picture"), image), tool_call_id="c", name="read"
    )
    turns = conversation("", [result], [])
    assert "[image omitted" in turns[-1][1]


def test_long_tool_results_are_clipped_the_same_way_every_time() -> None:
    big = Message(role="tool", parts=(TextPart("x" * 50_000),), tool_call_id="c", name="bash")
    first = conversation("", [big], [])[-1][1]
    assert len(first) < 7000 and "characters cut" in first
    assert conversation("", [big], [])[-1][1] == first


def test_empty_system_prompt_gets_a_default() -> None:
    assert conversation("", [user_message("hi")], [])[0] == (
        "system",
        "You are a helpful assistant.",
    )


def test_non_chatml_templates_render_with_jinja() -> None:
    template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('no system role') }}{% endif %}"
        "[{{ m['role'] }}]{{ m['content'] }}{{ eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    assert not is_chatml(template) and is_chatml(None) and is_chatml("<|im_start|>")
    turns = conversation("Sys.", [user_message("a"), user_message("b")], [])
    (segment,) = render_jinja(template, turns, bos_token="<s>", eos_token="</s>")
    # The system prompt folds into the first user turn; consecutive user turns merge.
    assert segment == Segment("[user]Sys.\n\na\n\nb</s>[assistant]", special=True)
