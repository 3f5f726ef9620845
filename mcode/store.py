"""The session store: every event of every session in one SQLite database (WAL mode).

One database per user at ``$XDG_DATA_HOME/mcode/sessions.db``. Each event is committed as it is
emitted, so a crash or ``kill -9`` loses at most the event being written; WAL lets a second
process (``mcode sessions`` while a run is going) read without blocking the writer. Transient
events (text/thinking deltas, tool output chunks) are not stored one by one: the message or tool
result that completes them holds the full text, so nothing completed is lost.

The same database holds the checkpoints behind ``mcode undo``: for every file a turn wrote, the
file as it was before the turn's first change to it (bytes and mode, or "did not exist") and
the hash of what mcode wrote last. Like events, each checkpoint is committed before the tool
changes the file, so no edit is ever on disk without its before-image in the store.

Schema changes are migrations keyed by ``PRAGMA user_version``; a migration may add, never drop.

One connection serves every thread of the process, one at a time: the file tools save their
checkpoints from worker threads while the event loop writes other conversations' events, and
SQLite refuses to COMMIT while a statement of the same connection is still stepping (another
thread's SELECT half-read, an INSERT ... RETURNING not yet reset). So every method that touches
the connection holds the store's lock from its first statement to its last, and every read
has all its rows (or has closed its cursor) before it lets go: no cursor outlives the call
that opened it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from mcode.errors import MCodeError
from mcode.events import (
    COMPACTION,
    HISTORY_TYPES,
    SESSION_FINISHED,
    SESSION_STARTED,
    TRANSIENT_TYPES,
    TURN_FINISHED,
    TURN_STARTED,
    Event,
    Payload,
)
from mcode.messages import Message

_MIGRATIONS: list[str] = [
    # 1: sessions and their events
    """
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
    """,
    # 2: checkpoints for `mcode undo`. One row per file per turn: the first before-image (later
    # edits of the same file in the same turn update only after_sha256). id orders the rows.
    """
    CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        turn_id TEXT NOT NULL,
        path TEXT NOT NULL,
        abs_path TEXT NOT NULL,
        existed INTEGER NOT NULL,
        before BLOB,
        before_mode INTEGER,
        after_sha256 TEXT,
        ts REAL NOT NULL,
        UNIQUE (session_id, turn_id, abs_path)
    );
    """,
    # 3: the hash mcode wrote before the last one in the turn. A second change of a file is
    # checkpointed before it is written, so a kill -9 in between leaves the file at that hash.
    """
    ALTER TABLE checkpoints ADD COLUMN prior_sha256 TEXT;
    """,
]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    created_at: float
    updated_at: float
    cwd: str
    provider: str
    model: str
    title: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A file as it was before a turn first changed it.

    ``path`` is the tool's display path (workspace-relative inside the workspace), ``abs_path``
    the resolved file. ``existed`` False means the turn created the file (``before`` and
    ``before_mode`` are then None). ``after_sha256`` is the hash of the bytes mcode wrote last in
    that turn (None: the file was deleted, or nothing known), which tells undo whether someone
    changed the file since; ``prior_sha256`` what mcode wrote before that in the same turn (the
    file is still at it if mcode died between checkpointing a change and making it)."""

    id: int
    session_id: str
    turn_id: str
    path: str
    abs_path: str
    existed: bool
    before: bytes | None
    before_mode: int | None
    after_sha256: str | None
    ts: float
    prior_sha256: str | None = None


