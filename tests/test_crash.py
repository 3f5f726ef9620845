"""Crash safety: ``kill -9`` at any moment of a run loses no completed event, leaves no
half-written file, and ``--resume`` carries on with a history the model API accepts."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, exec_args, make_repo, mcode, stored_events

from mcode.atomic import FAULT_KILL_IN_WRITE
from mcode.events import TRANSIENT_TYPES

NOTES = "line one\nline two\n" * 200  # big enough that a torn write would show

SCRIPT: list[dict[str, Any]] = [
    {
        # Streamed slowly so a kill can land in the middle of the answer.
        "text": "I will write the notes first. " * 8,
        "chunk_size": 16,
        "stall_after": 4,
        "stall": 0.3,
        "tool_calls": [
            {"id": "w1", "name": "write", "arguments": {"path": "notes.txt", "content": NOTES}}
        ],
    },
    {"tool_calls": [{"id": "b1", "name": "bash", "arguments": {"command": "sleep 0.6; echo ok"}}]},
    {"text": "All done."},
]

# (event type, occurrence): where the process is killed.
KILL_POINTS = [
    ("message.user", 1),
    ("text.delta", 2),
    ("message.assistant", 1),
    ("tool.started", 1),
    ("file.changed", 1),
    ("tool.finished", 1),
    ("tool.started", 2),
    ("tool.output", 1),
    ("message.assistant", 3),
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# r\n"})


def run_until_killed(
    args: list[str], *, cwd: Path, env: dict[str, str], kill_at: tuple[str, int]
) -> list[dict[str, Any]]:
    """Run ``mcode ARGS`` and SIGKILL it right after the ``kill_at`` event is printed; the
    events printed before that moment."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcode", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    printed: list[dict[str, Any]] = []
    seen = 0
    for line in proc.stdout:
        printed.append(json.loads(line))
        if printed[-1]["type"] == kill_at[0]:
            seen += 1
            if seen == kill_at[1]:
                proc.kill()
                break
    _, err = proc.communicate(timeout=30)
    assert seen == kill_at[1], f"the run ended before {kill_at}: {printed} {err}"
    return printed


def check_history_is_valid(messages: list[dict[str, Any]]) -> None:
    """What an API checks: every assistant tool call is answered by a tool message right after
    it, and every tool message answers a call."""
    pending: list[str] = []
    for m in messages:
        if m["role"] == "tool":
            assert m["tool_call_id"] in pending, (m, pending)
            pending.remove(m["tool_call_id"])
            continue
        assert not pending, f"calls {pending} have no result before a {m['role']} message"
        if m["role"] == "assistant":
            pending = [c["id"] for c in m.get("tool_calls") or ()]
    assert not pending


