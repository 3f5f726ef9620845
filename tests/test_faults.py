"""The fault matrix: each way a run can go wrong, tried through ``mcode exec`` against the
scripted model server, and each time nothing is lost.

Every case runs the same small task: the model writes ``notes.txt`` (a completed, recorded tool
call), then the fault strikes, then the model finishes. Afterwards the test checks what a user
would: the exit code and the event that says what happened, ``notes.txt`` whole or absent (never
half), no temp file beside it, the store intact and holding every event that was printed, and,
where the run stopped, that ``--resume`` carries on with the whole history.

What is covered elsewhere is not repeated: the status codes that are never retried
(test_fail_fast.py), MiniMax's error codes on every wire (test_minimax_errors.py), SSE edge cases
(test_sse.py), ``kill -9`` at each event (test_crash.py), the supervisor's reaping
(test_supervisor.py).

With ``MCODE_RELIABILITY_ROWS=FILE`` set, each case appends its row (fault, what mcode did) to
FILE as a JSON line; ``python tests/bench/reliability.py`` runs this file that way and renders
the table in RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import Live, clean_env, exec_args, gone, make_repo, mcode, sleeper, stored_events

from mcode.events import TRANSIENT_TYPES

NOTES = "a line of notes that must arrive whole\n" * 300
TASK = "Write notes.txt, then finish."
WRITE = {
    "tool_calls": [
        {"id": "w1", "name": "write", "arguments": {"path": "notes.txt", "content": NOTES}}
    ]
}
DONE = {"text": "All done."}


def record(fault: str, outcome: str) -> None:
    """One row of RELIABILITY.md's fault matrix, when a report is being made."""
    rows = os.environ.get("MCODE_RELIABILITY_ROWS")
    if rows:
        with open(rows, "a") as f:
            f.write(json.dumps({"table": "faults", "fault": fault, "outcome": outcome}) + "\n")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# r\n"})


def run_task(server: Any, repo: Path, home: Path, *extra: str, **env: str) -> tuple[int, list, str]:
    args = exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto")
    run = mcode(*args, *extra, TASK, cwd=repo, env=clean_env(home, **env), timeout=90)
    return run.code, run.events(), run.stderr


def check_nothing_lost(repo: Path, home: Path, printed: list[dict[str, Any]]) -> list[dict]:
    """The store is intact and holds every durable event printed, in order; notes.txt is whole
    or absent and no temp file of a write is left. The stored events."""
    db = sqlite3.connect(home / "data" / "mcode" / "sessions.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    stored = stored_events(home, printed[0]["session_id"])
    durable = [e for e in printed if e["type"] not in TRANSIENT_TYPES]
    assert stored[: len(durable)] == durable
    notes = repo / "notes.txt"
    assert not notes.exists() or notes.read_text() == NOTES
    assert not [p.name for p in repo.iterdir() if p.name.endswith(".mcode-tmp")]
    return stored


def check_resumes(
    model_server: Any, repo: Path, home: Path, session_id: str, *, task_stored: bool = True
) -> dict[str, Any]:
    """``--resume`` completes with a history the API accepts, beginning with the first turn
    (when it was stored) and ending with the new one. The request the model got."""
    server = model_server([{"text": "Picked up."}])
    run = mcode(
        *exec_args(server, "--resume", session_id, "--output-format", "json"),
        "Carry on.",
        cwd=repo,
        env=clean_env(home),
    )
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["result"] == "Picked up."
    messages = server.requests[0]["body"]["messages"]
    assert messages[1]["content"] == (TASK if task_stored else "Carry on.")
    assert messages[-1]["content"] == "Carry on."
    pending: list[str] = []  # every tool call answered right after it, as the API requires
    for m in messages:
        if m["role"] == "tool":
            assert m["tool_call_id"] in pending
            pending.remove(m["tool_call_id"])
        else:
            assert not pending, messages
            pending = [c["id"] for c in m.get("tool_calls") or ()]
    return dict(server.requests[0]["body"])


def told(finished: dict[str, Any]) -> str:
    """What a tool.finished event's result tells the model."""
    return "".join(p.get("text", "") for p in finished["message"]["parts"])


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == type_]


# -- the model API fails, and a retry gets through ---------------------------------------------

