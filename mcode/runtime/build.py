"""Assemble a Session from resolved settings: the one place every front end starts from."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcode import events as ev
from mcode.agent.conversation import Conversation
from mcode.agent.images import ImagePruner
from mcode.agent.ledger import Ledger
from mcode.agent.run_limits import RunLimits
from mcode.atomic import sweep_temp_files
from mcode.config import Settings
from mcode.messages import ImagePart
from mcode.permissions import PermissionMode, Permissions
from mcode.prompts import system_prompt
from mcode.providers.prices import price_of
from mcode.runtime.leftovers import CommandNotes, Leftover, reap
from mcode.runtime.session import Session
from mcode.runtime.undo import undo_note
from mcode.store import Store, history_of, resume_target
from mcode.tools import default_tools
from mcode.tools.base import Tool, ToolContext
from mcode.tools.child_env import child_environment, environment_secrets
from mcode.tools.sandbox import policy_for, problem
from mcode.tools.workspace import Workspace

if TYPE_CHECKING:
    import httpx

    from mcode.plugin_host import PluginHost
    from mcode.plugin_host.mcp_config import McpServerSpec
    from mcode.providers.base import Provider
    from mcode.roles import RoleError
    from mcode.tools.base import Tool


def open_session(
    settings: Settings,
    store: Store | None,
    *,
    interactive: bool,
    resume_id: str | None = None,
    continue_last: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    mcp_servers: list[McpServerSpec] | None = None,
) -> Session:
    """A ready Session, new or resumed from the store. ``session.started`` is not emitted yet:
    the front end calls :meth:`Session.start` once there is something to run. ``mcp_servers``:
    more MCP servers for this session alone (an editor's, over ACP), with ``secrets`` of theirs
    (their env and headers) the session redacts like its own key."""
    from mcode.errors import UsageError
    from mcode.providers.factory import make_provider

    cwd = str(settings.workspace)
    session_id = None
    history = None
    last_seq = 0
    if (resume_id or continue_last) and store is None:
        raise UsageError("--resume and --continue need the session store")
    if store is not None and (resume_id or continue_last):
        info = resume_target(store, cwd, resume_id, continue_last)
        resume_id = info.id
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
    child_env = child_environment(
        os.environ,
        drop=[settings.api_key_env] if settings.api_key_env else [],
        secrets=settings.secrets,
        pass_env=settings.pass_env,
    )
    if settings.computer.enabled:  # after the built-ins: a run without it keeps its prefix
        if not provider.info.supports_images:
            raise UsageError(
                f"the model {provider.info.model} does not take images, so it cannot see the "
                "screen the computer tool shows it",
                hint="choose a model with image input, or leave out --allow-computer, "
                "--virtual-display and [computer] enabled",
            )
        tools.append(_computer_tool(settings, store, session_id, child_env))

    # Plugins, hooks and MCP servers (mcode/plugin_host/): their tools come after the built-in
    # ones, so the request prefix of a session without them is what it always was.
    plugins = _plugin_host(
        settings, child_env, store, resumed=history is not None, extra_mcp=mcp_servers or []
    )
    role_errors: list[RoleError] = []
    tools = _with_roles(tools, settings, plugins, role_errors)
    if plugins is not None:
        tools += plugins.tools()

    def prompt() -> str:
        base = system_prompt(settings.workspace, trusted=settings.trusted)
        section = plugins.prompt_section() if plugins is not None else ""
        return f"{base}\n\n{section}" if section else base

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
            env=child_env,
            sandbox=policy_for(settings),
        ),
        system_prompt=prompt(),
        max_turns=settings.max_turns,
        thinking=settings.thinking,
        history=history,
        # The embedded model (in-process or served) cannot pace its own tool calls.
        tool_steps=settings.local.tool_steps if settings.provider == "local" else 0,
        run_limits=_run_limits(settings, provider.info.model),
    )
    if settings.computer.enabled:
        main.image_pruner = ImagePruner(settings.computer.keep_screenshots)
    session = Session(
        main,
        store=store,
        interactive=interactive,
        # Its own key, and every credential in its environment (a .env the model reads may
        # hold the same token): redacted from every event line and the store.
        secrets=[
            *settings.secrets,
            *environment_secrets(os.environ, settings.pass_env),
            *_spec_secrets(mcp_servers),
        ],
        session_id=session_id,
        last_seq=last_seq,
        approval_timeout=settings.approval_timeout if interactive else None,
    )
    session.models = _role_models(settings, transport, session.add_secret, child_env)
    # A role file that is not one is said at the start; the session runs without that role.
    session.start_notes += [
        ev.Error(kind="RoleError", message=e.message, hint=e.hint, recoverable=True)
        for e in role_errors
    ]
    if plugins is not None:
        main.hooks = plugins.hooks
        plugins.file_stamps = main.tool_context.file_stamps
        plugins.refresh_prompt = lambda: setattr(main, "system_prompt", prompt())
        # An MCP server never seen before lists its tools meanwhile; the first turn waits.
        main.prepare = plugins.learn_tools(main.tools)
        plugins.attach(session)
    if store is not None:
        notes = store.path.parent / "running"
        if resume_id:
            # The claim above proves the run that wrote these notes is gone.
            session.start_notes = [_leftover_event(left) for left in reap(notes, session.id)]
            for path in _unfinished_writes(events, workspace):
                sweep_temp_files(path)
        main.tool_context.record_command = CommandNotes(notes, session.id)
        if resume_id:
            _resume_state(session, events)
    sandbox = main.tool_context.sandbox
    failure = problem(sandbox) if sandbox is not None else None
    if failure is not None:
        # Said once at the start; every command the model tries then fails with the same error.
        session.start_notes.append(
            ev.Error(kind="sandbox", message=failure.message, hint=failure.hint, recoverable=True)
        )
    return session


def _resume_state(session: Session, events: list[dict[str, Any]]) -> None:
    """What a resumed session carries over from its stored ``events`` besides the history: the
    note of an undo since, the steers its last turn never delivered, why that turn should be
    continued, the task ledger."""
    main = session.main
    main.pending_note = undo_note(events)
    # The main conversation's own events: a sub-agent's turns and compactions (tagged with its
    # agent id) are not the session's.
    own = [e for e in events if e.get("agent") is None]
    for steer in _undelivered_steers(own):
        # Already recorded as steer.received: delivered at the next step, not said again.
        main.add_steer(steer)
    session.interrupted = _interrupted(own, main)
    session.queued = _queued(own)
    main.ledger = _ledger(own)


def catch_up(session: Session, store: Store) -> list[dict[str, Any]]:
    """Bring ``session``, which this process holds open between prompts without its claim (an
    editor server), up to what the store holds of it: when another process ran it meanwhile
    (``mcode exec --resume``, the TUI, an undo), its history, ledger and numbering are read
    again, so the next turn sends the newer conversation and numbers its events after the
    other run's. The events the other run stored (none: it had not moved on). Call while
    holding the claim, between turns."""
    mine = session.last_seq
    if store.last_seq(session.id) <= mine:
        return []
    events = store.events(session.id)
    session.main.history = history_of(events)
    _resume_state(session, events)
    session.continue_from(events[-1]["seq"])
    return [e for e in events if e["seq"] > mine]


def preload() -> None:
    """Import and make what a process's first model request would otherwise wait for: httpx
    loads its transport (httpcore) and anyio its asyncio backend only then, and the shared TLS
    context loads the CA bundle (together 0.3-0.8 s on a busy machine; BENCH.md). For a server
    that starts before its first prompt (``mcode acp``, ``mcode lsp``), in a thread of its own.
    Failures are left for that request to report."""
    with contextlib.suppress(Exception):
        import anyio._backends._asyncio  # noqa: F401
        import httpcore  # noqa: F401

        from mcode.providers.http import tls_context

        tls_context()


async def switch_model(session: Session, settings: Settings) -> None:
    """Point ``session``'s main conversation at ``settings``' model (its provider, window and
    thinking) from the next turn on: an editor's model picker. MCodeError while a turn runs."""
    from mcode.providers.factory import make_provider

    await session.use_provider(make_provider(settings), settings.thinking)


def _computer_tool(
    settings: Settings, store: Store | None, session_id: str | None, env: dict[str, str]
) -> Tool:
    """The computer tool, its screenshots kept under the data folder (by session); a display
    or program that is missing stops the run before the first request, saying which."""
    from mcode.computer import ComputerUnavailable, open_computer
    from mcode.errors import UsageError

    shots = None
    if store is not None and session_id is not None:
        shots = store.path.parent / "screenshots" / session_id
    try:
        return open_computer(settings.computer, env=env, shots_dir=shots)
    except ComputerUnavailable as e:
        raise UsageError(e.message, hint=e.hint) from None


def _spec_secrets(specs: list[McpServerSpec] | None) -> list[str]:
    if not specs:  # the plugin host stays unimported in a session without any
        return []
    from mcode.plugin_host.mcp_config import spec_secrets

    return spec_secrets(specs)


def _plugin_host(
    settings: Settings,
    env: dict[str, str],
    store: Store | None,
    *,
    resumed: bool,
    extra_mcp: list[McpServerSpec],
) -> PluginHost | None:
    """The session's plugins, hooks and MCP servers (``extra_mcp`` too); None when there are
    none (and then nothing of the plugin host beyond its discovery was imported)."""
    from mcode.config import config_home
    from mcode.plugin_host.probe import configured

    data_dir = store.path.parent if store is not None else None
    if not extra_mcp and not configured(settings.workspace, config_home(), Path.home(), data_dir):
        return None
    from mcode.plugin_host import PluginHost

    host = PluginHost.open(
        settings, env=env, data_dir=data_dir, resumed=resumed, extra_mcp=extra_mcp
    )
    return None if host.empty else host


def _with_roles(
    tools: list[Tool], settings: Settings, plugins: PluginHost | None, errors: list[RoleError]
) -> list[Tool]:
    """The tools with the task tool (in its place) offering the agent roles too: the plugins',
    then the user's, then a trusted project's, a later one replacing an earlier one's of the
    same name (mcode/roles.py); a role file that is not one goes to ``errors``."""
    from mcode.config import config_home
    from mcode.roles import load_roles, role_dirs
    from mcode.tools.task import TaskTool

    if not any(t.name == "task" for t in tools):
        return tools
    roles = {r.name: r for r in plugins.roles()} if plugins is not None else {}
    dirs = role_dirs(settings.workspace, config_home(), Path.home(), trusted=settings.trusted)
    roles.update(load_roles(dirs, errors))
    if not roles:
        return tools
    return [TaskTool(list(roles.values())) if t.name == "task" else t for t in tools]


def _role_models(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    add_secret: Callable[[str], None],
    child_env: dict[str, str],
) -> Callable[[str], Provider | None]:
    """A sub-agent role's model -> its provider (None: the session's own), each made once and
    shared by the sub-agents on it (the session closes it with them). Another provider's key
    is kept as the session's own is (its variable may not look like a secret's): redacted
    from the events, and its variable taken out of the commands' environment (the one dict
    every conversation's ToolContext holds)."""
    from mcode.config import model_settings
    from mcode.providers.factory import make_provider

    made: dict[tuple[str, str], Provider] = {}

    def provider_for(model: str) -> Provider | None:
        other = model_settings(settings, model)
        if other is None:
            return None
        key = (other.provider, other.model)
        if key not in made:
            made[key] = make_provider(other, transport=transport)
            if other.api_key:
                add_secret(other.api_key)
            if other.api_key_env:
                child_env.pop(other.api_key_env, None)
        return made[key]

    return provider_for


def _run_limits(settings: Settings, model: str) -> RunLimits | None:
    """The run's limits from --max-time / --max-tokens / --max-cost, or None. A cost limit
    for a model whose price is not known is a usage error: it could not be kept."""
    from mcode.errors import UsageError

    limits = RunLimits(settings.max_time, settings.max_tokens, settings.max_cost)
    if not limits.any:
        return None
    if settings.max_cost is not None:
        limits.price = price_of(model)
        if limits.price is None:
            raise UsageError(
                f"--max-cost needs the model's price, and the price of {model!r} is not known",
                hint="limit tokens instead (--max-tokens N), or see mcode/providers/prices.py "
                "for the models whose prices are known",
            )
    return limits


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
        "budget": "it reached a run limit (--max-time, --max-tokens or --max-cost)",
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


def _queued(events: list[dict[str, Any]]) -> list[tuple[str, tuple[ImagePart, ...]]]:
    """The ``message.queued`` messages no turn took: a new turn (not a resumed one) takes the
    first one waiting, and it is taken once that turn records its ``message.user`` or ends (a
    UserPromptSubmit hook that blocked it dropped it on purpose). A kill before either leaves it
    waiting."""
    from mcode import events as ev

    waiting: list[tuple[str, tuple[ImagePart, ...]]] = []
    taking = False
    for e in events:
        if e["type"] == ev.MESSAGE_QUEUED:
            queued = ev.MessageQueued.from_data(e["data"])
            waiting.append((queued.text, queued.images or ()))
        elif e["type"] == ev.TURN_STARTED:
            taking = bool(waiting) and not e["data"].get("resumed")
        elif e["type"] in (ev.MESSAGE_USER, ev.TURN_FINISHED) and taking:
            waiting.pop(0)
            taking = False
    return waiting


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