class StoreError(MCodeError):
    pass


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _serialised(
    method: Callable[Concatenate[Store, _P], _R],
) -> Callable[Concatenate[Store, _P], _R]:
    """Run ``method`` holding the store's lock (re-entrant: :meth:`Store.append` writes
    through :meth:`Store.write`)."""

    @wraps(method)
    def locked(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


# A session's updated_at is written with these events, and otherwise at most this often.
TOUCH_EVERY = 1.0
_TOUCH_TYPES = frozenset({SESSION_STARTED, TURN_STARTED, TURN_FINISHED, SESSION_FINISHED})


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None
        self._lock = threading.RLock()  # the connection's, for every thread (module docstring)
        self._touched: dict[str, float] = {}  # session id -> the updated_at last written
        # The fault matrix's full disk (tests/test_faults.py): with MCODE_FAULT_DISK_FULL set to
        # ``store:N``, the N-th event this store writes and every later one fail as SQLite does
        # when the disk is full. Read once here, so unset it costs nothing per event.
        fault = os.environ.get("MCODE_FAULT_DISK_FULL", "")
        self._full_after = int(fault[6:]) if fault.startswith("store:") else None
        try:
            # Private to the user: the store holds transcripts and, in checkpoints, files as they
            # were byte for byte (a .env among them), which cannot be redacted and still restored.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # First: another process may hold the lock that switching to WAL or migrating needs.
            self._db.execute("PRAGMA busy_timeout=5000")
            self._enable_wal()
            # NORMAL in WAL: a committed transaction survives a process crash; only a power
            # loss can take the last few back. That is the bar (kill -9 loses nothing completed).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except StoreError:
            self._db.close()
            raise
        except (sqlite3.Error, OSError) as e:
            if getattr(e, "sqlite_errorname", "") in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                # Retrying or fixing permissions cannot help; only a new file can.
                raise StoreError(
                    f"the session store {path} is damaged ({e})",
                    hint=f"move it aside (mv {path} {path}.broken) and mcode starts a new one; "
                    "the sessions in it can no longer be resumed or undone",
                ) from None
            raise StoreError(
                f"cannot open the session store {path}: {e}",
                hint="check the disk and permissions, or set MCODE_DATA_DIR to another folder",
            ) from None

    def _enable_wal(self) -> None:
        # Switching a new database to WAL takes an exclusive lock and SQLite does not wait for
        # it through busy_timeout: several first runs at once get "database is locked". The
        # mode is persistent, so the loser only has to try again once the winner is done.
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _migrate(self) -> None:
        version = self._version()
        if version > len(_MIGRATIONS):
            # A newer mcode has migrated this database: our INSERTs could break its invariants
            # (a column it made NOT NULL, a table it now fills differently).
            raise StoreError(
                f"the session store {self.path} was written by a newer mcode (schema "
                f"{version}; this mcode knows up to {len(_MIGRATIONS)}), so it is not touched",
                hint="upgrade mcode, or set MCODE_DATA_DIR to another folder",
            )
        if version == len(_MIGRATIONS):
            return
        # Several first runs may start at once: the write lock makes one migrate while the
        # others wait, then find the version already current. (executescript would commit the
        # transaction that holds the lock, so statements run one by one.)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._version()
            for n, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {n}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @_serialised
    def close(self) -> None:
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases every claim
            self._lock_fd = None

    def claim(self, session_id: str) -> None:
        """Make this process the only writer of ``session_id`` until it exits or closes the
        store; StoreError if another process (a running exec, an undo) holds it.

        Events are numbered by the process that writes them, so two writers would take the
        same numbers, and undo would rewrite files under a running agent. The claim is a POSIX
        lock on one byte of ``sessions.db.lock`` chosen by the id: the kernel drops it when
        the process dies (kill -9 included), so a crash never leaves a session locked."""
        try:
            if self._lock_fd is None:
                lock_path = self.path.with_name(self.path.name + ".lock")
                self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.lockf(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _claim_byte(session_id))
        except (BlockingIOError, PermissionError):
            raise StoreError(
                f"session {session_id[:12]} is in use by another mcode process",
                hint="wait for that run (or undo) to finish, or stop it first",
            ) from None
        except OSError as e:
            raise StoreError(
                f"cannot lock session {session_id[:12]} in {self.path.parent}: {e.strerror}",
                hint="check the disk and permissions, or set MCODE_DATA_DIR to another folder",
            ) from None

    def release(self, session_id: str) -> None:
        """Give up this process's claim of ``session_id``: another process may run it now (an
        editor server between prompts, so that ``mcode exec --resume`` can continue the
        session). Nothing happens when it is not held. A process that claims it again must
        read what was stored meanwhile before it writes (the numbering goes on from there)."""
        if self._lock_fd is not None:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_UN, 1, _claim_byte(session_id))

    @_serialised
    def write(self, event: Event, body: str) -> None:
        """Persist one event (``body`` is its JSON, already scrubbed of secrets), committed on
        return (one commit; inside :meth:`append`'s transaction, with it).

        The session's ``updated_at`` moves with the events that start or end something (a
        turn, the session) and otherwise at most once per :data:`TOUCH_EVERY` seconds: writing
        it for every event doubled the pages each event wrote (the row and its index), so it
        may lag the last event by that much."""
        if event.type in TRANSIENT_TYPES:
            return
        sid = event.session_id
        last = self._touched.get(sid)
        touch = event.type in _TOUCH_TYPES or last is None or abs(event.ts - last) >= TOUCH_EVERY
        own = touch and not self._db.in_transaction  # session.started always touches
        try:
            if own:
                self._db.execute("BEGIN")
            try:
                if event.type == SESSION_STARTED:
                    d = event.data
                    self._db.execute(
                        "INSERT OR IGNORE INTO sessions VALUES (?,?,?,?,?,?,?)",
                        (sid, event.ts, event.ts, d["cwd"], d["provider"], d["model"], ""),
                    )
                if self._full_after is not None:
                    self._full_after -= 1
                    if self._full_after <= 0:
                        raise sqlite3.OperationalError("database or disk is full")
                self._db.execute(
                    "INSERT INTO events VALUES (?,?,?,?,?,?)",
                    (sid, event.seq, event.ts, event.type, event.turn_id, body),
                )
                if touch:
                    self._db.execute("UPDATE sessions SET updated_at=? WHERE id=?", (event.ts, sid))
                if own:
                    self._db.execute("COMMIT")
            except BaseException:
                if own and self._db.in_transaction:  # SQLite may have rolled back already
                    self._db.execute("ROLLBACK")
                raise
            if touch:
                self._touched[sid] = event.ts
        except sqlite3.Error as e:
            raise StoreError(
                f"could not save event {event.seq} of session {event.session_id}: {e}",
                hint="check free disk space; the run stops so that nothing goes unrecorded",
            ) from None

    @_serialised
    def append(self, session_id: str, payload: Payload, turn_id: str | None = None) -> Event:
        """Add an event to a stored session from outside its run (``mcode undo``), numbered
        after the last stored one. The write lock is held from reading the last seq to the
        insert, so two writers never take the same number."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self.last_seq(session_id) + 1
                event = Event.of(payload, seq, session_id, turn_id, now())
                self.write(event, event.to_json())
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already (disk full)
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise StoreError(
                f"could not save a {payload.TYPE} event in session {session_id}: {e}",
                hint="check free disk space and that no other program holds the database",
            ) from None
        return event

    @_serialised
    def write_fork(self, events: list[tuple[Event, str]], source: str, turn_ids: list[str]) -> None:
        """Persist a fork in one transaction, all of it or nothing: its ``events`` (each with
        its JSON, already scrubbed; a ``session.started`` first) and a copy of the checkpoints
        of ``source``'s turns ``turn_ids`` under the fork's session id (so that ``mcode undo``
        in the fork can undo the turns it inherited)."""
        if not events:
            return
        target = events[0][0].session_id
        marks = ",".join("?" * len(turn_ids))
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for event, body in events:
                    self.write(event, body)
                if turn_ids:
                    self._db.execute(
                        "INSERT INTO checkpoints (session_id, turn_id, path, abs_path, existed, "
                        "before, before_mode, after_sha256, ts, prior_sha256) SELECT ?, turn_id, "
                        "path, abs_path, existed, before, before_mode, after_sha256, ts, "
                        "prior_sha256 FROM checkpoints WHERE session_id=? "
                        f"AND turn_id IN ({marks}) ORDER BY id",
                        (target, source, *turn_ids),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise StoreError(
                f"could not save {len(events)} events in the session store: {e}",
                hint="check free disk space and that no other program holds the database",
            ) from None

    @_serialised
    def checkpoint(
        self,
        session_id: str,
        turn_id: str,
        path: str,
        abs_path: str,
        before: bytes | None,
        before_mode: int | None,
        after_sha256: str | None,
    ) -> int:
        """Record that a turn is about to change ``abs_path`` (before the change is made) and
        return the checkpoint's id. The first call per file per turn keeps ``before`` (None:
        the file does not exist) and its mode; later calls only move ``after_sha256``, the hash
        of what is about to be written (the previous one becomes ``prior_sha256``). Committed
        on return, like an event."""
        try:
            rows = self._db.execute(
                "INSERT INTO checkpoints (session_id, turn_id, path, abs_path, existed, before, "
                "before_mode, after_sha256, ts) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (session_id, turn_id, abs_path) "
                "DO UPDATE SET prior_sha256=checkpoints.after_sha256, "
                "after_sha256=excluded.after_sha256 RETURNING id",
                (
                    session_id,
                    turn_id,
                    path,
                    abs_path,
                    before is not None,
                    before,
                    before_mode,
                    after_sha256,
                    now(),
                ),
            ).fetchall()  # to its end: a RETURNING statement stays open past its row
        except sqlite3.Error as e:
            raise StoreError(
                f"could not save the checkpoint of {path} in session {session_id}: {e}",
                hint="check free disk space and that no other program holds the database",
            ) from None
        return int(rows[0][0])

    @_serialised
    def checkpointed(self, session_id: str) -> list[tuple[str, str]]:
        """``(turn_id, path)`` of every checkpoint of a session, oldest first: which turns
        changed which files, without loading the saved contents."""
        rows = self._db.execute(
            "SELECT turn_id, path FROM checkpoints WHERE session_id=? ORDER BY id", (session_id,)
        ).fetchall()
        return [(str(t), str(p)) for t, p in rows]

    @_serialised
    def checkpoints(self, session_id: str, turn_id: str | None = None) -> list[Checkpoint]:
        """The checkpoints of a session (or of one of its turns), oldest first."""
        sql = "SELECT * FROM checkpoints WHERE session_id=?"
        args: tuple[Any, ...] = (session_id,)
        if turn_id is not None:
            sql += " AND turn_id=?"
            args += (turn_id,)
        rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [
            Checkpoint(i, sid, tid, p, ap, bool(ex), b, m, h, ts, prior)
            for (i, sid, tid, p, ap, ex, b, m, h, ts, prior) in rows
        ]

    @_serialised
    def set_title(self, session_id: str, title: str) -> None:
        try:
            self._db.execute(
                "UPDATE sessions SET title=? WHERE id=? AND title=''", (title[:200], session_id)
            )
        except sqlite3.Error as e:
            raise StoreError(
                f"could not save the title of session {session_id}: {e}",
                hint="check free disk space and that no other program holds the database",
            ) from None

    @_serialised
    def sessions(self, cwd: str | None = None, limit: int = 50) -> list[SessionInfo]:
        sql = "SELECT * FROM sessions"
        args: tuple[Any, ...] = ()
        if cwd is not None:
            sql += " WHERE cwd=?"
            args = (cwd,)
        sql += " ORDER BY updated_at DESC LIMIT ?"
        return [SessionInfo(*row) for row in self._db.execute(sql, (*args, limit)).fetchall()]

    @_serialised
    def find(self, prefix: str) -> SessionInfo:
        """The session whose id is ``prefix`` or starts with it (ids are hex, so a prefix is
        compared literally: ``_`` and ``%`` are not wildcards)."""
        rows = self._db.execute("SELECT * FROM sessions WHERE id=?", (prefix,)).fetchall()
        if not rows:
            rows = self._db.execute(
                "SELECT * FROM sessions WHERE substr(id, 1, ?)=? LIMIT 2",
                (len(prefix), prefix),
            ).fetchall()
        if not rows:
            raise StoreError(
                f"no session with id {prefix!r}", hint="`mcode sessions` lists the sessions"
            )
        if len(rows) > 1:
            raise StoreError(f"session id {prefix!r} is ambiguous", hint="give more characters")
        return SessionInfo(*rows[0])

    def events(self, session_id: str) -> list[dict[str, Any]]:
        # Parsed row by row, so a long session's JSON text is never all in memory beside
        # what it parses to; the cursor is exhausted (or closed) before the lock is let go.
        with self._lock:
            cursor = self._db.execute(
                "SELECT body FROM events WHERE session_id=? ORDER BY seq", (session_id,)
            )
            try:
                return [json.loads(body) for (body,) in cursor]
            finally:
                cursor.close()

    @_serialised
    def last_seq(self, session_id: str) -> int:
        row = self._db.execute(
            "SELECT MAX(seq) FROM events WHERE session_id=?", (session_id,)
        ).fetchone()
        return int(row[0] or 0)

    def history(self, session_id: str) -> list[Message]:
        """The conversation as the model saw it, rebuilt from the stored events."""
        return history_of(self.events(session_id))


def resume_target(
    store: Store, cwd: str, resume_id: str | None, continue_last: bool
) -> SessionInfo:
    """The stored session ``--resume ID`` (a prefix will do) or ``--continue`` (the folder's
    latest) names, checked as a flag is: an unknown, ambiguous or other folder's session is a
    :class:`~mcode.errors.UsageError`. Cheap (a query), so the TUI says it on the terminal."""
    from mcode.errors import UsageError

    if continue_last:
        recent = store.sessions(cwd=cwd, limit=1)
        if not recent:
            raise UsageError(
                f"there is no earlier session in {cwd} to continue",
                hint="start one without --continue",
            )
        resume_id = recent[0].id
    assert resume_id is not None
    try:
        info = store.find(resume_id)
    except StoreError as e:  # an unknown or ambiguous --resume ID is a bad flag
        raise UsageError(e.message, hint=e.hint) from None
    if info.cwd != cwd:
        # A session's history talks of its own folder's files: resumed elsewhere, its
        # tools would act on another tree (Claude Code's --resume is per project too).
        there = f"mcode exec --cwd {info.cwd} --resume {info.id[:12]}"
        raise UsageError(
            f"session {info.id[:12]} worked in {info.cwd}, not in {cwd}",
            hint=f"resume it in its own folder: {there}"
            if Path(info.cwd).is_dir()
            else "that folder no longer exists; start a new session here",
        )
    return info


def _claim_byte(session_id: str) -> int:
    """The byte of ``sessions.db.lock`` that stands for ``session_id``'s claim."""
    return int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:6], "big")


def history_of(events: list[dict[str, Any]], agent: str | None = None) -> list[Message]:
    """The history of conversation ``agent`` (None: the session's main one) that stored
    ``events`` (as :meth:`Store.events` returns them) hold: each of its history events appends
    its message; a ``compaction`` replaces what came before with its ledger message, keeping
    the last ``kept`` messages. Events of other conversations carry another ``agent``."""
    history: list[Message] = []
    for e in events:
        if e.get("agent") != agent:
            continue
        data = e["data"]
        if e["type"] == COMPACTION:
            kept = history[len(history) - data["kept"] :] if data["kept"] else []
            history = [Message.from_dict(data["message"]), *kept]
        elif e["type"] in HISTORY_TYPES and "message" in data:
            history.append(Message.from_dict(data["message"]))
    return history


def _statements(script: str) -> list[str]:
    """The SQL statements of ``script``, each complete."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    if current.strip():
        statements.append(current)
    return statements


def now() -> float:
    return time.time()
