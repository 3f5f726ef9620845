"""Forking a stored session (`mcode exec --resume ID --fork-at N [--undo-files]`) end to end:
real subprocesses, a real repo, real SQLite, the scripted model server; and the runtime API
(`user_turns`, `fork_session`) a TUI's /rewind calls."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from helpers import exec_args, make_repo, mcode, stored_events

from mcode.runtime.fork import fork_session, user_turns
from mcode.store import Store

FLAGS = ("--output-format", "stream-json", "--permission-mode", "full-auto")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# r\n"})


def write(cid: str, path: str, content: str) -> dict[str, Any]:
    return {
        "tool_calls": [
            {"id": cid, "name": "write", "arguments": {"path": path, "content": content}}
        ]
    }


def run_ok(server, repo: Path, env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    run = mcode(*exec_args(server, *FLAGS, *args), cwd=repo, env=env)
    assert run.code == 0, run.stderr
    return run.events()


def two_turns(model_server, repo: Path, env: dict[str, str]) -> tuple[str, list[str]]:
    """A session of two user turns: the first creates notes.txt "one", the second reads it,
    writes it "two" and creates extra.txt. Its id and the turn ids."""
    server = model_server(
        [
            write("w1", "notes.txt", "one\n"),
            {"text": "wrote one"},
            {"tool_calls": [{"id": "r1", "name": "read", "arguments": {"path": "notes.txt"}}]},
            write("w2", "notes.txt", "two\n"),
            write("w3", "extra.txt", "new\n"),
            {"text": "wrote two"},
        ]
    )
    first = run_ok(server, repo, env, "turn one")
    sid = first[0]["session_id"]
    second = run_ok(server, repo, env, "--resume", sid, "turn two")
    turns = [e["turn_id"] for e in first + second if e["type"] == "turn.started"]
    assert (repo / "notes.txt").read_text() == "two\n"
    return sid, turns


def bodies(home: Path, session_id: str) -> list[str]:
    db = sqlite3.connect(home / "data" / "mcode" / "sessions.db")
    try:
        rows = db.execute(
            "SELECT body FROM events WHERE session_id=? ORDER BY seq", (session_id,)
        ).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


def users(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def test_a_fork_starts_from_the_history_before_turn_n_and_leaves_the_source(
    model_server, repo, env, home
):
    sid, turns = two_turns(model_server, repo, env)
    before = bodies(home, sid)

    server = model_server([{"text": "did it otherwise"}])
    run = mcode(
        *exec_args(server, *FLAGS, "--resume", sid[:8], "--fork-at", "2", "instead, do this"),
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    fork_id = run.events()[0]["session_id"]
    assert fork_id != sid
    assert f"forked session {sid[:12]} before turn 2 into {fork_id[:12]}" in run.stderr

    # The model saw turn 1 whole (its tool call and result) and the new message, not turn 2.
    (body,) = server.bodies
    assert users(body) == ["turn one", "instead, do this"]
    assert [m["role"] for m in body["messages"]] == [
        "system", "user", "assistant", "tool", "assistant", "user"
    ]  # fmt: skip
    assert "two" not in str(body["messages"][1:])
    # Files are not rewound without --undo-files.
    assert (repo / "notes.txt").read_text() == "two\n" and (repo / "extra.txt").exists()

    # The source is byte for byte as it was; the fork holds its events before turn 2 (its
    # turn.started, and the message.queued its --resume message was stored as just before it:
    # only the session id differs), then session.forked, then its own run.
    assert bodies(home, sid) == before
    forked = bodies(home, fork_id)
    cut = next(i for i, b in enumerate(before) if f'"turn_id":"{turns[1]}"' in b)
    assert '"type":"message.queued","data":{"text":"turn two"}' in before[cut - 1]
    cut -= 1
    assert forked[:cut] == [b.replace(sid, fork_id) for b in before[:cut]]
    events = stored_events(home, fork_id)
    assert events[cut]["type"] == "session.forked"
    assert events[cut]["data"] == {"source": sid, "at_turn": 2, "turn_id": turns[1], "undone": []}
    # Its own run: the new message stored on receipt, then its turn.
    assert [e["type"] for e in events[cut + 1 :]][:3] == [
        "session.started", "message.queued", "turn.started"
    ]  # fmt: skip

    # Resumed, the fork goes on from its own history; the source still has both turns.
    again = model_server([{"text": "and more"}])
    run_ok(again, repo, env, "--resume", fork_id, "more")
    assert users(again.bodies[0]) == ["turn one", "instead, do this", "more"]
    store = Store(home / "data" / "mcode" / "sessions.db")
    try:
        assert [t.text for t in user_turns(store, sid)] == ["turn one", "turn two"]
        assert [t.text for t in user_turns(store, fork_id)] == [
            "turn one", "instead, do this", "more"
        ]  # fmt: skip
    finally:
        store.close()


def test_undo_files_puts_back_what_turns_n_and_later_wrote(model_server, repo, env, home):
    sid, turns = two_turns(model_server, repo, env)
    server = model_server([{"text": "ok"}])
    run = mcode(
        *exec_args(server, *FLAGS, "--resume", sid, "--fork-at", "2", "--undo-files", "again"),
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    assert "the file changes of 1 turn undone" in run.stderr
    assert (repo / "notes.txt").read_text() == "one\n"  # as turn 1 left it
    assert not (repo / "extra.txt").exists()  # turn 2 created it
    fork_id = run.events()[0]["session_id"]
    forked = next(e for e in stored_events(home, fork_id) if e["type"] == "session.forked")
    assert forked["data"]["undone"] == [turns[1]]
    # Recorded in the source as `mcode undo` records it: a later undo goes on from turn 1.
    (undo,) = [e for e in stored_events(home, sid) if e["type"] == "undo"]
    assert undo["turn_id"] == turns[1]
    assert (undo["data"]["restored"], undo["data"]["deleted"]) == (["notes.txt"], ["extra.txt"])

    # The fork inherited turn 1 with its checkpoints: forking it (the latest session here, so
    # --continue) at turn 1 with --undo-files goes back to before the session.
    run = mcode(
        *exec_args(model_server([{"text": "ok"}]), *FLAGS, "--continue", "--fork-at", "1",
                   "--undo-files", "from scratch"),
        cwd=repo,
        env=env,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert f"forked session {fork_id[:12]} before turn 1" in run.stderr
    assert not (repo / "notes.txt").exists()  # turn 1 created it
    (undo,) = [e for e in stored_events(home, fork_id) if e["type"] == "undo"]
    assert (undo["turn_id"], undo["data"]["deleted"]) == (turns[0], ["notes.txt"])


def test_undo_files_refuses_when_a_file_changed_since_and_touches_nothing(
    model_server, repo, env, home
):
    sid, _ = two_turns(model_server, repo, env)
    (repo / "notes.txt").write_text("mine\n")  # the user's own edit after the turn
    before = bodies(home, sid)
    store = Store(home / "data" / "mcode" / "sessions.db")
    sessions = len(store.sessions())
    store.close()

    server = model_server([{"text": "never asked"}])
    run = mcode(
        *exec_args(server, *FLAGS, "--resume", sid, "--fork-at", "2", "--undo-files", "again"),
        cwd=repo,
        env=env,
    )
    assert run.code == 1
    assert "notes.txt: changed since mcode wrote it" in run.stderr
    assert "nothing was forked or undone" in run.stderr
    assert (repo / "notes.txt").read_text() == "mine\n" and (repo / "extra.txt").exists()
    assert bodies(home, sid) == before and server.bodies == []
    store = Store(home / "data" / "mcode" / "sessions.db")
    assert len(store.sessions()) == sessions
    store.close()


def test_fork_usage_errors(model_server, repo, env):
    sid, _ = two_turns(model_server, repo, env)
    server = model_server([])
    cases = [
        (["--resume", sid, "--fork-at", "3", "x"], "has 2 user turns"),
        (["--resume", "fffffff0", "--fork-at", "1", "x"], "no session with id 'fffffff0'"),
        (["--fork-at", "1", "x"], "--fork-at forks a stored session"),
        (["--undo-files", "x"], "--undo-files goes with --fork-at"),
        (["--resume", sid, "--fork-at", "1"], "--fork-at needs a prompt"),
        (["--resume", sid, "--fork-at", "0", "x"], "must be positive"),
    ]
    for args, said in cases:
        run = mcode(*exec_args(server, *args), cwd=repo, env=env)
        assert run.code == 2, (args, run.stderr)
        assert said in run.stderr, (args, run.stderr)
    assert server.bodies == []


def test_user_turns_lists_each_message_with_its_changed_files(model_server, repo, env, home):
    sid, turns = two_turns(model_server, repo, env)
    store = Store(home / "data" / "mcode" / "sessions.db")
    try:
        listed = user_turns(store, sid)
        assert [(t.number, t.turn_id, t.text) for t in listed] == [
            (1, turns[0], "turn one"),
            (2, turns[1], "turn two"),
        ]
        assert [t.changed_files for t in listed] == [("notes.txt",), ("notes.txt", "extra.txt")]
        # The API a TUI calls: the fork's id; its history is turn 1's.
        fork = fork_session(store, sid, 2)
        assert store.history(fork.session_id) == store.history(sid)[:4]
        assert [t.text for t in user_turns(store, fork.session_id)] == ["turn one"]
    finally:
        store.close()
