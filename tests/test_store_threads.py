"""One Store, one SQLite connection, used from several threads at once: the file tools save
their checkpoints from a worker thread (``asyncio.to_thread``) while the event loop writes the
events of other conversations (a team's producers, a sub-agent). Seen once under load in an LSP
team test: "cannot commit transaction - SQL statements in progress", a read's statement still
open on the shared connection when another thread's write committed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from mcode.events import Event
from mcode.store import Store


def _started(sid: str) -> Event:
    return Event("session.started", {"cwd": "/w", "provider": "p", "model": "m"}, 1, sid, None, 1.0)


def _writer(store: Store, sid: str, n: int, errors: list[BaseException]) -> None:
    """Conversation B: ``n`` turns, each event its own transaction (turn events always commit
    the session's updated_at with them, in BEGIN ... COMMIT)."""
    try:
        for seq in range(2, n + 2):
            e = Event("turn.started", {}, seq, sid, f"t{seq}", 1.0 + seq)
            store.write(e, e.to_json())
    except BaseException as e:  # the test reports it
        errors.append(e)


def _hammer(target: Any, errors: list[BaseException], stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            target()
    except BaseException as e:  # the test reports it
        errors.append(e)


def _race(tmp_path: Path, reader: Any) -> tuple[Store, list[BaseException]]:
    store = Store(tmp_path / "sessions.db")
    for sid in ("a", "b"):
        e = _started(sid)
        store.write(e, e.to_json())
    for seq in range(2, 400):  # a history worth iterating
        e = Event(
            "message.user", {"message": {"role": "user", "content": "x" * 200}}, seq, "a", "t", 1.0
        )
        store.write(e, e.to_json())
    errors: list[BaseException] = []
    stop = threading.Event()
    other = threading.Thread(target=_hammer, args=(lambda: reader(store), errors, stop))
    other.start()
    try:
        _writer(store, "b", 600, errors)
    finally:
        stop.set()
        other.join(timeout=60)
    return store, errors


def test_reading_a_history_in_one_thread_while_another_commits_fails_nothing(
    tmp_path: Path,
) -> None:
    store, errors = _race(tmp_path, lambda s: s.history("a"))
    assert errors == []
    assert [e["seq"] for e in store.events("b")] == list(range(1, 602))  # every event is there
    store.close()


def test_checkpoints_saved_from_a_worker_thread_while_events_commit_fail_nothing(
    tmp_path: Path,
) -> None:
    n = iter(range(10**6))

    def save(store: Store) -> None:  # what the write tool does in its thread, file after file
        i = next(n)
        store.checkpoint("a", "t", f"f{i}", f"/w/f{i}", b"before", 0o644, None)

    store, errors = _race(tmp_path, save)
    assert errors == []
    saved = store.checkpointed("a")
    assert saved and all(t == "t" for t, _ in saved)
    assert [e["seq"] for e in store.events("b")] == list(range(1, 602))
    store.close()
