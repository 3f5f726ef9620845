"""The TUI's built-in slash commands, registered in a :class:`mcode.commands.CommandRegistry`
(plugins add theirs to the same registry).

Each handler takes the app and the text after the command's name. Commands that change how
the session runs (``/model``, ``/thinking``, ``/mode``) resume the same session with the
setting changed, between turns: the history, its id and its store stay; the next request goes
out with the new setting.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from mcode.commands import Command, CommandRegistry
from mcode.errors import MCodeError, UsageError

if TYPE_CHECKING:
    from mcode.runtime.session import TurnOutcome
    from mcode.team.plan import Plan
    from mcode.tui.app import McodeApp
    from mcode.tui.plan_dialog import PlanScreen

MODES = ("read-only", "ask", "auto-edit", "full-auto")


def builtin_commands() -> CommandRegistry:
    registry = CommandRegistry()
    for command in (
        Command("help", "list the commands and keys", _help),
        Command("model", "show the model, or continue on another", _model, "[NAME]"),
        Command("thinking", "show or switch the model's thinking", _thinking, "[on|off]"),
        Command("mode", "show or set the permission mode", _mode, "[" + "|".join(MODES) + "]"),
        Command("plan", "plan read-only first, then ask to carry it out", _plan, "TASK"),
        Command("clear", "start a new session (the old one stays stored)", _clear),
        Command("compact", "compact the conversation into its ledger", _compact, "[FOCUS]"),
        Command("sessions", "pick a stored session of this folder to resume", _sessions),
        Command("resume", "resume a stored session", _resume, "ID"),
        Command("undo", "restore the files the last turn changed", _undo),
        Command("cost", "tokens used so far (and cost, where known)", _cost),
        Command("image", "attach an image to the next message", _image, "PATH"),
        Command("screenshot", "attach a capture of the screen to the next message", _screenshot),
        Command(
            "copy",
            "copy the last answer (or its last code block) to the clipboard",
            _copy,
            "[code]",
        ),
        Command("rewind", "fork the session at an earlier turn", _rewind),
        Command("btw", "ask a side question beside the running task", _btw, "QUESTION"),
        Command("team", "run an agent team on a task (plan, producers, verifiers)", _team, "TASK"),
        Command("quit", "leave (the transcript stays in the terminal)", _quit),
    ):
        registry.add(command)
    return registry


KEYS = """keys: Enter send (steers a running turn) · Alt+Enter or Ctrl+T queue a follow-up ·
Shift+Enter, Ctrl+J or \\ then Enter a new line · Esc interrupt · Up/Down history ·
@ complete a path · / complete a command · Ctrl+Y copy the last answer · drag to mark text,
Ctrl+C copies it · Ctrl+C interrupt, then quit · Enter on a tool card shows all its output"""


def _help(app: McodeApp, args: str) -> None:
    lines = [f"/{c.name}{' ' + c.args if c.args else ''}  {c.help}" for c in app.commands.all()]
    app.say("\n".join([*lines, "", KEYS]))


async def _model(app: McodeApp, args: str) -> None:
    info = app.session.model_info
    if not args:
        app.say(f"model {info.model} ({info.provider}), window {info.context_window:,} tokens")
        return
    if await reconfigure(app, model=args):
        app.say(f"now on {app.session.model_info.model}")


async def _thinking(app: McodeApp, args: str) -> None:
    if not args:
        app.say(f"thinking: {app.status.state.thinking}")
        return
    if args not in ("on", "off"):
        raise UsageError(f"/thinking takes on or off, not {args!r}")
    if not app.session.model_info.thinking_switchable:
        app.say(f"{app.session.model_info.model} has no thinking switch")
        return
    if await reconfigure(app, thinking=args):
        app.say(f"thinking {args}")


async def _mode(app: McodeApp, args: str) -> None:
    if not args:
        app.say(f"permission mode: {app.settings.permission_mode} (one of {', '.join(MODES)})")
        return
    if args not in MODES:
        raise UsageError(f"unknown permission mode {args!r}", hint=f"one of {', '.join(MODES)}")
    if await reconfigure(app, permission_mode=args):
        app.say(f"permission mode {args}")


async def reconfigure(app: McodeApp, **changes: str) -> bool:
    """This session (resumed, if it has begun) with ``changes`` to its settings."""
    keep = app.session.id if (app.started or app.session.history) else None
    return await app.switch(resume_id=keep, **changes)  # the status bar shows the new settings


async def _plan(app: McodeApp, args: str) -> None:
    """Plan in read-only mode, then ask whether to carry the plan out in the mode it was in.
    The planning turn is waited for in a worker, not here: a command runs in the app's
    message handler, and while it waits nothing is drawn and Esc is not heard."""
    if not args:
        raise UsageError("/plan needs the task", hint="/plan add a --json flag to the CLI")
    before = app.settings.permission_mode
    if not await reconfigure(app, permission_mode="read-only"):
        return
    app.say(f"planning read-only (mode was {before})")
    app.start_session()
    future = app.session.send(
        f"Plan this task; do not change anything yet. Read what you need, then answer with a "
        f"numbered plan.\n\nTask: {args}",
        steer=False,
    )
    assert future is not None  # the session was idle: a turn, not a steer
    app.run_worker(_after_plan(app, future, before), group="plan")


async def _after_plan(
    app: McodeApp, future: asyncio.Future[TurnOutcome | None], before: str
) -> None:
    try:
        outcome = await future
    except MCodeError as e:
        app.show_error(e)
        outcome = None
    await app.session.wait_idle()  # the turn has finished its events; switching needs that
    if outcome is None or outcome.reason != "completed":
        if await reconfigure(app, permission_mode=before):
            app.say(f"no plan made; permission mode back to {before}")
        return
    from mcode.tui.confirm import ConfirmScreen

    async def decided(go: bool | None) -> None:
        if not await reconfigure(app, permission_mode=before):
            return
        if go:
            app.send_prompt("Carry out the plan.")
        else:
            app.say(f"plan kept; permission mode back to {before}")

    app.push_screen(ConfirmScreen(f"Carry out this plan (in mode {before})?"), decided)


async def _clear(app: McodeApp, args: str) -> None:
    if await app.switch():
        app.say("new session")


async def _compact(app: McodeApp, args: str) -> None:
    app.start_session()
    # Made or not, the session says so in its events (a compaction, or an error of kind
    # compaction with why).
    task = asyncio.ensure_future(app.session.compact(args or None))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def _resume(app: McodeApp, args: str) -> None:
    if not args:
        await _sessions(app, "")
        return
    await app.switch(resume_id=args)


async def _sessions(app: McodeApp, args: str) -> None:
    store = app.launcher.store
    if store is None:
        app.say("no session store")
        return
    rows = [r for r in store.sessions(cwd=str(app.workspace), limit=50) if r.id != app.session.id]
    if not rows:
        app.say("no other session in this folder")
        return
    from mcode.tui.pickers import SessionPicker

    async def picked(session_id: str | None) -> None:
        if session_id:
            await app.switch(resume_id=session_id)

    app.push_screen(SessionPicker(rows), picked)


async def _undo(app: McodeApp, args: str) -> None:
    """``mcode undo`` on this session, between turns. Undo is its own process over the store
    (it claims the session), so the session is put down for it and resumed after: the undo
    event is then in its history, and the model hears of it with the next message."""
    if not app.session.idle:
        app.say("undo works between turns: wait for this one, or Esc to stop it")
        return
    store = app.launcher.store
    if store is None:
        app.say("no session store, so nothing was checkpointed")
        return
    session_id = app.session.id if app.started or app.session.history else None
    await app.session.close()
    store.close()  # releases the claim
    argv = [sys.executable, "-m", "mcode", "undo", "--cwd", str(app.workspace)]
    if session_id:
        argv += ["--resume", session_id]
    done = await asyncio.to_thread(
        subprocess.run,
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MCODE_DATA_DIR": str(store.path.parent)},  # this session's store
    )
    from mcode.store import Store

    app.launcher.store = Store(store.path)
    app.say((done.stdout + done.stderr).strip() or "nothing to undo")
    try:
        session, settings = app.launcher.open(resume_id=session_id)
    except MCodeError as e:
        app.show_error(e)
        return
    await app.adopt_quietly(session, settings)


def _cost(app: McodeApp, args: str) -> None:
    app.say(app.status.state.usage_text())  # the status bar's numbers, in words


def _image(app: McodeApp, args: str) -> None:
    from mcode.exec_input import load_image

    if not args:
        raise UsageError("/image needs a file", hint="/image screenshot.png")
    info = app.session.model_info
    if not info.supports_images:
        raise UsageError(
            f"the model {info.model} does not take images",
            hint="/model NAME to continue on a model with image input",
        )
    path = (app.workspace / os.path.expanduser(args)).resolve()
    app.pending_images.append(load_image(str(path)))
    app.say(f"attached {args}: it goes with your next message")


async def _screenshot(app: McodeApp, args: str) -> None:
    """The screen the computer tool would see, attached to the next message as ``/image``
    attaches a file (``computer.attach_screenshot``). Awaited here, so that a message sent
    meanwhile waits in the app's queue behind this command and goes out with the screenshot."""
    from mcode.computer import attach_screenshot

    if args:
        raise UsageError("/screenshot takes no arguments", hint="/image PATH attaches a file")
    store = app.launcher.store
    part = await attach_screenshot(
        app.session.model_info,
        app.launcher.env if app.launcher.env is not None else os.environ,
        monitor=app.settings.computer.monitor,
        folder=store.path.parent / "screenshots" / app.session.id if store else None,
    )
    app.pending_images.append(part)
    app.say(f"attached a {part.source}: it goes with your next message")