TRANSIENT: dict[str, dict[str, Any]] = {
    "HTTP 429": {"status": 429, "headers": {"Retry-After": "0"}},
    "HTTP 500": {"status": 500},
    "HTTP 502": {"status": 502, "body": "<html>Bad Gateway</html>"},
    "HTTP 503": {"status": 503},
    "HTTP 529 (overloaded)": {
        "status": 529,
        "body": {"error": {"type": "overloaded_error", "message": "Overloaded"}},
    },
    "connection reset before the first byte": {"text": "never seen", "cut_after": 0},
    "connection reset mid-stream": {
        "text": "half an answer " * 10,
        "chunk_size": 8,
        "cut_after": 3,
    },
    "stream ends without finish or [DONE]": {
        "text": "half an answer " * 10,
        "chunk_size": 8,
        "cut_after": 3,
        "cut_mode": "eof",
    },
    "HTTP 200 with an error body": {
        "status": 200,
        "body": {"error": {"message": "upstream unavailable", "type": "server_error"}},
    },
    "an overloaded error inside a 200 stream": {
        "text": "partial",
        "error_in_stream": {"message": "Server overloaded, retry", "type": "overloaded_error"},
    },
    "stream stalls past the idle timeout": {"text": "slow " * 10, "stall_after": 2, "stall": 3},
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_a_transient_model_api_fault_is_retried_and_the_run_completes(
    model_server, repo, home, fault
):
    server = model_server([WRITE, TRANSIENT[fault], DONE])
    code, events, err = run_task(server, repo, home, MCODE_NETWORK_IDLE_TIMEOUT="0.5")
    assert code == 0, err
    retries = of_type(events, "retry")
    assert len(retries) == 1 and retries[0]["reason"], events
    assert of_type(events, "session.finished")[0]["result"] == "All done."
    # The retried request is the faulted one again: the recorded write is still in it.
    assert server.requests[2]["body"]["messages"] == server.requests[1]["body"]["messages"]
    assert (repo / "notes.txt").read_text() == NOTES
    check_nothing_lost(repo, home, events)
    record(fault, f"retried ({retries[0]['reason'][:60]}), run completed, exit 0")


def test_a_final_error_inside_the_stream_stops_with_the_servers_message_and_resumes(
    model_server, repo, home
):
    bad = {"error_in_stream": {"message": "tools[0] is invalid", "type": "invalid_request_error"}}
    server = model_server([WRITE, bad])
    code, events, err = run_task(server, repo, home)
    assert code == 1 and len(server.requests) == 2  # not retried: the same request fails again
    error = of_type(events, "error")[-1]
    assert "tools[0] is invalid" in error["message"] and "tools[0] is invalid" in err
    assert of_type(events, "session.finished")[0]["reason"] == "error"
    stored = check_nothing_lost(repo, home, events)
    assert (repo / "notes.txt").read_text() == NOTES
    check_resumes(model_server, repo, home, stored[0]["session_id"])
    record(
        "a final error inside a 200 stream",
        "error event with the server's message, exit 1; resumed",
    )


# -- the model's tool call is broken ------------------------------------------------------------

BROKEN_ARGUMENTS = {
    "malformed tool arguments": "{path: notes.txt, content = }",
    "truncated tool arguments": '{"path": "notes.txt", "content": "a line of no',
}


@pytest.mark.parametrize("fault", list(BROKEN_ARGUMENTS))
def test_broken_tool_arguments_go_back_to_the_model_and_no_file_is_torn(
    model_server, repo, home, fault
):
    broken = {"tool_calls": [{"id": "b1", "name": "write", "arguments": BROKEN_ARGUMENTS[fault]}]}
    server = model_server([broken, WRITE, DONE])
    code, events, err = run_task(server, repo, home)
    assert code == 0, err
    first = of_type(events, "tool.finished")[0]
    assert first["id"] == "b1" and not first["ok"] and first["summary"]
    # The model is told, in the tool result, and its next call goes through.
    answer = next(m for m in server.requests[1]["body"]["messages"] if m["role"] == "tool")
    assert answer["tool_call_id"] == "b1" and "argument" in answer["content"].lower()
    assert (repo / "notes.txt").read_text() == NOTES
    check_nothing_lost(repo, home, events)
    record(fault, f"tool result tells the model ({first['summary'][:50]}); run completed")


def test_a_tool_that_hangs_past_its_timeout_is_stopped_and_the_run_goes_on(
    model_server, repo, home, tmp_path
):
    pid_file = tmp_path / "sleep.pid"
    hang = {
        "tool_calls": [
            {
                "id": "h1",
                "name": "bash",
                "arguments": {"command": sleeper(pid_file), "timeout": 1},
            }
        ]
    }
    server = model_server([WRITE, hang, DONE])
    started = time.monotonic()
    code, events, err = run_task(server, repo, home)
    assert code == 0, err
    assert time.monotonic() - started < 60
    hung = next(f for f in of_type(events, "tool.finished") if f["id"] == "h1")
    assert not hung["ok"] and "timed out" in (hung["summary"] + told(hung)).lower()
    assert gone(pid_file)  # its process group was killed, background sleep included
    check_nothing_lost(repo, home, events)
    record("a tool hangs past its timeout", "killed at the timeout with its group; run completed")


# -- the disk fills up --------------------------------------------------------------------------


def test_disk_full_while_writing_a_file_leaves_the_old_file_whole(model_server, repo, home):
    (repo / "notes.txt").write_text("the old notes\n")
    read = {"tool_calls": [{"id": "r1", "name": "read", "arguments": {"path": "notes.txt"}}]}
    server = model_server([read, WRITE, DONE])
    code, events, err = run_task(server, repo, home, MCODE_FAULT_DISK_FULL="files")
    assert code == 0, err
    failed = of_type(events, "tool.finished")[1]
    assert not failed["ok"]
    assert "No space left on device" in told(failed), failed
    assert (repo / "notes.txt").read_text() == "the old notes\n"
    assert not [p.name for p in repo.iterdir() if p.name.endswith(".mcode-tmp")]
    stored = stored_events(home, events[0]["session_id"])
    assert [e["type"] for e in stored][-1] == "session.finished"
    record("disk full while writing a file (ENOSPC)", "old file whole, no temp file; model told")


@pytest.mark.parametrize("after", [3, 9])
def test_disk_full_while_writing_the_store_stops_the_run_and_resume_completes(
    model_server, repo, home, after
):
    server = model_server([WRITE, DONE])
    code, events, err = run_task(server, repo, home, MCODE_FAULT_DISK_FULL=f"store:{after}")
    assert code != 0
    assert "disk" in err and "could not save event" in err, err
    assert "Traceback" not in err
    # What was stored before the disk filled is intact and a prefix of what was printed; the
    # event that could not be saved was still shown, so the user saw where it stopped.
    stored = stored_events(home, events[0]["session_id"])
    assert len(stored) == after - 1
    durable = [e for e in events if e["type"] not in TRANSIENT_TYPES]
    assert durable[: len(stored)] == stored
    notes = repo / "notes.txt"
    assert not notes.exists() or notes.read_text() == NOTES
    stored_task = any(e["type"] == "message.user" for e in stored)
    check_resumes(model_server, repo, home, events[0]["session_id"], task_stored=stored_task)
    record(
        f"disk full while writing the store (event {after})",
        "run stops: 'could not save event', exit 1; stored prefix intact; resumed",
    )


# -- the user (or the system) stops the run -----------------------------------------------------

SIGNAL_SCRIPT = [
    {"text": "Writing the notes now. " * 6, "chunk_size": 12, "stall_after": 3, "stall": 0.2},
    WRITE,
    {"tool_calls": [{"id": "s1", "name": "bash", "arguments": {"command": "sleep 0.5; echo ok"}}]},
    DONE,
]
# Where a signal may land: any printed event of the first run, chosen at random (the seed is in
# the test id, so a failure can be replayed).
SEED = int(os.environ.get("MCODE_FAULT_SEED", "18"))
SIGNAL_CASES = [
    (sig, random.Random(SEED * 7 + i).randint(1, 14))
    for i, sig in enumerate(["SIGTERM", "SIGINT", "SIGTERM", "SIGINT"])
]


@pytest.mark.parametrize("sig, at", SIGNAL_CASES, ids=[f"{s}@event{n}" for s, n in SIGNAL_CASES])
def test_sigterm_and_sigint_at_a_random_point_then_resume_completes(
    model_server, repo, home, sig, at
):
    server = model_server([dict(s) for s in SIGNAL_SCRIPT])
    args = exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcode", *args, TASK],
        cwd=repo,
        env=clean_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    printed: list[dict[str, Any]] = []
    for line in proc.stdout:  # read on to the end: what it prints after the signal counts
        printed.append(json.loads(line))
        if len(printed) == at:
            proc.send_signal(getattr(signal, sig))
    code = proc.wait(timeout=30)
    assert proc.stderr is not None
    err = proc.stderr.read()
    finished = of_type(printed, "session.finished")
    # A signal may land after the run's work ended: it is then recorded as completed (a signal
    # while the session closes is caught, so session.finished is still written), and only one
    # in the last instant before exit can still end the process by the signal's default.
    done_first = bool(finished) and finished[0]["reason"] == "completed"
    if len(printed) >= at and code != 0 and not (done_first and code in (-2, -15)):
        # Stopped: it says so, in the exit code and in its last event, and not with a traceback.
        assert code in (130, 143, 1, -2, -15), (code, err)
        assert "Traceback" not in err, err
        assert finished and finished[0]["reason"] in ("cancelled", "interrupted", "error"), printed
    assert finished, f"no session.finished (exit {code}): {err[-500:]}"
    check_nothing_lost(repo, home, printed)
    body = check_resumes(model_server, repo, home, printed[0]["session_id"])
    record(
        f"{sig} at event {at} of a run",
        f"exit {code}, {finished[0]['reason'] if finished else 'no finish'}; store whole; "
        f"resumed with {len(body['messages'])} messages",
    )


def test_a_message_given_with_resume_survives_a_kill_9_and_runs_once(
    model_server, repo, home, tmp_path
):
    """``mcode exec --resume ID "new message" --image shot.png`` records the message, image
    included, before anything runs: a kill -9 while its UserPromptSubmit hook still runs (the
    message is not yet in the history) leaves it in the store, and the next ``--resume`` runs
    it, with its image, exactly once."""
    env = clean_env(home)
    # Slow the first time only: the window between receiving the message and recording it.
    marker = tmp_path / "hook-ran"
    hook = f"if [ ! -e {marker} ]; then touch {marker}; sleep 60; fi"
    config = home / "config" / "mcode"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(
        f'[[hooks.UserPromptSubmit]]\nhooks = [{{ type = "command", command = {json.dumps(hook)} }}]\n'
    )
    # Run 1: killed inside a tool call, the turn unfinished.
    calls = [{"id": "s1", "name": "bash", "arguments": {"command": "sleep 60"}}]
    server = model_server([{"tool_calls": calls}])
    marker.touch()  # its own prompt hook does not sleep
    first = Live(
        exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto")
        + [TASK],
        cwd=repo,
        env=env,
    )
    try:
        first.until("tool.started", timeout=60)
    finally:
        first.kill()
    session_id = first.events[0]["session_id"]
    marker.unlink()

    # Run 2: resumed with a new message and an image, killed while the hook holds it.
    png = tmp_path / "shot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    server = model_server([{"text": "never asked"}])
    args = exec_args(
        server, "--resume", session_id, "--output-format", "stream-json", "--image", str(png)
    )
    second = Live(
        [*args, "--permission-mode", "full-auto", "Also add a README line."], cwd=repo, env=env
    )
    try:
        queued = second.until("message.queued", timeout=60)
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, second.stderr
            time.sleep(0.02)
        time.sleep(0.2)  # the hook sleeps: nothing recorded the message as message.user yet
    finally:
        second.kill()
    assert queued["data"]["text"] == "Also add a README line."
    assert "message.user" not in second.types() and not server.requests

    # Run 3: the plain --resume runs it; the model gets it once, after the first task.
    server = model_server([{"text": "README line added."}])
    run = mcode(
        *exec_args(server, "--resume", session_id, "--output-format", "json"), cwd=repo, env=env
    )
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["result"] == "README line added."
    (request,) = server.requests
    users = [m["content"] for m in request["body"]["messages"] if m["role"] == "user"]
    assert users[0] == TASK
    assert sum("Also add a README line." in str(u) for u in users) == 1, users
    assert "Also add a README line." in str(users[-1])
    # The image came back with it: the last user message is its text and the stored image.
    assert isinstance(users[-1], list), users[-1]
    (image,) = [part for part in users[-1] if part["type"] == "image_url"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")

    # Run 4: nothing is left to run (it does not come back a second time).
    server = model_server([])
    run = mcode(*exec_args(server, "--resume", session_id), cwd=repo, env=env)
    assert run.code == 2 and "nothing to continue" in run.stderr, run.stderr
    assert not server.requests
    record(
        "kill -9 after `--resume ID MESSAGE --image F` received it, before its turn recorded it",
        "message.queued in the store with its image; the next --resume ran it once",
    )
