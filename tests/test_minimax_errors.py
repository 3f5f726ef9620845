"""MiniMax error codes (MINIMAX_API.md "Errors and retries") through OpenAIProvider against the
scripted server, on every wire a ``base_resp`` arrives by: the last SSE chunk, a non-streamed
body, a 200 JSON body to a streaming request, an HTTP error body, an SSE ``error`` event, and
MiniMax's Anthropic-format ``"message (2056)"``."""

from __future__ import annotations

import calendar
import json
from typing import Any

import pytest
from model_server import ScriptedServer
from provider_helpers import FAST, stream_all

from mcode.errors import ProviderError
from mcode.messages import user_message
from mcode.providers.base import Completion, ModelEvent, ModelInfo, ModelRequest, Retrying
from mcode.providers.classify import (
    classify_minimax_code,
    classify_status,
    error_message_from_body,
    hint_for,
    minimax_code_in,
)
from mcode.providers.openai import OpenAIOptions, OpenAIProvider

KEY = "sk-cp-PLANTED-0123456789abcdef"

RETRYABLE = {
    1000: "server",
    1001: "timeout",
    1002: "rate_limit",
    1024: "server",
    1033: "server",
    1039: "rate_limit",
    2045: "rate_limit",
}
# code -> (kind, a phrase the specific hint must contain)
FINAL = {
    1004: ("auth", "MINIMAX_API_KEY"),
    2049: ("auth", "MINIMAX_API_KEY"),
    1008: ("billing", "balance"),
    1028: ("billing", "quota"),
    1030: ("billing", "quota"),
    2061: ("billing", "--model"),
    2056: ("billing", "resets on the plan's schedule"),
    2013: ("bad_request", "parameter"),
    1026: ("content_filter", "content filter"),
    1027: ("content_filter", "content filter"),
}


def provider(server: ScriptedServer, *, stream: bool = True) -> OpenAIProvider:
    return OpenAIProvider(
        model="MiniMax-M3",
        base_url=server.base_url,
        api_key=KEY,
        info=ModelInfo("minimax", "MiniMax-M3", 1_000_000),
        network=FAST,
        options=OpenAIOptions(stream=stream),
    )


def run(server: ScriptedServer, *, stream: bool = True) -> list[ModelEvent]:
    req = ModelRequest(model="MiniMax-M3", system="", messages=[user_message("hi")])
    return stream_all(provider(server, stream=stream), req)


def fail(server: ScriptedServer, *, stream: bool = True) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        run(server, stream=stream)
    return info.value


def base_resp(code: int, msg: str) -> dict[str, Any]:
    return {"base_resp": {"status_code": code, "status_msg": msg}}


# ------------------------------------------------------------------ every code, both forms


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "json"])
@pytest.mark.parametrize("code", sorted(RETRYABLE))
def test_transient_codes_are_retried_then_succeed(model_server, code: int, stream: bool) -> None:
    server = model_server([base_resp(code, f"transient {code}"), {"text": "ok"}])
    events = run(server, stream=stream)
    retries = [e for e in events if isinstance(e, Retrying)]
    assert [r.kind for r in retries] == [RETRYABLE[code]]
    assert f"MiniMax code {code}" in retries[0].reason and f"transient {code}" in retries[0].reason
    assert isinstance(events[-1], Completion) and events[-1].message.text == "ok"
    assert len(server.requests) == 2


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "json"])
@pytest.mark.parametrize("code", sorted(FINAL))
def test_final_codes_stop_with_a_specific_hint(model_server, code: int, stream: bool) -> None:
    kind, phrase = FINAL[code]
    server = model_server([base_resp(code, f"minimax says {code}"), {"text": "never sent"}])
    err = fail(server, stream=stream)
    assert (err.kind, err.retryable) == (kind, False)
    assert len(server.requests) == 1
    assert f"MiniMax code {code}" in err.message and f"minimax says {code}" in err.message
    assert phrase in err.hint
    assert err.hint != hint_for(kind)  # says what to do about this code, not just the kind


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "json"])
def test_unknown_code_is_final_and_points_at_the_docs(model_server, stream: bool) -> None:
    server = model_server([base_resp(4242, "something new"), {"text": "never sent"}])
    err = fail(server, stream=stream)
    assert not err.retryable and len(server.requests) == 1
    assert "MiniMax code 4242" in err.message and "something new" in err.message
    assert "error-code" in err.hint and "platform.minimax.io/docs" in err.hint


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "json"])
def test_2013_for_too_long_input_is_a_context_overflow(model_server, stream: bool) -> None:
    server = model_server([base_resp(2013, "invalid params, context window exceeds limit")])
    err = fail(server, stream=stream)
    assert (err.kind, err.retryable) == ("context_overflow", False)
    assert "2013" in err.message and "context window exceeds limit" in err.message
    assert err.hint == hint_for("context_overflow")


