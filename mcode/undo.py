"""``mcode undo``: put back the files that the last turn of a session wrote or edited.

Before ``write`` or ``edit`` changes a file, the session saves a checkpoint in the store (see
:mod:`mcode.store`): the file as it was before the turn first changed it (bytes and mode, or
"did not exist") and the hash of what mcode wrote last. Undo takes the latest turn that still
has files to restore (of the session given, or else of the newest session in the folder that
has one: a later session that only answered questions does not hide an earlier edit) and, for
each file:

- it holds what mcode wrote: the before-image is written back (atomically, with its mode), or
  the file is deleted when the turn created it;
- it already holds the before-image (or is gone, for a created file): nothing to do;
- anything else means someone changed it after the turn: it is left alone and reported, and
  undo exits 1; ``--force`` restores it anyway.

What was done is recorded as an ``undo`` event in the session (its ``turn_id`` is the undone
turn). A file counts as restored once an undo event lists it, so a turn stays the target until
every file of it is back (``--force`` finishes one with skipped files), and the next undo goes
one turn further back. A session resumed after an undo tells the model (:func:`undo_note`).

What bash commands changed is not undone: undo cannot know it. It says so when the turn ran any.

Undo refuses a session that is running (:meth:`Store.claim`): it numbers its event after the
last stored one, which the run would take too, and the agent may be editing the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcode import events as ev
from mcode.errors import MCodeError, UsageError
from mcode.messages import Message
from mcode.store import Checkpoint, Store, StoreError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Tools whose effects undo covers (write, edit) or that change nothing. Any other tool that
# ran in the turn (bash) may have changed files that undo cannot restore: the user is warned.
_COVERED_TOOLS = frozenset({"read", "write", "edit", "grep", "glob", "ls", "todo"})
# How many of a folder's newest sessions undo looks through for one with a change to undo.
_LOOK_BACK = 200


@dataclass(slots=True)
class _Plan:
    """What undo does (or did) to one file."""

    path: str
    action: str  # restore | delete | unchanged | skip
    reason: str = ""
    forced: bool = False
    blocked: bool = False  # skipped for a reason --force cannot overcome
    undo: str = "restore"  # what undoing it means: restore | delete (a file the turn created)
    failed: str = ""  # the error when the action could not be carried out


@dataclass(slots=True)
class _Outcome:
    restored: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[ev.SkippedPath] = field(default_factory=list)


def main(args: argparse.Namespace) -> int:
    from mcode.config import check_environment, data_home

    try:
        check_environment(os.environ)  # a misspelt MCODE_DATA_DIR would undo the wrong store
        store = Store(data_home() / "sessions.db")
    except MCodeError as e:
        _complain(e)
        return e.exit_code
    try:
        return _undo(store, args)
    except MCodeError as e:
        _complain(e)
        return e.exit_code
    finally:
        store.close()


def _complain(e: MCodeError) -> None:
    print(f"mcode: error: {e.message}", file=sys.stderr)
    if e.hint:
        print(f"mcode: {e.hint}", file=sys.stderr)


def _warn(text: str) -> None:
    print(f"mcode: warning: {text}", file=sys.stderr)


def _undo(store: Store, args: argparse.Namespace) -> int:
    cwd = Path(args.cwd or os.getcwd()).expanduser().resolve()
    if args.resume:
        try:
            info = store.find(args.resume)
        except StoreError as e:  # an unknown or ambiguous id is a bad flag
            raise UsageError(e.message, hint=e.hint) from None
    else:
        recent = store.sessions(cwd=str(cwd), limit=_LOOK_BACK)
        if not recent:
            raise UsageError(
                f"there is no session in {cwd} to undo",
                hint="run undo in the folder the session worked in, or pass --resume ID "
                "(`mcode sessions --all` lists the sessions)",
            )
        # The newest session with a change left to undo; the newest of all when none has one
        # (it says there is nothing to undo, and warns about its commands).
        info = next((r for r in recent if _undoable(store, r.id)), recent[0])
        if info is not recent[0]:
            newer = recent.index(info)
            print(
                f"(the {newer} newer session{'s' * (newer != 1)} in this folder changed no "
                "files that are left to undo)"
            )
    sid = info.id[:12]
    # A running session would write its next event under the number undo takes, and its agent
    # may be editing the very files undo would put back.
    store.claim(info.id)

    events = store.events(info.id)
    changed = store.checkpointed(info.id)
    turn_id = _target(changed, events)
    if turn_id is None:
        print(f"Nothing to undo in session {sid}: no file change of it is left to restore.")
        # A last turn that ran only commands is most likely what the user wants back.
        turns = [e["turn_id"] for e in events if e["type"] == ev.TURN_STARTED]
        if turns and not any(t == turns[-1] for t, _ in changed):
            _warn_commands(events, turns[-1], "its last turn")
        return EXIT_OK
    done = _done(events).get(turn_id, set())
    pending = [cp for cp in store.checkpoints(info.id, turn_id) if cp.path not in done]

    prompt = _turn_prompt(events, turn_id)
    about = f' ("{prompt}")' if prompt else ""
    head = "Would undo" if args.dry_run else "Undoing"
    n = len(pending)
    print(f"{head} turn {turn_id} of session {sid}{about}: {n} file{'s' * (n != 1)}")
    plans = [_plan(cp, force=args.force) for cp in pending]
    if not args.dry_run:
        for cp, plan in zip(pending, plans, strict=True):
            _apply(cp, plan)
    for plan in plans:
        print(_line(plan, dry_run=args.dry_run))
    _warn_commands(events, turn_id, "this turn")

    failed = [p for p in plans if p.action == "skip" or p.failed]
    if args.dry_run:
        return EXIT_FAILED if failed else EXIT_OK
    outcome = _Outcome()
    for plan in plans:
        if plan.failed or plan.action == "skip":
            outcome.skipped.append({"path": plan.path, "reason": plan.failed or plan.reason})
        elif plan.action == "restore":
            outcome.restored.append(plan.path)
        elif plan.action == "delete":
            outcome.deleted.append(plan.path)
        else:
            outcome.unchanged.append(plan.path)
    undone = ev.Undo(
        restored=tuple(outcome.restored),
        deleted=tuple(outcome.deleted),
        unchanged=tuple(outcome.unchanged),
        skipped=tuple(outcome.skipped),
        forced=bool(args.force),
    )
    try:
        store.append(info.id, undone, turn_id=turn_id)
    except StoreError as e:
        raise StoreError(
            e.message,
            hint="the files were changed as listed above, but the session could not record it; "
            "once the store works, `mcode undo` finds them as before and records it",
        ) from None
    if failed:
        if any(p.action == "skip" and not p.blocked for p in plans):
            print(
                "mcode: files changed since the turn were left as they are; "
                "`mcode undo --force` undoes them too (their later changes are lost)",
                file=sys.stderr,
            )
        return EXIT_FAILED
    return EXIT_OK


def _undoable(store: Store, session_id: str) -> bool:
    """Whether the session has a file change left to undo (its events are read only if it
    has checkpoints at all)."""
    changed = store.checkpointed(session_id)
    return bool(changed) and _target(changed, store.events(session_id)) is not None


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


def _plan(cp: Checkpoint, *, force: bool) -> _Plan:
    current, blocked = _current(Path(cp.abs_path))
    if blocked:
        return _Plan(cp.path, "skip", blocked, blocked=True)
    if cp.existed:
        if current == cp.before:
            return _Plan(cp.path, "unchanged", "already as before the turn")
        if current is None:
            reason = "deleted since the turn"
        elif _written_by_mcode(current, cp):
            return _Plan(cp.path, "restore")
        else:
            reason = "changed since mcode wrote it"
        if force:
            return _Plan(cp.path, "restore", reason, forced=True)
        return _Plan(cp.path, "skip", reason)
    if current is None:
        return _Plan(cp.path, "unchanged", "already gone (the turn created it)")
    if _written_by_mcode(current, cp):
        return _Plan(cp.path, "delete", "the turn created it")
    reason = "changed since mcode created it"
    if force:
        return _Plan(cp.path, "delete", reason, forced=True)
    return _Plan(cp.path, "skip", reason, undo="delete")


def _apply(cp: Checkpoint, plan: _Plan) -> None:
    from mcode.tools.workspace import atomic_write

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


def _line(plan: _Plan, *, dry_run: bool) -> str:
    if plan.failed:
        return f"failed {plan.path}: {plan.failed}"
    if plan.action == "skip":
        hint = "" if plan.blocked else f"; --force {plan.undo}s it"
        verb = "would skip" if dry_run else "skipped"
        return f"{verb} {plan.path}: {plan.reason}{hint}"
    verb = {
        ("restore", False): "restored",
        ("restore", True): "would restore",
        ("delete", False): "deleted",
        ("delete", True): "would delete",
        ("unchanged", False): "unchanged",
        ("unchanged", True): "unchanged",
    }[plan.action, dry_run]
    if plan.forced:
        detail = f" (forced: {plan.reason}; those changes are lost)"
    elif plan.reason:
        detail = f" ({plan.reason})"
    else:
        detail = ""
    return f"{verb} {plan.path}{detail}"


def _turn_prompt(events: list[dict[str, Any]], turn_id: str) -> str:
    """The first line of the user's message that started the turn (cut to 60 characters)."""
    for e in events:
        if e["type"] == ev.MESSAGE_USER and e.get("turn_id") == turn_id:
            text = Message.from_dict(e["data"]["message"]).text.strip()
            line = text.splitlines()[0] if text else ""
            return line if len(line) <= 60 else line[:59] + "…"
    return ""


def _warn_commands(events: list[dict[str, Any]], turn_id: str, which: str) -> None:
    counts: dict[str, int] = {}
    for e in events:
        if e["type"] != ev.TOOL_STARTED or e.get("turn_id") != turn_id:
            continue
        name = str(e["data"].get("name"))
        if name not in _COVERED_TOOLS:
            counts[name] = counts.get(name, 0) + 1
    if counts:
        ran = ", ".join(f"{name} ({n} call{'s' * (n != 1)})" for name, n in counts.items())
        _warn(
            f"{which} also ran {ran}; what those commands changed is not undone "
            "(check `git status`)"
        )


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
