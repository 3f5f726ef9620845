"""The SQLite store: events survive the process, history rebuilds, migrations keep data."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from mcode.events import Event
from mcode.messages import Message, TextPart, ToolCall
from mcode.store import Store, StoreError


def _event(seq: int, type: str, data: dict, sid: str = "s1") -> Event:
    return Event(type, data, seq, sid, "t1", 1000.0 + seq)


def test_history_round_trip(tmp_path):
    store = Store(tmp_path / "db" / "sessions.db")
    user = Message("user", (TextPart("hi"),))
    asst = Message("assistant", (TextPart("reading"),), (ToolCall("c1", "read", '{"path":"a"}'),))
    tool = Message("tool", (TextPart("1\tx"),), tool_call_id="c1", name="read")
    evs = [
        _event(1, "session.started", {"cwd": "/w", "provider": "openai", "model": "m"}),
        _event(2, "message.user", {"message": user.to_dict()}),
        _event(3, "text.delta", {"text": "rea"}),
        _event(4, "message.assistant", {"message": asst.to_dict()}),
        _event(5, "tool.finished", {"message": tool.to_dict(), "ok": True}),
    ]
    for e in evs:
        store.write(e, e.to_json())
    assert store.history("s1") == [user, asst, tool]
    assert [e["seq"] for e in store.events("s1")] == [1, 2, 4, 5]  # deltas are not stored
    assert store.last_seq("s1") == 5
    assert store.find("s").id == "s1"
    store.close()


def test_events_survive_kill_9(tmp_path):
    db = tmp_path / "sessions.db"
    code = textwrap.dedent(f"""
        import os, signal
        from mcode.events import Event
        from mcode.store import Store
        s = Store(__import__('pathlib').Path({str(db)!r}))
        e = Event("session.started", {{"cwd": "/", "provider": "p", "model": "m"}}, 1, "k", None, 1.0)
        s.write(e, e.to_json())
        for i in range(2, 50):
            e = Event("turn.started", {{}}, i, "k", "t", float(i))
            s.write(e, e.to_json())
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", code])
    assert p.returncode == -9
    store = Store(db)
    assert [e["seq"] for e in store.events("k")] == list(range(1, 50))


def test_migration_is_versioned_and_idempotent(tmp_path):
    db = tmp_path / "sessions.db"
    Store(db).close()
    Store(db).close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 3
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_first_runs_started_together_all_open_the_new_store(tmp_path):
    # Every `mcode exec` started at once on a fresh machine migrates the same new database.
    db = tmp_path / "sessions.db"
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from mcode.store import Store
        time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
        Store(Path({str(db)!r})).close()
    """)
    start = f"{time.time() + 1.5:.3f}"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, start], stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 3


def test_a_data_dir_that_cannot_be_a_folder_is_a_store_error(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    with pytest.raises(StoreError, match="cannot open the session store"):
        Store(blocker / "sessions.db")


def test_the_store_is_private_to_the_user(tmp_path):
    # Transcripts and checkpointed file contents (a .env among them) are nobody else's business.
    store = Store(tmp_path / "data" / "mcode" / "sessions.db")
    store.close()
    assert (tmp_path / "data" / "mcode").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "data" / "mcode" / "sessions.db").stat().st_mode & 0o777 == 0o600


def test_a_database_from_a_newer_mcode_is_refused_not_written(tmp_path, model_server):
    # A newer mcode migrated the store past what this one knows (the user downgraded, or two
    # versions share a home): writing our rows into its schema could corrupt it.
    from helpers import clean_env, make_repo, mcode

    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    env = clean_env(tmp_path / "home")
    db = tmp_path / "home" / "data" / "mcode" / "sessions.db"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 99")
    con.close()
    server = model_server([{"text": "hi"}])
    args = ["--provider", "openai", "--base-url", server.base_url, "--model", "m", "hello"]
    run = mcode("exec", *args, cwd=repo, env=env)
    assert run.code == 1, run.stderr
    assert str(db) in run.stderr and "newer mcode" in run.stderr
    assert not server.requests
    undo = mcode("undo", cwd=repo, env=env)
    assert undo.code == 1 and "newer mcode" in undo.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0
    assert con.execute("PRAGMA user_version").fetchone()[0] == 99


def test_a_damaged_database_names_the_file_and_what_to_do(tmp_path):
    from helpers import clean_env, make_repo, mcode

    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    env = clean_env(tmp_path / "home")
    db = tmp_path / "home" / "data" / "mcode" / "sessions.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"not sqlite at all " * 512)
    for args in (
        ["exec", "--provider", "openai", "--base-url", "http://127.0.0.1:9/v1", "hi"],
        ["undo"],
        ["sessions"],
    ):
        run = mcode(*args, cwd=repo, env=env)
        assert run.code == 1, run
        assert f"the session store {db} is damaged" in run.stderr, run.stderr
        assert f"move it aside (mv {db} {db}.broken)" in run.stderr, run.stderr


def test_find_takes_a_literal_prefix_and_prefers_an_exact_id(tmp_path):
    store = Store(tmp_path / "sessions.db")
    for sid, ts in (("ab12", 1.0), ("ab123", 3.0), ("cd_1", 2.0)):
        e = Event("session.started", {"cwd": "/w", "provider": "p", "model": "m"}, 1, sid, None, ts)
        store.write(e, e.to_json())
    assert store.find("ab12").id == "ab12"  # exact, though a longer id shares the prefix
    assert store.find("ab123").id == "ab123"
    with pytest.raises(StoreError, match="ambiguous"):
        store.find("ab")
    with pytest.raises(StoreError, match="no session"):
        store.find("c_")  # "_" is not a wildcard
    assert store.find("cd_").id == "cd_1"
    store.close()


def test_migrations_only_add():
    # A user's sessions outlive any version of mcode: a migration may add, never drop or rewrite.
    import re

    from mcode.store import _MIGRATIONS

    for n, script in enumerate(_MIGRATIONS, start=1):
        words = re.findall(r"\b(DROP|DELETE|UPDATE|RENAME|REPLACE|TRUNCATE)\b", script.upper())
        assert not words, f"migration {n} uses {words}"
