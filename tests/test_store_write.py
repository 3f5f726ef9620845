"""Store.write: every event is committed when write returns; the session's updated_at follows
turn and session boundaries exactly and other events at most once a second."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mcode.events import Event
from mcode.store import TOUCH_EVERY, Store


def test_each_event_is_committed_and_updated_at_is_throttled(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    store = Store(path)
    reader = sqlite3.connect(path)

    def write(seq: int, type_: str, ts: float, **data: str) -> tuple[int, float]:
        event = Event(type_, dict(data), seq, "s1", "t1", ts)
        store.write(event, event.to_json())
        # Visible to another connection at once: committed, not pending in a transaction.
        stored = reader.execute("SELECT COUNT(*) FROM events WHERE session_id='s1'").fetchone()
        updated = reader.execute("SELECT updated_at FROM sessions WHERE id='s1'").fetchone()
        return int(stored[0]), float(updated[0])

    assert write(1, "session.started", 1000.0, cwd="/w", provider="p", model="m") == (1, 1000.0)
    assert write(2, "turn.started", 1000.1) == (2, 1000.1)
    assert write(3, "tool.started", 1000.2) == (3, 1000.1)  # within a second: not moved
    assert write(4, "text.delta", 1000.3) == (3, 1000.1)  # transient: not stored at all
    later = 1000.2 + TOUCH_EVERY
    assert write(5, "tool.finished", later) == (4, later)  # a second on: moved
    assert write(6, "usage", later + 0.1) == (5, later)
    assert write(7, "turn.finished", later + 0.2) == (6, later + 0.2)  # boundaries always move it
    assert not store._db.in_transaction
    reader.close()
    store.close()


def test_a_released_claim_can_be_taken_by_another_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "sessions.db"
    store = Store(path)
    store.claim("s1")
    store.claim("s2")
    other = (
        "import sys; from mcode.store import Store, StoreError\n"
        "store = Store(__import__('pathlib').Path(sys.argv[1]))\n"
        "for sid in sys.argv[2:]:\n"
        "    try:\n"
        "        store.claim(sid); print(sid, 'claimed')\n"
        "    except StoreError as e:\n"
        "        print(sid, e.message)\n"
    )

    def try_claims() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", other, str(path), "s1", "s2"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.splitlines()

    assert try_claims() == [
        "s1 session s1 is in use by another mcode process",
        "s2 session s2 is in use by another mcode process",
    ]
    store.release("s1")  # one session let go; the other stays claimed
    assert try_claims() == ["s1 claimed", "s2 session s2 is in use by another mcode process"]
    store.release("never-claimed")  # nothing to give up: nothing happens
    store.claim("s1")  # and this process can take it back once the other has gone
    store.close()