_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)


def _copy(app: McodeApp, args: str) -> None:
    from mcode.tui.blocks import AnswerBlock

    answers = list(app.view.query(AnswerBlock))
    if not answers:
        app.say("no answer to copy yet")
        return
    text = answers[-1].text
    if args == "code":
        blocks = _CODE_BLOCK.findall(text)
        if not blocks:
            app.say("the last answer has no code block")
            return
        text = blocks[-1]
    app.copy_to_clipboard(text)  # OSC 52: works over ssh and in tmux with set-clipboard on
    app.say(f"copied {len(text)} characters")


async def _rewind(app: McodeApp, args: str) -> None:
    """Fork this session before an earlier user turn (picked, or ``/rewind N``) and carry on
    in the fork, that turn's message back in the prompt; the files stay as they are."""
    import mcode.runtime.fork as fork

    store = app.launcher.store
    if store is None or not (app.started or app.session.history):
        app.say("nothing to rewind: this session has no stored turn yet")
        return
    if not app.session.idle:
        app.say("rewind works between turns: wait for this one, or Esc to stop it")
        return
    turns = fork.user_turns(store, app.session.id)
    if not turns:
        app.say("nothing to rewind: no user turn is stored")
        return

    async def picked(number: int | None) -> None:
        if number is None:
            return
        try:
            made = fork.fork_session(store, app.session.id, number, cwd=str(app.workspace))
        except MCodeError as e:  # said in the view: a picker's callback has no caller to tell
            app.show_error(e)
            return
        if await app.switch(resume_id=made.session_id):
            app.prompt.set_text(turns[number - 1].text)
            app.say(f"rewound to before turn {number} (a new session; the old one is kept)")

    if args:
        if not args.isdigit():
            raise UsageError("/rewind takes a turn number", hint="/rewind alone shows them")
        if not 1 <= int(args) <= len(turns):
            have = f"{len(turns)} user turn{'s' * (len(turns) != 1)}"
            raise UsageError(
                f"/rewind {args}: this session has {have}",
                hint=f"give a turn from 1 to {len(turns)}, or /rewind alone to pick one",
            )
        await picked(int(args))
        return
    from mcode.tui.pickers import TurnPicker

    app.push_screen(TurnPicker([(t.number, t.text) for t in turns]), picked)


