"""`mcode exec` end to end: a subprocess, a real git repo, the scripted model server on loopback."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    clean_env,
    exec_args,
    gone,
    make_repo,
    mcode,
    sleeper,
    start_until,
    stored_events,
    tool_messages,
    trust,
)

from mcode.events import TRANSIENT_TYPES

CALC = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\nassert add(2, 3) == 5, add(2, 3)\nprint('calc ok')\n"


def bodies(server) -> list[dict]:
    return [r["body"] for r in server.requests]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo", {"calc.py": CALC, "test_calc.py": TEST, "README.md": "# calc\n"}
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


FIX_SCRIPT = [
    {"tool_calls": [{"id": "c1", "name": "read", "arguments": {"path": "calc.py"}}]},
    {
        "text": "The sign is wrong.",
        "tool_calls": [
            {
                "id": "c2",
                "name": "edit",
                "arguments": {
                    "path": "calc.py",
                    "old_string": "return a - b",
                    "new_string": "return a + b",
                },
            }
        ],
    },
    {"tool_calls": [{"id": "c3", "name": "bash", "arguments": {"command": "python test_calc.py"}}]},
    {
        "text": "Fixed add() in calc.py; test_calc.py passes.",
        "usage": {"prompt_tokens": 900, "completion_tokens": 12, "cached_tokens": 800},
    },
]


def test_multi_turn_fix_in_stream_json(model_server, repo, env, tmp_path):
    server = model_server(FIX_SCRIPT)
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "Fix add() in calc.py and run its test.",
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    assert run.stderr == ""  # stream-json: the events are the progress
    fixed = CALC.replace("a - b", "a + b")
    assert (repo / "calc.py").read_text() == fixed  # mcode's edit, on disk

    # The same task in text mode shows each step on stderr and only the answer on stdout.
    (repo / "calc.py").write_text(CALC)
    text = mcode(
        *exec_args(model_server(FIX_SCRIPT), "--permission-mode", "full-auto"),
        "Fix add() in calc.py and run its test.",
        cwd=repo,
        env=env,
    )
    assert text.code == 0, text.stderr
    assert text.stdout == "Fixed add() in calc.py; test_calc.py passes.\n"
    assert (repo / "calc.py").read_text() == fixed
    steps = [line for line in text.stderr.splitlines() if line.startswith(("→", "  ✓"))]
    assert [s.split()[1] for s in steps] == ["read", "read", "edit", "edited", "bash", "$"]
    quiet = mcode(*exec_args(model_server([{"text": "hi"}]), "-q"), "x", cwd=repo, env=env)
    assert quiet.stderr == "" and quiet.stdout == "hi\n"

    events = run.events()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["v"] == 1 for e in events)
    types = [e["type"] for e in events]
    assert types[0] == "session.started" and types[-1] == "session.finished"
    finished = [e["data"] for e in events if e["type"] == "tool.finished"]
    assert [(f["name"], f["ok"]) for f in finished] == [
        ("read", True),
        ("edit", True),
        ("bash", True),
    ]
    assert any(e["type"] == "file.changed" and e["data"]["path"] == "calc.py" for e in events)
    assert events[-1]["data"]["exit_code"] == 0
    assert events[-1]["data"]["usage"]["cached_tokens"] == 800

    # What the model was told: the file it read, then the test output after the fix.
    reqs = bodies(server)
    assert len(reqs) == 4
    assert "return a - b" in tool_messages(reqs[1])[0]["content"]
    assert "calc ok" in tool_messages(reqs[3])[-1]["content"]
    # Append-only history: each request starts with the previous one's messages, byte for byte.
    for a, b in itertools.pairwise(reqs):
        prev = json.dumps(a["messages"], sort_keys=True)
        assert json.dumps(b["messages"][: len(a["messages"])], sort_keys=True) == prev
        assert a["tools"] == b["tools"]

    # The store holds every completed (non-transient) event, exactly as streamed.
    session_id = events[0]["session_id"]
    durable = [e for e in events if e["type"] not in TRANSIENT_TYPES]
    assert stored_events(tmp_path / "home", session_id) == durable


def test_text_and_json_output(model_server, repo, env):
    server = model_server([{"text": "It is a calculator."}, {"text": "Still a calculator."}])
    run = mcode(*exec_args(server), "What is this repo?", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert run.stdout.strip() == "It is a calculator."
    assert "openai/test-model" in run.stderr  # progress goes to stderr, the answer to stdout

    run = mcode(*exec_args(server, "--output-format", "json"), "And now?", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["result"] == "Still a calculator."
    assert result["exit_code"] == 0 and result["reason"] == "completed"
    assert result["model_calls"] == 1 and result["tool_calls"] == 0


def test_prompt_from_stdin(model_server, repo, env):
    server = model_server([{"text": "ok"}])
    run = mcode(*exec_args(server), "-", cwd=repo, env=env, stdin="Summarise README.md")
    assert run.code == 0, run.stderr
    assert "Summarise README.md" in json.dumps(bodies(server)[0]["messages"])


def test_rate_limit_and_server_error_are_retried(model_server, repo, env):
    server = model_server(
        [
            {
                "status": 429,
                "headers": {"Retry-After": "1"},
                "body": {"error": {"message": "slow down"}},
            },
            {"status": 500, "body": {"error": {"message": "boom"}}},
            {"text": "recovered"},
        ]
    )
    run = mcode(*exec_args(server, "--output-format", "stream-json"), "hi", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    first, second, _ = server.requests
    assert second.received_at - first.received_at >= 1.0  # Retry-After honoured
    retries = [e["data"] for e in run.events() if e["type"] == "retry"]
    assert [r["kind"] for r in retries] == ["rate_limit", "server"]
    assert retries[0]["wait"] >= 1.0
    assert run.events()[-1]["data"]["result"] == "recovered"


def test_malformed_arguments_and_unknown_tool_go_back_to_the_model(model_server, repo, env):
    server = model_server(
        [
            {
                "tool_calls": [
                    {"id": "c1", "name": "read", "arguments": '{"path": calc.py}'},
                    {"id": "c2", "name": "frobnicate", "arguments": {}},
                ]
            },
            {"text": "I could not read it."},
        ]
    )
    run = mcode(
        *exec_args(server, "--output-format", "stream-json"), "read calc.py", cwd=repo, env=env
    )
    assert run.code == 0, run.stderr
    results = tool_messages(bodies(server)[1])
    assert [r["tool_call_id"] for r in results] == ["c1", "c2"]
    assert "not valid JSON" in results[0]["content"]
    assert "no tool named 'frobnicate'" in results[1]["content"]


def test_path_escapes_are_refused(model_server, repo, env, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    server = model_server(
        [
            {
                "tool_calls": [
                    {"id": "c1", "name": "read", "arguments": {"path": "../outside.txt"}},
                    {"id": "c2", "name": "read", "arguments": {"path": str(secret)}},
                ]
            },
            {
                "tool_calls": [
                    {
                        "id": "c3",
                        "name": "write",
                        "arguments": {"path": "../escape.txt", "content": "x"},
                    }
                ]
            },
            {"text": "Both are outside."},
        ]
    )
    run = mcode(*exec_args(server, "--permission-mode", "full-auto"), "read it", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    sent = json.dumps(bodies(server))
    assert "TOP-SECRET-CONTENT" not in sent
    for msg in tool_messages(bodies(server)[1]) + tool_messages(bodies(server)[2]):
        assert "outside the workspace" in msg["content"]
    assert not (tmp_path / "escape.txt").exists()


def test_headless_run_denies_what_would_ask(model_server, repo, env):
    server = model_server(
        [
            {
                "tool_calls": [
                    {
                        "id": "c1",
                        "name": "edit",
                        "arguments": {
                            "path": "calc.py",
                            "old_string": "a - b",
                            "new_string": "a + b",
                        },
                    }
                ]
            },
            {"text": "I was not allowed to edit."},
        ]
    )
    run = mcode(*exec_args(server, "--output-format", "stream-json"), "fix it", cwd=repo, env=env)
    assert run.code == 4, run.stderr
    assert (repo / "calc.py").read_text() == CALC
    decided = [e["data"] for e in run.events() if e["type"] == "permission.decided"]
    assert decided and decided[0]["allowed"] is False and decided[0]["by"] == "headless"
    assert "permission denied" in tool_messages(bodies(server)[1])[0]["content"]
    assert "denied: edit(calc.py)" in run.stderr


def test_allow_rule_in_project_config(model_server, repo, env):
    (repo / ".mcode").mkdir()
    (repo / ".mcode" / "config.toml").write_text(
        '[permissions]\nallow = ["bash(python test_calc.py)"]\n'
    )
    trust(repo, env)
    server = model_server(
        [
            {
                "tool_calls": [
                    {"id": "c1", "name": "bash", "arguments": {"command": "python test_calc.py"}}
                ]
            },
            {"tool_calls": [{"id": "c2", "name": "bash", "arguments": {"command": "rm -rf ."}}]},
            {"text": "done"},
        ]
    )
    run = mcode(*exec_args(server), "run the test", cwd=repo, env=env)
    assert run.code == 4, run.stderr
    results = tool_messages(bodies(server)[2])
    assert "AssertionError" in results[0]["content"]  # the allowed command really ran
    assert "permission denied" in results[1]["content"]
    assert (repo / "calc.py").exists()


def test_max_turns_exit_code(model_server, repo, env):
    loop = {"tool_calls": [{"id": "c", "name": "ls", "arguments": {}}]}
    server = model_server([loop, loop, loop])
    run = mcode(
        *exec_args(server, "--max-turns", "2", "--output-format", "json"), "go", cwd=repo, env=env
    )
    assert run.code == 3, run.stderr
    assert json.loads(run.stdout)["reason"] == "max_turns"
    assert len(server.requests) == 2


def _long_run(calls: int) -> list[dict[str, Any]]:
    """``calls`` model calls: one ``ls`` each (a different path, all there), then an answer."""
    steps: list[dict[str, Any]] = [
        {"tool_calls": [{"id": f"c{i}", "name": "ls", "arguments": {"path": "." + "/." * i}}]}
        for i in range(calls - 1)
    ]
    return [*steps, {"text": "all listed"}]


def test_a_run_has_no_model_call_cap_by_default(model_server, repo, env):
    server = model_server(_long_run(60))
    run = mcode(*exec_args(server, "--output-format", "json"), "list it all", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    out = json.loads(run.stdout)
    assert (out["reason"], out["result"]) == ("completed", "all listed")
    assert len(server.requests) == 60 and server.exhausted is False


def test_max_turns_is_an_opt_in_cap_from_the_flag_or_the_config(model_server, repo, env):
    server = model_server(_long_run(60))
    run = mcode(*exec_args(server, "--max-turns", "5"), "list it all", cwd=repo, env=env)
    assert run.code == 3, run.stderr
    assert len(server.requests) == 5
    assert "stopped after 5 model calls" in run.stderr

    (repo / ".mcode").mkdir(exist_ok=True)
    (repo / ".mcode" / "config.toml").write_text("max_turns = 7\n")
    server = model_server(_long_run(60))
    assert mcode(*exec_args(server), "list it all", cwd=repo, env=env).code == 3
    assert len(server.requests) == 7


def test_resume_and_continue_carry_the_conversation(model_server, repo, env):
    server = model_server([{"text": "first answer"}, {"text": "second answer"}, {"text": "third"}])
    first = mcode(
        *exec_args(server, "--output-format", "json"), "first question", cwd=repo, env=env
    )
    session_id = json.loads(first.stdout)["session_id"]
    second = mcode(
        *exec_args(server, "--output-format", "json", "--resume", session_id[:8]),
        "second question",
        cwd=repo,
        env=env,
    )
    assert second.code == 0, second.stderr
    assert json.loads(second.stdout)["session_id"] == session_id
    msgs = bodies(server)[1]["messages"]
    assert [m["role"] for m in msgs if m["role"] != "system"] == ["user", "assistant", "user"]
    assert "first answer" in json.dumps(msgs)

    third = mcode(*exec_args(server, "--continue"), "third question", cwd=repo, env=env)
    assert third.code == 0, third.stderr
    assert "second answer" in json.dumps(bodies(server)[2]["messages"])

    listing = mcode("sessions", cwd=repo, env=env)
    assert session_id[:12] in listing.stdout and "first question" in listing.stdout


def test_bad_config_names_file_and_line(repo, env):
    (repo / ".mcode").mkdir()
    cfg = repo / ".mcode" / "config.toml"
    cfg.write_text('max_turns = 5\npermission_mode = "yolo"\n')
    run = mcode("exec", "hi", cwd=repo, env=env)
    assert run.code == 2
    assert "yolo" in run.stderr
    cfg.write_text('max_turns = 5\n[network]\nmax_retries = "three"\n')
    run = mcode("exec", "hi", cwd=repo, env=env)
    assert run.code == 2
    assert f"{cfg}:3" in run.stderr and "max_retries" in run.stderr
    cfg.write_text("max_turns = = 5\n")
    run = mcode("exec", "hi", cwd=repo, env=env)
    assert run.code == 2 and "line 1" in run.stderr


def test_usage_errors(repo, env):
    assert mcode("exec", "--max-turns", "0", "hi", cwd=repo, env=env).code == 2
    run = mcode("exec", "--image", "nope.png", "hi", cwd=repo, env=env)
    assert run.code == 2 and "nope.png" in run.stderr
    assert mcode("exec", "", cwd=repo, env=env, stdin="").code == 2
    run = mcode("exec", "--resume", "no-such-id", "hi", cwd=repo, env=env)
    assert run.code == 2 and "no session with id 'no-such-id'" in run.stderr
    run = mcode("exec", "--continue", "hi", cwd=repo, env=env)
    assert run.code == 2 and "no earlier session" in run.stderr


def test_api_key_never_appears_in_events_or_store(model_server, repo, env, tmp_path):
    key = "sk-test-PLANTED-SECRET-0123456789"
    env = dict(env, OPENAI_API_KEY=key)
    server = model_server([{"text": f"echoing {key}"}])
    run = mcode(
        *exec_args(server, "--output-format", "stream-json"), f"my key is {key}", cwd=repo, env=env
    )
    assert run.code == 0, run.stderr
    assert server.requests[0]["headers"].get("authorization") == f"Bearer {key}"
    assert key not in run.stdout and key not in run.stderr
    for f in (tmp_path / "home" / "data" / "mcode").iterdir():  # the db and its WAL
        assert key.encode() not in f.read_bytes(), f


@pytest.mark.parametrize("output", ["text", "json"])
def test_api_key_never_reaches_text_or_json_output_or_stderr(model_server, repo, env, output):
    # stream-json was scrubbed; the progress lines, the denial lines, the json result and the
    # text answer were not: a command or an answer quoting the key printed it as is.
    key = "mm-live-PLANTED-SECRET-0123456789"
    env = dict(env, OPENAI_API_KEY=key)
    echo = {"id": "c1", "name": "bash", "arguments": {"command": f"echo {key}"}}
    curl = {"id": "c2", "name": "bash", "arguments": {"command": f"curl -H 'k: {key}' x"}}
    server = model_server([{"tool_calls": [echo, curl]}, {"text": f"the key is {key}"}])
    allow = "--permission-mode", "auto-edit"  # bash asks, so headless denies both
    env["MCODE_PERMISSIONS_ALLOW"] = "bash(echo*)"
    run = mcode(*exec_args(server, "--output-format", output, *allow), "show it", cwd=repo, env=env)
    assert run.code == 4, run.stderr
    assert key not in run.stdout and key not in run.stderr
    assert "denied: bash(curl -H 'k: [REDACTED]' x)" in run.stderr
    if output == "text":
        assert "echo [REDACTED]" in run.stderr  # the progress line of the allowed command
        assert run.stdout == "the key is [REDACTED]\n"
    else:
        result = json.loads(run.stdout)
        assert result["result"] == "the key is [REDACTED]"
        assert result["denials"][0]["subject"] == "curl -H 'k: [REDACTED]' x"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_mid_tool_exits_130_and_records_the_cancel(
    model_server, repo, env, tmp_path, sig
):
    pid = repo / "sleep.pid"  # in the workspace: inside the sandbox /tmp is private
    server = model_server(
        [
            {"tool_calls": [{"id": "c1", "name": "bash", "arguments": {"command": sleeper(pid)}}]},
            {"text": "never"},
        ]
    )
    proc, lines = start_until(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "sleep",
        cwd=repo,
        env=env,
        event_type="tool.started",
    )
    while not pid.exists() or not pid.read_text().strip():
        time.sleep(0.02)  # the command is running
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=60)  # a run that waited for the command would hang
    assert proc.returncode == 130
    assert gone(pid)  # the command's process group was killed
    events = lines + [json.loads(x) for x in rest.splitlines()]
    stored = stored_events(tmp_path / "home", events[0]["session_id"])
    finished = [e["data"] for e in stored if e["type"] == "tool.finished"]
    assert finished[0]["ok"] is False and "cancelled" in finished[0]["message"]["parts"][0]["text"]
    assert finished[0]["duration"] > 0  # it ran until the signal; a cancel does not zero that
    assert [e["data"]["reason"] for e in stored if e["type"] == "turn.finished"] == ["cancelled"]
    assert stored[-1]["type"] == "session.finished" and stored[-1]["data"]["exit_code"] == 130


def test_image_is_sent_as_a_data_url(model_server, repo, env, tmp_path):
    png = tmp_path / "shot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    server = model_server([{"text": "a black square"}])
    run = mcode(*exec_args(server, "--image", str(png)), "what is this?", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    content = bodies(server)[0]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "what is this?"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


def test_agents_md_reaches_the_system_prompt_and_prefix_is_static(model_server, repo, env):
    (repo / "AGENTS.md").write_text("Always run `make check` before finishing.\n")
    trust(repo, env)
    server = model_server([{"text": "ok"}, {"text": "ok"}])
    assert mcode(*exec_args(server), "hi", cwd=repo, env=env).code == 0
    assert mcode(*exec_args(server), "hi", cwd=repo, env=env).code == 0
    first, second = bodies(server)
    system = first["messages"][0]
    assert system["role"] == "system" and "Always run `make check`" in system["content"]
    # Two runs, same system prompt and tools, byte for byte: nothing volatile in the prefix.
    assert system == second["messages"][0] and first["tools"] == second["tools"]


def test_a_tool_call_cut_off_at_the_output_limit_is_not_run(model_server, repo, env):
    # The model hit its token limit inside write's content: the JSON lacks its closing `"}`.
    cut = '{"path": "new.py", "content": "def f():\\n    return 1\\n\\ndef g():\\n    ret'
    server = model_server(
        [
            {
                "tool_calls": [
                    {"id": "c1", "name": "ls", "arguments": {}},
                    {"id": "c2", "name": "write", "arguments": cut},
                ],
                "finish_reason": "length",
            },
            {"text": "I will write it in smaller pieces."},
        ]
    )
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "write new.py",
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    assert not (repo / "new.py").exists()
    ls_result, write_result = tool_messages(bodies(server)[1])
    assert "calc.py" in ls_result["content"]  # the complete call before it still ran
    assert write_result["tool_call_id"] == "c2"
    assert "cut off" in write_result["content"] and "not run" in write_result["content"]


@pytest.mark.parametrize(("wire", "cap"), [("openai", "length"), ("anthropic", "max_tokens")])
def test_an_answer_cut_at_the_output_cap_keeps_its_text_and_is_not_a_success(
    model_server, repo, env, wire, cap
):
    partial = "The project has three parts: a parser, a scheduler and"
    server = model_server([{"text": partial, "finish_reason": cap}])
    run = mcode(
        *exec_args(server, "--output-format", "json", wire=wire), "explain", cwd=repo, env=env
    )
    assert run.code == 3, run.stderr
    result = json.loads(run.stdout)
    assert result["result"] == partial and result["reason"] == "output_limit"
    assert "cut at the model's output cap" in result["error"]["message"]
    assert "max_output_tokens" in result["error"]["hint"]


def test_resume_after_kill_9_mid_tool_answers_the_dangling_call(model_server, repo, env):
    server = model_server(
        [
            {"tool_calls": [{"id": "c1", "name": "bash", "arguments": {"command": "sleep 3"}}]},
            {"text": "picked up again"},
        ]
    )
    proc, _ = start_until(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "sleep",
        cwd=repo,
        env=env,
        event_type="tool.started",
    )
    proc.kill()
    proc.communicate(timeout=30)

    run = mcode(*exec_args(server, "--continue"), "go on", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert run.stdout.strip() == "picked up again"
    # An API rejects an assistant tool call that no tool result answers.
    msgs = bodies(server)[1]["messages"]
    roles = [m["role"] for m in msgs if m["role"] != "system"]
    assert roles == ["user", "assistant", "tool", "user"]
    assert msgs[-2]["tool_call_id"] == "c1" and "did not finish" in msgs[-2]["content"]


def test_text_that_is_not_utf8_never_crashes_the_run(model_server, repo, env, tmp_path):
    # A file name that is not UTF-8, a prompt piped from a Latin-1 file, and a model answer with
    # a lone surrogate escape (valid JSON, not encodable as UTF-8): each used to end in a
    # traceback. Each shows as U+FFFD instead.
    (repo / "caf\udce9.txt").write_text("x\n")  # the bytes b"caf\xe9.txt" on disk
    lone = {"choices": [{"index": 0, "delta": {"content": "odd \\ud800 text"}}]}
    server = model_server(
        [
            {"tool_calls": [{"id": "c1", "name": "ls", "arguments": {}}]},
            {
                "sse": [
                    "data: " + json.dumps(lone).replace("\\\\", "\\") + "\n\n",
                    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                    "data: [DONE]\n\n",
                ]
            },
        ]
    )
    args = exec_args(server, "--output-format", "stream-json", "-")
    proc = subprocess.run(
        [sys.executable, "-m", "mcode", *args],
        cwd=repo,
        env=env,
        input="explain caf\xe9.txt\n".encode("latin-1"),
        capture_output=True,
        timeout=60,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    events = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    assert events[2]["data"]["message"]["parts"][0]["text"] == "explain caf\ufffd.txt\n"
    listing = tool_messages(bodies(server)[1])[0]["content"]
    assert "caf\ufffd.txt" in listing
    assert events[-1]["data"]["result"] == "odd \ufffd text"
    session_id = events[0]["session_id"]
    stored = stored_events(tmp_path / "home", session_id)
    assert stored == [e for e in events if e["type"] not in TRANSIENT_TYPES]


def test_stdout_closed_early_cancels_quietly_and_records_it(model_server, repo, env, tmp_path):
    server = model_server(
        [
            {"tool_calls": [{"id": "c1", "name": "bash", "arguments": {"command": "sleep 1"}}]},
            {"text": "never"},
        ]
    )
    command = " ".join(
        [sys.executable, "-m", "mcode"]
        + [f"'{a}'" for a in exec_args(server, "--output-format", "stream-json")]
        + ["--permission-mode", "full-auto", "go", "| head -1; exit ${PIPESTATUS[0]}"]
    )
    proc = subprocess.run(
        ["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == ""
    first = json.loads(proc.stdout)
    stored = stored_events(tmp_path / "home", first["session_id"])
    assert [e["data"]["reason"] for e in stored if e["type"] == "turn.finished"] == ["cancelled"]
    assert stored[-1]["type"] == "session.finished" and stored[-1]["data"]["exit_code"] == 130


def test_closed_stdin_is_a_usage_error_not_a_traceback(repo, env):
    for args in (["exec"], ["exec", "-"]):
        p = subprocess.run(
            [sys.executable, "-m", "mcode", *args],
            cwd=repo,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            close_fds=True,
            preexec_fn=lambda: os.close(0),
        )
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr and "prompt" in p.stderr


def test_resume_with_no_prompt_continues_a_turn_killed_mid_tool(model_server, repo, env):
    server = model_server(
        [
            {"tool_calls": [{"id": "c1", "name": "bash", "arguments": {"command": "sleep 30"}}]},
            {"text": "picked the work up again"},
        ]
    )
    proc, events = start_until(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "sleep",
        cwd=repo,
        env=env,
        event_type="tool.started",
    )
    proc.kill()
    proc.communicate(timeout=30)
    session_id = events[0]["session_id"]

    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--resume", session_id[:8]),
        cwd=repo,
        env=env,
        stdin="",  # an empty pipe is no prompt either
    )
    assert run.code == 0, run.stderr
    # The model is called again on the history: the interrupted call answered, no new message.
    msgs = bodies(server)[1]["messages"]
    assert [m["role"] for m in msgs if m["role"] != "system"] == ["user", "assistant", "tool"]
    assert msgs[-1]["tool_call_id"] == "c1" and "did not finish" in msgs[-1]["content"]
    resumed = run.events()
    started = [e["data"] for e in resumed if e["type"] == "turn.started"]
    assert started == [{"resumed": True}]
    assert "message.user" not in [e["type"] for e in resumed]
    assert resumed[-1]["data"]["result"] == "picked the work up again"


def test_continue_with_no_prompt_picks_up_a_turn_stopped_at_max_turns(model_server, repo, env):
    server = model_server(
        [{"tool_calls": [{"id": "c1", "name": "ls", "arguments": {}}]}, {"text": "finished"}]
    )
    assert mcode(*exec_args(server, "--max-turns", "1"), "list", cwd=repo, env=env).code == 3
    run = mcode(*exec_args(server, "--continue"), cwd=repo, env=env, stdin="")
    assert run.code == 0, run.stderr
    assert run.stdout == "finished\n"
    assert "continuing the interrupted turn" in run.stderr
    assert bodies(server)[1]["messages"][-1]["role"] == "tool"


def test_resume_with_no_prompt_after_a_completed_turn_is_a_usage_error(
    model_server, repo, env, tmp_path
):
    server = model_server([{"text": "all done"}])
    first = mcode(*exec_args(server, "--output-format", "json"), "hi", cwd=repo, env=env)
    session_id = json.loads(first.stdout)["session_id"]
    run = mcode(*exec_args(server, "--resume", session_id), cwd=repo, env=env, stdin="")
    assert run.code == 2
    assert "nothing to continue" in run.stderr and "give a prompt" in run.stderr
    assert len(server.requests) == 1
    stored = stored_events(tmp_path / "home", session_id)
    assert [e["type"] for e in stored].count("session.started") == 1  # nothing recorded
