"""``mcode undo``: put back the files that the last turn of a session wrote or edited.

The command line on top of :mod:`mcode.runtime.undo` (which plans and carries out the undo of
a turn, and records it): this module picks the session, prints what is done to each file and
turns the outcome into an exit code. Undo takes the latest turn that still has files to restore
(of the session given, or else of the newest session in the folder that has one: a later
session that only answered questions does not hide an earlier edit); a file changed by someone
since the turn is left alone and reported, and undo exits 1; ``--force`` restores it anyway.
What bash commands changed is not undone: undo says so when the turn ran any.

Undo refuses a session that is running (:meth:`Store.claim`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mcode import events as ev
from mcode.errors import MCodeError, UsageError
from mcode.runtime.undo import FilePlan, carry_out, commands_ran, plan_turn, target_turn, undoable
from mcode.store import Store, StoreError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# How many of a folder's newest sessions undo looks through for one with a change to undo.
_LOOK_BACK = 200


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
        info = next((r for r in recent if undoable(store, r.id)), recent[0])
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
    turn_id = target_turn(store, info.id, events)
    if turn_id is None:
        print(f"Nothing to undo in session {sid}: no file change of it is left to restore.")
        # A last turn that ran only commands is most likely what the user wants back.
        turns = [e["turn_id"] for e in events if e["type"] == ev.TURN_STARTED]
        if turns and not any(t == turns[-1] for t, _ in store.checkpointed(info.id)):
            _warn_commands(commands_ran(events, turns[-1]), "its last turn")
        return EXIT_OK
    plan = plan_turn(store, info.id, turn_id, events, force=args.force)

    about = f' ("{plan.prompt}")' if plan.prompt else ""
    head = "Would undo" if args.dry_run else "Undoing"
    n = len(plan.files)
    print(f"{head} turn {turn_id} of session {sid}{about}: {n} file{'s' * (n != 1)}")
    if args.dry_run:
        for file in plan.files:
            print(_line(file, dry_run=True))
        _warn_commands(commands_ran(events, turn_id), "this turn")
        return EXIT_FAILED if plan.failed else EXIT_OK
    try:
        carry_out(store, plan, forced=bool(args.force))
    finally:
        # What was done to the files is said also when it could not be recorded.
        for file in plan.files:
            print(_line(file, dry_run=False))
        _warn_commands(commands_ran(events, turn_id), "this turn")
    if plan.failed:
        if any(p.action == "skip" and not p.blocked for p in plan.files):
            print(
                "mcode: files changed since the turn were left as they are; "
                "`mcode undo --force` undoes them too (their later changes are lost)",
                file=sys.stderr,
            )
        return EXIT_FAILED
    return EXIT_OK


def _line(plan: FilePlan, *, dry_run: bool) -> str:
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


def _warn_commands(counts: dict[str, int], which: str) -> None:
    if counts:
        ran = ", ".join(f"{name} ({n} call{'s' * (n != 1)})" for name, n in counts.items())
        _warn(
            f"{which} also ran {ran}; what those commands changed is not undone "
            "(check `git status`)"
        )
