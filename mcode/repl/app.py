"""``mcode chat --plain``: the line-mode REPL, a front end of the Session for terminals and users
who do not want a full screen, and for dumb terminals and pipes.

What the user types goes to :meth:`Session.send`: while a turn runs it steers it (delivered at
the next step boundary), otherwise it starts one. A ``/`` line is a command
(:mod:`mcode.repl.commands`). A ``permission.asked`` turns the prompt into the question, and the
next line answers it. Ctrl-C interrupts the running turn; a second Ctrl-C within
:data:`QUIT_WINDOW` seconds (or one while nothing runs, then another) quits. End of input
finishes what runs, then quits, denying any question nobody can answer now.

Two inputs, one loop: on a terminal prompt-toolkit keeps the input line live at the bottom
(history across runs in the data dir) and finished lines print above it; on a pipe or
``TERM=dumb`` lines are read plainly from standard input and text streams as it comes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mcode import events as ev
from mcode.agent.aside import ASIDE_PREFIX
from mcode.errors import MCodeError, UsageError
from mcode.events import Event
from mcode.messages import ImagePart, clean_text
from mcode.repl.render import Renderer, history_lines

if TYPE_CHECKING:
    from mcode.runtime.session import Session, TurnOutcome
    from mcode.store import Store

QUIT_WINDOW = 2.0  # seconds within which a second Ctrl-C quits
INTERRUPT = "\x03"  # what an input reader returns for Ctrl-C


class Input(Protocol):
    line_mode: bool

    async def read(self) -> str | None:
        """The next line; :data:`INTERRUPT` for Ctrl-C; None at the end of input."""
        ...

    def write(self, text: str) -> None: ...

    def refresh(self) -> None:
        """The prompt changed (a question is waiting, or answered): draw it again."""
        ...

    def close(self) -> None: ...


class Repl:
    def __init__(
        self,
        session: Session,
        start: Any,
        inp: Input,
        *,
        store: Store | None = None,
        cwd: str = "",
        monitor: int = 1,
    ) -> None:
        self.session = session
        self.monitor = monitor  # [computer] monitor: what /screenshot captures
        self.store = store
        self.cwd = cwd
        # Work a command started that the prompt must not wait for (a /compact).
        self.background: set[asyncio.Future[Any]] = set()
        # The last turn's outcome: the session's result when the REPL ends.
        self.last: TurnOutcome | None = None
        self.input = inp
        self.render = Renderer(inp.write, line_mode=inp.line_mode)
        self.questions: deque[ev.PermissionAsked] = deque()
        self.pending_images: list[ImagePart] = []  # /image: they go with the next message
        self.quitting = False
        self._start = start
        self.started = False
        self._last_interrupt = 0.0
        self._turns: set[asyncio.Future[Any]] = set()
        session.subscribe(self._on_event)

    # -- events -------------------------------------------------------------------------------
    def _on_event(self, event: Event, line: str) -> None:
        if event.agent is not None and event.agent.startswith(ASIDE_PREFIX):
            return  # a /btw answer: said whole when it is in (commands.py), not streamed
        self.render(event, line)
        match event.payload:
            case ev.PermissionAsked() as asked:
                self.questions.append(asked)
                self.render.say(f"{asked.name} wants to run: {asked.subject}  ({asked.reason})")
                self.input.refresh()
            case ev.PermissionDecided(id=call_id):
                # Answered here, or by a timeout, or the turn was cancelled while it asked.
                before = len(self.questions)
                self.questions = deque(q for q in self.questions if q.id != call_id)
                if len(self.questions) != before:
                    self.input.refresh()

    def prompt(self) -> str:
        if self.questions:
            q = self.questions[0]
            return f"allow {q.name}({_short(q.subject)})? [y]es / [a]lways / [n]o [reason]: "
        return "… " if self.session.running else "> "

    # -- the loop -----------------------------------------------------------------------------
    async def run(self, first: str | None) -> None:
        if first is not None:
            self.send(first)
        while not self.quitting:
            line = await self.input.read()
            if line is None:
                break
            if line == INTERRUPT:
                self.interrupt()
                continue
            await self.handle(line)
        self.session.end_approvals("the REPL's input ended, so nobody can answer")
        await self.session.wait_idle()

    async def handle(self, line: str) -> None:
        text = clean_text(line).strip()
        if self.questions:
            self._answer(text)
            return
        if not text:
            return
        if text.startswith("/"):
            from mcode.repl.commands import run_command

            await run_command(self, text)
            return
        images, self.pending_images = tuple(self.pending_images), []
        self.send(text, images)

    def send(self, text: str, images: tuple[ImagePart, ...] = (), *, steer: bool = True) -> None:
        self.start()
        was_running = self.session.running
        turn = self.session.send(text, images, steer=steer)
        if turn is None:
            self.render.say("→ steering the running turn (it gets this at its next step)")
            return
        if was_running:
            self.render.say("→ queued: it runs when the current turn ends")
        self._turns.add(turn)
        turn.add_done_callback(self._turn_done)
        self.input.refresh()

    def _turn_done(self, turn: asyncio.Future[Any]) -> None:
        self._turns.discard(turn)
        if turn.cancelled():
            return
        e = turn.exception()
        if isinstance(e, MCodeError):
            self.render.say(f"error: {e.message}" + (f"\n  {e.hint}" if e.hint else ""))
        elif e is None and turn.result() is not None:
            self.last = turn.result()
        self.input.refresh()

    def start(self) -> None:
        """``session.started`` once, with the first thing to record (as exec does: a REPL
        opened and left leaves no empty session behind)."""
        if not self.started:
            self.started = True
            self._start()

    def _answer(self, text: str) -> None:
        asked = self.questions[0]
        word, _, reason = text.partition(" ")
        word = word.lower()
        if word in ("y", "yes"):
            allow, always = True, False
        elif word in ("a", "always"):
            allow, always = True, True
        elif word in ("n", "no"):
            allow, always = False, False
        else:
            self.render.say("answer y (allow once), a (always, this session) or n [reason]")
            return
        self.questions.popleft()
        if always:
            rules = self.session.allow_for_session(asked.name, asked.subject)
            if rules:
                self.render.say(f"allowed {', '.join(rules)} for the rest of this session")
            else:
                self.render.say("that command is too unsure to allow as a whole: asked again")
        self.session.approve(asked.request_id, allow, reason.strip())
        self.input.refresh()

    def interrupt(self) -> None:
        now = time.monotonic()
        twice = now - self._last_interrupt < QUIT_WINDOW
        self._last_interrupt = now
        if twice:
            self.quit()
        elif self.session.running or not self.session.idle:
            self.session.cancel()
            self.render.say("interrupting… (Ctrl-C again to quit)")
        else:
            self.render.say("Ctrl-C again to quit (or Ctrl-D, or /quit)")

    def quit(self) -> None:
        self.quitting = True
        self.session.cancel()


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- inputs -----------------------------------------------------------------------------------
class TerminalInput:
    """prompt-toolkit on a real terminal: the input line stays live while a turn streams."""

    line_mode = True

    def __init__(self, repl_prompt: Any, history_file: Path | None, **session: Any) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.patch_stdout import patch_stdout

        history = FileHistory(str(history_file)) if history_file else InMemoryHistory()
        self._session: Any = PromptSession(history=history, **session)
        self._prompt = repl_prompt
        self._patch = patch_stdout(raw=True)
        self._patch.__enter__()

    async def read(self) -> str | None:
        try:
            return str(await self._session.prompt_async(lambda: self._prompt()))
        except KeyboardInterrupt:
            return INTERRUPT
        except EOFError:
            return None

    def write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def refresh(self) -> None:
        app = self._session.app
        if app.is_running:
            app.invalidate()

    def close(self) -> None:
        self._patch.__exit__(None, None, None)


class PlainInput:
    """Standard input read line by line (a pipe, ``TERM=dumb``); Ctrl-C arrives as SIGINT.

    The prompt is written only where it asks for something (``> `` between turns, a question)
    and only once until something else is written: while a turn streams, its text is what the
    line shows, and a prompt in front of it would read as if the user had typed it."""

    line_mode = False

    def __init__(self, repl_prompt: Any, loop: asyncio.AbstractEventLoop) -> None:
        from mcode.exec_input import StdinLines

        self._lines = StdinLines(loop)
        self._prompt = repl_prompt
        self._interrupts: asyncio.Queue[str] = asyncio.Queue()
        # A prompt is for a person: a pipe gets none (its reader wants the answers only).
        self._show_prompt = sys.stdin is not None and sys.stdin.isatty()
        self._shown: str | None = None  # the prompt last written, if nothing came after it
        # Removed with the loop, not by close(): a second Ctrl-C of a double press comes after
        # the first has quit, and the default handler would raise it into the shutdown.
        loop.add_signal_handler(signal.SIGINT, self._interrupts.put_nowait, INTERRUPT)

    async def read(self) -> str | None:
        self.refresh()
        line = asyncio.ensure_future(self._lines.get())
        stop = asyncio.ensure_future(self._interrupts.get())
        done, _ = await asyncio.wait({line, stop}, return_when=asyncio.FIRST_COMPLETED)
        self._shown = None  # the user's Enter (or Ctrl-C) ended the prompt's line
        if stop in done:
            line.cancel()
            return INTERRUPT
        stop.cancel()
        return line.result()

    def write(self, text: str) -> None:
        self._shown = None
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            pass  # the reader of a pipe has gone; the session still records everything

    def refresh(self) -> None:
        prompt = self._prompt()
        if self._show_prompt and prompt.strip() != "…" and prompt != self._shown:
            self.write(prompt)
            self._shown = prompt

    def close(self) -> None:
        pass  # the SIGINT handler stays until the loop closes (see __init__)


def _terminal() -> bool:
    return (
        sys.stdin is not None
        and sys.stdin.isatty()
        and sys.stdout.isatty()
        and os.environ.get("TERM", "") not in ("", "dumb")
    )


# -- the command ------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except MCodeError as e:
        print(f"mcode: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"mcode: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        # The loop put Python's Ctrl-C handler back as it closed: one more press now would be
        # a KeyboardInterrupt out of the exit itself (the process dying of SIGINT, exit 130
        # lost). The REPL has ended; what is left is leaving.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


async def _run(args: argparse.Namespace) -> int:
    from mcode.config import data_home, flag_settings, load_settings
    from mcode.runtime.build import open_session
    from mcode.store import Store

    workspace = Path(args.cwd or os.getcwd()).expanduser().resolve()
    if not workspace.is_dir():
        raise UsageError(f"--cwd {workspace}: no such folder")
    settings = load_settings(workspace, flag_settings(args))
    if settings.project_ignored:
        print(
            f"mcode: this folder is not trusted, so its {', '.join(settings.project_ignored)} "
            "did not take effect; run `mcode trust` here if you trust its files",
            file=sys.stderr,
        )
    first = clean_text(args.prompt).strip() if args.prompt else None
    store = Store(data_home() / "sessions.db")
    resuming = bool(args.resume or args.continue_)
    try:
        session = open_session(
            settings, store, interactive=True, resume_id=args.resume, continue_last=args.continue_
        )

        def start() -> None:
            session.start(
                cwd=str(workspace),
                provider_reason=settings.provider_reason,
                permission_mode=settings.permission_mode,
                resumed=resuming,
            )

        holder: list[Repl] = []

        def prompt() -> str:
            return holder[0].prompt() if holder else "> "

        loop = asyncio.get_running_loop()
        inp: Input
        if _terminal():
            history = data_home() / "repl_history"
            history.parent.mkdir(parents=True, exist_ok=True)
            inp = TerminalInput(prompt, history)
        else:
            inp = PlainInput(prompt, loop)
        repl = Repl(
            session, start, inp, store=store, cwd=str(workspace), monitor=settings.computer.monitor
        )
        holder.append(repl)
        info = session.model_info
        inp.write(
            f"mcode {info.provider}/{info.model} in {workspace} "
            f"({settings.permission_mode}; /help for commands, Ctrl-C interrupts)\n"
        )
        if resuming:
            for text in history_lines(session.history):
                inp.write(text + "\n")
            if session.interrupted:
                inp.write(
                    f"(the last turn did not finish: {session.interrupted}; "
                    "send a message to go on)\n"
                )
        loop.add_signal_handler(signal.SIGTERM, repl.quit)
        try:
            await repl.run(first)
        finally:
            # Quitting: more Ctrl-Cs (a double press, someone hammering the key; on a terminal
            # prompt-toolkit has let go of the tty, so they are signals now) must not cut short
            # what is left, recording the session's end (main() ignores them past the loop).
            loop.add_signal_handler(signal.SIGINT, lambda: None)
            loop.remove_signal_handler(signal.SIGTERM)
            inp.close()
            if repl.started:
                last = repl.last
                answered = last is not None and last.reason == "completed"
                session.finish(
                    result=last.text if answered and last is not None else None,
                    exit_code=0,
                    reason="cancelled" if last is None else last.reason,
                )
            await session.close()
    finally:
        store.close()
    return 0
