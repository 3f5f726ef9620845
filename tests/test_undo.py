"""Checkpoints and `mcode undo`: the store's migration and checkpoint rows, the tools' hook, and
undo end to end (a subprocess, a real git repo, real SQLite, the scripted model server)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import exec_args, make_repo, mcode, start_until, stored_events

from mcode.errors import ToolError
from mcode.events import Event, Undo
from mcode.messages import Message, TextPart
from mcode.store import Store, StoreError
from mcode.tools import files
from mcode.tools.base import ToolContext
from mcode.tools.files import EditTool, ReadTool, WriteTool
from mcode.tools.workspace import Workspace

# CRLF, no final newline, a non-ASCII character: restored byte for byte or not at all.
CALC = b"def add(a, b):\r\n    return a - b\r\n# r\xc3\xa9sum\xc3\xa9"
FIXED = CALC.replace(b"a - b", b"a + b")
README = b"# calc\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- the store -------------------------------------------------------------------------------

# The schema of version 1, exactly as it shipped; a user's database looks like this.
V1_SQL = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    cwd TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT ''
);
CREATE TABLE events (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    type TEXT NOT NULL,
    turn_id TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX sessions_by_cwd ON sessions (cwd, updated_at);
PRAGMA user_version = 1;
"""


def test_a_version_1_database_migrates_and_keeps_every_row(tmp_path):
    db = tmp_path / "sessions.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(V1_SQL)
    user = Message("user", (TextPart("fix calc"),))
    answer = Message("assistant", (TextPart("done"),))
    for sid, cwd in (("s-one", "/w/one"), ("s-two", "/w/two")):
        con.execute(
            "INSERT INTO sessions VALUES (?,?,?,?,?,?,?)",
            (sid, 1000.0, 1003.0, cwd, "openai", "m", "fix calc"),
        )
        evs = [
            Event(
                "session.started",
                {"cwd": cwd, "provider": "openai", "model": "m"},
                1,
                sid,
                None,
                1000.0,
            ),
            Event("message.user", {"message": user.to_dict()}, 2, sid, "t1", 1001.0),
            Event("message.assistant", {"message": answer.to_dict()}, 3, sid, "t1", 1002.0),
            Event("turn.finished", {"reason": "completed"}, 4, sid, "t1", 1003.0),
        ]
        for e in evs:
            con.execute(
                "INSERT INTO events VALUES (?,?,?,?,?,?)",
                (sid, e.seq, e.ts, e.type, e.turn_id, e.to_json()),
            )
    con.commit()
    before = con.execute("SELECT * FROM events ORDER BY session_id, seq").fetchall()
    con.close()

    store = Store(db)
    assert {s.id for s in store.sessions()} == {"s-one", "s-two"}
    assert store.find("s-o").title == "fix calc"
    assert store.history("s-one") == [user, answer]
    assert store.last_seq("s-two") == 4
    assert store.checkpoints("s-one") == []
    # The new table works on the migrated database.
    cp = store.checkpoint("s-one", "t2", "a.py", "/w/one/a.py", b"x", 0o644, sha(b"y"))
    assert store.checkpoints("s-one")[0].id == cp
    store.close()

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 3
    assert con.execute("SELECT * FROM events ORDER BY session_id, seq").fetchall() == before
    assert con.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 2
    con.close()
    Store(db).close()  # opening a current database again migrates nothing