def test_2056_says_when_the_plan_window_resets(model_server) -> None:
    msg = (
        "usage limit exceeded, 5-hour usage limit reached for Token Plan Starter (0/0 used), "
        "resets at 2026-05-15T15:00:00Z"
    )
    server = model_server([base_resp(2056, msg)])
    err = fail(server)
    assert err.kind == "billing" and not err.retryable and len(server.requests) == 1
    assert "resets at 2026-05-15 15:00 UTC" in err.hint and "pay-as-you-go" in err.hint

    now = calendar.timegm((2026, 5, 15, 12, 55, 0))
    assert "in 2 h 5 min" in classify_minimax_code(2056, msg, now=now).hint
    later = classify_minimax_code(2056, msg, now=now + 86400)
    assert "2026-05-15 15:00 UTC" in later.hint and ", in " not in later.hint  # already past
    assert "in 3 hours" in classify_minimax_code(2056, "limit hit, resets in 3 hours").hint


def test_status_msg_is_trimmed_and_scrubbed(model_server) -> None:
    msg = f"invalid api key {KEY} " + "x" * 2000
    server = model_server([base_resp(2049, msg)])
    err = fail(server)
    text = f"{err} {err!r}"
    assert KEY not in text and "PLANTED" not in text
    assert "MiniMax code 2049" in err.message and len(err.message) < 700


# ------------------------------------------------------------------ the other wires


@pytest.mark.parametrize(
    ("code", "retried"), [(1002, True), (2056, False)], ids=["transient", "final"]
)
def test_json_body_answering_a_streaming_request(model_server, code: int, retried: bool) -> None:
    # A 200 application/json body although the request asked for SSE.
    step = {"status": 200, "body": {"id": "x", "choices": None, **base_resp(code, "plain body")}}
    server = model_server([step, {"text": "ok"}])
    if retried:
        events = run(server)
        assert [e.kind for e in events if isinstance(e, Retrying)] == ["rate_limit"]
        assert isinstance(events[-1], Completion) and len(server.requests) == 2
    else:
        err = fail(server)
        assert err.kind == "billing" and "MiniMax code 2056" in err.message
        assert "plain body" in err.message and len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "code", "kind", "retried"),
    [
        (429, 2056, "billing", False),  # the code wins: a used-up plan is not a rate limit
        (429, 1002, "rate_limit", True),
        (500, 1000, "server", True),
        (401, 1004, "auth", False),
        (400, 1026, "content_filter", False),
        (503, 4242, "server", True),  # an unknown code says less than a transient status
        (400, 4242, "bad_request", False),
    ],
)
def test_http_error_with_base_resp(
    model_server, status: int, code: int, kind: str, retried: bool
) -> None:
    step = {"status": status, "body": base_resp(code, f"http {status} body")}
    server = model_server([step, {"text": "ok"}])
    if retried:
        events = run(server)
        assert [e.kind for e in events if isinstance(e, Retrying)] == [kind]
        assert len(server.requests) == 2
        return
    err = fail(server)
    assert (err.kind, err.retryable, err.status) == (kind, False, status)
    assert f"MiniMax code {code}" in err.message and f"http {status} body" in err.message
    assert len(server.requests) == 1
    if code == 4242:
        assert "error-code" in err.hint


def test_anthropic_format_code_at_the_end_of_the_message(model_server) -> None:
    # What MiniMax's /anthropic endpoint sends for a used-up plan (and the same shape can reach
    # an OpenAI-compatible proxy in front of it).
    error = {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "usage limit exceeded, 5-hour usage limit reached, resets at "
            "2026-05-15T15:00:00Z (2056)",
        },
    }
    server = model_server([{"status": 429, "body": error}, {"text": "ok"}])
    err = fail(server)
    assert (err.kind, err.retryable) == ("billing", False) and len(server.requests) == 1
    assert "MiniMax code 2056" in err.message and "2026-05-15 15:00 UTC" in err.hint


def test_sse_error_event_with_base_resp(model_server) -> None:
    event = "event: error\ndata: " + json.dumps(base_resp(1008, "insufficient balance")) + "\n\n"
    server = model_server([{"sse": [event]}])
    err = fail(server)
    assert (err.kind, err.retryable) == ("billing", False)
    assert "MiniMax code 1008" in err.message and "balance" in err.hint


# ------------------------------------------------------------------ parsing helpers


def test_code_in_text_forms() -> None:
    body = b'{"base_resp": {"status_code": 2061, "status_msg": "plan lacks model"}}'
    assert error_message_from_body(body) == "MiniMax code 2061: plan lacks model"
    assert minimax_code_in("MiniMax code 2061: plan lacks model") == (2061, "plan lacks model")
    assert minimax_code_in("limit (2056) [type: rate_limit_error]") == (
        2056,
        "limit [type: rate_limit_error]",
    )
    # Another server's number in parentheses is not taken for a MiniMax code.
    assert minimax_code_in("bad request (4000)") is None
    assert classify_status(400, "bad request (4000)").kind == "bad_request"
    # A successful base_resp is not an error.
    assert "MiniMax" not in error_message_from_body(
        b'{"base_resp": {"status_code": 0}, "error": {"message": "real"}}'
    )
