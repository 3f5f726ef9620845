"""Assemble a Session from resolved settings: the one place every front end starts from."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcode import events as ev
from mcode.agent.conversation import Conversation
from mcode.agent.ledger import Ledger
from mcode.atomic import sweep_temp_files
from mcode.config import Settings
from mcode.permissions import PermissionMode, Permissions
from mcode.prompts import system_prompt
from mcode.runtime.leftovers import CommandNotes, Leftover, reap
from mcode.runtime.session import Session
from mcode.runtime.undo import undo_note
from mcode.store import Store, StoreError, history_of
from mcode.tools import default_tools
from mcode.tools.base import ToolContext
from mcode.tools.child_env import child_environment, environment_secrets
from mcode.tools.workspace import Workspace

if TYPE_CHECKING:
    import httpx


def open_session(
    settings: Settings,
    store: Store | None,
    *,
    interactive: bool,
    resume_id: str | None = None,
    continue_last: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Session:
    """A ready Session, new or resumed from the store. ``session.started`` is not emitted yet:
    the front end calls :meth:`Session.start` once there is something to run."""
    from mcode.errors import UsageError
    from mcode.providers.factory import make_provider

    cwd = str(settings.workspace)
    session_id = None
    history = None
    last_seq = 0
    if (resume_id or continue_last) and store is None:
        raise UsageError("--resume and --continue need the session store")
    if store is not None and continue_last:
        recent = store.sessions(cwd=cwd, limit=1)
        if not recent:
            raise UsageError(
                f"there is no earlier session in {cwd} to continue",
                hint="start one without --continue",
            )
        resume_id = recent[0].id
    if store is not None and resume_id:
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
        session_id = info.id
        # Claimed before reading: another process still writing it would go on numbering
        # events from the same last seq.
        store.claim(session_id)
        events = store.events(info.id)  # read once: history, seq, notes and steers come from it
        history = history_of(events)
        last_seq = events[-1]["seq"] if events else 0
    elif store is not None:
        session_id = uuid.uuid4().hex
        store.claim(session_id)  # so that `mcode undo` leaves it alone while it runs

    workspace = Workspace(
        settings.workspace,
        extra_roots=[Path(d).expanduser().resolve() for d in settings.add_dirs],
        allow_outside=settings.allow_outside,
    )
    provider = make_provider(settings, transport=transport)
    tools = default_tools()
    if settings.provider == "local":
        # The embedded model's 8K window and 135M parameters: keep its tool set to what it can
        # use (todo lists only made it loop; delegating is beyond it). Schemas + system prompt
        # stay well under 2K tokens.
        tools = [t for t in tools if t.name not in ("todo", "task")]
    main = Conversation(
        provider=provider,
        tools=tools,
        permissions=Permissions(
            PermissionMode(settings.permission_mode), settings.allow, settings.deny, workspace
        ),
        tool_context=ToolContext(
            workspace=workspace,
            bash_timeout=settings.bash_timeout,
            output_cap=settings.output_cap,
            env=child_environment(
                os.environ,
                drop=[settings.api_key_env] if settings.api_key_env else [],
                secrets=settings.secrets,
                pass_env=settings.pass_env,
            ),
        ),
        system_prompt=system_prompt(settings.workspace, trusted=settings.trusted),
        max_turns=settings.max_turns,
        thinking=settings.thinking,
        history=history,
        # The embedded model (in-process or served) cannot pace its own tool calls.
        tool_steps=settings.local.tool_steps if settings.provider == "local" else 0,
    )
    session = Session(
        main,
        store=store,
        interactive=interactive,
        # Its own key, and every credential in its environment (a .env the model reads may
        # hold the same token): redacted from every event line and the store.
        secrets=[*settings.secrets, *environment_secrets(os.environ, settings.pass_env)],
        session_id=session_id,
        last_seq=last_seq,
        approval_timeout=settings.approval_timeout if interactive else None,
    )
    if store is not None:
        notes = store.path.parent / "running"
        if resume_id:
            # The claim above proves the run that wrote these notes is gone.
            session.start_notes = [_leftover_event(left) for left in reap(notes, session.id)]
            for path in _unfinished_writes(events, workspace):
                sweep_temp_files(path)
        main.tool_context.record_command = CommandNotes(notes, session.id)
        if resume_id:
            main.pending_note = undo_note(events)
            # The main conversation's own events: a sub-agent's turns and compactions (tagged
            # with its agent id) are not the session's.
            own = [e for e in events if e.get("agent") is None]
            for steer in _undelivered_steers(own):
                # Already recorded as steer.received: delivered at the next step, not said again.
                main.add_steer(steer)
            session.interrupted = _interrupted(own, main)
            main.ledger = _ledger(own)
    return session


def _leftover_event(left: Leftover) -> ev.Error:
    return ev.Error(
        kind="leftover",
        message=left.message(),
        hint=left.hint(),
        recoverable=True,
        pid=left.pid,
        command=left.command,
        killed=left.killed,
    )


def _interrupted(events: list[dict[str, Any]], main: Conversation) -> str | None:
    """Why the session's last turn should be continued, or None if it finished (or none ran).

    Unfinished: its ``turn.started`` has no ``turn.finished`` (the process was killed), or it
    finished cancelled, by an error, at the max-turns limit or stopped by the loop breaker."""
    from mcode import events as ev

    started = finished = None
    for e in events:
        if e["type"] == ev.TURN_STARTED:
            started, finished = e, None
        elif e["type"] == ev.TURN_FINISHED:
            finished = e
    if started is None:
        return None
    if finished is None:
        last = main.history[-1] if main.history else None
        answered = last is not None and last.role == "assistant" and not last.tool_calls
        if answered and not main.has_pending_steers:
            return None  # killed after the final answer was stored: the work was done
        return "mcode stopped before it finished"
    return {
        "cancelled": "it was cancelled",
        "error": "an error ended it",
        "max_turns": "it reached the max-turns limit",
        "loop": "it was stopped for repeating a failing tool call",
        "output_limit": "its answer was cut at the model's output cap",
    }.get(finished["data"]["reason"])


def _unfinished_writes(events: list[dict[str, Any]], workspace: Workspace) -> list[Path]:
    """The files the last turn's write and edit calls were changing when the run died (called
    without a result): a kill inside the write leaves its temp file beside each."""
    from mcode import events as ev
    from mcode.errors import PathEscapeError

    calls: dict[str, str] = {}
    for e in events:
        data = e["data"]
        if e["type"] == ev.TURN_STARTED:
            calls = {}
        elif e["type"] == ev.TOOL_REQUESTED and data.get("name") in ("write", "edit"):
            try:
                calls[data["id"]] = str(json.loads(data["arguments"])["path"])
            except (ValueError, KeyError, TypeError):
                continue  # arguments the tool refused: it never wrote
        elif e["type"] == ev.TOOL_FINISHED:
            calls.pop(data.get("id"), None)
    paths = []
    for raw in calls.values():
        try:
            paths.append(workspace.resolve(raw))
        except PathEscapeError:
            continue
    return paths


def _ledger(events: list[dict[str, Any]]) -> Ledger | None:
    """The task ledger of the session's last compaction, which the next one extends."""
    from mcode import events as ev

    last = next((e for e in reversed(events) if e["type"] == ev.COMPACTION), None)
    return None if last is None else Ledger.from_dict(last["data"]["ledger"])


def _undelivered_steers(events: list[dict[str, Any]]) -> list[str]:
    """The steers of a last turn that never finished (the process was killed) which it had
    received but not yet delivered. A turn that finished reported its leftovers as errors."""
    from mcode import events as ev

    start = max((i for i, e in enumerate(events) if e["type"] == ev.TURN_STARTED), default=None)
    if start is None:
        return []
    pending: list[str] = []
    for e in events[start:]:
        if e["type"] == ev.TURN_FINISHED:
            return []
        if e["type"] == ev.STEER_RECEIVED:
            pending.append(e["data"]["text"])
        elif e["type"] == ev.STEER_DELIVERED and e["data"]["text"] in pending:
            pending.remove(e["data"]["text"])
    return pending
