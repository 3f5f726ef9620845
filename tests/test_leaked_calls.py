"""Tool calls written into the answer text (mcode/providers/leaked*.py): the three forms, schema
coercion, what is left alone, the retry when the markup is unusable, and the whole path from a
scripted model's leaked call to a tool result in `mcode exec`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, exec_args, make_repo, mcode, tool_messages
from model_server import ScriptedServer
from provider_helpers import FAST, stream_all

from mcode.errors import ProviderError
from mcode.messages import Message, TextPart, ThinkingPart, ToolCall, ToolSpec, Usage, user_message
from mcode.providers.base import (
    Completion,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    Retrying,
    TextDelta,
    ToolCallStarted,
)
from mcode.providers.leaked import LeakGuard, recover_tool_calls
from mcode.providers.leaked_scan import find_leaked_call
from mcode.providers.openai import OpenAIOptions, OpenAIProvider

READ = ToolSpec(
    "read",
    "Read a file.",
    {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "offset": {"type": "integer"},
            "limit": {"type": ["integer", "null"]},
        },
        "required": ["path"],
    },
)
WRITE = ToolSpec(
    "write",
    "Write a file.",
    {
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
    },
)
GREP = ToolSpec(
    "grep",
    "Search.",
    {
        "type": "object",
        "properties": {
            "pattern": {"type": "string"},
            "paths": {"type": "array", "items": {"type": "string"}},
            "ignore_case": {"type": "boolean"},
            "context": {"type": "number"},
            "options": {"type": "object"},
        },
    },
)
TOOLS = [READ, WRITE, GREP]

MINIMAX_READ = (
    "<minimax:tool_call>\n"
    '<invoke name="read">\n'
    '<parameter name="path">a.py</parameter>\n'
    "</invoke>\n"
    "</minimax:tool_call>"
)


def completion(text: str, *, thinking: str = "", finish: str = "stop", calls=()) -> Completion:
    parts: tuple[Any, ...] = (ThinkingPart(thinking),) if thinking else ()
    message = Message("assistant", (*parts, TextPart(text)), tool_calls=tuple(calls))
    return Completion(message, Usage(), finish)


def recovered(text: str, **kw: Any) -> Completion:
    out = recover_tool_calls(completion(text, **kw), TOOLS)
    assert out.message.tool_calls, "no call recovered"
    return out


def args(c: Completion, i: int = 0) -> dict[str, Any]:
    return json.loads(c.message.tool_calls[i].arguments)


def malformed(text: str) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        recover_tool_calls(completion(text), TOOLS)
    err = info.value
    assert err.kind == "malformed_tool_call" and err.retryable
    assert "as text" in err.message and "kept writing tool calls as plain text" in err.hint
    return err


# ------------------------------------------------------------------ the three forms


def test_minimax_call_keeps_text_before_and_thinking() -> None:
    c = recovered("Let me look at it.\n\n" + MINIMAX_READ, thinking="The user wants a.py.")
    msg = c.message
    assert c.finish_reason == "tool_calls"
    assert msg.text == "Let me look at it." and msg.thinking == "The user wants a.py."
    assert isinstance(msg.parts[0], ThinkingPart)  # order kept
    (call,) = msg.tool_calls
    assert call.name == "read" and call.arguments == '{"path":"a.py"}'
    assert call.id.startswith("call_") and int(call.id[5:], 16) >= 0


def test_minimax_several_invokes_and_multiline_values() -> None:
    content = "def f():\n    return 1\n\n"  # its own trailing blank line must survive
    text = (
        "<minimax:tool_call>\n"
        '<invoke name="write">\n'
        '<parameter name="path">f.py</parameter>\n'
        f'<parameter name="content">\n{content}\n</parameter>\n'
        "</invoke>\n"
        "<invoke name='read'>\n"
        "<parameter name=path>f.py</parameter>\n"
        "</invoke>\n"
        "</minimax:tool_call>"
    )
    c = recovered(text)
    assert [t.name for t in c.message.tool_calls] == ["write", "read"]
    assert args(c, 0) == {"path": "f.py", "content": content}
    assert args(c, 1) == {"path": "f.py"}
    assert c.message.text == "" and len({t.id for t in c.message.tool_calls}) == 2


def test_a_value_holding_the_closing_parameter_tag_survives() -> None:
    # MiniMax's known failure: a literal </parameter> inside a value.
    content = "<parameter>x</parameter>\ntail"
    text = (
        '<minimax:tool_call>\n<invoke name="write">\n<parameter name="path">p.xml</parameter>\n'
        f'<parameter name="content">{content}</parameter>\n</invoke>\n</minimax:tool_call>'
    )
    assert args(recovered(text)) == {"path": "p.xml", "content": content}


def test_hermes_json_form() -> None:
    c = recovered(
        'Checking.\n<tool_call>\n{"name": "read", "arguments": {"path": "a.py"}}\n</tool_call>'
    )
    assert c.message.text == "Checking." and args(c) == {"path": "a.py"}
    # arguments as a JSON string, "parameters" instead of "arguments", a closing tag in a value
    c = recovered(
        '<tool_call>{"name": "read", "arguments": "{\\"path\\": \\"b.py\\"}"}</tool_call>'
    )
    assert args(c) == {"path": "b.py"}
    c = recovered('<tool_call>{"name": "read", "parameters": {"path": "c.py"}}</tool_call>')
    assert args(c) == {"path": "c.py"}
    doc = "use </tool_call> to end"
    c = recovered(
        '<tool_call>{"name": "write", "arguments": {"path": "d.md", "content": "'
        + doc
        + '"}}</tool_call>'
    )
    assert args(c) == {"path": "d.md", "content": doc}


def test_qwen3_coder_form() -> None:
    text = (
        "<tool_call>\n<function=read>\n<parameter=path>\na.py\n</parameter>\n"
        "<parameter=offset>\n20\n</parameter>\n</function>\n</tool_call>"
    )
    assert args(recovered(text)) == {"path": "a.py", "offset": 20}


def test_consecutive_blocks_and_text_after_them() -> None:
    text = (
        '<tool_call>{"name": "read", "arguments": {"path": "a"}}</tool_call>\n'
        '<tool_call>{"name": "read", "arguments": {"path": "b"}}</tool_call>\n'
        "I will wait for the results."
    )
    c = recovered(text)
    assert [args(c, i)["path"] for i in range(2)] == ["a", "b"]
    assert c.message.text == ""  # only text *before* the markup is kept


def test_a_missing_closing_wrapper_is_tolerated() -> None:
    # Servers that stop on the wrapper's closing tag drop it from the text.
    c = recovered(MINIMAX_READ.removesuffix("</minimax:tool_call>"))
    assert args(c) == {"path": "a.py"}
    c = recovered('<tool_call>{"name": "read", "arguments": {"path": "a"}}')
    assert args(c) == {"path": "a"}


# ------------------------------------------------------------------ schema coercion


def test_values_are_coerced_by_the_schema() -> None:
    text = (
        "<minimax:tool_call>\n"
        '<invoke name="grep">\n'
        '<parameter name="pattern">007</parameter>\n'
        '<parameter name="paths">["src", "tests"]</parameter>\n'
        '<parameter name="ignore_case">True</parameter>\n'
        '<parameter name="context">2.5</parameter>\n'
        '<parameter name="options">{"max": 3}</parameter>\n'
        "</invoke>\n"
        '<invoke name="read">\n'
        '<parameter name="path">true</parameter>\n'
        '<parameter name="offset"> 12 </parameter>\n'
        '<parameter name="limit">null</parameter>\n'
        "</invoke>\n"
        "</minimax:tool_call>"
    )
    c = recovered(text)
    assert args(c, 0) == {
        "pattern": "007",  # a string stays verbatim
        "paths": ["src", "tests"],
        "ignore_case": True,
        "context": 2.5,
        "options": {"max": 3},
    }
    assert args(c, 1) == {"path": "true", "offset": 12, "limit": None}


def test_values_that_do_not_read_as_their_type_stay_text() -> None:
    # The tool's own argument check then tells the model exactly what was wrong.
    text = (
        '<minimax:tool_call>\n<invoke name="grep">\n'
        "<parameter name=\"paths\">['a', 'b']</parameter>\n"  # Python literal: accepted
        '<parameter name="ignore_case">maybe</parameter>\n'
        '<parameter name="context">lots</parameter>\n'
        "</invoke>\n</minimax:tool_call>"
    )
    assert args(recovered(text)) == {"paths": ["a", "b"], "ignore_case": "maybe", "context": "lots"}
    hermes = '<tool_call>{"name": "read", "arguments": {"path": "a", "offset": "7"}}</tool_call>'
    assert args(recovered(hermes)) == {"path": "a", "offset": 7}


# ------------------------------------------------------------------ left alone


@pytest.mark.parametrize(
    "text",
    [
        "MiniMax writes `<minimax:tool_call>` blocks when its parser is off.",
        "Like this:\n```xml\n" + MINIMAX_READ + "\n```\nThat is the format.",
        '~~~\n<tool_call>{"name": "read"}</tool_call>\n~~~',
        "Wrap calls in <tool_call> tags, then the JSON.",
        "Plain answer with a < b and no tags at all.",
        "",
    ],
    ids=["inline-code", "fence", "tilde-fence", "prose", "plain", "empty"],
)
def test_mentions_are_not_calls(text: str) -> None:
    c = completion(text)
    assert recover_tool_calls(c, TOOLS) is c
    assert find_leaked_call(text) is None


def test_markup_after_a_closed_fence_is_a_call() -> None:
    text = "```\n<tool_call> in a fence\n```\n" + MINIMAX_READ
    assert args(recovered(text)) == {"path": "a.py"}
    assert recovered(text).message.text == "```\n<tool_call> in a fence\n```"


def test_markup_in_the_middle_of_a_line() -> None:
    assert recovered("Reading now." + MINIMAX_READ).message.text == "Reading now."


def test_structured_calls_and_no_tools_leave_the_completion_alone() -> None:
    c = completion(MINIMAX_READ, calls=[ToolCall("c1", "read", "{}")])
    assert recover_tool_calls(c, TOOLS) is c
    c = completion(MINIMAX_READ)
    assert recover_tool_calls(c, []) is c


def test_cut_off_answer_keeps_its_finish_reason() -> None:
    assert recovered(MINIMAX_READ, finish="length").finish_reason == "length"


# ------------------------------------------------------------------ unusable markup


def test_unknown_tool_is_a_retryable_error() -> None:
    err = malformed(MINIMAX_READ.replace('"read"', '"open_file"'))
    assert "'open_file'" in err.message and "(grep, read, write)" in err.message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            '<minimax:tool_call>\n<invoke name="read">\n<parameter name="path">a\n</invoke>',
            "parameter 'path' has no closing </parameter>",
        ),
        (
            '<minimax:tool_call>\n<invoke name="read">\n<parameter name="path">a</parameter>\n',
            "call to 'read' has no closing </invoke>",
        ),
        ("<minimax:tool_call>\n<call>read a.py</call>\n</minimax:tool_call>", "<invoke"),
        (
            '<minimax:tool_call>\n<invoke name="read">\n<parameter=path>a</parameter>\n</invoke>',
            "parameters",
        ),
        ('<tool_call>\n{"name": "read", "arguments": {"path": [}}\n</tool_call>', "not valid"),
        ('<tool_call>\n{"arguments": {"path": "a"}}\n</tool_call>', '"name"'),
        (
            "<tool_call>\n<function=read>\n<parameter=path>a\n</function>\n</tool_call>",
            "</parameter>",
        ),
    ],
    ids=[
        "unclosed-param",
        "unclosed-invoke",
        "no-invoke",
        "wrong-params",
        "bad-json",
        "no-name",
        "qwen-unclosed",
    ],
)
def test_unparsable_markup_is_a_retryable_error(text: str, why: str) -> None:
    assert why in malformed(text).message


# ------------------------------------------------------------------ streaming


@pytest.mark.parametrize("size", [1, 2, 5, 13, 64])
def test_streamed_markup_is_never_shown(size: int) -> None:
    text = "Let me read.\n" + MINIMAX_READ
    guard = LeakGuard(TOOLS)
    shown: list[str] = []
    for i in range(0, len(text), size):
        shown += [
            e.text for e in guard.feed(TextDelta(text[i : i + size])) if isinstance(e, TextDelta)
        ]
    last = guard.feed(completion(text))
    assert "".join(shown) == "Let me read.\n"
    assert [type(e) for e in last] == [ToolCallStarted, Completion]
    assert last[0].name == "read" and last[0].id == last[1].message.tool_calls[0].id


@pytest.mark.parametrize("size", [1, 3, 64])
def test_streamed_text_without_a_call_is_shown_in_full(size: int) -> None:
    text = "a < b, `<tool_call>` and <tool_call> tags\n```\n<tool_call>{}\n```\nends with <"
    guard = LeakGuard(TOOLS)
    shown: list[str] = []
    for i in range(0, len(text), size):
        shown += [
            e.text for e in guard.feed(TextDelta(text[i : i + size])) if isinstance(e, TextDelta)
        ]
    last = guard.feed(completion(text))
    shown += [e.text for e in last if isinstance(e, TextDelta)]
    assert "".join(shown) == text and isinstance(last[-1], Completion)


# ------------------------------------------------------------------ through OpenAIProvider


def stream(server: ScriptedServer, *, streaming: bool = True) -> list[ModelEvent]:
    p = OpenAIProvider(
        model="MiniMax-M3",
        base_url=server.base_url,
        api_key="k",
        info=ModelInfo("minimax", "MiniMax-M3", 1_000_000),
        network=FAST,
        options=OpenAIOptions(stream=streaming),
    )
    req = ModelRequest("MiniMax-M3", "", [user_message("read a.py")], tools=TOOLS)
    return stream_all(p, req)


@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "json"])
def test_provider_turns_a_leaked_minimax_call_into_a_tool_call(model_server, streaming) -> None:
    server = model_server(
        [{"text": "Reading it.\n" + MINIMAX_READ, "thinking": "ok"}], chunk_size=7
    )
    events = stream(server, streaming=streaming)
    done = events[-1]
    assert isinstance(done, Completion) and done.finish_reason == "tool_calls"
    (call,) = done.message.tool_calls
    assert (call.name, call.arguments) == ("read", '{"path":"a.py"}')
    assert done.message.text == "Reading it." and done.message.thinking == "ok"
    shown = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "<" not in shown
    assert [e.name for e in events if isinstance(e, ToolCallStarted)] == ["read"]


def test_provider_retries_unusable_markup_and_returns_the_next_answer(model_server) -> None:
    bad = MINIMAX_READ.replace('"read"', '"cat"')
    server = model_server([{"text": bad}, {"text": "Reading.\n" + MINIMAX_READ}])
    events = stream(server)
    retries = [e for e in events if isinstance(e, Retrying)]
    assert [r.kind for r in retries] == ["malformed_tool_call"] and "'cat'" in retries[0].reason
    done = events[-1]
    assert isinstance(done, Completion) and done.message.tool_calls[0].name == "read"
    assert len(server.requests) == 2


def test_provider_gives_up_saying_the_model_kept_writing_calls_as_text(model_server) -> None:
    bad = '<tool_call>{"name": "read", "arguments": {"path": [}}</tool_call>'
    server = model_server([{"text": bad}] * 3)
    with pytest.raises(ProviderError) as info:
        stream(server)
    err = info.value
    assert err.kind == "malformed_tool_call" and len(server.requests) == 3
    assert "gave up after 3 attempts" in err.message
    assert "kept writing tool calls as plain text" in str(err)


# ------------------------------------------------------------------ mcode exec, end to end


def test_exec_runs_a_leaked_read_call(model_server, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": "def add(a, b):\n    return a - b\n"})
    leaked = (
        "I'll read the file first.\n"
        "<minimax:tool_call>\n"
        '<invoke name="read">\n'
        '<parameter name="path">calc.py</parameter>\n'
        "</invoke>\n"
        "</minimax:tool_call>"
    )
    server = model_server([{"text": leaked}, {"text": "add() subtracts."}])
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "What does add do?"),
        cwd=repo,
        env=clean_env(tmp_path / "home"),
    )
    assert run.code == 0, run.stderr
    events = run.events()
    finished = [e["data"] for e in events if e["type"] == "tool.finished"]
    assert [(f["name"], f["ok"]) for f in finished] == [("read", True)]
    deltas = "".join(e["data"].get("text", "") for e in events if e["type"] == "text.delta")
    assert "minimax:tool_call" not in deltas

    assert len(server.requests) == 2
    second = server.requests[1].body
    assistant = [m for m in second["messages"] if m["role"] == "assistant"][-1]
    assert assistant["content"] == "I'll read the file first."
    (call,) = assistant["tool_calls"]
    assert call["function"] == {"name": "read", "arguments": '{"path":"calc.py"}'}
    (result,) = tool_messages(second)
    assert result["tool_call_id"] == call["id"] and "return a - b" in result["content"]
