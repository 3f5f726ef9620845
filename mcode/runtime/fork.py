"""Forking a stored session: a new session that starts from an earlier point of another.

**User turn N** (1-based) is the session's N-th user message to its main conversation (its
N-th ``message.user`` event without an ``agent``) together with everything that followed it up
to the next one: the model calls and tool calls it caused, the steers sent into it, a turn
continued without a new message after a kill (``--resume`` with no prompt), a sub-agent's
work. :func:`user_turns` lists them with their text, for a picker (``/rewind``).

:func:`fork_session` copies the stored events before user turn N (its ``turn.started``, and the
``message.queued`` its message was stored as) into a new session (byte for byte but for the
session id: same folder, provider, model and title), with the checkpoints of those turns
(``mcode undo`` in the fork can undo what it inherited), then writes a ``session.forked`` event
saying where it came from. Resuming the fork rebuilds the history the model had before turn N,
as ``--resume`` always does (a compaction before turn N included); the next message replaces
turn N. The source session is not changed: its events and history stay as they were.

Files are not rewound: the workspace keeps what turns >= N wrote, unless ``undo_files`` asks
for it. Then the checkpoints of those turns are undone in the workspace, newest turn first,
with the same checks as ``mcode undo`` (:mod:`mcode.runtime.undo`): a file someone changed
since mcode wrote it stops the fork before anything is touched. Each undone turn is recorded
as an ``undo`` event in the *source* session, as ``mcode undo`` records it: the source's
history is unchanged, and resumed, its model is told that those files were put back. The
source is claimed for that (:meth:`Store.claim`): a running session cannot be rewound.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

from mcode import events as ev
from mcode.errors import MCodeError, UsageError
from mcode.events import Event
from mcode.messages import Message
from mcode.runtime.undo import carry_out, plan_file, plan_turn
from mcode.store import Checkpoint, Store, StoreError, now


@dataclass(frozen=True, slots=True)
class UserTurn:
    """One user turn of a stored session (see the module docstring)."""

    number: int
    """1-based, as ``--fork-at`` takes it"""
    turn_id: str
    """the id of the turn its message started"""
    text: str
    """the user's message as sent (an undo note mcode put before it included)"""
    ts: float
    """when it was sent"""
    changed_files: tuple[str, ...]
    """the files its write and edit calls changed (workspace-relative), in order"""


@dataclass(frozen=True, slots=True)
class Fork:
    """A fork made: the new session's id, and the source's turns whose files were undone."""

    session_id: str
    source: str
    at_turn: int
    undone: tuple[str, ...] = ()
    """turn ids of the source, newest first (``undo_files`` only)"""


def user_turns(store: Store, session_id: str) -> list[UserTurn]:
    """The user turns of stored session ``session_id``, oldest first."""
    return _user_turns(store.events(session_id))


def fork_session(
    store: Store,
    session_id: str,
    at_turn: int,
    *,
    undo_files: bool = False,
    cwd: str | None = None,
) -> Fork:
    """Fork stored session ``session_id`` (or a unique prefix of it) before user turn
    ``at_turn``; see the module docstring. ``cwd``: the caller's folder; a session of another
    folder is refused when given (its files are not this folder's). Raises UsageError for a
    session or turn that is not there, MCodeError when ``undo_files`` finds a file changed since
    the turn."""
    try:
        info = store.find(session_id)
    except StoreError as e:  # an unknown or ambiguous id is a bad argument
        raise UsageError(e.message, hint=e.hint) from None
    if cwd is not None and info.cwd != cwd:
        raise UsageError(
            f"session {info.id[:12]} worked in {info.cwd}, not in {cwd}",
            hint=f"fork it in its own folder: mcode exec --cwd {info.cwd} --resume {info.id[:12]}",
        )
    events = store.events(info.id)
    turns = _user_turns(events)
    if not 1 <= at_turn <= len(turns):
        have = f"has {len(turns)} user turn{'s' * (len(turns) != 1)}" if turns else "has no turns"
        raise UsageError(
            f"--fork-at {at_turn}: session {info.id[:12]} {have}",
            hint=f"give a turn from 1 to {len(turns)}" if turns else "resume it instead",
        )
    turn = turns[at_turn - 1]
    # Where turn N begins: its first event (its turn.started).
    cut = min(e["seq"] for e in events if e.get("turn_id") == turn.turn_id)
    # The message turn N was given with --resume is stored just before it (message.queued): it
    # is turn N's, so the fork leaves it out, or the fork's first run would send it again.
    by_seq = {e["seq"]: e for e in events}
    while cut - 1 in by_seq and by_seq[cut - 1]["type"] == ev.MESSAGE_QUEUED:
        cut -= 1
    if events[0]["type"] != ev.SESSION_STARTED:
        raise StoreError(
            f"session {info.id[:12]} has no session.started event to fork from",
            hint="the store is damaged; start a new session",
        )
    undone: tuple[str, ...] = ()
    if undo_files:
        store.claim(info.id)  # no run of it may write meanwhile (nor edit the files)
        events = store.events(info.id)  # what it wrote up to the claim
        undone = _undo_from(store, info.id, events, cut)
    new_id = uuid.uuid4().hex
    copied = [_copy(e, new_id) for e in events if e["seq"] < cut]
    last_seq = copied[-1].seq
    forked = Event.of(
        ev.SessionForked(source=info.id, at_turn=at_turn, turn_id=turn.turn_id, undone=undone),
        last_seq + 1,
        new_id,
        None,
        now(),
    )
    inherited = list(dict.fromkeys(e.turn_id for e in copied if e.turn_id))
    store.write_fork([(e, e.to_json()) for e in (*copied, forked)], info.id, inherited)
    if info.title:
        store.set_title(new_id, info.title)
    return Fork(new_id, info.id, at_turn, undone)