def test_the_first_before_image_per_file_per_turn_is_kept(tmp_path):
    store = Store(tmp_path / "sessions.db")
    first = store.checkpoint("s", "t1", "a.py", "/w/a.py", b"v0", 0o755, sha(b"v1"))
    again = store.checkpoint("s", "t1", "a.py", "/w/a.py", b"v1", 0o644, sha(b"v2"))
    created = store.checkpoint("s", "t1", "new.py", "/w/new.py", None, None, sha(b"n"))
    later = store.checkpoint("s", "t2", "a.py", "/w/a.py", b"v2", 0o755, sha(b"v3"))
    assert first == again and len({first, created, later}) == 3
    rows = store.checkpoints("s", "t1")
    assert [(r.path, r.existed, r.before, r.before_mode, r.after_sha256) for r in rows] == [
        ("a.py", True, b"v0", 0o755, sha(b"v2")),
        ("new.py", False, None, None, sha(b"n")),
    ]
    # The hash written before the last one is kept too: a kill -9 between checkpointing the
    # second change and making it leaves the file there, and undo must still recognise it.
    assert [r.prior_sha256 for r in rows] == [sha(b"v1"), None]
    assert [r.turn_id for r in store.checkpoints("s")] == ["t1", "t1", "t2"]
    assert store.checkpointed("s") == [("t1", "a.py"), ("t1", "new.py"), ("t2", "a.py")]
    # An event appended from outside a run is numbered after the last one.
    e = Event("session.started", {"cwd": "/w", "provider": "p", "model": "m"}, 1, "s", None, 1.0)
    store.write(e, e.to_json())
    undone = Undo(restored=("a.py",), deleted=(), unchanged=(), skipped=(), forced=False)
    assert store.append("s", undone, turn_id="t2").seq == 2
    assert store.events("s")[-1]["turn_id"] == "t2"
    store.close()


# ---- the tools' hook ---------------------------------------------------------------------------


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Path, bytes | None, int | None, bytes | None]] = []
        self.fail = fail

    def __call__(
        self, path: Path, before: bytes | None, mode: int | None, after: bytes | None
    ) -> int:
        if self.fail:
            raise StoreError("database or disk is full", hint="check free disk space")
        self.calls.append((path, before, mode, after))
        return len(self.calls)


def run(tool: Any, args: dict[str, Any], ctx: ToolContext) -> Any:
    return asyncio.run(tool.run(args, ctx))


