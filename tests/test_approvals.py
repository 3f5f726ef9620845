"""Permission questions in `mcode exec`: announced up front, answered over stream-json with an
`approve` line (or denied when nobody answers in time), denied where nobody can answer. mcode
is a subprocess against the scripted model server; a test reads its events and writes lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import Live, clean_env, exec_args, make_repo, mcode, tool_messages


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


def asking(server, *extra: str) -> list[str]:
    """`mcode exec` in the default ask mode, stream-json in and out."""
    flags = ("--input-format", "stream-json", "--output-format", "stream-json")
    return exec_args(server, *flags, *extra)


def write_call(path: str = "new.txt", content: str = "written\n") -> dict[str, Any]:
    call = {"id": "c1", "name": "write", "arguments": {"path": path, "content": content}}
    return {"tool_calls": [call]}


def user(text: str) -> str:
    return json.dumps({"type": "user", "text": text})


def approve(request_id: str, decision: str, reason: str | None = None) -> str:
    line = {"type": "approve", "request_id": request_id, "decision": decision}
    return json.dumps(line if reason is None else {**line, "reason": reason})


def test_an_approve_line_allows_the_write(model_server, repo, env):
    server = model_server([write_call(), {"text": "done"}])
    run = Live(asking(server), cwd=repo, env=env)
    try:
        run.send(user("write new.txt"))
        assert run.until("session.started")["data"]["approvals"] == "stdin"
        asked = run.until("permission.asked")["data"]
        assert (asked["name"], asked["subject"]) == ("write", "new.txt")
        assert not (repo / "new.txt").exists()  # it waits for the answer
        run.send(approve(asked["request_id"], "allow"))
        run.until("turn.finished")
        run.close()
        assert run.wait() == 0, run.stderr
    finally:
        run.kill()
    assert (repo / "new.txt").read_text() == "written\n"
    decided = next(e["data"] for e in run.events if e["type"] == "permission.decided")
    assert decided["allowed"] is True and decided["by"] == "user"


def test_a_deny_with_a_reason_reaches_the_model(model_server, repo, env):
    server = model_server([write_call(), {"text": "understood"}])
    run = Live(asking(server, "write it"), cwd=repo, env=env)
    try:
        asked = run.until("permission.asked")["data"]
        run.send(approve(asked["request_id"], "deny", "put it in a.txt instead"))
        run.until("turn.finished")
        run.close()
        assert run.wait() == 4, run.stderr  # finished, with a denied call
    finally:
        run.kill()
    assert not (repo / "new.txt").exists()
    result = tool_messages(server.bodies[1])[0]["content"]
    assert "permission denied" in result and "put it in a.txt instead" in result
    decided = next(e["data"] for e in run.events if e["type"] == "permission.decided")
    assert decided["allowed"] is False and decided["by"] == "user"


def test_an_unanswered_question_times_out_as_a_denial(model_server, repo, env):
    server = model_server([write_call(), {"text": "ok"}])
    run = Live(asking(server, "--approval-timeout", "0.5", "write it"), cwd=repo, env=env)
    try:
        decided = run.until("permission.decided")["data"]  # nothing is sent: it times out
        assert decided["allowed"] is False and decided["by"] == "timeout"
        asked = next(e["data"] for e in run.events if e["type"] == "permission.asked")
        run.until("turn.finished")
        run.send(approve(asked["request_id"], "allow"))  # too late: an input error, not a run
        error = run.until("error")["data"]
        assert error["kind"] == "input" and asked["request_id"] in error["message"]
        run.close()
        assert run.wait() == 4, run.stderr
    finally:
        run.kill()
    assert not (repo / "new.txt").exists()
    assert "no answer came within 0.5 s" in tool_messages(server.bodies[1])[0]["content"]


def test_a_question_pending_when_stdin_ends_is_denied_at_once(model_server, repo, env):
    # The prompt is the argument and stdin is empty: nobody can ever answer, so there is no
    # wait for the timeout (300 s by default).
    server = model_server([write_call(), {"text": "ok"}])
    run = mcode(*asking(server), "write it", cwd=repo, env=env, stdin="", timeout=60)
    assert run.code == 4, run.stderr
    decided = next(e["data"] for e in run.events() if e["type"] == "permission.decided")
    assert decided["by"] == "headless" and not (repo / "new.txt").exists()


@pytest.mark.parametrize(
    "mode, note",
    [
        ("ask", "permission mode ask: edits and commands not allowed by a rule will be denied"),
        ("auto-edit", "permission mode auto-edit: commands not allowed by a rule will be denied"),
        ("read-only", "permission mode read-only: edits and commands are denied"),
    ],
)
def test_a_headless_run_says_up_front_what_its_mode_denies(model_server, repo, env, mode, note):
    server = model_server([{"text": "hello"}, {"text": "hello"}])
    text = mcode(*exec_args(server, "--permission-mode", mode), "hi", cwd=repo, env=env)
    assert text.code == 0 and text.stdout == "hello\n"
    assert note in text.stderr and "use --permission-mode" in text.stderr
    # In the first event too, for wrappers (json and stream-json print no progress lines).
    streamed = mcode(
        *exec_args(server, "--permission-mode", mode, "--output-format", "stream-json"),
        "hi",
        cwd=repo,
        env=env,
    )
    first = streamed.events()[0]["data"]
    assert first["approvals"] == "denied" and note in first["permission_note"]


def test_full_auto_has_nothing_to_announce(model_server, repo, env):
    server = model_server([{"text": "hello"}])
    run = mcode(
        *exec_args(server, "--permission-mode", "full-auto", "--output-format", "stream-json"),
        "hi",
        cwd=repo,
        env=env,
    )
    assert run.code == 0 and run.events()[0]["data"]["permission_note"] is None


def test_a_malformed_approve_line_is_skipped_with_an_error(model_server, repo, env):
    server = model_server([{"text": "hello"}])
    bad = json.dumps({"type": "approve", "request_id": "x", "decision": "maybe"})
    run = mcode(*asking(server), cwd=repo, env=env, stdin=bad + "\n" + user("hi") + "\n")
    assert run.code == 0, run.stderr
    error = next(e["data"] for e in run.events() if e["type"] == "error")
    assert error["kind"] == "input" and '"allow", "deny" or "edit"' in error["message"]
