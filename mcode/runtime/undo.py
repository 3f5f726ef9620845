"""Undoing a turn's file changes: which turn, what to do to each file, doing it, recording it.

Before ``write`` or ``edit`` changes a file, the session saves a checkpoint in the store (see
:mod:`mcode.store`): the file as it was before the turn first changed it (bytes and mode, or
"did not exist") and the hash of what mcode wrote last. Undoing a turn plans, for each file
(:func:`plan_turn`):

- it holds what mcode wrote: the before-image is written back (atomically, with its mode), or
  the file is deleted when the turn created it;
- it already holds the before-image (or is gone, for a created file): nothing to do;
- anything else means someone changed it after the turn: it is left alone and reported
  (``force`` restores it anyway).

:func:`carry_out` does what the plan says and records it as an ``undo`` event in the session
(its ``turn_id`` is the undone turn). A file counts as restored once an undo event lists it, so
a turn stays the target (:func:`target_turn`) until every file of it is back, and the next undo
goes one turn further back. A session resumed after an undo tells the model (:func:`undo_note`).

What bash commands changed is not undone: nothing can know it (:func:`commands_ran` says which
ran). The callers: ``mcode undo`` (:mod:`mcode.undo`, the command line on top of this) and a
fork with ``--undo-files`` (:mod:`mcode.runtime.fork`). Both claim the session first
(:meth:`Store.claim`): an undo numbers its event after the last stored one, which a running
session would take too, and its agent may be editing the same files.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mcode import events as ev
from mcode.atomic import atomic_write
from mcode.messages import Message
from mcode.store import Checkpoint, Store, StoreError

# Tools whose effects undo covers (write, edit) or that change nothing. Any other tool that
# ran in the turn (bash) may have changed files that undo cannot restore: the user is warned.
COVERED_TOOLS = frozenset({"read", "write", "edit", "grep", "glob", "ls", "todo"})

Action = Literal["restore", "delete", "unchanged", "skip"]


@dataclass(slots=True)
class FilePlan:
    """What undo does (or did) to one file."""

    path: str
    action: Action
    reason: str = ""
    forced: bool = False
    blocked: bool = False  # skipped for a reason --force cannot overcome
    undo: Literal["restore", "delete"] = "restore"  # what undoing it means (delete: created)
    failed: str = ""  # the error when the action could not be carried out


@dataclass(slots=True)
class TurnPlan:
    """The undo of one turn: its files not yet put back, and what to do to each."""

    session_id: str
    turn_id: str
    prompt: str
    """the first line of the user message that started the turn (60 characters at most)"""
    checkpoints: list[Checkpoint]
    files: list[FilePlan]

    @property
    def failed(self) -> list[FilePlan]:
        """The files left as they are: skipped, or the action failed."""
        return [p for p in self.files if p.action == "skip" or p.failed]


def undoable(store: Store, session_id: str) -> bool:
    """Whether the session has a file change left to undo (its events are read only if it
    has checkpoints at all)."""
    changed = store.checkpointed(session_id)
    return bool(changed) and _target(changed, store.events(session_id)) is not None


def target_turn(store: Store, session_id: str, events: list[dict[str, Any]]) -> str | None:
    """The latest turn of the session with a checkpointed file that no undo event has put back
    yet (``events``: the session's, as :meth:`Store.events` returns them)."""
    return _target(store.checkpointed(session_id), events)


def plan_turn(
    store: Store, session_id: str, turn_id: str, events: list[dict[str, Any]], *, force: bool
) -> TurnPlan:
    """What undoing ``turn_id`` would do to each of its files not yet put back. Reads the
    files; changes nothing."""
    done = _done(events).get(turn_id, set())
    pending = [cp for cp in store.checkpoints(session_id, turn_id) if cp.path not in done]
    return TurnPlan(
        session_id,
        turn_id,
        _turn_prompt(events, turn_id),
        pending,
        [plan_file(cp, force=force) for cp in pending],
    )


def carry_out(store: Store, plan: TurnPlan, *, forced: bool) -> ev.Undo:
    """Do what ``plan`` says to the files, then record it as an ``undo`` event in the session
    (StoreError when it cannot be recorded: the files were changed all the same, and a later
    undo finds them as they are)."""
    for cp, file in zip(plan.checkpoints, plan.files, strict=True):
        _apply(cp, file)
    restored: list[str] = []
    deleted: list[str] = []
    unchanged: list[str] = []
    skipped: list[ev.SkippedPath] = []
    for file in plan.files:
        if file.failed or file.action == "skip":
            skipped.append({"path": file.path, "reason": file.failed or file.reason})
        elif file.action == "restore":
            restored.append(file.path)
        elif file.action == "delete":
            deleted.append(file.path)
        else:
            unchanged.append(file.path)
    undone = ev.Undo(
        restored=tuple(restored),
        deleted=tuple(deleted),
        unchanged=tuple(unchanged),
        skipped=tuple(skipped),
        forced=forced,
    )
    try:
        store.append(plan.session_id, undone, turn_id=plan.turn_id)
    except StoreError as e:
        raise StoreError(
            e.message,
            hint="the files were changed as listed above, but the session could not record it; "
            "once the store works, `mcode undo` finds them as before and records it",
        ) from None
    return undone


def commands_ran(events: list[dict[str, Any]], turn_id: str) -> dict[str, int]:
    """How many calls of each tool whose effects undo cannot cover (bash) the turn ran."""
    counts: dict[str, int] = {}
    for e in events:
        if e["type"] != ev.TOOL_STARTED or e.get("turn_id") != turn_id:
            continue
        name = str(e["data"].get("name"))
        if name not in COVERED_TOOLS:
            counts[name] = counts.get(name, 0) + 1
    return counts


def undo_note(events: list[dict[str, Any]]) -> str | None:
    """The note for the model when the user undid turns since the session's last message (a
    resumed session prepends it to the next user message), or None."""
    last = max((i for i, e in enumerate(events) if e["type"] in ev.HISTORY_TYPES), default=-1)
    restored: dict[str, None] = {}  # ordered sets
    deleted: dict[str, None] = {}
    turns: set[str] = set()
    for e in events[last + 1 :]:
        if e["type"] != ev.UNDO:
            continue
        d = e["data"]
        back = [*d.get("restored", []), *d.get("unchanged", [])]
        restored.update(dict.fromkeys(back))
        deleted.update(dict.fromkeys(d.get("deleted", [])))
        if back or d.get("deleted"):
            turns.add(e.get("turn_id") or "")
    if not turns:
        return None
    which = "your previous turn" if len(turns) == 1 else f"your last {len(turns)} turns"
    parts = []
    if restored:
        parts.append(f"these files were restored: {', '.join(restored)}")
    if deleted:
        parts.append(f"these files were deleted (they did not exist before): {', '.join(deleted)}")
    return (
        f"[Note: the user undid the file changes of {which}; {'; '.join(parts)}. "
        "Re-read them before editing.]"
    )


def _done(events: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """Per turn, the paths that undo events have already put back as they were."""
    done: dict[str, set[str]] = {}
    for e in events:
        if e["type"] == ev.UNDO and e.get("turn_id"):
            d = e["data"]
            paths = done.setdefault(e["turn_id"], set())
            for key in ("restored", "deleted", "unchanged"):
                paths.update(d.get(key, []))
    return done


def _target(changed: list[tuple[str, str]], events: list[dict[str, Any]]) -> str | None:
    """The latest turn with a checkpointed file (``changed``: turn and path, oldest first)
    that no undo event has put back yet."""
    done = _done(events)
    for turn_id, path in reversed(changed):
        if path not in done.get(turn_id, set()):
            return turn_id
    return None


def _current(path: Path) -> tuple[bytes | None, str]:
    """The file's bytes (None: it does not exist) and, when it cannot be restored even with
    --force, why."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, ""
    except OSError as e:
        return None, f"cannot look at it: {e.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return None, "it is a directory now"
    if not stat.S_ISREG(st.st_mode):
        return None, "it is no longer a regular file (a link or special file took its place)"
    try:
        return path.read_bytes(), ""
    except OSError as e:
        return None, f"cannot read it: {e.strerror}"


def _written_by_mcode(current: bytes, cp: Checkpoint) -> bool:
    """Whether the file holds what the turn wrote last, or what it wrote before that (mcode died
    between checkpointing a second change and making it)."""
    digest = hashlib.sha256(current).hexdigest()
    return digest in (cp.after_sha256, cp.prior_sha256)


def plan_file(cp: Checkpoint, *, force: bool) -> FilePlan:
    """What undoing ``cp``'s turn would do to its file, as the file is now."""
    current, blocked = _current(Path(cp.abs_path))
    if blocked:
        return FilePlan(cp.path, "skip", blocked, blocked=True)
    if cp.existed:
        if current == cp.before:
            return FilePlan(cp.path, "unchanged", "already as before the turn")
        if current is None:
            reason = "deleted since the turn"
        elif _written_by_mcode(current, cp):
            return FilePlan(cp.path, "restore")
        else:
            reason = "changed since mcode wrote it"
        if force:
            return FilePlan(cp.path, "restore", reason, forced=True)
        return FilePlan(cp.path, "skip", reason)
    if current is None:
        return FilePlan(cp.path, "unchanged", "already gone (the turn created it)")
    if _written_by_mcode(current, cp):
        return FilePlan(cp.path, "delete", "the turn created it")
    reason = "changed since mcode created it"
    if force:
        return FilePlan(cp.path, "delete", reason, forced=True)
    return FilePlan(cp.path, "skip", reason, undo="delete")


def _apply(cp: Checkpoint, plan: FilePlan) -> None:
    path = Path(cp.abs_path)
    try:
        if plan.action == "restore" and cp.before is not None:
            # The parent is gone only when the file was deleted since (restored with --force).
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, cp.before, mode=cp.before_mode)
        elif plan.action == "delete":
            # Folders the turn created for the file are left: undo does not know which were
            # new, and an empty folder is harmless (git does not even see it).
            path.unlink(missing_ok=True)
    except OSError as e:
        plan.failed = f"could not {plan.action} it: {e.strerror or e}"


def _turn_prompt(events: list[dict[str, Any]], turn_id: str) -> str:
    """The first line of the user's message that started the turn (cut to 60 characters)."""
    for e in events:
        if e["type"] == ev.MESSAGE_USER and e.get("turn_id") == turn_id:
            text = Message.from_dict(e["data"]["message"]).text.strip()
            line = text.splitlines()[0] if text else ""
            return line if len(line) <= 60 else line[:59] + "…"
    return ""
