"""`mcode exec --input-format stream-json`: user messages, steer and cancel read from stdin while
a turn runs. mcode is a subprocess against the scripted model server on loopback; a test writes
lines to its stdin and reads its events as they come."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    Live,
    clean_env,
    exec_args,
    gone,
    make_repo,
    mcode,
    sleeper,
    stored_events,
    tool_messages,
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


def stdin_args(server, *extra: str, output: str = "stream-json", wire: str = "openai") -> list[str]:
    """``mcode exec`` reading stream-json lines on stdin, full-auto."""
    flags = ["--permission-mode", "full-auto", "--input-format", "stream-json"]
    return exec_args(server, *flags, "--output-format", output, *extra, wire=wire)


def user(text: str) -> str:
    return json.dumps({"type": "user", "text": text})


def steer(text: str) -> str:
    return json.dumps({"type": "steer", "text": text})


CANCEL = json.dumps({"type": "cancel"})


def bash(call_id: str, command: str) -> dict[str, Any]:
    return {"tool_calls": [{"id": call_id, "name": "bash", "arguments": {"command": command}}]}


def last_user_text(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


@pytest.fixture
def live(repo, env):
    started: list[Live] = []

    def start(args: list[str]) -> Live:
        started.append(Live(args, cwd=repo, env=env))
        return started[-1]

    yield start
    for run in started:
        run.kill()


def test_messages_from_a_file_run_as_turns_in_order(model_server, repo, env, tmp_path):
    # The prompt argument is the first message; the lines of a regular file (stdin is no pipe)
    # follow. The second arrives while the first turn runs, so it waits for it.
    server = model_server([{"text": "answer one", "delay": 0.3}, {"text": "answer two"}])
    lines = tmp_path / "in.jsonl"
    lines.write_text(user("question two") + "\n")
    with lines.open() as stdin:
        p = subprocess.run(
            [sys.executable, "-m", "mcode", *stdin_args(server, output="text"), "question one"],
            cwd=repo,
            env=env,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert p.returncode == 0, p.stderr
    assert p.stdout == "answer one\nanswer two\n"  # each answer as its turn ends
    first, second = server.bodies
    assert last_user_text(first) == "question one"
    roles = [(m["role"], m.get("content")) for m in second["messages"][1:]]
    assert roles == [
        ("user", "question one"),
        ("assistant", "answer one"),
        ("user", "question two"),
    ]

    # json: one result, for the last turn; the Claude Code message shape is accepted too.
    server = model_server([{"text": "three"}, {"text": "four"}])
    claude = {
        "type": "user",
        "message": {"role": "user", "content": [{"type": "text", "text": "q4"}]},
    }
    run = mcode(
        *stdin_args(server, output="json"),
        cwd=repo,
        env=env,
        stdin=user("q3") + "\n" + json.dumps(claude) + "\n",
    )
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["result"] == "four" and result["model_calls"] == 2
    assert last_user_text(server.bodies[1]) == "q4"


def test_steer_while_a_tool_runs_reaches_the_next_request_after_its_result(
    model_server, live, repo
):
    # The command waits for a file the test creates once mcode has taken the steer, so the
    # steer certainly arrives while the tool runs.
    go = repo / "go"
    server = model_server(
        [
            bash("c1", f"while [ ! -e {go} ]; do sleep 0.02; done; echo slept"),
            {"text": "done, with tabs"},
        ]
    )
    run = live(stdin_args(server))
    run.send(user("do the thing"))
    run.until("tool.started")
    run.send(steer("also: use tabs"))
    run.until("steer.received")
    go.touch()
    run.until("turn.finished")
    run.close()
    assert run.wait() == 0, run.stderr

    second = server.bodies[1]
    assert "slept" in tool_messages(second)[0]["content"]  # the running command was kept
    assert second["messages"][-1] == {"role": "user", "content": "also: use tabs"}
    types = run.types()
    assert (
        types.index("steer.received")
        < types.index("tool.finished")
        < types.index("steer.delivered")
    )
    assert types.count("turn.started") == 1  # the steer joined the turn; it did not start one


@pytest.mark.parametrize("phase", ["waiting", "streaming"])
def test_steer_during_a_model_call_is_delivered_in_the_next_request(model_server, live, phase):
    answer = "first part of the answer"
    if phase == "waiting":  # the request is in flight, no byte of the answer has come yet
        step = {"text": answer, "delay": 2}
    else:  # mid-stream: after the first piece of text the server pauses
        step = {"text": answer, "chunk_size": 4, "stall_after": 2, "stall": 2}
    server = model_server([step, {"text": "answer with the steer"}])
    run = live(stdin_args(server))
    run.send(user("explain"))
    if phase == "waiting":
        deadline = time.monotonic() + 30
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.02)
    else:
        run.until("text.delta")
    run.send(steer("in French"))
    run.until("turn.finished")
    run.close()
    assert run.wait() == 0, run.stderr
    types = run.types()
    # It came while the call ran, and was delivered only after its answer.
    assert types.index("steer.received") < types.index("message.assistant")
    assert types.index("message.assistant") < types.index("steer.delivered")
    # Nothing streamed was lost: the whole first answer is in history, then the steer.
    second = server.bodies[1]
    assert [(m["role"], m["content"]) for m in second["messages"][-2:]] == [
        ("assistant", answer),
        ("user", "in French"),
    ]
    assert run.events[-1]["data"]["result"] == "answer with the steer"


def test_cancel_mid_tool_stops_the_turn_and_the_run_goes_on_until_eof(model_server, live, tmp_path):
    pid = tmp_path / "repo" / "sleep.pid"  # in the workspace: inside the sandbox /tmp is private
    server = model_server([bash("c1", sleeper(pid)), {"text": "never"}])
    run = live(stdin_args(server))
    run.send(user("run it"))
    run.until("tool.started")
    while not pid.exists() or not pid.read_text().strip():
        time.sleep(0.02)  # the command is running
    run.send(CANCEL)
    finished = run.until("turn.finished", timeout=60)  # a cancel that waited would hang
    assert finished["data"]["reason"] == "cancelled"
    assert gone(pid)  # the command's process group was killed
    assert run.proc.poll() is None  # still reading stdin: a cancel ends the turn, not the run
    run.close()
    assert run.wait() == 130, run.stderr  # the last turn was cancelled

    stored = stored_events(tmp_path / "home", run.events[0]["session_id"])
    result = next(e["data"] for e in stored if e["type"] == "tool.finished")
    assert result["ok"] is False and "cancelled" in result["message"]["parts"][0]["text"]
    assert [e["data"]["reason"] for e in stored if e["type"] == "turn.finished"] == ["cancelled"]
    assert stored[-1]["type"] == "session.finished" and stored[-1]["data"]["exit_code"] == 130
    assert len(server.requests) == 1


def test_cancel_drops_queued_messages_and_later_ones_still_run(model_server, live):
    server = model_server([bash("c1", "sleep 30"), {"text": "four"}])
    run = live(stdin_args(server))
    run.send(user("one"))
    run.until("tool.started")
    run.send(user("two"), user("three"), CANCEL)
    assert run.until("turn.finished")["data"]["reason"] == "cancelled"
    run.send(user("four"))
    run.until("turn.finished", 2)
    run.close()
    assert run.wait() == 0, run.stderr  # the last turn completed
    sent = json.dumps(server.bodies)
    assert "two" not in sent and "three" not in sent
    assert last_user_text(server.bodies[1]) == "four"
    users = [
        e["data"]["message"]["parts"][0]["text"] for e in run.events if e["type"] == "message.user"
    ]
    assert users == ["one", "four"]


def test_malformed_lines_are_reported_and_skipped(model_server, repo, env):
    server = model_server([{"text": "still here"}])
    bad = [
        "this is not json",
        "[1, 2]",
        '{"type": "shout", "text": "hi"}',
        '{"text": "no type"}',
        '{"type": "user"}',
        '{"type": "steer", "text": "   "}',
        '{"type": "user", "text": "look", "images": ["missing.png"]}',
        '{"type": "user", "message": {"role": "user", "content": [{"type": "video"}]}}',
    ]
    stdin = "\n".join([*bad, "", user("the real question")]) + "\n"
    run = mcode(*stdin_args(server), cwd=repo, env=env, stdin=stdin)
    assert run.code == 0, run.stderr
    errors = [e["data"] for e in run.events() if e["type"] == "error"]
    assert len(errors) == len(bad)
    assert all(e["kind"] == "input" and e["recoverable"] is True for e in errors)
    assert all('{"type":"user","text":"..."}' in e["hint"] for e in errors)
    messages = [e["message"] for e in errors]
    for n, expected in enumerate(
        [
            "not JSON",
            "not an object",
            "unknown type 'shout'",
            'no "type" field',
            'needs "text"',
            "text is empty",
            "missing.png: cannot read it",
            "not supported",
        ],
        start=1,
    ):
        assert f"line {n} was skipped" in messages[n - 1] and expected in messages[n - 1]
    assert last_user_text(server.bodies[0]) == "the real question"


def test_a_steer_with_no_running_turn_starts_one(model_server, repo, env):
    server = model_server([{"text": "ok"}])
    run = mcode(*stdin_args(server), cwd=repo, env=env, stdin=steer("use tabs") + "\n")
    assert run.code == 0, run.stderr
    assert last_user_text(server.bodies[0]) == "use tabs"
    assert "steer.received" not in [e["type"] for e in run.events()]


def test_no_message_before_eof_is_a_usage_error(repo, env):
    for stdin in ("", "\n\n"):
        run = mcode(
            "exec", "--input-format", "stream-json", cwd=repo, env=env, stdin=stdin, timeout=60
        )
        assert run.code == 2, run.stderr
        assert "standard input ended before any user message" in run.stderr
    p = subprocess.run(
        [sys.executable, "-m", "mcode", "exec", "--input-format", "stream-json"],
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "before any user message" in p.stderr
    closed = subprocess.run(
        [sys.executable, "-m", "mcode", "exec", "--input-format", "stream-json"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        close_fds=True,
        preexec_fn=lambda: os.close(0),
    )
    assert (
        closed.returncode == 2 and "standard input" in closed.stderr and "closed" in closed.stderr
    )
    # Nothing was asked, so nothing was stored: --continue still finds the real last session.
    assert "no sessions" in mcode("sessions", cwd=repo, env=env).stdout
    dash = mcode("exec", "--input-format", "stream-json", "-", cwd=repo, env=env, stdin="")
    assert dash.code == 2 and "JSON lines" in dash.stderr


def test_sigint_while_waiting_for_input_ends_the_run(model_server, live, tmp_path):
    server = model_server([{"text": "one"}])
    run = live(stdin_args(server))
    run.send(user("hi"))
    run.until("turn.finished")
    run.proc.send_signal(signal.SIGINT)  # idle: reading stdin, which stays open
    assert run.wait() == 130, run.stderr
    assert run.events[-1]["type"] == "session.finished"
    assert run.events[-1]["data"]["exit_code"] == 130


def test_a_steer_received_before_a_kill_is_delivered_when_the_turn_is_resumed(
    model_server, live, repo, env
):
    # The steer was stored (steer.received) but the process died before the next step: the
    # resumed turn went on without it, and nothing said so.
    server = model_server([bash("c1", "sleep 30"), {"text": "with tabs"}])
    run = live(stdin_args(server))
    run.send(user("do it"))
    run.until("tool.started")
    run.send(steer("use tabs"))
    run.until("steer.received")
    run.kill()
    args = stdin_args(server)
    at = args.index("--input-format")
    del args[at : at + 2]  # a plain resume: no stdin to read
    resumed = mcode(*args, "--continue", cwd=repo, env=env)
    assert resumed.code == 0, resumed.stderr
    messages = server.bodies[1]["messages"]
    assert messages[-2]["role"] == "tool" and "did not finish" in messages[-2]["content"]
    assert messages[-1] == {"role": "user", "content": "use tabs"}
    delivered = [e for e in resumed.events() if e["type"] == "steer.delivered"]
    assert [e["data"]["text"] for e in delivered] == ["use tabs"]


def test_a_write_cancelled_under_way_is_recorded_as_done(model_server, live, repo, env, tmp_path):
    # write works in a thread, which a cancel cannot stop: the file was created after the call
    # had been recorded as "cancelled before it finished", with no file.changed, so the model
    # (and a --continue) believed it did not exist. A slow checkpoint holds the write open.
    assert mcode("sessions", cwd=repo, env=env).code == 0  # creates the database
    db = sqlite3.connect(tmp_path / "home" / "data" / "mcode" / "sessions.db")
    db.execute(
        "CREATE TRIGGER slow BEFORE INSERT ON checkpoints BEGIN SELECT count(*) FROM "
        "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
        "SELECT x FROM c); END"
    )
    db.commit()
    db.close()
    write = {"id": "w1", "name": "write", "arguments": {"path": "b.txt", "content": "new\n"}}
    server = model_server([{"tool_calls": [write]}, {"text": "never"}])
    run = live(stdin_args(server))
    run.send(user("write it"))
    run.until("tool.started")
    run.send(CANCEL)
    assert run.until("turn.finished")["data"]["reason"] == "cancelled"
    run.close()
    assert run.wait() == 130, run.stderr
    assert (repo / "b.txt").read_text() == "new\n"
    finished = next(e["data"] for e in run.events if e["type"] == "tool.finished")
    assert finished["ok"] is True and "created b.txt" in finished["summary"], finished
    changed = [e["data"]["path"] for e in run.events if e["type"] == "file.changed"]
    assert changed == ["b.txt"]


def anthropic_history_is_valid(messages: list[dict[str, Any]]) -> None:
    """What the Messages API checks: every tool_use is answered by a tool_result in the very
    next message (a user message), and every tool_result answers the message before it."""
    asked: set[str] = set()
    for m in messages:
        blocks = m["content"] if isinstance(m["content"], list) else []
        results = {b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"}
        assert results == asked, (m, asked)
        asked = {b["id"] for b in blocks if b.get("type") == "tool_use"}
        assert not asked or m["role"] == "assistant"
    assert not asked


def test_steer_then_cancel_on_the_anthropic_wire(model_server, live, repo):
    go = repo / "go"
    server = model_server(
        [
            bash("c1", f"while [ ! -e {go} ]; do sleep 0.02; done; echo slept"),
            bash("c2", "sleep 30"),
            {"text": "picked up"},
        ]
    )
    run = live(stdin_args(server, wire="anthropic"))
    run.send(user("do the thing"))
    run.until("tool.started")
    run.send(steer("also: use tabs"))
    run.until("steer.received")
    go.touch()
    run.until("tool.started", 2)
    run.send(CANCEL)
    assert run.until("turn.finished")["data"]["reason"] == "cancelled"
    run.send(user("go on"))
    run.until("turn.finished", 2)
    run.close()
    assert run.wait() == 0, run.stderr

    second, third = server.bodies[1], server.bodies[2]
    # The steer joins the tool result in the user message after the call, as the API requires.
    blocks = second["messages"][-1]["content"]
    assert [b["type"] for b in blocks] == ["tool_result", "text"]
    assert "slept" in json.dumps(blocks[0]) and blocks[1]["text"] == "also: use tabs"
    # After the cancel the history is one the API accepts: the cancelled call has its result.
    anthropic_history_is_valid(third["messages"])
    last = third["messages"][-1]["content"]
    assert last[0]["tool_use_id"] == "c2" and "cancelled" in json.dumps(last[0])
    assert last[-1] == {"type": "text", "text": "go on", "cache_control": {"type": "ephemeral"}}


def test_turn_id_is_null_outside_a_turn(model_server, repo, env):
    # README: "turn_id is null outside a turn": session.finished after the last turn included.
    server = model_server([{"text": "one"}, {"text": "two"}])
    run = mcode(*stdin_args(server), cwd=repo, env=env, stdin=user("q1") + "\n" + user("q2") + "\n")
    assert run.code == 0, run.stderr
    current = None
    turns = []
    for e in run.events():
        if e["type"] == "turn.started":
            current = e["turn_id"]
            turns.append(current)
        assert e["turn_id"] == current, e
        if e["type"] == "turn.finished":
            current = None
    assert len(turns) == 2 and None not in turns
    assert run.events()[-1]["type"] == "session.finished"


def test_compact_line_during_a_turn_compacts_at_its_next_step(model_server, repo, env):
    """A compact line while a command runs: the command finishes, then (before the next model
    call) the conversation is compacted, and the turn goes on from the ledger."""
    server = model_server(
        [
            # Output enough that the ledger is smaller than what it replaces.
            bash("c1", "sleep 0.8; seq 1 2000; echo slept"),
            {"text": "## Progress\n- slept\n## Open items\n- report"},  # the summary request
            {"text": "all done"},
        ]
    )
    live = Live(stdin_args(server), cwd=repo, env=env)
    try:
        live.send(user("Sleep, then report."))
        live.until("tool.started")
        live.send(json.dumps({"type": "compact", "instructions": "what slept"}))
        live.close()
        assert live.wait() == 0, live.stderr
    finally:
        live.kill()
    compaction = live.until("compaction")["data"]
    assert compaction["reason"] == "manual" and compaction["summarised"]
    types = live.types()
    assert (
        types.index("tool.finished")
        < types.index("compaction")
        < types.index("message.assistant", types.index("compaction"))
    )
    summary, resumed = server.requests[1]["body"], server.requests[2]["body"]
    assert "what slept" in summary["messages"][-1]["content"]
    assert "slept" in tool_messages(summary)[-1]["content"]
    assert resumed["messages"][1]["content"].startswith("[mcode: the conversation was compacted")
    assert "Sleep, then report." in resumed["messages"][1]["content"]


def test_a_malformed_compact_line_is_skipped_and_the_run_goes_on(model_server, repo, env):
    server = model_server([{"text": "ok"}])
    run = mcode(
        *stdin_args(server),
        cwd=repo,
        env=env,
        stdin=json.dumps({"type": "compact", "instructions": ["not", "text"]})
        + "\n"
        + user("hi")
        + "\n",
    )
    assert run.code == 0, run.stderr
    errors = [e["data"] for e in run.events() if e["type"] == "error"]
    assert errors[0]["kind"] == "input" and "instructions" in errors[0]["message"]
    assert not [e for e in run.events() if e["type"] == "compaction"]
