"""AnthropicProvider against the scripted model server over 127.0.0.1: the Messages wire format,
its quirks, retries, cache breakpoints and the request bytes a user's session depends on."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from model_server import ScriptedServer
from provider_helpers import (
    FAST,
    READ,
    after_last_retry,
    completed,
    failure,
    of,
    request,
    stream_all,
)

from mcode.errors import ProviderError
from mcode.messages import ImagePart, Message, TextPart, ThinkingPart, ToolCall, ToolSpec
from mcode.messages import user_message as user
from mcode.providers.anthropic import AnthropicOptions, AnthropicProvider, messages_url
from mcode.providers.anthropic_request import strip_cache_control, thinking_budget_for
from mcode.providers.anthropic_stream import MessageAssembler
from mcode.providers.base import (
    Completion,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    Retrying,
    TextDelta,
    ThinkingDelta,
    ToolCallStarted,
)

StartServer = Callable[..., ScriptedServer]
KEY = "sk-ant-PLANTED-0123456789abcdef"
LS = ToolSpec("ls", "List a directory.", {"type": "object", "properties": {}})
PNG = ImagePart("image/png", "iVBORw0KGgo=")
EPHEMERAL = {"type": "ephemeral"}


def provider(server: ScriptedServer, **kw: Any) -> AnthropicProvider:
    """An AnthropicProvider for ``server``; keywords naming an AnthropicOptions field go into its
    options, the rest to the provider."""
    kw.setdefault("network", FAST)
    images = kw.pop("supports_images", True)
    options = {f.name: kw.pop(f.name) for f in dataclasses.fields(AnthropicOptions) if f.name in kw}
    return AnthropicProvider(
        model="mock-model",
        base_url=kw.pop("base_url", server.anthropic_base_url),
        api_key=kw.pop("api_key", KEY),
        info=ModelInfo("anthropic", "mock-model", 200_000, supports_images=images),
        options=AnthropicOptions(**options),
        **kw,
    )


def call(server: ScriptedServer, req: ModelRequest | None = None, **kw: Any) -> list[ModelEvent]:
    return completed(stream_all(provider(server, **kw), req or request()))


def fail(server: ScriptedServer, **kw: Any) -> tuple[ProviderError, list[ModelEvent]]:
    return failure(provider(server, **kw), request())


def body_of(p: AnthropicProvider, req: ModelRequest) -> dict[str, Any]:
    return json.loads(p.build_body(req))


def marked(value: Any) -> list[Any]:
    """Every dict in ``value`` carrying a cache_control marker."""
    found: list[Any] = []
    if isinstance(value, dict):
        if "cache_control" in value:
            found.append(value)
        for v in value.values():
            found += marked(v)
    elif isinstance(value, list):
        for v in value:
            found += marked(v)
    return found


def tool_result(call_id: str, text: str, *images: ImagePart, error: bool = False) -> Message:
    return Message("tool", (TextPart(text), *images), tool_call_id=call_id, is_error=error)


# ------------------------------------------------------------------ streaming answers


def test_text_thinking_and_tool_use_are_streamed_and_assembled(model_server: StartServer) -> None:
    thinking = "The user wants the file. Read it first, é ✓."
    text = "Reading it now. " * 5
    args = {"path": "src/ü.py", "limit": 200}
    server = model_server(
        [
            {
                "thinking": thinking,
                "text": text,
                "tool_calls": [
                    {"id": "toolu_1", "name": "read", "arguments": args},
                    {"id": "toolu_2", "name": "ls", "arguments": {}},
                ],
            }
        ],
        chunk_size=7,
    )
    events = call(server, request(tools=[READ, LS]))
    assert "".join(e.text for e in of(events, ThinkingDelta)) == thinking
    assert "".join(e.text for e in of(events, TextDelta)) == text
    assert len(of(events, TextDelta)) == -(-len(text) // 7)  # live, piece by piece
    assert of(events, ToolCallStarted) == [
        ToolCallStarted(0, "toolu_1", "read"),
        ToolCallStarted(1, "toolu_2", "ls"),
    ]
    done = events[-1]
    assert done.finish_reason == "tool_calls"
    think, answer = done.message.parts
    assert isinstance(think, ThinkingPart) and think.text == thinking
    assert think.signature and think.extra is not None
    assert think.extra["format"] == "anthropic"
    assert think.extra["origin"] == f"anthropic/mock-model@{server.anthropic_base_url}/v1/messages"
    assert answer == TextPart(text)
    assert [(c.id, c.name, c.arguments) for c in done.message.tool_calls] == [
        ("toolu_1", "read", '{"path":"src/ü.py","limit":200}'),
        ("toolu_2", "ls", "{}"),
    ]
    assert server.requests[0].path == "/v1/messages"


def test_signatures_go_back_byte_exact(model_server: StartServer) -> None:
    thinking = 'Line one.\n  "quoted" \\ back\\slash, tab\t, ü, 💡'
    signature = "EqQBCkgIARABGAIiQL+/x9aXb5Q==" + "A" * 200
    server = model_server(
        [
            {
                "thinking": thinking,
                "signature": signature,
                "tool_calls": [{"id": "toolu_1", "name": "read", "arguments": {"path": "a"}}],
            },
            {"text": "Done."},
        ],
        chunk_size=5,
    )

    async def go() -> None:
        p = provider(server)
        try:
            first = [e async for e in p.stream(request(tools=[READ], thinking=True))]
            history = [user("hi"), first[-1].message, tool_result("toolu_1", "content of a")]
            [e async for e in p.stream(request(*history, tools=[READ], thinking=True))]
        finally:
            await p.aclose()

    asyncio.run(go())
    assistant = server.bodies[1]["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": thinking, "signature": signature},
            {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a"}},
        ],
    }
    wire = json.dumps(
        {"type": "thinking", "thinking": thinking, "signature": signature},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    assert wire in server.requests[1].raw  # the very bytes, not just an equal value


def test_redacted_thinking_round_trip(model_server: StartServer) -> None:
    data = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"
    server = model_server(
        [{"thinking": "visible part", "redacted_thinking": data, "text": "Hi"}, {"text": "ok"}]
    )
    msg = call(server)[-1].message
    think, redacted, text = msg.parts
    assert isinstance(redacted, ThinkingPart) and redacted.text == ""
    assert redacted.extra is not None and redacted.extra["redacted"] == data
    assert isinstance(think, ThinkingPart) and text == TextPart("Hi")

    call(server, request(user("hi"), msg, user("more")))
    blocks = server.bodies[1]["messages"][1]["content"]
    assert [b["type"] for b in blocks] == ["thinking", "redacted_thinking", "text"]
    assert blocks[1] == {"type": "redacted_thinking", "data": data}


def test_thinking_from_another_provider_is_dropped(model_server: StartServer) -> None:
    # An OpenAI-format answer (reasoning_content, <think> tags) replayed to an Anthropic endpoint:
    # the server cannot validate unsigned thinking, so it goes; text and tool history stay.
    other = Message(
        "assistant",
        (
            ThinkingPart("inline thoughts", extra={"format": "think_tags", "tail": "\n\n"}),
            ThinkingPart("structured thoughts", extra={"format": "reasoning_content"}),
            ThinkingPart("unsigned", extra={"format": "anthropic"}),
            TextPart("Let me look."),
        ),
        tool_calls=(ToolCall("call_abc", "read", '{"path": "a"}'),),
    )
    server = model_server([{"text": "ok"}])
    call(server, request(user("hi"), other, tool_result("call_abc", "x"), tools=[READ]))
    assistant = server.bodies[0]["messages"][1]
    assert assistant["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_abc", "name": "read", "input": {"path": "a"}},
    ]
    assert "thoughts" not in server.requests[0].raw.decode()


def test_thinking_goes_back_only_to_the_origin_that_produced_it(
    model_server: StartServer,
) -> None:
    # MiniMax's endpoint sends thinking without a signature and wants it back; a block signed
    # by another endpoint or model (a session that switched provider) is dropped.
    for mine in (True, False):
        server = model_server([{"text": "ok"}])
        if mine:
            origin = provider(server).origin
            part = ThinkingPart("mine", extra={"format": "anthropic", "origin": origin})
            expected = [{"type": "thinking", "thinking": "mine"}]
        else:
            origin = "minimax/M3@https://x"
            part = ThinkingPart("theirs", "sig-x", {"format": "anthropic", "origin": origin})
            expected = []
        turn = Message("assistant", (part, TextPart("Done.")))
        call(server, request(user("hi"), turn, user("more")))
        blocks = server.bodies[0]["messages"][1]["content"]
        assert blocks == [*expected, {"type": "text", "text": "Done."}]


def test_the_thinking_origin_carries_no_url_credentials(model_server: StartServer) -> None:
    # The origin is stored with every thinking part: a password or token in the base URL must
    # not go into the session store with it.
    server = model_server([{"thinking": "plan", "text": "ok"}])
    base = f"http://user:hunter2-pass@127.0.0.1:{server.port}/anthropic?token=QUERY-SECRET-77"
    p = provider(server, base_url=base)
    assert p.origin == f"anthropic/mock-model@http://127.0.0.1:{server.port}/anthropic/v1/messages"
    (part,) = call(server, base_url=base)[-1].message.parts[:1]
    assert part.extra["origin"] == p.origin


def test_prefilled_text_is_not_repeated(model_server: StartServer) -> None:
    text = "Hello there, this arrives in pieces."
    server = model_server([{"text": text, "prefill_text": True}], chunk_size=6)
    events = call(server)
    assert "".join(e.text for e in of(events, TextDelta)) == text
    assert events[-1].message.text == text

    # The repeat may also come split differently, and a non-repeating delta is kept whole.
    def delta(index: int, text: str) -> dict[str, Any]:
        d = {"type": "text_delta", "text": text}
        return {"type": "content_block_delta", "index": index, "delta": d}

    server = model_server(
        [
            {
                "sse": [
                    {"type": "message_start", "message": {"usage": {"input_tokens": 3}}},
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": "Hello"},
                    },
                    delta(0, "Hel"),
                    delta(0, "lo wor"),
                    delta(0, "ld"),
                    {"type": "content_block_stop", "index": 0},
                    {
                        "type": "content_block_start",
                        "index": 1,
                        "content_block": {"type": "text", "text": "New "},
                    },
                    delta(1, "block"),
                    {"type": "content_block_stop", "index": 1},
                    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
                    {"type": "message_stop"},
                ]
            }
        ]
    )
    events = call(server)
    assert "".join(e.text for e in of(events, TextDelta)) == "Hello worldNew block"
    assert events[-1].message.parts == (TextPart("Hello world"), TextPart("New block"))


def test_ping_and_unknown_events_are_ignored(model_server: StartServer) -> None:
    server = model_server(
        [{"text": "pong", "thinking": "t", "tool_calls": [{"name": "ls"}], "ping": True}]
    )
    done = call(server)[-1]
    assert done.message.text == "pong" and len(done.message.tool_calls) == 1

    server = model_server(
        [
            {
                "sse": [
                    ": keep-alive\r\n\r\n",
                    {"type": "message_start", "message": {"usage": {"input_tokens": 3}}},
                    'event: ping\ndata: {"type": "ping"}\n\n',
                    "event: future_event\ndata: not json at all\n\n",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "server_tool_use", "id": "s1"},
                    },
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "future_delta", "x": 1},
                    },
                    {"type": "content_block_stop", "index": 0},
                    {
                        "type": "content_block_start",
                        "index": 1,
                        "content_block": {"type": "text", "text": ""},
                    },
                    {
                        "type": "content_block_delta",
                        "index": 1,
                        "delta": {"type": "text_delta", "text": "Hi"},
                    },
                    {"type": "content_block_stop", "index": 1},
                    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
                    'event: message_stop\r\ndata: {"type": "message_stop"}\r\n\r\n',
                ]
            }
        ]
    )
    done = call(server)[-1]
    assert done.message.parts == (TextPart("Hi"),) and done.finish_reason == "stop"


def test_usage_is_cumulative_and_cache_counters_are_read(model_server: StartServer) -> None:
    usage = {
        "input_tokens": 50,
        "output_tokens": 30,
        "cache_read_input_tokens": 1024,
        "cache_creation_input_tokens": 200,
    }
    # message_start carries every counter (output 1), message_delta all of them again: a sum
    # would double the input and cache counts.
    server = model_server([{"text": "x", "usage": usage}])
    done = call(server)[-1]
    assert done.usage.to_dict() == {
        "input_tokens": 50 + 1024 + 200,
        "output_tokens": 30,
        "cached_tokens": 1024,
        "cache_write_tokens": 200,
    }
    assert done.raw_usage == usage

    # Servers that send only output_tokens in message_delta, or a zero there, lose nothing.
    server = model_server(
        [
            {
                "sse": [
                    {
                        "type": "message_start",
                        "message": {
                            "usage": {
                                "input_tokens": 40,
                                "output_tokens": 1,
                                "cache_read_input_tokens": 8,
                            }
                        },
                    },
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn"},
                        "usage": {"output_tokens": 12},
                    },
                    {
                        "type": "message_delta",
                        "delta": {},
                        "usage": {"output_tokens": 15, "input_tokens": 0},
                    },
                    {"type": "message_stop"},
                ]
            }
        ]
    )
    done = call(server)[-1]
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.cached_tokens) == (
        48,
        15,
        8,
    )


def test_non_streaming_mode(model_server: StartServer) -> None:
    server = model_server(
        [
            {
                "text": "Reading.",
                "thinking": "plan",
                "tool_calls": [{"id": "t1", "name": "read", "arguments": {"path": "a"}}],
                "usage": {"input_tokens": 50, "output_tokens": 7, "cache_read_input_tokens": 32},
            }
        ]
    )
    events = call(server, stream=False)
    done = events[-1]
    assert "stream" not in server.bodies[0]
    assert server.requests[0].headers["accept"] == "application/json"
    assert done.message.text == "Reading." and done.message.thinking == "plan"
    assert done.message.parts[0].signature  # type: ignore[union-attr]
    assert [(c.id, c.name, c.arguments) for c in done.message.tool_calls] == [
        ("t1", "read", '{"path":"a"}')
    ]
    assert done.finish_reason == "tool_calls"
    assert (done.usage.input_tokens, done.usage.cached_tokens) == (82, 32)
    assert of(events, ToolCallStarted) == [ToolCallStarted(0, "t1", "read")]


def test_tool_input_prefilled_whole_or_malformed(model_server: StartServer) -> None:
    def start(index: int, **block: Any) -> dict[str, Any]:
        return {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "tool_use", **block},
        }

    def json_delta(index: int, fragment: str) -> dict[str, Any]:
        d = {"type": "input_json_delta", "partial_json": fragment}
        return {"type": "content_block_delta", "index": index, "delta": d}

    stop = [
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}},
        {"type": "message_stop"},
    ]
    server = model_server(
        [
            {
                "sse": [
                    start(0, id="a", name="read", input={"path": "whole.py"}),  # no deltas
                    {"type": "content_block_stop", "index": 0},
                    start(1, id="a", name="read", input={}),  # repeated id
                    json_delta(1, '{"path": "fr'),
                    json_delta(1, 'agments.py"}'),
                    {"type": "content_block_stop", "index": 1},
                    start(2, id="", name="grep", input={}),  # missing id, malformed input
                    json_delta(2, '{"pattern": "x",'),
                    {"type": "content_block_stop", "index": 2},
                    *stop,
                ]
            }
        ]
    )
    calls = call(server)[-1].message.tool_calls
    assert [(c.name, c.arguments) for c in calls] == [
        ("read", '{"path":"whole.py"}'),
        ("read", '{"path":"fragments.py"}'),
        ("grep", '{"pattern": "x",'),  # kept raw: the loop answers with an error result
    ]
    assert calls[0].id == "a" and len({c.id for c in calls}) == 3 and all(c.id for c in calls)


# ------------------------------------------------------------------ request bytes


def test_cache_control_breakpoints_are_where_specified(model_server: StartServer) -> None:
    p = provider(model_server([]))
    history = [
        user("first"),
        Message("assistant", (TextPart("calling"),), tool_calls=(ToolCall("c1", "read", "{}"),)),
        tool_result("c1", "result one"),
        Message("assistant", (ThinkingPart("t", "sig", {"format": "anthropic"}),)),
        user("second"),
    ]
    body = body_of(p, request(*history, tools=[READ, LS]))
    marks = marked(body)
    assert len(marks) == 4
    assert body["tools"][0].get("cache_control") is None
    assert body["tools"][-1]["cache_control"] == EPHEMERAL
    assert body["system"] == [
        {"type": "text", "text": "You are terse.", "cache_control": EPHEMERAL}
    ]
    messages = body["messages"]
    assert messages[-1]["content"][-1]["cache_control"] == EPHEMERAL  # the last message
    assert messages[2]["content"][-1]["cache_control"] == EPHEMERAL  # the user message before
    assert messages[2]["content"][-1]["type"] == "tool_result"
    assert not marked(messages[:2]) and not marked(messages[3])

    # A request ending with an assistant message: a thinking block is never marked.
    body = body_of(p, request(*history[:4]))
    assert len(marked(body)) == 2  # system + the user message before; no tools, no markable block
    assert not marked(body["messages"][-1])

    # No tools, no system: only message marks.
    bare = ModelRequest(model="m", system="", messages=[user("only")])
    body = body_of(p, bare)
    assert "system" not in body and "tools" not in body
    assert marked(body) == [{"type": "text", "text": "only", "cache_control": EPHEMERAL}]


def test_prefix_is_stable_as_the_conversation_grows(model_server: StartServer) -> None:
    server = model_server(
        [
            {
                "thinking": "look",
                "tool_calls": [{"id": "c1", "name": "read", "arguments": {"path": "a"}}],
            },
            {
                "thinking": "both",
                "text": "Two more.",
                "tool_calls": [
                    {"id": "c2", "name": "read", "arguments": {"path": "b"}},
                    {"id": "c3", "name": "ls", "arguments": ""},
                ],
            },
            {"text": "Done."},
            {"text": "Sure."},
        ]
    )

    async def go() -> None:
        p = provider(server)
        try:
            history = [user("Read ü.py", (PNG,))]
            results = {"c1": "A", "c2": "B", "c3": "C"}
            for _ in range(3):
                done = [
                    e async for e in p.stream(request(*history, tools=[READ, LS], thinking=True))
                ][-1]
                history.append(done.message)
                history += [tool_result(c.id, results[c.id]) for c in done.message.tool_calls]
            history.append(user("Thanks"))
            again = request(*history, tools=[READ, LS], thinking=True)
            assert p.build_body(again) == p.build_body(again)
            [e async for e in p.stream(again)]
        finally:
            await p.aclose()

    asyncio.run(go())
    bodies = [strip_cache_control(b) for b in server.bodies]
    for before, after in itertools.pairwise(bodies):
        assert {k: v for k, v in before.items() if k != "messages"} == {
            k: v for k, v in after.items() if k != "messages"
        }
        n = len(before["messages"])
        assert after["messages"][:n] == before["messages"]
        assert len(after["messages"]) > n
    for r in server.requests:
        assert len(marked(r.body)) <= 4
        assert r.raw.index(b'"messages"') > r.raw.index(b'"system"')  # messages last
    assert "ü.py".encode() in server.requests[0].raw  # ensure_ascii=False


def test_tool_results_are_grouped_and_following_user_text_joins_them(
    model_server: StartServer,
) -> None:
    p = provider(model_server([]))
    history = [
        user("go"),
        Message(
            "assistant",
            (TextPart("two calls"),),
            tool_calls=(ToolCall("c1", "read", '{"path":"a"}'), ToolCall("c2", "ls", "")),
        ),
        tool_result("c1", "aaa"),
        tool_result("c2", "no such dir", error=True),
        user("also check b"),
        user("and c"),
    ]
    messages = strip_cache_control(body_of(p, request(*history, tools=[READ, LS])))["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "user"]
    assert messages[1]["content"][1:] == [
        {"type": "tool_use", "id": "c1", "name": "read", "input": {"path": "a"}},
        {"type": "tool_use", "id": "c2", "name": "ls", "input": {}},
    ]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "aaa"}]},
        {
            "type": "tool_result",
            "tool_use_id": "c2",
            "content": [{"type": "text", "text": "no such dir"}],
            "is_error": True,
        },
        {"type": "text", "text": "also check b"},
    ]
    assert messages[3]["content"] == [{"type": "text", "text": "and c"}]


def test_assistant_and_tool_edge_cases_stay_valid(model_server: StartServer) -> None:
    p = provider(model_server([]))
    history = [
        user(""),
        Message(
            "assistant", (TextPart(""),), tool_calls=(ToolCall("functions.read:0", "read", "[1]"),)
        ),
        Message("tool", (), tool_call_id="functions.read:0"),
        Message("assistant", ()),
    ]
    messages = strip_cache_control(body_of(p, request(*history)))["messages"]
    assert messages[0]["content"] == [{"type": "text", "text": "(no content)"}]
    assert messages[1]["content"] == [
        {"type": "tool_use", "id": "functions_read_0", "name": "read", "input": {}}
    ]
    assert messages[2]["content"][0]["tool_use_id"] == "functions_read_0"
    assert messages[2]["content"][0]["content"] == [{"type": "text", "text": "(no output)"}]
    assert messages[3]["content"] == [{"type": "text", "text": "(no content)"}]


def test_images_in_user_and_tool_messages(model_server: StartServer) -> None:
    history = [
        user("What is this?", (PNG,)),
        Message("assistant", (), tool_calls=(ToolCall("c1", "screenshot", "{}"),)),
        tool_result("c1", "captured", ImagePart("image/jpeg", "/9j/4AAQ")),
    ]
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG.data},
    }
    messages = strip_cache_control(body_of(provider(model_server([])), request(*history)))[
        "messages"
    ]
    assert messages[0]["content"] == [{"type": "text", "text": "What is this?"}, image]
    assert messages[2]["content"][0]["content"] == [
        {"type": "text", "text": "captured"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
        },
    ]

    blind = provider(model_server([]), supports_images=False)
    raw = blind.build_body(request(*history))
    messages = json.loads(raw)["messages"]
    assert b'"image"' not in raw and PNG.data.encode() not in raw
    assert "1 image(s) omitted" in messages[0]["content"][-1]["text"]
    assert "1 image(s) omitted" in messages[2]["content"][0]["content"][-1]["text"]


@pytest.mark.parametrize(
    ("style", "thinking", "expected"),
    [
        ("anthropic", True, {"type": "enabled", "budget_tokens": 16000}),
        ("anthropic", False, {"type": "disabled"}),
        ("anthropic", None, None),
        ("minimax", True, {"type": "adaptive"}),
        ("minimax", False, {"type": "disabled"}),
        ("minimax", None, None),
        ("none", True, None),
        ("none", False, None),
    ],
)
def test_thinking_param_per_style(
    model_server: StartServer, style: str, thinking: bool | None, expected: Any
) -> None:
    body = body_of(provider(model_server([]), thinking_style=style), request(thinking=thinking))
    assert body.get("thinking") == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ("read", {"type": "tool", "name": "read"}),
        (None, None),
    ],
)
def test_tool_choice_mapping(model_server: StartServer, choice: str | None, expected: Any) -> None:
    p = provider(model_server([]))
    body = body_of(p, request(tools=[READ], tool_choice=choice))
    assert body.get("tool_choice") == expected
    assert list(body) == [
        k
        for k in ("model", "max_tokens", "stream", "tool_choice", "tools", "system", "messages")
        if k in body
    ]
    assert "tool_choice" not in body_of(p, request(tool_choice=choice))  # no tools: no choice


def test_forced_tool_choice_and_temperature_with_anthropic_thinking(
    model_server: StartServer,
) -> None:
    p = provider(model_server([]))
    # Anthropic rejects thinking with a forced tool call, and any temperature but 1 with thinking.
    forced = body_of(p, request(tools=[READ], tool_choice="required", thinking=True))
    assert "thinking" not in forced and forced["tool_choice"] == {"type": "any"}
    warm = body_of(p, request(thinking=True, temperature=0.2))
    assert "temperature" not in warm and warm["thinking"]["type"] == "enabled"
    cool = body_of(p, request(thinking=False, temperature=0.2))
    assert list(cool)[:5] == ["model", "max_tokens", "stream", "thinking", "temperature"]
    minimax = body_of(
        provider(model_server([]), thinking_style="minimax"),
        request(thinking=True, temperature=0.2),
    )
    assert minimax["temperature"] == 0.2


def test_max_tokens_default_and_budget_clamped_below_it(model_server: StartServer) -> None:
    server = model_server([])
    assert body_of(provider(server), request())["max_tokens"] == 32000
    p = provider(server, max_output_tokens=8000, thinking_budget=16000)
    body = body_of(p, request(thinking=True))
    assert (body["max_tokens"], body["thinking"]["budget_tokens"]) == (8000, 7999)
    body = body_of(p, request(thinking=True, max_output_tokens=4096))
    assert (body["max_tokens"], body["thinking"]["budget_tokens"]) == (4096, 4095)
    body = body_of(provider(server, thinking_budget=100), request(thinking=True))
    assert body["thinking"]["budget_tokens"] == 1024  # the API's minimum
    body = body_of(p, request(thinking=True, max_output_tokens=500))
    assert (body["max_tokens"], body["thinking"]["budget_tokens"]) == (1524, 1024)
    assert thinking_budget_for(2000, 1025) == (1024, 1025)
    assert "thinking" not in body_of(p, request(max_output_tokens=500))


def test_urls_and_headers(model_server: StartServer) -> None:
    assert messages_url("https://api.anthropic.com") == "https://api.anthropic.com/v1/messages"
    assert messages_url("https://api.anthropic.com/v1/") == "https://api.anthropic.com/v1/messages"
    assert (
        messages_url("https://api.minimax.io/anthropic")
        == "https://api.minimax.io/anthropic/v1/messages"
    )
    # A base URL copied with its endpoint path is the endpoint.
    for full in ("https://api.anthropic.com/v1/messages", "https://api.anthropic.com/v1/messages/"):
        assert messages_url(full) == "https://api.anthropic.com/v1/messages"
    # A query (a gateway's routing parameter) stays at the end.
    assert messages_url("https://gw.example/anthropic/?route=a") == (
        "https://gw.example/anthropic/v1/messages?route=a"
    )
    assert messages_url("https://gw.example/v1?route=a") == "https://gw.example/v1/messages?route=a"

    server = model_server([{"text": "a"}, {"text": "b"}])
    call(server)
    call(
        server,
        base_url=f"{server.anthropic_base_url}/anthropic",
        auth_style="bearer",
        extra_headers={"anthropic-beta": "x"},
    )
    plain, minimax = server.requests
    assert plain.path == "/v1/messages" and minimax.path == "/anthropic/v1/messages"
    assert plain.headers["x-api-key"] == KEY and "authorization" not in plain.headers
    assert (
        minimax.headers["authorization"] == f"Bearer {KEY}" and "x-api-key" not in minimax.headers
    )
    for r in (plain, minimax):
        assert r.headers["anthropic-version"] == "2023-06-01"
        assert r.headers["content-type"] == "application/json"
        assert r.headers["accept"] == "text/event-stream"
        assert r.headers["user-agent"].startswith("mcode/")
    assert minimax.headers["anthropic-beta"] == "x"
    with pytest.raises(ValueError, match="auth_style"):
        provider(server, auth_style="basic")
    with pytest.raises(ValueError, match="thinking_style"):
        provider(server, thinking_style="openai")


# ------------------------------------------------------------------ retries and errors


def test_an_html_error_page_is_reported_by_its_title(model_server: StartServer) -> None:
    # A gateway's (Cloudflare, nginx) error page: its title says it all; the markup is noise.
    page = (
        '<!DOCTYPE html><html lang="en-US"><head><title>api.minimax.io | 502: Bad gateway'
        '</title><meta charset="UTF-8" /><style>body{margin:0;padding:0}'
        + "x" * 600
        + "</style></head><body><h1>Bad gateway</h1></body></html>"
    )
    server = model_server([{"status": 502, "body": page}, {"text": "ok"}])
    (retry,) = of(call(server), Retrying)
    assert (
        retry.reason == "model API error: HTTP 502 bad gateway: api.minimax.io | 502: Bad gateway"
    )


def test_529_retry_after_is_honoured(model_server: StartServer) -> None:
    server = model_server(
        [{"status": 529, "headers": {"Retry-After": "1"}}, {"text": "after the wait"}]
    )
    events = call(server)
    (retry,) = of(events, Retrying)
    assert retry.kind == "overloaded" and retry.wait == 1.0 and "overloaded_error" in retry.reason
    first, second = server.requests
    assert 1.0 <= second.received_at - first.received_at < 2.0
    assert events[-1].message.text == "after the wait"


@pytest.mark.parametrize(
    ("status", "kind"), [(429, "rate_limit"), (500, "server"), (503, "server")]
)
def test_retryable_statuses_are_retried(model_server: StartServer, status: int, kind: str) -> None:
    server = model_server([{"status": status}, {"text": "ok"}])
    events = call(server)
    assert [e.kind for e in of(events, Retrying)] == [kind]
    assert events[-1].message.text == "ok"


def test_a_retry_reuses_the_connection(model_server: StartServer) -> None:
    server = model_server([{"status": 500}, {"text": "ok"}, {"text": "again"}])

    async def go() -> list[ModelEvent]:
        p = provider(server)
        try:
            events = [e async for e in p.stream(request())]
            return events + [e async for e in p.stream(request())]
        finally:
            await p.aclose()

    events = asyncio.run(go())
    assert [c.message.text for c in of(events, Completion)] == ["ok", "again"]
    assert len({r.peer for r in server.requests}) == 1  # message_stop ends the read, body drained


def test_overloaded_error_event_mid_stream_is_retried(model_server: StartServer) -> None:
    overloaded = {"type": "overloaded_error", "message": "Overloaded"}
    server = model_server([{"text": "Hal", "error_in_stream": overloaded}, {"text": "Hello"}])
    events = call(server)
    (retry,) = of(events, Retrying)
    assert retry.kind == "overloaded" and "Overloaded" in retry.reason
    assert "".join(e.text for e in after_last_retry(events) if isinstance(e, TextDelta)) == "Hello"
    assert events[-1].message.text == "Hello"


@pytest.mark.parametrize(
    ("etype", "message", "kind", "retryable"),
    [
        ("overloaded_error", "Overloaded", "overloaded", True),
        ("rate_limit_error", "slow down", "rate_limit", True),
        ("api_error", "Internal server error", "server", True),
        ("invalid_request_error", "tools.0: bad schema", "bad_request", False),
        (
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
            "context_overflow",
            False,
        ),
        ("authentication_error", "invalid x-api-key", "auth", False),
        ("permission_error", "no access to model", "auth", False),
        ("not_found_error", "model: no-such-model", "bad_request", False),
        ("request_too_large", "Request exceeds the maximum size", "context_overflow", False),
        ("billing_error", "credit balance too low", "billing", False),
    ],
)
def test_error_types_are_classified(etype: str, message: str, kind: str, retryable: bool) -> None:
    for feed in (
        lambda a, e: a.feed({"type": "error", "error": e}),
        lambda a, e: a.feed_whole({"type": "error", "error": e}),
    ):
        with pytest.raises(ProviderError) as info:
            feed(MessageAssembler(), {"type": etype, "message": message})
        err = info.value
        assert (err.kind, err.retryable) == (kind, retryable)
        assert message in err.message and err.hint


def test_a_minimax_code_in_an_error_event_decides() -> None:
    # MiniMax's Anthropic endpoint ends messages with its code: a used-up plan is not retried,
    # whatever error type it is dressed in.
    with pytest.raises(ProviderError) as info:
        MessageAssembler().feed(
            {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "usage limit exceeded (2056)"},
            }
        )
    assert (
        info.value.kind == "billing" and not info.value.retryable and "2056" in info.value.message
    )


def test_prompt_too_long_is_a_context_overflow_and_not_retried(model_server: StartServer) -> None:
    too_long = {
        "type": "invalid_request_error",
        "message": "prompt is too long: 210000 tokens > 200000 maximum",
    }
    server = model_server([{"error_in_stream": too_long}])
    err, events = fail(server)
    assert err.kind == "context_overflow" and not err.retryable and not of(events, Retrying)
    assert len(server.requests) == 1

    server = model_server([{"status": 400, "body": {"type": "error", "error": too_long}}])
    err, _ = fail(server)
    assert err.kind == "context_overflow" and err.status == 400 and len(server.requests) == 1
    assert "prompt is too long" in err.message


@pytest.mark.parametrize("mode", ["close", "eof"])
def test_stream_cut_mid_tool_use_is_retried(model_server: StartServer, mode: str) -> None:
    calls = [{"id": "c1", "name": "write", "arguments": {"path": "a.py", "content": "x" * 90}}]
    server = model_server(
        [
            # message_start, text start/delta/stop, tool start, one input fragment: cut
            {"text": "Writing.", "tool_calls": calls, "cut_after": 6, "cut_mode": mode},
            {"text": "Writing.", "tool_calls": [{**calls[0], "id": "c2"}]},
        ]
    )
    events = call(server)
    (retry,) = of(events, Retrying)
    assert retry.kind == "truncated"
    assert [e.id for e in of(events, ToolCallStarted)] == ["c1", "c2"]  # c1 was shown, then void
    done = events[-1]
    assert [c.id for c in done.message.tool_calls] == ["c2"]  # the half call never comes back
    assert json.loads(done.message.tool_calls[0].arguments)["content"] == "x" * 90


def test_eof_without_message_stop_or_stop_reason_is_a_truncation(model_server: StartServer) -> None:
    # 2 blocks' worth of events, then a clean end: no message_delta, no message_stop.
    server = model_server([{"text": "partial", "cut_after": 4, "cut_mode": "eof"}] * 3)
    err, events = fail(server)
    assert err.kind == "truncated" and err.retryable and "message_stop" in err.message
    assert len(of(events, Retrying)) == 2 and len(server.requests) == 3

    server = model_server([{"text": "partial", "finish_reason": None}, {"text": "whole"}])
    events = call(server)
    assert [e.kind for e in of(events, Retrying)] == ["truncated"]
    assert "stop_reason" in of(events, Retrying)[0].reason
    assert events[-1].message.text == "whole"


def test_eof_after_the_stop_reason_without_message_stop_is_complete(
    model_server: StartServer,
) -> None:
    # Some Anthropic-compatible gateways end the body after message_delta. The stop reason
    # comes after every block is closed, so nothing is missing: retrying would only repeat it.
    server = model_server([{"text": "whole answer", "cut_after": 5, "cut_mode": "eof"}])
    events = call(server)
    assert not of(events, Retrying) and len(server.requests) == 1
    assert events[-1].message.text == "whole answer" and events[-1].finish_reason == "stop"


@pytest.mark.parametrize("stream", [True, False])
def test_minimax_base_resp_is_classified(model_server: StartServer, stream: bool) -> None:
    server = model_server(
        [{"base_resp": {"status_code": 1002, "status_msg": "rate limit"}}, {"text": "ok"}]
    )
    assert [e.kind for e in of(call(server, stream=stream), Retrying)] == ["rate_limit"]
    server = model_server([{"base_resp": {"status_code": 1004, "status_msg": "login fail"}}])
    err, _ = fail(server, stream=stream)
    assert err.kind == "auth" and not err.retryable and "1004" in err.message


def test_error_body_in_a_200_and_in_json_instead_of_a_stream(model_server: StartServer) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    server = model_server([{"status": 200, "body": overloaded}, {"text": "ok"}])
    events = call(server)  # stream requested, JSON answered: still read and classified
    assert [e.kind for e in of(events, Retrying)] == ["overloaded"]

    server = model_server(
        [{"error_in_stream": {"type": "api_error", "message": "boom"}}, {"text": "ok"}]
    )
    events = call(server, stream=False)
    assert [e.kind for e in of(events, Retrying)] == ["server"]


def test_a_200_that_is_not_an_event_stream_is_not_retried(model_server: StartServer) -> None:
    server = model_server([{"status": 200, "body": "<html>Please log in</html>"}])
    err, _ = fail(server)
    assert err.kind == "protocol" and not err.retryable and "text/plain" in err.message
    assert "Anthropic" in err.hint


def test_api_key_never_appears_in_errors(model_server: StartServer) -> None:
    echoed = f"invalid x-api-key: {KEY}. Header was 'Bearer {KEY}', custom custom-SECRET-99"
    body = {"type": "error", "error": {"type": "authentication_error", "message": echoed}}
    for auth_style in ("x-api-key", "bearer"):
        server = model_server([{"status": 401, "body": body}])
        err, _ = fail(
            server, auth_style=auth_style, extra_headers={"X-Auth-Token": "custom-SECRET-99"}
        )
        text = f"{err} {err!r} {err.message} {err.hint}"
        assert KEY not in text and "PLANTED" not in text and "custom-SECRET-99" not in text
        assert err.kind == "auth" and not err.retryable and "invalid x-api-key" in err.message

    # Inside a 200 too: an error event that echoes the key.
    server = model_server(
        [{"error_in_stream": {"type": "authentication_error", "message": echoed}}]
    )
    err, _ = fail(server)
    assert KEY not in str(err) and "PLANTED" not in str(err) and err.kind == "auth"


def test_a_tool_call_leaked_into_text_becomes_a_real_call(model_server: StartServer) -> None:
    leaked = (
        'Reading it.\n<minimax:tool_call>\n<invoke name="read">\n'
        '<parameter name="path">a.py</parameter>\n</invoke>\n</minimax:tool_call>'
    )
    server = model_server([{"text": leaked}])
    events = call(server, request(user("hi"), tools=[READ]))
    done = events[-1]
    assert isinstance(done, Completion) and done.finish_reason == "tool_calls"
    (tool_call,) = done.message.tool_calls
    assert (tool_call.name, json.loads(tool_call.arguments)) == ("read", {"path": "a.py"})
    assert done.message.text.strip() == "Reading it."
    assert "minimax:tool_call" not in "".join(e.text for e in of(events, TextDelta))