async def _btw(app: McodeApp, args: str) -> None:
    if not args:
        raise UsageError("/btw needs a question")

    async def answer() -> None:
        started = time.monotonic()
        try:
            text = await app.session.ask_aside(args)
        except MCodeError as e:
            app.show_error(e)
            return
        app.say(f"btw ({time.monotonic() - started:.1f}s): {text}")

    # Answered in a worker, as /plan's turn is waited for: the running task stays drawn.
    app.run_worker(answer(), group="btw")


# The team runs the app has started, until each has said how it ended.
_TEAMS: set[asyncio.Future[None]] = set()


async def _team(app: McodeApp, args: str) -> None:
    """Run an agent team (mcode/team) as the session's work: its steps show as notes, the
    plan is shown and asked about (approve, reject or edit) before any task starts, a steer typed
    meanwhile reaches the planner and the running agents, Esc cancels it."""
    from mcode import events as ev
    from mcode.team.setup import start_team

    if not args:
        raise UsageError("/team needs a task", hint="/team add a --json flag to the CLI")
    if not app.session.idle:
        raise UsageError("a turn is running", hint="wait for it, or Esc, then /team")
    # Refuses a dirty tree, says why.
    job = await start_team(app.settings, app.session, args, ask_plan=True)
    if job.team.providers:  # roles on other models: the bar cannot price their calls
        app.status.state.other_models = True
        app.status.refresh_state()
    session = app.session
    asking: dict[str, PlanScreen] = {}  # the plan gate's open dialog, by request id

    def listen(event: ev.Event, line: str) -> None:
        # The session's listeners stay for its life: a later session's question is not ours.
        if event.session_id != session.id:
            return
        match event.payload:
            case ev.TeamPlanAsked(request_id=request_id, steer=steer):
                # Asked again after an edit the team refused: the same dialog, its text kept.
                screen = next((s for s in asking.values() if s.checking), None)
                if screen is not None:
                    asking.pop(screen.request_id, None)
                    screen.reasked(request_id)
                    asking[request_id] = screen
                    return
                plan = job.team.asked_plan
                asking[request_id] = _ask_plan(app, request_id, plan, asking, steer)
            case ev.Error(kind="input", message=message):
                # The team's word on an edit: said in the dialog that sent it.
                for screen in asking.values():
                    if screen.checking and f"({screen.request_id})" in message:
                        screen.refused(message)
            case ev.TeamPlanDecided(request_id=request_id):
                # Decided without the dialog (the approval timeout, a cancel) or by its edit,
                # which keeps it open until the team has taken the plan: it goes now.
                screen = asking.pop(request_id, None)
                if screen is not None and screen is app.screen:
                    screen.dismiss(None)

    session.subscribe(listen)
    app.start_session()
    work = session.start_work(job.team, job.run())

    async def report() -> None:
        await asyncio.wait({work})
        outcome = job.outcome()
        app.say(f"team {outcome.reason}:\n{outcome.text}")
        if outcome.error is not None:
            app.show_error(outcome.error)

    task = asyncio.ensure_future(report())
    _TEAMS.add(task)
    task.add_done_callback(_TEAMS.discard)


