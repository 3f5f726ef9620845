"""Spine II end to end, in both wire formats: `mcode exec` as a subprocess against the scripted
model server speaking Chat Completions (``openai``) or Messages (``anthropic``) over loopback.

Each test is what a user would check: the thinking the model produced goes back to it, a failed
or cut answer is retried without repeating anything a tool did, and the key never leaks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, exec_args, make_repo, mcode

KEY = "sk-test-PLANTED-SECRET-0123456789abcdef"


@pytest.fixture(params=["openai", "anthropic"])
def wire(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# demo\n", "a.txt": "alpha\n"})


def run_exec(
    server: Any, wire: str, repo: Path, home: Path, *args: str, prompt: str = "Do it."
) -> Any:
    key_var = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}[wire]
    env = clean_env(home, **{key_var: KEY})
    flags = ["--permission-mode", "full-auto", "--output-format", "stream-json"]
    return mcode(*exec_args(server, *flags, *args, prompt, wire=wire), cwd=repo, env=env)


def messages_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(body["messages"])


def assistant_turns(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "assistant"]


def bash(cid: str, command: str) -> dict[str, Any]:
    return {"id": cid, "name": "bash", "arguments": {"command": command}}


def test_thinking_goes_back_on_the_next_request(model_server, repo, home, wire):
    server = model_server(
        [
            {
                "thinking": "The file is small; read it.",
                "signature": "c2lnbmF0dXJlLW9uZQ==/+x",
                "tool_calls": [{"id": "t1", "name": "read", "arguments": {"path": "a.txt"}}],
            },
            {"text": "It says alpha."},
        ]
    )
    run = run_exec(server, wire, repo, home)
    assert run.code == 0, run.stderr
    second = server.requests[1]["body"]
    (turn,) = assistant_turns(second)
    if wire == "anthropic":
        # Claude 4 thinks between tool calls only with this beta (MiniMax needs none).
        assert server.requests[0]["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
        blocks = turn["content"]
        assert blocks[0] == {
            "type": "thinking",
            "thinking": "The file is small; read it.",
            "signature": "c2lnbmF0dXJlLW9uZQ==/+x",
        }
        assert blocks[-1]["type"] == "tool_use" and blocks[-1]["id"] == "t1"
        # The signed block goes back byte-exact: the raw request holds it verbatim.
        assert b'"signature":"c2lnbmF0dXJlLW9uZQ==/+x"' in server.requests[1]["raw"]
    else:
        assert turn["reasoning_content"] == "The file is small; read it."
        assert turn["tool_calls"][0]["id"] == "t1"
    assert "alpha" in json.dumps(second)


def test_reasoning_sent_twice_is_kept_once(model_server, repo, home):
    # MiniMax M3 may send the same reasoning as <think> in content and in reasoning_content.
    server = model_server(
        [
            {"thinking": "Only once, please.", "thinking_style": "both", "text": "Done."},
            {"text": "Again."},
        ]
    )
    run = run_exec(server, "openai", repo, home)
    assert run.code == 0, run.stderr
    done = next(e for e in run.events() if e["type"] == "message.assistant")
    parts = done["data"]["message"]["parts"]
    assert [p["type"] for p in parts] == ["thinking", "text"]
    assert parts[0]["text"] == "Only once, please." and parts[1]["text"] == "Done."


def test_repeated_tool_call_ids_are_not_concatenated(model_server, repo, home):
    server = model_server(
        [
            {"tool_calls": [bash("call_9", "echo one")], "repeat_tool_ids": True},
            {"text": "ok"},
        ]
    )
    run = run_exec(server, "openai", repo, home)
    assert run.code == 0, run.stderr
    (call,) = assistant_turns(server.requests[1]["body"])[0]["tool_calls"]
    assert call["id"] == "call_9" and call["function"]["name"] == "bash"
    assert json.loads(call["function"]["arguments"]) == {"command": "echo one"}


def test_an_error_inside_a_200_is_retried(model_server, repo, home, wire):
    error = (
        {"type": "overloaded_error", "message": "Overloaded"}
        if wire == "anthropic"
        else {"message": "server overloaded, try later", "type": "server_error"}
    )
    server = model_server([{"text": "partial", "error_in_stream": error}, {"text": "Recovered."}])
    run = run_exec(server, wire, repo, home)
    assert run.code == 0, run.stderr
    events = run.events()
    assert [e["data"]["kind"] for e in events if e["type"] == "retry"] == ["overloaded"]
    assert events[-1]["data"]["result"] == "Recovered."


def test_a_stream_cut_mid_tool_call_is_retried_and_the_half_call_never_runs(
    model_server, repo, home, wire
):
    marker = repo / "ran.txt"
    call = bash("c1", "echo ran >> ran.txt")
    server = model_server(
        [
            {"text": "Running it.", "tool_calls": [call], "cut_after": 5, "chunk_size": 8},
            {"text": "Running it.", "tool_calls": [call]},
            {"text": "Ran once."},
        ]
    )
    run = run_exec(server, wire, repo, home)
    assert run.code == 0, run.stderr
    events = run.events()
    assert [e["data"]["kind"] for e in events if e["type"] == "retry"] == ["truncated"]
    assert [e["data"]["name"] for e in events if e["type"] == "tool.started"] == ["bash"]
    assert marker.read_text() == "ran\n"
    assert len(server.requests) == 3


def test_529_with_retry_after_is_honoured(model_server, repo, home, wire):
    server = model_server(
        [
            {
                "status": 529,
                "headers": {"Retry-After": "1"},
                "body": {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
            },
            {"text": "Back."},
        ]
    )
    run = run_exec(server, wire, repo, home)
    assert run.code == 0, run.stderr
    (retry,) = [e for e in run.events() if e["type"] == "retry"]
    assert retry["data"]["kind"] == "overloaded" and retry["data"]["wait"] == 1
    gap = server.requests[1]["received_at"] - server.requests[0]["received_at"]
    assert gap >= 0.95


def test_retries_never_repeat_a_tool_side_effect(model_server, repo, home, wire):
    server = model_server(
        [
            {"tool_calls": [bash("c1", "echo once >> log.txt")]},
            {"status": 500},
            {"status": 503},
            {"text": "Logged."},
        ]
    )
    run = run_exec(server, wire, repo, home)
    assert run.code == 0, run.stderr
    assert (repo / "log.txt").read_text() == "once\n"
    # The retried requests are the same request: same bytes every time.
    assert server.requests[1]["raw"] == server.requests[2]["raw"] == server.requests[3]["raw"]


def test_a_planted_key_appears_nowhere(model_server, repo, home, wire):
    server = model_server(
        [
            # The server echoes the key in an error, in text and in a tool's output.
            {"status": 500, "body": {"error": {"message": f"bad key {KEY}"}}},
            {"text": f"your key is {KEY}", "tool_calls": [bash("c1", f"echo {KEY}")]},
            {"text": f"done with {KEY}"},
        ]
    )
    run = run_exec(server, wire, repo, home, prompt=f"use the key {KEY}")
    assert run.code == 0, run.stderr
    auth = server.requests[0]["headers"]
    assert KEY in (auth.get("authorization", "") + auth.get("x-api-key", ""))
    assert KEY not in run.stdout and KEY not in run.stderr
    data = home / "data" / "mcode"
    for f in data.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f


def test_thinking_switch_per_request_and_unavailable_where_fixed(model_server, repo, home):
    # MiniMax M3 on /v1 switches thinking per request; M2.5 cannot, and is sent no switch.
    server = model_server([{"text": "a"}, {"text": "b"}, {"text": "c"}, {"text": "d"}])
    env = clean_env(home, MINIMAX_API_KEY=KEY)
    base = ["exec", "--provider", "minimax", "--base-url", server.base_url]
    runs = [
        mcode(*base, "--thinking", "off", "--output-format", "stream-json", "x", cwd=repo, env=env),
        mcode(*base, "--output-format", "stream-json", "x", cwd=repo, env=env),
        mcode(
            *base,
            "--model",
            "MiniMax-M2.5",
            "--thinking",
            "off",
            "--output-format",
            "stream-json",
            "x",
            cwd=repo,
            env=env,
        ),
        # Not asked for either way: still "unavailable" (it cannot be switched), not "default".
        mcode(
            *base, "--model", "MiniMax-M2", "--output-format", "stream-json", "x", cwd=repo, env=env
        ),
    ]
    assert [r.code for r in runs] == [0, 0, 0, 0], [r.stderr for r in runs]
    bodies = [r["body"] for r in server.requests]
    assert bodies[0]["thinking"] == {"type": "disabled"}
    assert bodies[1]["thinking"] == {"type": "adaptive"}
    assert "thinking" not in bodies[2] and "thinking" not in bodies[3]
    assert bodies[0]["max_completion_tokens"] >= 1024 and "max_tokens" not in bodies[0]
    shown = [r.events()[0]["data"]["thinking"] for r in runs]
    assert shown == ["off", "on", "unavailable", "unavailable"]


def test_minimax_speaks_anthropic_by_default(model_server, repo, home):
    server = model_server([{"thinking": "hmm", "text": "Hello from M3."}])
    env = clean_env(home, MINIMAX_API_KEY=KEY)
    run = mcode(
        "exec",
        "--provider",
        "minimax",
        "--base-url",
        server.anthropic_base_url + "/anthropic",
        "x",
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    (req,) = server.requests
    assert req["path"] == "/anthropic/v1/messages"
    assert "anthropic-beta" not in req["headers"]
    assert req["headers"]["authorization"] == f"Bearer {KEY}"
    assert req["body"]["model"] == "MiniMax-M3"
    assert req["body"]["thinking"] == {"type": "adaptive"}
    assert run.stdout.strip() == "Hello from M3."


def test_minimax_interleaved_thinking_goes_back_unsigned_on_its_anthropic_endpoint(
    model_server, repo, home
):
    # MiniMax's /anthropic signs nothing, yet wants every thinking block of the tool loop back.
    server = model_server(
        [
            {
                "thinking": "Read the file first.",
                "signature": None,
                "tool_calls": [{"id": "t1", "name": "read", "arguments": {"path": "a.txt"}}],
            },
            {"thinking": "It says alpha.", "signature": None, "text": "alpha"},
        ]
    )
    env = clean_env(home, MINIMAX_API_KEY=KEY)
    base = server.anthropic_base_url + "/anthropic"
    run = mcode("exec", "--provider", "minimax", "--base-url", base, "x", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    (turn,) = assistant_turns(server.requests[1]["body"])
    assert turn["content"][0] == {"type": "thinking", "thinking": "Read the file first."}
    assert turn["content"][1]["type"] == "tool_use"