def _user_turns(events: list[dict[str, Any]]) -> list[UserTurn]:
    turns: list[UserTurn] = []
    changed: list[str] = []
    for e in events:
        if e.get("agent") is None and e["type"] == ev.MESSAGE_USER:
            if turns:
                turns[-1] = dataclasses.replace(turns[-1], changed_files=tuple(changed))
            changed = []
            message = Message.from_dict(e["data"]["message"])
            turns.append(
                UserTurn(len(turns) + 1, e.get("turn_id") or "", message.text, e["ts"], ())
            )
        elif e["type"] == ev.FILE_CHANGED and turns and e["data"]["path"] not in changed:
            changed.append(e["data"]["path"])
    if turns:
        turns[-1] = dataclasses.replace(turns[-1], changed_files=tuple(changed))
    return turns


def _undo_from(
    store: Store, session_id: str, events: list[dict[str, Any]], cut: int
) -> tuple[str, ...]:
    """Undo the file changes of the turns from event ``cut`` on, newest first; their ids."""
    later = {e["turn_id"] for e in events if e["seq"] >= cut and e.get("turn_id")}
    order = [t for t, _ in store.checkpointed(session_id) if t in later]
    turn_ids = list(dict.fromkeys(reversed(order)))  # newest first, each once
    # Checked before anything is touched: each file must still hold what the newest turn that
    # changed it wrote (or be back as before). Undoing that turn then leaves it as the turn
    # before wrote it, and so on back to turn N.
    newest: dict[str, Checkpoint] = {}
    for turn_id in turn_ids:  # (a file an undo already put back is not the turn's any more)
        for cp in plan_turn(store, session_id, turn_id, events, force=False).checkpoints:
            newest.setdefault(cp.abs_path, cp)
    blocked = [
        f"{cp.path}: {file.reason}"
        for cp in newest.values()
        if (file := plan_file(cp, force=False)).action == "skip"
    ]
    if blocked:
        raise MCodeError(
            f"--undo-files: not every file can be put back ({'; '.join(blocked[:5])}); nothing "
            "was forked or undone",
            hint="keep those changes elsewhere first (git stash), or fork without --undo-files",
        )
    done: list[str] = []
    for turn_id in turn_ids:
        plan = plan_turn(store, session_id, turn_id, events, force=False)
        carry_out(store, plan, forced=False)
        done.append(turn_id)
        if plan.failed:
            named = "; ".join(f"{f.path}: {f.failed or f.reason}" for f in plan.failed[:5])
            raise MCodeError(
                f"--undo-files stopped at turn {turn_id}: {named}; the files of the turns after "
                "it were put back (recorded in the session), nothing was forked",
                hint=f"see `mcode undo --resume {session_id[:12]} --dry-run`, then fork again",
            )
        events = store.events(session_id)  # with the undo just recorded
    return tuple(done)


def _copy(e: dict[str, Any], session_id: str) -> Event:
    """Stored event ``e`` as an event of session ``session_id``, otherwise as it was."""
    return Event(
        e["type"], e["data"], e["seq"], session_id, e.get("turn_id"), e["ts"], e.get("agent")
    )
