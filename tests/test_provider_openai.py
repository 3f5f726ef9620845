"""OpenAIProvider against the scripted model server over 127.0.0.1: the wire quirks, retries,
timeouts and request bytes a user's session depends on."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import socket
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
from mcode.messages import ImagePart, Message, TextPart, ThinkingPart, user_message
from mcode.providers.backoff import backoff_delay, parse_retry_after
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
from mcode.providers.network import NetworkSettings
from mcode.providers.openai import OpenAIOptions, OpenAIProvider
from mcode.secrets import scrub

StartServer = Callable[..., ScriptedServer]
KEY = "sk-test-PLANTED-0123456789abcdef"


def provider(server: ScriptedServer, **kw: Any) -> OpenAIProvider:
    """An OpenAIProvider for ``server``; keywords naming an OpenAIOptions field go into its
    options, the rest to the provider."""
    kw.setdefault("network", FAST)
    kw.setdefault("base_url", server.base_url)
    options = {f.name: kw.pop(f.name) for f in dataclasses.fields(OpenAIOptions) if f.name in kw}
    return OpenAIProvider(
        model="mock-model",
        api_key=KEY,
        info=ModelInfo("openai", "mock-model", 128_000, supports_images=True),
        options=OpenAIOptions(**options),
        **kw,
    )


def call(server: ScriptedServer, req: ModelRequest | None = None, **kw: Any) -> list[ModelEvent]:
    return completed(stream_all(provider(server, **kw), req or request()))


def fail(server: ScriptedServer, **kw: Any) -> tuple[ProviderError, list[ModelEvent]]:
    return failure(provider(server, **kw), request())


# ------------------------------------------------------------------ streaming answers


def test_text_in_64_char_chunks_is_reassembled(model_server: StartServer) -> None:
    text = "".join(f"line {i}: the quick brown fox é ✓\n" for i in range(20))
    server = model_server([{"text": text}])
    events = call(server)
    deltas = of(events, TextDelta)
    assert len(deltas) == -(-len(text) // 64)
    assert "".join(d.text for d in deltas) == text
    done = events[-1]
    assert done.message.text == text and done.finish_reason == "stop"
    assert not done.message.tool_calls


def test_tool_call_with_repeated_id_and_name_is_not_concatenated(model_server: StartServer) -> None:
    args = {"path": "src/app.py", "limit": 200}
    server = model_server(
        [
            {
                "tool_calls": [{"id": "call_1", "name": "read", "arguments": args}],
                "repeat_tool_ids": True,
                "finish_reason": "stop",
            }
        ]
    )
    events = call(server)
    assert of(events, ToolCallStarted) == [ToolCallStarted(0, "call_1", "read")]
    done = events[-1]
    (tc,) = done.message.tool_calls
    assert (tc.id, tc.name, json.loads(tc.arguments)) == ("call_1", "read", args)
    assert done.finish_reason == "tool_calls"  # tool calls win over the server's "stop"


def test_two_tool_calls_and_raw_arguments_kept(model_server: StartServer) -> None:
    server = model_server(
        [
            {
                "text": "Reading both.",
                "tool_calls": [
                    {"id": "a", "name": "read", "arguments": {"path": "a.py"}},
                    {
                        "id": "b",
                        "name": "grep",
                        "arguments": '{"pattern": "x",',
                    },  # malformed, kept raw
                    {"id": "c", "name": "ls", "arguments": ""},
                ],
            }
        ]
    )
    done = call(server)[-1]
    assert [(c.id, c.name, c.arguments) for c in done.message.tool_calls] == [
        ("a", "read", '{"path": "a.py"}'),
        ("b", "grep", '{"pattern": "x",'),
        ("c", "ls", ""),
    ]
    assert done.message.text == "Reading both."


def test_a_repeated_tool_call_id_is_made_unique(model_server: StartServer) -> None:
    # Results are matched to calls by id (events, history, the next request): two calls with one
    # id would leave one of them unanswerable.
    server = model_server(
        [
            {
                "tool_calls": [
                    {"id": "c1", "name": "ls", "arguments": {}},
                    {"id": "c1", "name": "ls", "arguments": {"path": "src"}},
                    {"id": "", "name": "ls", "arguments": {"path": "doc"}},
                ]
            }
        ]
    )
    calls = call(server)[-1].message.tool_calls
    ids = [c.id for c in calls]
    assert ids[0] == "c1" and len(set(ids)) == 3 and all(ids)
    assert [c.arguments for c in calls] == ["{}", '{"path": "src"}', '{"path": "doc"}']


def test_new_id_at_a_used_index_is_a_new_call(model_server: StartServer) -> None:
    def tc(**d: Any) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": {"tool_calls": [d]}, "finish_reason": None}]}

    server = model_server(
        [
            {
                "sse": [
                    tc(
                        index=0,
                        id="x1",
                        type="function",
                        function={"name": "read", "arguments": '{"path"'},
                    ),
                    tc(index=0, function={"arguments": ': "a"}'}),
                    tc(
                        index=0,
                        id="x2",
                        type="function",
                        function={"name": "ls", "arguments": "{}"},
                    ),
                    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
                    "data: [DONE]\n\n",
                ]
            }
        ]
    )
    events = call(server)
    assert [(c.id, c.name, c.arguments) for c in events[-1].message.tool_calls] == [
        ("x1", "read", '{"path": "a"}'),
        ("x2", "ls", "{}"),
    ]
    assert [e.name for e in of(events, ToolCallStarted)] == ["read", "ls"]


def test_calls_without_index_whose_id_comes_on_a_later_fragment(model_server: StartServer) -> None:
    # No index (some servers omit it) and the id only on the second fragment: still one call;
    # a different id after that starts the next one.
    def tc(**d: Any) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": {"tool_calls": [d]}, "finish_reason": None}]}

    server = model_server(
        [
            {
                "sse": [
                    tc(type="function", function={"name": "read", "arguments": ""}),
                    tc(id="c1", function={"arguments": '{"path": "a"}'}),
                    tc(id="c2", type="function", function={"name": "ls", "arguments": "{}"}),
                    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
                    "data: [DONE]\n\n",
                ]
            }
        ]
    )
    events = call(server)
    assert [(c.id, c.name, c.arguments) for c in events[-1].message.tool_calls] == [
        ("c1", "read", '{"path": "a"}'),
        ("c2", "ls", "{}"),
    ]


def test_think_tags_split_across_chunks_and_replayed_verbatim(model_server: StartServer) -> None:
    thinking = "\nThe user wants a <b>bold</b> answer; keep it short.\n"
    server = model_server(
        [
            {
                "thinking": thinking,
                "thinking_style": "think_tags",
                "text": "Done: </think> is just text now.",
            }
        ],
        chunk_size=3,
    )
    events = call(server)
    assert "".join(e.text for e in of(events, ThinkingDelta)) == thinking
    assert "".join(e.text for e in of(events, TextDelta)) == "Done: </think> is just text now."
    msg = events[-1].message
    assert msg.thinking == thinking
    assert msg.parts[0].extra == {"format": "think_tags", "tail": "\n\n"}

    # Sent back, the assistant content is byte-for-byte what the server sent.
    p = provider(server)
    body = json.loads(p.build_body(request(user_message("hi"), msg, user_message("more"))))
    assert (
        body["messages"][2]["content"]
        == f"<think>{thinking}</think>\n\nDone: </think> is just text now."
    )
    assert "reasoning_content" not in body["messages"][2]


def test_stray_closing_think_tag_files_earlier_text_as_thinking(model_server: StartServer) -> None:
    def content(text: str) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}

    server = model_server(
        [
            {
                "sse": [
                    content("I should read"),
                    content(" the file.</th"),
                    content("ink>\n\nIt is "),
                    content("fine."),
                    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                    "data: [DONE]\n\n",
                ]
            }
        ]
    )
    msg = call(server)[-1].message
    assert msg.thinking == "I should read the file."
    assert msg.text == "It is fine."
    assert msg.parts[0].extra == {"format": "think_tags", "open": False, "tail": "\n\n"}


def calls(p: OpenAIProvider, *requests: ModelRequest) -> list[list[ModelEvent]]:
    """The events of several model calls made one after another by one provider."""

    async def go() -> list[list[ModelEvent]]:
        try:
            return [completed([e async for e in p.stream(r)]) for r in requests]
        finally:
            await p.aclose()

    return asyncio.run(go())


def test_after_a_stray_closing_tag_answers_start_as_thinking(model_server: StartServer) -> None:
    # A template that opens <think> in the prompt: every answer is reasoning, </think>, answer.
    first, second = "I should read the file.", "Now the tests, then say so."
    script = [
        {"thinking": t, "thinking_style": "prompt_opened", "text": a}
        for t, a in ((first, "It is fine."), (second, "All good."))
    ]
    p = provider(model_server(script, chunk_size=5))
    one, two = calls(p, request(), request())
    # The first answer cannot be told from text until its </think>: it streamed as text (never
    # the tag) and is filed as thinking.
    assert "</" not in "".join(e.text for e in of(one, TextDelta))
    assert one[-1].message.thinking == first

    assert "".join(e.text for e in of(two, ThinkingDelta)) == second
    assert "".join(e.text for e in of(two, TextDelta)) == "All good."
    msg = two[-1].message
    assert (msg.thinking, msg.text) == (second, "All good.")
    assert msg.parts[0].extra == {"format": "think_tags", "open": False, "tail": "\n\n"}
    # Sent back as it came: no opening tag.
    body = json.loads(p.build_body(request(user_message("hi"), msg)))
    assert body["messages"][2]["content"] == f"{second}</think>\n\nAll good."


def test_an_answer_that_never_closes_the_prompts_think_is_the_answer(
    model_server: StartServer,
) -> None:
    stray = {"thinking": "Plan it.", "thinking_style": "prompt_opened", "text": "Planned."}
    server = model_server(
        [stray, {"text": "Just the answer."}, {"text": "Live text."}], chunk_size=4
    )
    first, answer, live = calls(provider(server), request(), request(), request())
    # Streamed as reasoning while it might have been, then shown as text once it ended.
    assert "".join(e.text for e in of(answer, TextDelta)) == "Just the answer."
    assert answer[-1].message.parts == (TextPart("Just the answer."),)
    # And the next answer streams as text again, live.
    assert [e.text for e in of(live, TextDelta)] == ["Live", " tex", "t."]

    # A resumed session whose history shows the prompt's <think>: cut off at the token limit
    # inside it, the answer stays reasoning.
    server.push({"text": "Still reasoning about", "finish_reason": "length"})
    resumed = request(user_message("hi"), first[-1].message, user_message("go on"))
    (cut,) = calls(provider(server), resumed)
    assert cut[-1].message.thinking == "Still reasoning about"
    assert not of(cut, TextDelta)


def test_after_a_stray_an_answer_with_its_own_think_or_a_reasoning_field_is_read_as_sent(
    model_server: StartServer,
) -> None:
    stray = {"thinking": "Plan it.", "thinking_style": "prompt_opened", "text": "Planned."}
    tagged = {"thinking": "Own tags.", "thinking_style": "think_tags", "text": "Tagged."}
    split = {"thinking": "Split out.", "text": "Separate."}  # reasoning_content, then content
    server = model_server([stray, tagged, stray, split], chunk_size=4)
    answers = calls(provider(server), request(), request(), request(), request())
    for events, thinking, text in (
        (answers[1], "Own tags.", "Tagged."),
        (answers[3], "Split out.", "Separate."),
    ):
        assert "".join(e.text for e in of(events, ThinkingDelta)) == thinking
        assert "".join(e.text for e in of(events, TextDelta)) == text
        assert (events[-1].message.thinking, events[-1].message.text) == (thinking, text)


def test_reasoning_both_inline_and_structured_is_kept_once(model_server: StartServer) -> None:
    thinking = "Consider the edge cases first. " * 5
    server = model_server(
        [{"thinking": thinking, "thinking_style": "both", "text": "Answer."}], chunk_size=16
    )
    events = call(server)
    assert "".join(e.text for e in of(events, ThinkingDelta)) == thinking
    assert "".join(e.text for e in of(events, TextDelta)) == "Answer."
    msg = events[-1].message
    assert msg.thinking == thinking and msg.text == "Answer."
    # Structured reasoning goes back in reasoning_content, not inline.
    body = json.loads(provider(server).build_body(request(user_message("hi"), msg)))
    assert body["messages"][2] == {
        "role": "assistant",
        "content": "Answer.",
        "reasoning_content": thinking,
    }


@pytest.mark.parametrize("style", ["cumulative", "reasoning_details", "reasoning"])
def test_structured_reasoning_variants(model_server: StartServer, style: str) -> None:
    thinking = "Step one, then step two, then check the result carefully."
    server = model_server(
        [{"thinking": thinking, "thinking_style": style, "text": "OK"}], chunk_size=10
    )
    events = call(server)
    assert "".join(e.text for e in of(events, ThinkingDelta)) == thinking
    assert events[-1].message.thinking == thinking


def test_reasoning_details_resent_whole_or_without_text_are_kept_as_sent(
    model_server: StartServer,
) -> None:
    def details(*items: dict[str, Any]) -> dict[str, Any]:
        delta = {"reasoning_details": list(items)}
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

    text = {"type": "reasoning.text", "index": 0}
    server = model_server(
        [
            {
                "sse": [
                    details({**text, "text": "Check the"}),
                    details({**text, "text": "Check the tests."}),  # everything so far, again
                    details({**text, "text": "", "signature": "s1"}),
                    details({"type": "reasoning.encrypted", "index": 1, "data": "b64=="}),
                    {
                        "choices": [
                            {"index": 0, "delta": {"content": "OK"}, "finish_reason": "stop"}
                        ]
                    },
                    "data: [DONE]\n\n",
                ]
            }
        ]
    )
    events = call(server)
    assert "".join(e.text for e in of(events, ThinkingDelta)) == "Check the tests."
    msg = events[-1].message
    body = json.loads(provider(server).build_body(request(user_message("hi"), msg)))
    assert body["messages"][2] == {
        "role": "assistant",
        "content": "OK",
        "reasoning_details": [
            {**text, "text": "Check the tests.", "signature": "s1"},
            {"type": "reasoning.encrypted", "index": 1, "data": "b64=="},
        ],
    }


def test_thinking_that_records_no_arrival_form_goes_back_as_reasoning_content(
    model_server: StartServer,
) -> None:
    # Stored by an earlier mcode (no raw details), or thinking from the other wire format.
    older = ThinkingPart("from details", extra={"format": "reasoning_details"})
    signed = ThinkingPart("from claude", signature="sig", extra={"format": "anthropic"})
    msg = Message("assistant", (older, signed, TextPart("OK")))
    body = json.loads(provider(model_server([])).build_body(request(user_message("hi"), msg)))
    assert body["messages"][2] == {
        "role": "assistant",
        "content": "OK",
        "reasoning_content": "from detailsfrom claude",
    }


def test_usage_and_cached_tokens(model_server: StartServer) -> None:
    server = model_server(
        [
            {
                "text": "x",
                "usage": {"prompt_tokens": 1200, "completion_tokens": 30, "cached_tokens": 1024},
            }
        ]
    )
    done = call(server)[-1]
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.cached_tokens) == (
        1200,
        30,
        1024,
    )
    assert done.raw_usage["prompt_tokens_details"] == {"cached_tokens": 1024}


def test_sse_comments_crlf_and_empty_usage_choices(model_server: StartServer) -> None:
    server = model_server(
        [
            {
                "sse": [
                    ": keep-alive\r\n\r\n",
                    'data: {"choices":[{"index":0,"delta":{"role":"","content":"Hel"}}]}\r\n\r\n',
                    'data: {"choices":null,"usage":{"prompt_tokens":0,"completion_tokens":0}}\r\n\r\n',
                    'data: {"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\r\n\r\n',
                    'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}\r\n\r\n',
                    "data: [DONE]\r\n\r\n",
                ]
            }
        ]
    )
    done = call(server)[-1]
    assert done.message.text == "Hello" and done.usage.input_tokens == 9


def test_utf8_split_across_reads_and_a_gzip_stream(model_server: StartServer) -> None:
    first = b'data: {"choices":[{"index":0,"delta":{"content":"caf\xc3'  # é cut in half
    rest = b'\xa9"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    packed = gzip.compress(first + rest)
    server = model_server(
        [
            {"sse": [first, rest]},
            {"sse": [packed[:15], packed[15:]], "headers": {"Content-Encoding": "gzip"}},
        ]
    )
    assert call(server)[-1].message.text == "café"
    assert call(server)[-1].message.text == "café"


@pytest.mark.parametrize("stream", [True, False])
def test_a_body_that_does_not_decode_is_a_provider_error(
    model_server: StartServer, stream: bool
) -> None:
    # A proxy labelling a plain body as gzip: httpx's DecodingError must not escape as a crash.
    bad = {"sse": [b"data: not gzip\n\n"], "text": "x", "headers": {"Content-Encoding": "gzip"}}
    server = model_server([bad, {"text": "ok"}])
    events = call(server, stream=stream)
    (retry,) = of(events, Retrying)
    assert retry.kind == "protocol" and "decode" in retry.reason
    assert events[-1].message.text == "ok"


def test_content_parts_without_text_are_skipped(model_server: StartServer) -> None:
    # Content streamed as a list of parts (Mistral): a part with no string text (a thinking
    # part, a null) carries no visible text and must not crash the run.
    parts = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hm"}]},
        {"type": "text", "text": None},
        {"type": "text", "text": "Hi"},
    ]
    server = model_server(
        [
            {
                "sse": [
                    {
                        "choices": [
                            {"index": 0, "delta": {"content": parts}, "finish_reason": "stop"}
                        ]
                    }
                ]
            }
        ]
    )
    assert call(server)[-1].message.text == "Hi"


def test_non_streaming_mode(model_server: StartServer) -> None:
    server = model_server(
        [
            {
                "text": "Reading.",
                "thinking": "plan",
                "tool_calls": [{"id": "t1", "name": "read", "arguments": {"path": "a"}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 7, "cached_tokens": 32},
            }
        ]
    )
    events = call(server, stream=False)
    done = events[-1]
    assert "stream" not in server.bodies[0]
    assert done.message.text == "Reading." and done.message.thinking == "plan"
    assert [(c.id, c.name, c.arguments) for c in done.message.tool_calls] == [
        ("t1", "read", '{"path": "a"}')
    ]
    assert done.finish_reason == "tool_calls" and done.usage.cached_tokens == 32
    assert of(events, ToolCallStarted) == [ToolCallStarted(0, "t1", "read")]


# ------------------------------------------------------------------ retries and errors


def test_429_retry_after_is_honoured(model_server: StartServer) -> None:
    server = model_server(
        [
            {
                "status": 429,
                "headers": {"Retry-After": "1"},
                "body": {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
            },
            {"text": "after the wait"},
        ]
    )
    events = call(server)
    (retry,) = of(events, Retrying)
    assert retry.kind == "rate_limit" and retry.wait >= 1.0 and "Rate limit reached" in retry.reason
    first, second = server.requests
    assert second.received_at - first.received_at >= 1.0
    assert events[-1].message.text == "after the wait"


@pytest.mark.parametrize("header", [{"Retry-After": "7200"}, {"retry-after-ms": "3600000"}])
def test_a_retry_after_beyond_the_cap_fails_now_saying_when(
    model_server: StartServer, header: dict[str, str]
) -> None:
    # A daily quota answers "come back in hours": sleeping 10 minutes per retry would hang the
    # session for most of an hour and then fail anyway.
    step = {"status": 429, "headers": header, "body": {"error": {"message": "Quota exceeded"}}}
    server = model_server([step] * 3)
    err, seen = fail(server)
    assert not of(seen, Retrying) and len(server.requests) == 1
    assert err.kind == "rate_limit" and not err.retryable
    assert "Quota exceeded" in err.message and "asks to wait" in err.message
    assert ("2 h" if "Retry-After" in header else "1 h") in err.message


def test_500_then_success_reuses_the_connection(model_server: StartServer) -> None:
    server = model_server(
        [{"status": 500, "body": {"error": {"message": "boom"}}}, {"text": "ok"}, {"text": "again"}]
    )

    async def go() -> list[ModelEvent]:
        p = provider(server)
        try:
            events = [e async for e in p.stream(request())]
            events += [e async for e in p.stream(request())]
            return events
        finally:
            await p.aclose()

    events = asyncio.run(go())
    assert [e.kind for e in of(events, Retrying)] == ["server"]
    assert [c.message.text for c in of(events, Completion)] == ["ok", "again"]
    assert len({r.peer for r in server.requests}) == 1


@pytest.mark.parametrize("mode", ["close", "eof"])
def test_stream_cut_mid_tool_call_is_retried(model_server: StartServer, mode: str) -> None:
    calls = [{"id": "c1", "name": "write", "arguments": {"path": "a.py", "content": "x" * 90}}]
    server = model_server(
        [
            {"text": "Writing.", "tool_calls": calls, "cut_after": 4, "cut_mode": mode},
            {"text": "Writing.", "tool_calls": [{**calls[0], "id": "c2"}]},
        ]
    )
    events = call(server)
    (retry,) = of(events, Retrying)
    assert retry.kind == "truncated"
    done = events[-1]
    assert [c.id for c in done.message.tool_calls] == ["c2"]
    assert json.loads(done.message.tool_calls[0].arguments)["content"] == "x" * 90
    assert (
        "".join(e.text for e in after_last_retry(events) if isinstance(e, TextDelta)) == "Writing."
    )


def test_done_without_finish_reason_is_a_truncation(model_server: StartServer) -> None:
    server = model_server(
        [{"text": "partial", "finish_reason": None}] * 3,
    )
    err, events = fail(server)
    assert err.kind == "truncated" and err.retryable
    assert len(of(events, Retrying)) == 2 and len(server.requests) == 3


@pytest.mark.parametrize("reason", ["insufficient_system_resource", "abort", "error"])
@pytest.mark.parametrize("stream", [True, False])
def test_a_finish_reason_saying_the_server_failed_is_retried(
    model_server: StartServer, reason: str, stream: bool
) -> None:
    # DeepSeek ends an answer its servers could not finish with insufficient_system_resource,
    # vLLM and SGLang an aborted one with abort: the text so far is not the answer.
    server = model_server([{"text": "half an ans", "finish_reason": reason}, {"text": "whole"}])
    events = call(server, stream=stream)
    (retry,) = of(events, Retrying)
    assert retry.kind == "server" and reason in retry.reason
    assert events[-1].message.text == "whole"


def test_error_chunk_inside_200(model_server: StartServer) -> None:
    server = model_server(
        [
            {
                "text": "Hi",
                "error_in_stream": {
                    "message": "Server overloaded, retry",
                    "type": "overloaded_error",
                },
            },
            {"text": "Hi there"},
        ]
    )
    events = call(server)
    assert [e.kind for e in of(events, Retrying)] == ["overloaded"]
    assert events[-1].message.text == "Hi there"

    server = model_server(
        [{"error_in_stream": {"message": "tools[0] is invalid", "type": "invalid_request_error"}}]
    )
    err, _ = fail(server)
    assert not err.retryable and "tools[0] is invalid" in err.message
    assert len(server.requests) == 1


def test_minimax_base_resp_codes(model_server: StartServer) -> None:
    server = model_server(
        [{"base_resp": {"status_code": 1002, "status_msg": "rate limit"}}, {"text": "ok"}]
    )
    assert [e.kind for e in of(call(server), Retrying)] == ["rate_limit"]
    server = model_server([{"base_resp": {"status_code": 1004, "status_msg": "login fail"}}])
    err, _ = fail(server, stream=False)
    assert err.kind == "auth" and not err.retryable and "1004" in err.message


def test_exhausted_retries_raise_with_status_and_hint(model_server: StartServer) -> None:
    server = model_server([{"status": 503, "body": {"error": {"message": "upstream down"}}}] * 3)
    err, events = fail(server)
    assert err.status == 503 and err.kind == "server" and err.retryable
    assert "upstream down" in err.message and "gave up after 3 attempts" in err.message
    assert err.hint
    assert [e.attempt for e in of(events, Retrying)] == [1, 2]
    assert not server.exhausted


def test_api_key_never_appears_in_errors(model_server: StartServer) -> None:
    echoed = (
        f"Incorrect API key provided: {KEY}. Header was 'Bearer {KEY}', x-api-key custom-SECRET-99"
    )
    server = model_server([{"status": 401, "body": {"error": {"message": echoed}}}])
    err, _ = fail(server, extra_headers={"X-Api-Key": "custom-SECRET-99"})
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    text = f"{err} {err!r} {err.message} {err.hint}"
    assert KEY not in text and "PLANTED" not in text and "custom-SECRET-99" not in text
    assert err.kind == "auth" and not err.retryable and "Incorrect API key" in err.message
    assert "API key" in err.hint


def test_a_partly_echoed_key_is_masked_too(model_server: StartServer) -> None:
    # A gateway echoing the start of the key it got ("key mm-live-7f3a9c0e5b2d... is invalid"),
    # or its end, leaks that much of a key that is not shaped like sk-...
    key = "mm-live-7f3a9c0e5b2d4f6a8c1e3b5d7f9a0c2e"
    echoed = f"key {key[:20]}... is invalid; key ending {key[-14:]} revoked; sk test ok"
    server = model_server([{"status": 401, "body": {"error": {"message": echoed}}}])
    p = OpenAIProvider(
        model="m",
        base_url=server.base_url,
        api_key=key,
        info=ModelInfo("openai", "m", 1000),
        network=FAST,
    )

    async def go() -> None:
        try:
            async for _ in p.stream(request()):
                pass
        finally:
            await p.aclose()

    with pytest.raises(ProviderError) as info:
        asyncio.run(go())
    text = str(info.value)
    assert key[:12] not in text and key[-12:] not in text
    assert "is invalid" in text and "sk test ok" in text


def test_context_overflow_is_classified(model_server: StartServer) -> None:
    server = model_server(
        [
            {
                "status": 400,
                "body": {
                    "error": {
                        "message": "This model's maximum context length is 8192 tokens",
                        "code": "context_length_exceeded",
                    }
                },
            }
        ]
    )
    err, _ = fail(server)
    assert err.kind == "context_overflow" and not err.retryable and len(server.requests) == 1


def test_first_event_and_idle_timeouts(model_server: StartServer) -> None:
    quick = NetworkSettings(
        connect_timeout=1,
        first_event_timeout=0.3,
        idle_timeout=0.3,
        max_retries=1,
        backoff_base=0.01,
        backoff_max=0.01,
    )
    server = model_server([{"text": "slow", "delay": 2}, {"text": "ok"}])
    events = call(server, network=quick)
    assert [e.kind for e in of(events, Retrying)] == ["timeout"]
    assert "first-event" in of(events, Retrying)[0].reason

    server = model_server(
        [{"text": "a" * 200, "stall_after": 2, "stall": 2}, {"text": "ok"}], chunk_size=50
    )
    events = call(server, network=quick)
    assert "idle timeout" in of(events, Retrying)[0].reason
    assert events[-1].message.text == "ok"


def test_keep_alive_comments_before_the_first_event_keep_the_call_alive_within_a_bound(
    model_server: StartServer,
) -> None:
    net = NetworkSettings(
        connect_timeout=1,
        first_event_timeout=0.4,
        idle_timeout=0.4,
        max_retries=0,
        backoff_base=0.01,
        backoff_max=0.01,
    )
    # A proxy says ": keep-alive" every 0.2 s while the model thinks for 0.6 s: no timeout,
    # though the first event comes after first_event_timeout.
    server = model_server([{"text": "thought it over", "keepalive": 3, "keepalive_every": 0.2}])
    events = call(server, network=net)
    assert not of(events, Retrying) and events[-1].message.text == "thought it over"
    # A proxy chatting in front of a hung model: the call ends after first + idle timeouts,
    # long before the 60 s of keep-alives end (and the answer that would follow them).
    server = model_server([{"text": "never", "keepalive": 600, "keepalive_every": 0.1}])
    err, _ = fail(server, network=net)
    assert err.kind == "timeout" and "first-event" in err.message


def test_a_200_that_is_not_an_event_stream_is_not_retried(model_server: StartServer) -> None:
    server = model_server([{"status": 200, "body": "<html>Please log in</html>"}])
    err, _ = fail(server)
    assert err.kind == "protocol" and not err.retryable and "text/plain" in err.message


@pytest.mark.parametrize(
    "status, body", [(301, {"detail": "moved"}), (307, "<html>Moved</html>"), (308, "")]
)
def test_a_redirect_is_reported_with_its_target_not_retried(
    model_server: StartServer, status: int, body: Any
) -> None:
    # http:// for https://, or a proxy's new address. Not followed: a POST may turn into a GET
    # and the key header would go along to another host.
    target = "https://api.example.com/v1/chat/completions"
    server = model_server([{"status": status, "headers": {"Location": target}, "body": body}] * 3)
    err, seen = fail(server)
    assert not seen and len(server.requests) == 1
    assert err.kind == "connection" and not err.retryable and err.status == status
    assert target in err.message and "base URL" in err.message


def test_stopping_early_closes_the_answer_and_the_provider_stays_usable(
    model_server: StartServer,
) -> None:
    server = model_server([{"text": "x" * 500, "stall_after": 2, "stall": 3}, {"text": "next"}])

    async def go() -> list[ModelEvent]:
        p = provider(server)
        try:
            stream = p.stream(request())
            async for event in stream:
                if isinstance(event, TextDelta):
                    break
            await stream.aclose()  # type: ignore[attr-defined]
            return [e async for e in p.stream(request())]
        finally:
            await p.aclose()

    events = asyncio.run(asyncio.wait_for(go(), 2.5))  # a stalled answer must not block
    assert events[-1].message.text == "next"


def test_a_base_url_that_is_the_full_endpoint_is_used_as_is(model_server: StartServer) -> None:
    # A base URL copied with its endpoint path must not become .../chat/completions/chat/completions.
    server = model_server([{"text": "a"}, {"text": "b"}])
    call(server, base_url=server.base_url + "/chat/completions")
    call(server, base_url=server.base_url + "/chat/completions/")
    assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 2


def test_a_query_in_the_base_url_stays_after_the_endpoint_path(model_server: StartServer) -> None:
    # Azure-style ?api-version=..., or a gateway's routing parameter.
    server = model_server([{"text": "a"}, {"text": "b"}])
    call(server, base_url=server.base_url + "?api-version=2024-10-21")
    call(server, base_url=server.base_url + "/chat/completions?api-version=2024-10-21")
    assert [r.path for r in server.requests] == ["/v1/chat/completions?api-version=2024-10-21"] * 2


def test_connection_refused_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request: nothing listens
    p = OpenAIProvider(
        model="m",
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key=KEY,
        info=ModelInfo("openai", "m", 1000),
        network=NetworkSettings(max_retries=1, backoff_base=0.01, backoff_max=0.01),
    )

    async def go() -> list[ModelEvent]:
        try:
            return [e async for e in p.stream(request())]
        finally:
            await p.aclose()

    with pytest.raises(ProviderError) as info:
        asyncio.run(go())
    assert info.value.kind == "connection" and f"127.0.0.1:{port}" in info.value.message


def test_credentials_in_the_base_url_never_appear_in_errors() -> None:
    # A proxy reached as https://user:password@host/v1?token=...: the URL is in every
    # connection error, and those reach events, stderr and the store.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = (
        f"http://proxyuser:hunter2-pass@127.0.0.1:{port}/v1?api-version=2024&token=QUERY-SECRET-77"
    )
    p = OpenAIProvider(
        model="m",
        base_url=base,
        api_key=KEY,
        info=ModelInfo("openai", "m", 1000),
        network=NetworkSettings(max_retries=1, backoff_base=0.01, backoff_max=0.01),
    )
    seen: list[ModelEvent] = []

    async def go() -> None:
        try:
            async for e in p.stream(request()):
                seen.append(e)
        finally:
            await p.aclose()

    with pytest.raises(ProviderError) as info:
        asyncio.run(go())
    assert of(seen, Retrying) == []  # nothing listens on loopback: it fails at once
    text = f"{info.value} {info.value.hint}"
    assert f"127.0.0.1:{port}" in text and "api-version=2024" in text
    assert "hunter2-pass" not in text and "QUERY-SECRET-77" not in text


# ------------------------------------------------------------------ request bytes


def test_request_bytes_are_stable_and_append_only(model_server: StartServer) -> None:
    server = model_server(
        [
            {
                "thinking": "look first",
                "tool_calls": [{"id": "c1", "name": "read", "arguments": {"path": "ü.py"}}],
            },
            {"text": "Done."},
        ]
    )

    async def go() -> None:
        p = provider(server, thinking_style="minimax", max_tokens_field="max_completion_tokens")
        try:
            history = [user_message("Read ü.py", (ImagePart("image/png", "iVBORw0KGgo="),))]
            first = [
                e
                async for e in p.stream(
                    request(*history, tools=[READ], thinking=True, max_output_tokens=2048)
                )
            ]
            history += [
                first[-1].message,
                Message(
                    "tool",
                    (TextPart("no such file"),),
                    tool_call_id="c1",
                    name="read",
                    is_error=True,
                ),
            ]
            again = request(*history, tools=[READ], thinking=True, max_output_tokens=2048)
            assert p.build_body(again) == p.build_body(again)
            [e async for e in p.stream(again)]
        finally:
            await p.aclose()

    asyncio.run(go())
    raw1, raw2 = (r.raw for r in server.requests)
    assert raw2.startswith(raw1[:-2]) and raw1.endswith(b"]}")  # history only grows at the end
    assert "ü.py".encode() in raw1  # ensure_ascii=False
    body = server.bodies[1]
    assert body["thinking"] == {"type": "adaptive"} and body["max_completion_tokens"] == 2048
    assert body["stream_options"] == {"include_usage": True}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read",
                "description": "Read a file.",
                "parameters": READ.parameters,
            },
        }
    ]
    system, user, assistant, tool = body["messages"]
    assert system == {"role": "system", "content": "You are terse."}
    assert user["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    assert assistant == {
        "role": "assistant",
        "content": "",
        "reasoning_content": "look first",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "read", "arguments": '{"path": "\\u00fc.py"}'},
            }
        ],
    }
    assert tool == {"role": "tool", "tool_call_id": "c1", "content": "Error: no such file"}
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


# ------------------------------------------------------------------ retry helpers


def test_backoff_and_retry_after_parsing() -> None:
    s = NetworkSettings(backoff_base=1.0, backoff_max=8.0)
    assert backoff_delay(3, s, rand=lambda: 1.0) == 4.0
    assert backoff_delay(10, s, rand=lambda: 1.0) == 8.0
    assert backoff_delay(1, s, retry_after=30.0) == 30.0  # above backoff_max: still honoured
    assert backoff_delay(1, s, retry_after=99_999.0) == 600.0
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert parse_retry_after({"retry-after": date}, now=1445412490.0 - 5) == 5.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert scrub("key sk-abcdefghijklmnop and Bearer xyz123456", ["zzzz"]) == (
        "key sk-*** and Bearer ***"
    )


def test_a_stream_that_never_ends_its_event_is_a_final_protocol_error(
    model_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mcode.providers.sse as sse

    monkeypatch.setattr(sse, "MAX_EVENT_CHARS", 10_000)
    server = model_server([{"sse": ["data: " + "z" * 50_000]}])
    err, _ = fail(server)
    assert err.kind == "protocol" and not err.retryable
    assert "without ending it" in err.message and len(server.requests) == 1


def test_a_whole_answer_past_the_size_cap_is_refused(
    model_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mcode.providers.http as http

    monkeypatch.setattr(http, "MAX_ANSWER_BYTES", 10_000)
    server = model_server([{"text": "w" * 50_000}])
    err, _ = fail(server, stream=False)
    assert err.kind == "protocol" and not err.retryable and "over 10000 bytes" in err.message


# ------------------------------------------------------------------ the client made ahead


def test_a_warmed_provider_answers_on_the_client_it_made_and_shares_one_tls_context(
    model_server: StartServer,
) -> None:
    """Session.warm_up (an editor's session/new) makes the provider's client in a thread; the
    first call then uses it, and every client of the process shares one TLS context."""
    from mcode.providers.http import tls_context

    server = model_server([{"text": "warm"}, {"text": "cold"}])
    warmed, cold = provider(server), provider(server)

    async def go() -> tuple[Any, Any, list[ModelEvent]]:
        await warmed.warm()
        made = warmed._http._client
        events = [e async for e in warmed.stream(request())]
        used = warmed._http._client
        await warmed.warm()  # made already: nothing new
        assert warmed._http._client is used
        await warmed.aclose()
        return made, used, events

    made, used, events = asyncio.run(go())
    assert made is not None and used is made
    assert of(completed(events), Completion)[0].message.text == "warm"
    # a client made on first use, as before, answers the same and holds the same TLS context
    assert of(completed(stream_all(cold, request())), Completion)[0].message.text == "cold"
    pool = made._transport._pool  # httpx's transport -> httpcore's pool
    assert pool._ssl_context is tls_context()