def check_anthropic_history_is_valid(messages: list[dict[str, Any]]) -> None:
    """The Messages API's rule: every tool_use is answered by a tool_result in the very next
    message, and every tool_result answers the message before it."""
    asked: set[str] = set()
    for m in messages:
        blocks = m["content"] if isinstance(m["content"], list) else []
        assert {b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"} == asked
        asked = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    assert not asked


def first_text(message: dict[str, Any]) -> str:
    content = message["content"]
    return content if isinstance(content, str) else content[-1]["text"]


# Every point on the Chat Completions wire; the ones that matter to history on Messages.
CASES = [("openai", k) for k in KILL_POINTS] + [
    ("anthropic", k) for k in (("text.delta", 2), ("file.changed", 1), ("tool.started", 2))
]


@pytest.mark.parametrize("wire, kill_at", CASES, ids=[f"{w}-{k[0]}#{k[1]}" for w, k in CASES])
def test_kill_9_at_any_moment_then_resume(model_server, repo, tmp_path, wire, kill_at):
    home = tmp_path / "home"
    env = clean_env(home)
    server = model_server([dict(s) for s in SCRIPT])
    printed = run_until_killed(
        exec_args(
            server, "--output-format", "stream-json", "--permission-mode", "full-auto", wire=wire
        )
        + ["Write notes.txt, then check the shell."],
        cwd=repo,
        env=env,
        kill_at=kill_at,
    )
    session_id = printed[0]["session_id"]

    # Nothing completed is lost: every event that was printed was stored first, byte for byte.
    db_path = home / "data" / "mcode" / "sessions.db"
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    stored = stored_events(home, session_id)
    durable = [e for e in printed if e["type"] not in TRANSIENT_TYPES]
    assert stored[: len(durable)] == durable

    # No half-written file: notes.txt is absent or whole. A kill that lands inside the write
    # (printing tool.started and the kill race the write) may leave the write's temp file,
    # named for the dead process; the resume sweeps it.
    notes = repo / "notes.txt"
    assert not notes.exists() or notes.read_text() == NOTES
    temps = [p.name for p in repo.iterdir() if p.name.startswith(".notes.txt")]
    assert all(t.endswith(".mcode-tmp") for t in temps), temps

    # Resume: the conversation goes on from what was stored, and the API would accept it.
    resume_server = model_server([{"text": "Picked up."}])
    run = mcode(
        *exec_args(resume_server, "--resume", session_id, "--output-format", "json", wire=wire),
        "Carry on.",
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["result"] == "Picked up."
    messages = resume_server.requests[0]["body"]["messages"]
    if wire == "openai":
        check_history_is_valid(messages)
        assert messages[1]["content"] == "Write notes.txt, then check the shell."
    else:
        check_anthropic_history_is_valid(messages)
        assert first_text(messages[0]) == "Write notes.txt, then check the shell."
    assert first_text(messages[-1]) == "Carry on."

    assert not [p.name for p in repo.iterdir() if p.name.startswith(".notes.txt")]
    after = stored_events(home, session_id)
    assert after[: len(stored)] == stored  # resuming appends, never rewrites
    seqs = [e["seq"] for e in after]
    assert seqs == sorted(set(seqs))
    assert after[-1]["type"] == "session.finished"


def test_killed_before_the_first_event_leaves_a_usable_store(repo, tmp_path):
    """kill -9 during start-up (store creation, migrations) must not wedge later runs."""
    home = tmp_path / "home"
    env = clean_env(home)
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcode", "sessions"],
            cwd=repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc.kill()
        proc.wait()
    run = mcode("sessions", cwd=repo, env=env)
    assert run.code == 0, run.stderr


# ------------------------------------------------------------------- a kill inside a write

OLD = "old line\n" * 20_000  # 180 KB: a write this size takes many pages, a torn one shows
NEW = "new line\n" * 20_000


def whole(path: Path, text: str) -> bool:
    """``path`` holds exactly ``text`` (a bool: pytest's diff of two 180 KB strings takes
    minutes)."""
    return path.read_text() == text


def _rewrite_notes() -> list[dict[str, Any]]:
    read = {"id": "r1", "name": "read", "arguments": {"path": "notes.txt", "limit": 3}}
    write = {"id": "w1", "name": "write", "arguments": {"path": "notes.txt", "content": NEW}}
    return [
        {"tool_calls": [read]},
        {"tool_calls": [write], "chunk_size": 65_536},
        {"text": "Rewritten."},
    ]


def test_a_kill_inside_a_write_leaves_the_old_file_whole(model_server, tmp_path):
    # The fault point kills mcode once half of the new content is on disk: notes.txt must
    # still be the old file, every byte of it, and the session must resume.
    repo = make_repo(tmp_path / "repo", {"notes.txt": OLD})
    home = tmp_path / "home"
    server = model_server(_rewrite_notes())
    flags = ["--output-format", "stream-json", "--permission-mode", "full-auto"]
    env = clean_env(home, **{FAULT_KILL_IN_WRITE: str(len(NEW) // 2)})
    run = mcode(*exec_args(server, *flags), "Rewrite the notes.", cwd=repo, env=env)
    assert run.code == -signal.SIGKILL, (run.code, run.stderr)  # killed inside the write
    types = [e["type"] for e in run.events()]
    assert types[-1] == "tool.started" and types.count("tool.finished") == 1  # the read's
    assert whole(repo / "notes.txt", OLD)
    assert len(_temp_files(repo)) == 1  # the killed write's half-written temp file

    resume = model_server([{"text": "Picked up."}])
    again = mcode(
        *exec_args(resume, "--resume", run.events()[0]["session_id"], "--output-format", "json"),
        "Carry on.",
        cwd=repo,
        env=clean_env(home),
    )
    assert again.code == 0, again.stderr
    check_history_is_valid(resume.requests[0]["body"]["messages"])
    assert whole(repo / "notes.txt", OLD)
    assert _temp_files(repo) == []  # the resumed run swept what the killed write left


def _temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".mcode-tmp")]


def test_a_write_replaces_the_file_and_never_rewrites_it_in_place(model_server, tmp_path):
    # What makes a torn file impossible: the new content goes to a new file renamed over the
    # old one. A reader that opened notes.txt before the write (an editor, a running build)
    # reads the whole old file; the path then names a new file with the new content.
    repo = make_repo(tmp_path / "repo", {"notes.txt": OLD})
    server = model_server(_rewrite_notes())
    flags = ["--output-format", "stream-json", "--permission-mode", "full-auto"]
    notes = repo / "notes.txt"
    inode = notes.stat().st_ino
    with notes.open() as reader:
        run = mcode(*exec_args(server, *flags), "Rewrite.", cwd=repo, env=clean_env(tmp_path / "h"))
        assert run.code == 0, run.stderr
        kept = reader.read() == OLD  # a bool: see whole()
        assert kept, "the file was rewritten in place"
    assert whole(notes, NEW) and notes.stat().st_ino != inode
    assert not [p.name for p in repo.iterdir() if p.name.endswith(".mcode-tmp")]