def _ask_plan(
    app: McodeApp,
    request_id: str,
    plan: Plan | None,
    asking: dict[str, PlanScreen],
    steer: str | None = None,
) -> PlanScreen:
    """The plan gate: the plan just made, and carry it out, reject it (the run ends with
    nothing started) or edit it (mcode/tui/plan_dialog.py; answered as stream-json's edit
    line is, and checked by the team). ``steer``: the plan is a re-plan for it (a rejection
    keeps the plan in force, the run goes on)."""
    from rich.markup import escape

    from mcode.tui.plan_dialog import PlanScreen

    lines = []
    stages, tasks = (plan.stages, plan.tasks) if plan is not None else ((), {})
    for name, ids in stages:
        lines.append(f"{name}:")
        for task_id in ids:
            spec = tasks[task_id]
            after = f" (after {', '.join(spec.depends_on)})" if spec.depends_on else ""
            lines.append(f"  {task_id}: {spec.title}{after}")
    shown = escape("\n".join(lines))

    def decided(go: bool | None) -> None:
        if asking.pop(screen.request_id, None) is None:
            return  # decided already (timed out, or its edit taken): closed for it
        reason = "" if go else "rejected in the TUI"
        app.session.approve(screen.request_id, bool(go), reason)
        app.prompt.focus()

    def edited(value: Any) -> None:
        # The team answers: team.plan.decided (taken) or an input error and a new question.
        app.session.approve(screen.request_id, True, "", edit=value)

    if steer is None:
        question = f"The team's plan:\n{shown}\n\nCarry it out?"
    else:
        question = (
            f"The team's plan revised for {escape(steer)!r}:\n{shown}\n\n"
            "Carry it out? (No keeps the plan as it was; running tasks go on either way.)"
        )
    screen = PlanScreen(request_id, question, plan, edited)
    app.push_screen(screen, decided)
    return screen


def _quit(app: McodeApp, args: str) -> None:
    app.exit(0)