def test_write_and_edit_checkpoint_the_file_before_changing_it(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_bytes(CALC)
    (repo / "calc.py").chmod(0o750)
    rec = Recorder()
    ctx = ToolContext(workspace=Workspace(repo), checkpoint=rec)
    run(ReadTool(), {"path": "calc.py"}, ctx)
    result = run(EditTool(), {"path": "calc.py", "old_string": "a - b", "new_string": "a + b"}, ctx)
    assert result.checkpoints == {"calc.py": 1}
    created = run(WriteTool(), {"path": "pkg/new.py", "content": "x = 1\n"}, ctx)
    assert created.checkpoints == {"pkg/new.py": 2}
    assert rec.calls == [
        (repo / "calc.py", CALC, 0o750, FIXED),
        (repo / "pkg" / "new.py", None, None, b"x = 1\n"),
    ]
    # No checkpointer (no store): the tools work as before and report no checkpoint.
    plain = ToolContext(workspace=Workspace(repo))
    assert run(WriteTool(), {"path": "other.py", "content": ""}, plain).checkpoints == {}


def test_a_change_whose_checkpoint_cannot_be_saved_is_not_made(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_bytes(CALC)
    ctx = ToolContext(workspace=Workspace(repo), checkpoint=Recorder(fail=True))
    run(ReadTool(), {"path": "calc.py"}, ctx)
    with pytest.raises(ToolError, match=r"calc\.py was not changed: its checkpoint could not"):
        run(EditTool(), {"path": "calc.py", "old_string": "a - b", "new_string": "a + b"}, ctx)
    with pytest.raises(ToolError, match=r"new\.py was not changed") as e:
        run(WriteTool(), {"path": "new.py", "content": "x"}, ctx)
    assert "check free disk space" in e.value.hint
    assert (repo / "calc.py").read_bytes() == CALC
    assert not (repo / "new.py").exists()


def test_a_failed_write_points_the_checkpoint_back_at_the_file(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_bytes(CALC)
    rec = Recorder()
    ctx = ToolContext(workspace=Workspace(repo), checkpoint=rec)
    run(ReadTool(), {"path": "calc.py"}, ctx)

    def full(path: Path, data: bytes, mode: int | None = None) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "atomic_write", full)
    with pytest.raises(ToolError, match="No space left"):
        run(EditTool(), {"path": "calc.py", "old_string": "a - b", "new_string": "a + b"}, ctx)
    # Announced, then taken back: the last word on what the file holds is its unchanged content.
    assert [c[3] for c in rec.calls] == [FIXED, CALC]


# ---- mcode undo, end to end --------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo", {"README.md": README.decode()})
    (root / "calc.py").write_bytes(CALC)
    (root / "calc.py").chmod(0o750)
    return root


def call(cid: str, name: str, **args: Any) -> dict[str, Any]:
    return {"id": cid, "name": name, "arguments": args}


def fix_calc(extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """A turn that reads calc.py, edits it and creates notes/todo.txt (plus ``extra`` calls)."""
    return [
        {"tool_calls": [call("r1", "read", path="calc.py")]},
        {
            "tool_calls": [
                call("e1", "edit", path="calc.py", old_string="a - b", new_string="a + b"),
                call("w1", "write", path="notes/todo.txt", content="check add\n"),
                *(extra or []),
            ]
        },
        {"text": "Fixed."},
    ]


def turn(model_server, repo, env, script, prompt="fix calc", *extra: str):
    server = model_server(script)
    flags = ["--output-format", "stream-json", "--permission-mode", "full-auto"]
    run = mcode(*exec_args(server, *flags, *extra, prompt), cwd=repo, env=env)
    assert run.code == 0, run.stderr
    return run, server


def undo_events(home: Path, session_id: str) -> list[dict[str, Any]]:
    return [e for e in stored_events(home, session_id) if e["type"] == "undo"]


def test_undo_restores_an_edited_file_and_deletes_a_created_one(model_server, repo, env, home):
    run, _ = turn(model_server, repo, env, fix_calc())
    assert (repo / "calc.py").read_bytes() == FIXED
    changed = [e["data"] for e in run.events() if e["type"] == "file.changed"]
    assert [c["path"] for c in changed] == ["calc.py", "notes/todo.txt"]
    assert all(isinstance(c["checkpoint"], int) for c in changed)
    (repo / "calc.py").chmod(0o600)  # a mode change alone is no conflict; undo restores it too

    undo = mcode("undo", cwd=repo, env=env)
    assert undo.code == 0, undo.stderr
    lines = undo.stdout.splitlines()
    session_id = run.events()[0]["session_id"]
    assert lines[0].startswith(
        f"Undoing turn {run.events()[1]['turn_id']} of session {session_id[:12]}"
    )
    assert '("fix calc")' in lines[0]
    assert lines[1:] == ["restored calc.py", "deleted notes/todo.txt (the turn created it)"]
    assert undo.stderr == ""
    assert (repo / "calc.py").read_bytes() == CALC
    assert mode(repo / "calc.py") == 0o750
    assert not (repo / "notes" / "todo.txt").exists()

    [event] = undo_events(home, session_id)
    assert event["turn_id"] == run.events()[1]["turn_id"]
    assert event["seq"] == run.events()[-1]["seq"] + 1
    assert event["data"] == {
        "restored": ["calc.py"],
        "deleted": ["notes/todo.txt"],
        "unchanged": [],
        "skipped": [],
        "forced": False,
    }
    again = mcode("undo", cwd=repo, env=env)
    assert again.code == 0 and again.stdout.startswith("Nothing to undo in session")


def test_undo_resume_from_another_folder_replaces_the_file_whole(model_server, repo, env, home):
    # README: undo puts the before-image back atomically (temp file, rename), from any folder
    # with --resume ID. A reader that opened the file before the undo (an editor, `tail -f`)
    # keeps the whole old file; the path names a new file with the old bytes and mode.
    run, _ = turn(model_server, repo, env, fix_calc())
    session_id = run.events()[0]["session_id"]
    elsewhere = repo.parent / "elsewhere"
    elsewhere.mkdir()
    (repo / "calc.py").chmod(0o600)
    inode = (repo / "calc.py").stat().st_ino
    with (repo / "calc.py").open("rb") as reader:
        undo = mcode("undo", "--resume", session_id[:8], cwd=elsewhere, env=env)
        assert undo.code == 0, undo.stderr
        assert reader.read() == FIXED  # the file it holds was replaced, not rewritten
    assert undo.stdout.splitlines()[1:] == [
        "restored calc.py",
        "deleted notes/todo.txt (the turn created it)",
    ]
    assert (repo / "calc.py").read_bytes() == CALC and mode(repo / "calc.py") == 0o750
    assert (repo / "calc.py").stat().st_ino != inode
    assert not (repo / "notes" / "todo.txt").exists()
    assert not [p.name for p in repo.rglob("*.mcode-tmp")]
    assert not list(elsewhere.iterdir())  # nothing was written where undo ran
    assert [e["data"]["restored"] for e in undo_events(home, session_id)] == [["calc.py"]]


def test_undo_twice_goes_back_turn_by_turn(model_server, repo, env, home):
    first, _ = turn(model_server, repo, env, fix_calc())
    second_script = [
        {"tool_calls": [call("r1", "read", path="calc.py")]},
        {
            "tool_calls": [
                call("e1", "edit", path="calc.py", old_string="def add", new_string="def plus"),
                call("e2", "edit", path="calc.py", old_string="plus", new_string="add_up"),
                call("w1", "write", path="README.md", content="# calc, fixed\n"),
            ]
        },
        {"text": "Renamed."},
    ]
    # README.md was never read: the write is refused, nothing changes, nothing to checkpoint.
    turn(model_server, repo, env, second_script, "rename it", "--continue")
    renamed = FIXED.replace(b"def add", b"def add_up")
    assert (repo / "calc.py").read_bytes() == renamed

    one = mcode("undo", cwd=repo, env=env)
    assert one.code == 0, one.stderr
    assert one.stdout.splitlines()[1:] == ["restored calc.py"]
    assert '("rename it")' in one.stdout
    assert (repo / "calc.py").read_bytes() == FIXED  # as before the second turn, not the first
    assert (repo / "notes" / "todo.txt").exists()

    two = mcode("undo", cwd=repo, env=env)
    assert two.code == 0, two.stderr
    assert '("fix calc")' in two.stdout
    assert (repo / "calc.py").read_bytes() == CALC
    assert not (repo / "notes" / "todo.txt").exists()
    assert (repo / "README.md").read_bytes() == README

    three = mcode("undo", cwd=repo, env=env)
    assert three.code == 0 and "Nothing to undo" in three.stdout
    session_id = first.events()[0]["session_id"]
    assert len(undo_events(home, session_id)) == 2


def test_a_file_changed_after_the_turn_is_skipped_unless_forced(model_server, repo, env, home):
    script = fix_calc()
    script[1]["tool_calls"].insert(0, call("r2", "read", path="README.md"))
    script[1]["tool_calls"].append(call("w2", "write", path="README.md", content="# new\n"))
    run, _ = turn(model_server, repo, env, script)
    (repo / "calc.py").write_bytes(FIXED + b"\n# the user's line\n")
    (repo / "README.md").unlink()

    undo = mcode("undo", cwd=repo, env=env)
    assert undo.code == 1
    assert undo.stdout.splitlines()[1:] == [
        "skipped calc.py: changed since mcode wrote it; --force restores it",
        "deleted notes/todo.txt (the turn created it)",
        "skipped README.md: deleted since the turn; --force restores it",
    ]
    assert "mcode undo --force" in undo.stderr
    assert (repo / "calc.py").read_bytes().endswith(b"# the user's line\n")  # not touched
    assert not (repo / "notes" / "todo.txt").exists()

    # The turn is still the one to undo: only its skipped files are left.
    dry = mcode("undo", "--dry-run", "--force", cwd=repo, env=env)
    assert dry.code == 0, dry.stderr
    assert dry.stdout.splitlines()[1:] == [
        "would restore calc.py (forced: changed since mcode wrote it; those changes are lost)",
        "would restore README.md (forced: deleted since the turn; those changes are lost)",
    ]
    assert (repo / "calc.py").read_bytes().endswith(b"# the user's line\n")

    forced = mcode("undo", "--force", cwd=repo, env=env)
    assert forced.code == 0, forced.stderr
    assert (repo / "calc.py").read_bytes() == CALC
    assert (repo / "README.md").read_bytes() == README
    assert mode(repo / "calc.py") == 0o750

    session_id = run.events()[0]["session_id"]
    first, second = (e["data"] for e in undo_events(home, session_id))
    assert first["skipped"] == [
        {"path": "calc.py", "reason": "changed since mcode wrote it"},
        {"path": "README.md", "reason": "deleted since the turn"},
    ]
    assert first["forced"] is False and first["deleted"] == ["notes/todo.txt"]
    assert second["forced"] is True and second["restored"] == ["calc.py", "README.md"]
    assert "Nothing to undo" in mcode("undo", cwd=repo, env=env).stdout


def test_dry_run_changes_nothing(model_server, repo, env, home):
    run, _ = turn(model_server, repo, env, fix_calc())
    dry = mcode("undo", "--dry-run", cwd=repo, env=env)
    assert dry.code == 0, dry.stderr
    assert dry.stdout.splitlines()[0].startswith("Would undo turn")
    assert dry.stdout.splitlines()[1:] == [
        "would restore calc.py",
        "would delete notes/todo.txt (the turn created it)",
    ]
    assert (repo / "calc.py").read_bytes() == FIXED
    assert (repo / "notes" / "todo.txt").exists()
    assert undo_events(home, run.events()[0]["session_id"]) == []
    assert mcode("undo", cwd=repo, env=env).code == 0
    assert (repo / "calc.py").read_bytes() == CALC


def test_bash_changes_are_not_undone_and_undo_says_so(model_server, repo, env):
    bash_only = [
        {"tool_calls": [call("b1", "bash", command="echo made > out.txt")]},
        {"text": "Made it."},
    ]
    turn(model_server, repo, env, bash_only, "make out.txt")
    undo = mcode("undo", cwd=repo, env=env)
    assert undo.code == 0, undo.stderr
    assert undo.stdout.startswith("Nothing to undo in session")
    assert "its last turn also ran bash (1 call)" in undo.stderr
    assert (repo / "out.txt").exists()

    mixed = fix_calc([call("b1", "bash", command="echo more >> out.txt")])
    turn(model_server, repo, env, mixed, "fix and log", "--continue")
    undo = mcode("undo", cwd=repo, env=env)
    assert undo.code == 0, undo.stderr
    assert (repo / "calc.py").read_bytes() == CALC
    assert (repo / "out.txt").read_text() == "made\nmore\n"
    assert "this turn also ran bash (1 call); what those commands changed is not undone" in (
        undo.stderr
    )
    # Nothing left: the last turn's own bash warning was given with its undo, not again.
    done = mcode("undo", cwd=repo, env=env)
    assert done.code == 0 and "Nothing to undo" in done.stdout and done.stderr == ""


def test_a_resumed_session_tells_the_model_what_was_undone(model_server, repo, env):
    run, _ = turn(model_server, repo, env, fix_calc())
    session_id = run.events()[0]["session_id"]
    assert mcode("undo", cwd=repo, env=env).code == 0

    _, server = turn(
        model_server, repo, env, [{"text": "ok"}], "try again", "--resume", session_id[:8]
    )
    last = server.requests[0]["body"]["messages"][-1]
    assert last["role"] == "user"
    assert last["content"] == (
        "[Note: the user undid the file changes of your previous turn; these files were "
        "restored: calc.py; these files were deleted (they did not exist before): "
        "notes/todo.txt. Re-read them before editing.]\n\ntry again"
    )
    # Said once: the next resume has a message after the undo, so no note.
    _, server = turn(model_server, repo, env, [{"text": "ok"}], "and now", "--continue")
    assert server.requests[0]["body"]["messages"][-1]["content"] == "and now"


def test_a_turn_continued_without_a_prompt_after_undo_hears_of_it(model_server, repo, env):
    # The turn stops at max turns after its edits; the user undoes them and continues it with
    # no new message: the note still reaches the model, at the continued turn's first step.
    def run_exec(server, *args: str):
        opts = ["--output-format", "stream-json", "--permission-mode", "full-auto"]
        return mcode(*exec_args(server, *opts, *args), cwd=repo, env=env)

    first = model_server(fix_calc())
    run = run_exec(first, "--max-turns", "2", "fix calc")
    assert run.code == 3, run.stderr
    assert mcode("undo", cwd=repo, env=env).code == 0
    second = model_server([{"text": "ok"}])
    resumed = run_exec(second, "--resume", run.events()[0]["session_id"])
    assert resumed.code == 0, resumed.stderr
    last = second.requests[0]["body"]["messages"][-1]
    assert last["role"] == "user" and last["content"].startswith("[Note: the user undid")


def test_a_checkpoint_the_store_cannot_save_stops_the_edit(model_server, repo, env, home):
    assert mcode("sessions", cwd=repo, env=env).code == 0  # creates the database
    db = sqlite3.connect(home / "data" / "mcode" / "sessions.db")
    db.execute(
        "CREATE TRIGGER full BEFORE INSERT ON checkpoints "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    db.commit()
    db.close()
    run, server = turn(model_server, repo, env, fix_calc())
    assert (repo / "calc.py").read_bytes() == CALC
    assert not (repo / "notes" / "todo.txt").exists()
    results = [m["content"] for m in server.requests[2]["body"]["messages"] if m["role"] == "tool"]
    assert "calc.py was not changed: its checkpoint could not be saved" in results[1]
    assert "database or disk is full" in results[1]
    assert [e for e in run.events() if e["type"] == "file.changed"] == []
    assert "Nothing to undo" in mcode("undo", cwd=repo, env=env).stdout


def test_undo_usage_errors(repo, env, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    none = mcode("undo", cwd=elsewhere, env=env)
    assert none.code == 2 and "there is no session in" in none.stderr
    unknown = mcode("undo", "--resume", "no-such-id", cwd=repo, env=env)
    assert unknown.code == 2 and "no session with id 'no-such-id'" in unknown.stderr


def test_a_running_session_is_not_undone_or_resumed_by_another_process(
    model_server, repo, env, home
):
    # Undo numbered its event after the last stored one, which the running session then tried
    # to store too: the run died on "UNIQUE constraint failed" (hint: free disk space) after
    # undo had deleted the file the agent had just written. A second --resume did the same.
    go = repo / "go"
    wait = f"while [ ! -e {go} ]; do sleep 0.02; done"
    server = model_server(
        [
            {"tool_calls": [call("w1", "write", path="new.txt", content="new\n")]},
            {"tool_calls": [call("b1", "bash", command=wait)]},
            {"text": "Done."},
        ]
    )
    args = ["--provider", "openai", "--base-url", server.base_url, "--model", "test-model"]
    proc, events = start_until(
        "exec", *args, "--output-format", "stream-json", "--permission-mode", "full-auto",
        "make it", cwd=repo, env=env, event_type="file.changed",
    )  # fmt: skip
    try:
        sid = events[0]["session_id"]
        while len(server.requests) < 2:  # the bash call is under way
            time.sleep(0.02)
        undo = mcode("undo", cwd=repo, env=env)
        assert undo.code == 1 and f"session {sid[:12]} is in use" in undo.stderr, undo
        assert (repo / "new.txt").read_text() == "new\n"
        other = mcode("exec", *args, "--resume", sid[:8], "go on", cwd=repo, env=env)
        assert other.code == 1 and f"session {sid[:12]} is in use" in other.stderr, other
        assert len(server.requests) == 2
        go.touch()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    stored = stored_events(home, sid)
    assert [e["seq"] for e in stored] == sorted({e["seq"] for e in stored})
    assert "error" not in [e["type"] for e in stored]
    assert mcode("undo", cwd=repo, env=env).code == 0  # finished: now it may
    assert not (repo / "new.txt").exists()


def test_a_kill_between_checkpointing_a_second_change_and_making_it_is_no_conflict(tmp_path):
    # The turn wrote v1, then checkpointed a change to v2 and died before writing it: the file
    # still holds what mcode wrote, so undo restores it without --force.
    from mcode.runtime.undo import plan_file as _plan

    target = tmp_path / "a.py"
    target.write_bytes(b"v1")
    store = Store(tmp_path / "sessions.db")
    store.checkpoint("s", "t1", "a.py", str(target), b"v0", 0o644, sha(b"v1"))
    store.checkpoint("s", "t1", "a.py", str(target), b"v1", 0o644, sha(b"v2"))
    (cp,) = store.checkpoints("s", "t1")
    assert _plan(cp, force=False).action == "restore"
    target.write_bytes(b"someone else's")
    assert _plan(cp, force=False).action == "skip"
    store.close()
