"""``mcode exec``: one task, no UI, a result and an exit code (scripts and CI).

Output formats: ``text`` prints the final answer; ``json`` prints one result object at the end;
``stream-json`` prints every event as a JSON line as it happens (the schema is in README.md).
Diagnostics go to stderr. A tool call that would ask for permission is denied, and the denial
is an event, unless the run can be answered: with stream-json in and out, ``permission.asked``
waits for an ``approve`` line on stdin (for ``approval_timeout`` seconds, then it is denied).
The first event says which, and what the mode will deny (``permissions.mode_note``).

Only a completed turn has an answer: a run that was interrupted, hit a limit or failed prints no
text as if it were one (text: nothing on stdout, why on stderr; json: ``result`` null, ``reason``
says why). With ``--output-format json`` every exit prints one object, errors before the session
started included (then with ``session_id`` null).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcode import events as ev
from mcode.errors import MCodeError, UsageError
from mcode.exec_input import ACCEPTED_LINES, BadLine, StdinLines, load_image, parse_line
from mcode.messages import ImagePart, clean_text
from mcode.permissions import mode_note
from mcode.runtime.session import TurnOutcome

if TYPE_CHECKING:
    from mcode.runtime.session import Session

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_LIMIT, EXIT_DENIED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


@dataclass(slots=True)
class _Report:
    """What an error result needs to know of a run that failed: its session, once open."""

    session_id: str | None = None


def main(args: argparse.Namespace) -> int:
    report = _Report()
    try:
        return asyncio.run(_run(args, report))
    except MCodeError as e:
        _complain(e)
        if args.output_format == "json":
            _print(json.dumps(_error_result(e, report.session_id), ensure_ascii=False))
        return e.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _error_result(e: MCodeError, session_id: str | None) -> dict[str, Any]:
    """The json result of a run that stopped before it had an outcome: a usage error (exit
    2), or the store failing."""
    return {
        "session_id": session_id,
        "result": None,
        "reason": "usage" if e.exit_code == EXIT_USAGE else "error",
        "exit_code": e.exit_code,
        "error": {"message": e.message, "hint": e.hint},
    }


def _complain(e: MCodeError) -> None:
    print(f"mcode: error: {e.message}", file=sys.stderr)
    if e.hint:
        print(f"mcode: {e.hint}", file=sys.stderr)


def _print(line: str) -> bool:
    """Print ``line`` to stdout. False when the reader has gone (``| head -1``): stdout then
    points at /dev/null, so later output and the flush at exit are silent, not tracebacks."""
    try:
        print(line, flush=True)
        return True
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False


def _read_prompt(args: argparse.Namespace) -> str | None:
    """The prompt, or None when there is none (an empty one counts as none)."""
    if args.input_format == "stream-json":
        # Standard input carries the JSON lines; only the argument can be the prompt.
        if args.prompt == "-":
            raise UsageError(
                "'-' reads the prompt from standard input, which --input-format stream-json "
                "reads for JSON lines",
                hint='give the prompt as an argument, or send it as {"type":"user","text":"..."}',
            )
        text = clean_text(args.prompt or "")
        return text if text.strip() else None
    # sys.stdin is None when the process was started with standard input closed (cron, CI).
    piped = sys.stdin is not None and not sys.stdin.isatty()
    if args.prompt == "-" and sys.stdin is None:
        raise UsageError("'-' reads the prompt from standard input, which is closed")
    if args.prompt == "-" or (args.prompt is None and piped):
        # Bytes, not sys.stdin's locale codec: piped text that is not UTF-8 (a diff of a
        # Latin-1 file) must not end the run.
        text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    else:
        text = clean_text(args.prompt or "")
    return text if text.strip() else None


class _Driver:
    """Feeds one ``mcode exec`` to its Session: the prompt (or the interrupted turn it
    continues) and, with ``--input-format stream-json``, the lines read from standard input,
    each mapped to a Session verb (the Session queues, steers and cancels). The run ends when
    input has ended and the Session is idle, or at once on ``stop`` (a signal, or stream-json's
    reader gone)."""

    def __init__(
        self,
        session: Session,
        start_session: Callable[[], None],
        turn_ended: Callable[[TurnOutcome], None],
    ) -> None:
        self.session = session
        self.stopping = False
        self.started = False
        self.last: TurnOutcome | None = None
        self._start_session = start_session
        self._turn_ended = turn_ended
        self._wake = asyncio.Event()
        self._line_no = 0
        self.skipped: list[str] = []  # why each bad input line was skipped
        self._compactions: set[asyncio.Future[None]] = set()

    def start(self) -> None:
        """Emit ``session.started`` once, when there is first something to record: a run that
        receives nothing leaves no empty session behind (it would become --continue's pick)."""
        if not self.started:
            self.started = True
            self._start_session()

    def stop(self) -> None:
        """End the run now: cancel the running turn, run nothing more, read nothing more."""
        self.stopping = True
        self.session.cancel()
        self._wake.set()

    def send(
        self, text: str | None, images: tuple[ImagePart, ...] = (), steer: bool = False
    ) -> None:
        self.start()
        turn = self.session.send(text, images, steer=steer)
        if turn is not None:
            turn.add_done_callback(self._ended)

    async def run(self, lines: StdinLines | None) -> TurnOutcome | None:
        """Run until done; the last turn's outcome (None if none ran)."""
        line: asyncio.Task[str | None] | None = None
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            while lines is not None and not self.stopping:
                if line is None:
                    line = asyncio.ensure_future(lines.get())
                done, _ = await asyncio.wait({line, woken}, return_when=asyncio.FIRST_COMPLETED)
                if line in done:
                    text = line.result()
                    line = None
                    if text is None:
                        lines = None  # end of input: finish what runs and what is queued
                        self.session.end_approvals(
                            "standard input ended, so no approve line can come"
                        )
                    else:
                        self._handle(text)
            await self.session.wait_idle()  # stopping: the cancelled turn winds up
            if self._compactions:
                await asyncio.wait(self._compactions)
        finally:
            for task in (line, woken):
                if task is not None:
                    task.cancel()
        if self.stopping and (self.last is None or self.last.reason != "cancelled"):
            return TurnOutcome("cancelled", "")  # interrupted while idle, or before a turn
        return self.last

    def _ended(self, turn: asyncio.Future[TurnOutcome | None]) -> None:
        # A steer that a turn ending early never delivered was reported by run_turn itself.
        error = turn.exception()
        outcome = (
            TurnOutcome("error", "", error) if isinstance(error, MCodeError) else turn.result()
        )
        if outcome is None:  # dropped by a cancel before it ran
            return
        self.last = outcome
        self._turn_ended(outcome)

    async def _compact(self, instructions: str | None) -> None:
        # Nothing compacted (too short, or the turn ended first) is said by the session.
        with contextlib.suppress(asyncio.CancelledError):
            await self.session.compact(instructions)

    def _handle(self, line: str) -> None:
        self._line_no += 1
        if not line.strip():
            return
        self.start()
        try:
            message = parse_line(line)
            if message.images and not self.session.model_info.supports_images:
                raise BadLine(f"the model {self.session.model_info.model} does not take images")
        except BadLine as e:
            self.skipped.append(f"line {self._line_no}: {e}")
            self.session.report_error(
                "input", f"standard input line {self._line_no} was skipped: {e}", ACCEPTED_LINES
            )
            return
        if message.type == "compact":
            # At the running turn's next step boundary, or in line with the queued messages.
            task = asyncio.ensure_future(self._compact(message.text or None))
            self._compactions.add(task)
            task.add_done_callback(self._compactions.discard)
        elif message.type == "cancel":
            # Also drops the queued messages. With nothing running and nothing queued this does
            # nothing: a cancel that crosses the turn's end is a race, not a mistake.
            self.session.cancel()
        elif message.type == "approve":
            try:
                answered = self.session.approve(
                    message.request_id, message.allow, message.text, message.plan
                )
            except MCodeError as e:
                where = f"standard input line {self._line_no} was skipped: "
                self.session.report_error("input", where + e.message, e.hint or ACCEPTED_LINES)
                return
            if not answered:
                self.session.report_error(
                    "input",
                    f"standard input line {self._line_no}: no question {message.request_id!r} "
                    "is waiting (answered, timed out, or never asked)",
                    "answer the request_id of a permission.asked or team.plan.asked event, "
                    "once, before it times out",
                )
        else:  # a steer reaches the running turn, else it starts one; a user message queues
            self.send(message.text, message.images, steer=message.type == "steer")


def _virtual_display(args: argparse.Namespace, settings: Any) -> Any:
    """Start the --virtual-display (and its app); the computer tool acts on it alone."""
    from mcode.computer import ComputerUnavailable, VirtualDisplay

    try:
        size = args.virtual_display_size or (1280, 800)
        display = VirtualDisplay(size, app=args.virtual_display_app).start()
    except ComputerUnavailable as e:
        raise UsageError(e.message, hint=e.hint) from None
    settings.computer.display = display.name
    return display


def _screenshot(settings: Any, folder: Path) -> ImagePart:
    """--screenshot: the screen the computer tool would see, as an image for the prompt."""
    from mcode.computer import ComputerUnavailable, screenshot_part

    try:
        return screenshot_part(
            settings.computer.display, monitor=settings.computer.monitor, folder=folder
        )
    except ComputerUnavailable as e:
        raise UsageError(e.message, hint=e.hint) from None


def _untrusted_note(ignored: list[str]) -> str:
    return (
        f"this folder is not trusted, so its {', '.join(ignored)} did not take effect "
        "(a cloned repository must not grant itself permissions); if you trust its files, run "
        "`mcode trust` here"
    )


# Turns whose last text is an answer: a completed one, and one cut at the output cap (what the
# model wrote is kept and shown; exit 3 and an output_limit error say it is cut).
_ANSWERED = ("completed", "output_limit")


def _exit_code(outcome: TurnOutcome) -> int:
    return {
        "completed": EXIT_DENIED if outcome.denials else EXIT_OK,
        "max_turns": EXIT_LIMIT,
        "loop": EXIT_LIMIT,  # the model kept sending one failing call (agent/loop_guard.py)
        "output_limit": EXIT_LIMIT,  # the answer was cut at the model's output cap
        "budget": EXIT_LIMIT,  # --max-time, --max-tokens or --max-cost
        "cancelled": EXIT_INTERRUPTED,
        "error": EXIT_ERROR,
    }[outcome.reason]


def _fork(store: Any, args: argparse.Namespace, workspace: Path) -> str:
    """Fork the session ``--resume`` / ``--continue`` names at ``--fork-at``; the fork's id."""
    from mcode.runtime.fork import fork_session

    source = args.resume
    if source is None:  # --continue: the latest session here
        recent = store.sessions(cwd=str(workspace), limit=1)
        if not recent:
            raise UsageError(
                f"there is no earlier session in {workspace} to fork",
                hint="start one without --continue",
            )
        source = recent[0].id
    fork = fork_session(store, source, args.fork_at, undo_files=args.undo_files, cwd=str(workspace))
    source = fork.source
    if not args.quiet:
        n = len(fork.undone)
        undone = f"; the file changes of {n} turn{'s' * (n != 1)} undone" if args.undo_files else ""
        print(
            f"mcode: forked session {source[:12]} before turn {args.fork_at} into "
            f"{fork.session_id[:12]}{undone}",
            file=sys.stderr,
        )
    return fork.session_id


async def _run(args: argparse.Namespace, report: _Report) -> int:
    from mcode.config import data_home, flag_settings, load_settings
    from mcode.runtime.build import open_session
    from mcode.store import Store

    workspace = Path(args.cwd or os.getcwd()).expanduser().resolve()
    if not workspace.is_dir():
        raise UsageError(f"--cwd {workspace}: no such folder")
    streaming = args.input_format == "stream-json"
    resuming = bool(args.resume or args.continue_)
    prompt = _read_prompt(args)
    if prompt is None and not streaming and not resuming:
        raise UsageError(
            "no prompt given", hint="mcode exec 'what to do', or pipe it: ... | mcode exec -"
        )
    images = tuple(load_image(p) for p in args.image)
    if (images or args.screenshot) and prompt is None:
        raise UsageError(
            f"{'--image' if images else '--screenshot'} attaches to the prompt, and none was given",
            hint="give the prompt as an argument; with --input-format stream-json, send images "
            'as {"type":"user","text":"...","images":["file.png"]}',
        )
    for flag, given in (
        ("--virtual-display-app", args.virtual_display_app),
        ("--virtual-display-size", args.virtual_display_size),
    ):
        if given and not args.virtual_display:
            raise UsageError(
                f"{flag} is for the --virtual-display, which was not given",
                hint="add --virtual-display",
            )
    settings = load_settings(workspace, flag_settings(args))
    if args.allow_computer:
        settings.computer.enabled = True
        settings.allow.append("computer")
    if args.virtual_display:
        settings.computer.enabled = True
    if settings.project_ignored:  # said whatever the format: the user expected it to apply
        note = _untrusted_note(settings.project_ignored)
        if settings.trusted:  # only the sandbox keys, which no project file may widen
            note = (
                f"the project config's {', '.join(settings.project_ignored)} did not take "
                "effect: a file in the repository may narrow the sandbox, never widen it (set "
                "it in your user config or with --sandbox)"
            )
        print(f"mcode: {note}", file=sys.stderr)
    # sys.stdin is None when standard input was closed at start (cron, CI): nothing to read.
    read_stdin = streaming and sys.stdin is not None
    # Asking needs someone who sees permission.asked and can answer on stdin.
    can_ask = read_stdin and args.output_format == "stream-json"
    if args.fork_at is not None and not resuming:
        raise UsageError(
            "--fork-at forks a stored session", hint="name it: --resume ID --fork-at N"
        )
    if args.undo_files and args.fork_at is None:
        raise UsageError(
            "--undo-files goes with --fork-at",
            hint="to undo the last turn's files, run `mcode undo`",
        )
    if args.fork_at is not None and prompt is None and not streaming:
        raise UsageError(
            f"--fork-at needs a prompt: the message that takes the place of turn {args.fork_at}",
            hint=f"mcode exec --resume ID --fork-at {args.fork_at} 'what to do instead'",
        )
    store = Store(data_home() / "sessions.db")
    started = time.monotonic()
    display = None
    loop: asyncio.AbstractEventLoop | None = None  # once set, its signal handlers are mcode's
    try:
        resume_id = args.resume
        continue_last = args.continue_
        if args.fork_at is not None:
            resume_id = _fork(store, args, workspace)
            continue_last = False
        if args.virtual_display:
            display = _virtual_display(args, settings)
        session = open_session(
            settings,
            store,
            interactive=can_ask,
            resume_id=resume_id,
            continue_last=continue_last,
        )
        report.session_id = session.id
        if (images or args.screenshot) and not session.model_info.supports_images:
            raise UsageError(
                f"the model {session.model_info.model} does not take images",
                hint="choose a model with image input, or drop "
                + ("--image" if args.image else "--screenshot"),
            )
        if args.screenshot:  # kept beside the tool's screenshots, by reference
            shots = store.path.parent / "screenshots" / session.id
            images = (*images, _screenshot(settings, shots))
        team = None
        if getattr(args, "team", False) or resuming:
            from mcode.team.setup import team_job

            # The plan gate asks whoever can answer a permission question, the same way.
            team = await team_job(args, settings, session, store, prompt, ask_plan=can_ask)
        # The prompt, or None to continue the interrupted turn; [] when stdin brings the first.
        # A resumed run first runs what a killed one was given and never began (message.queued).
        first: list[tuple[str | None, tuple[ImagePart, ...]]] = []
        if team is not None:
            pass  # the team run is the work: its request is the prompt, or the stored one
        elif prompt is not None or session.queued:
            first += session.queued
            if prompt is not None:
                first.append((prompt, images))
        elif session.interrupted is not None:
            first.append((None, ()))
        elif not streaming:
            raise UsageError(
                f"no prompt given, and the last turn of session {session.id[:12]} finished, "
                "so there is nothing to continue",
                hint=f"give a prompt: mcode exec --resume {session.id[:12]} 'what to do next'",
            )
        if not first and not read_stdin and team is None:
            raise UsageError(
                "no prompt given, and standard input (where the messages would come from) is "
                "closed",
                hint="give the prompt as an argument, or send JSON lines on standard input",
            )

        def start_session() -> None:
            session.start(
                cwd=str(workspace),
                provider_reason=settings.provider_reason,
                permission_mode=settings.permission_mode,
                resumed=resuming,
                approvals="stdin" if can_ask else "denied",
                permission_note=mode_note(
                    settings.permission_mode, can_ask=can_ask, timeout=settings.approval_timeout
                ),
                trusted=settings.trusted,
                project_ignored=tuple(settings.project_ignored),
            )

        def turn_ended(outcome: TurnOutcome) -> None:
            if outcome.error is not None:
                _complain(outcome.error)
            # Only a completed turn has an answer; what a stopped one said last is narration.
            if args.output_format == "text" and outcome.reason in _ANSWERED and outcome.text:
                _print(clean_text(session.scrub(outcome.text)))

        driver = _Driver(session, start_session, turn_ended)
        if args.output_format == "stream-json":

            def show(event: Any, line: str) -> None:
                if not _print(line):
                    driver.stop()  # nobody reads the events any more: stop, as on SIGPIPE

            session.subscribe(show)
        else:  # text: a line per step; -q and json: only retries that have taken a while
            from mcode.progress import Progress

            quiet = args.output_format == "json" or args.quiet
            session.subscribe(Progress(quiet=quiet))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, driver.stop)
        try:
            for i, (text, attached) in enumerate(first):
                new = i >= len(session.queued)
                if new and resuming and text is not None:
                    # In the store before anything can run (its hooks, its turn): a kill from
                    # here on leaves it, and its images, for the next --resume, which runs it
                    # once.
                    driver.start()
                    session.emit(ev.MessageQueued(text=text, images=attached or None))
                driver.send(text, attached)
            if team is not None:
                driver.start()
                session.start_work(team.team, team.run())
            outcome = await driver.run(StdinLines(loop) if read_stdin else None)
            if team is not None:
                outcome = team.outcome(outcome)
                turn_ended(outcome)  # the tasks' outcomes are the answer (text: on stdout)
        finally:
            await session.close()

        if outcome is None:  # input ended before any message
            if driver.started:  # a line came (malformed, or a cancel): close what it recorded
                session.finish(result=None, exit_code=EXIT_USAGE, reason="no_input")
            if driver.skipped:
                n = len(driver.skipped)
                raise UsageError(
                    f"no user message could be run: {n} line{'s' * (n != 1)} of standard input "
                    f"{'were' if n != 1 else 'was'} skipped ({'; '.join(driver.skipped[-3:])})",
                    hint=ACCEPTED_LINES,
                )
            raise UsageError(
                "standard input ended before any user message",
                hint='send {"type":"user","text":"..."} lines, or give the prompt as an argument',
            )
        code = _exit_code(outcome)
        answer = outcome.text if outcome.reason in _ANSWERED else None
        session.finish(result=answer, exit_code=code, reason=outcome.reason)
    finally:
        # Removed only now: a SIGTERM or SIGINT while the session closes (providers, servers)
        # or before session.finished is written asks the driver to stop (nothing is left to
        # stop), where the default action would kill the run before its end was recorded.
        if loop is not None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        store.close()
        if display is not None:
            display.stop()

    if code == EXIT_INTERRUPTED and args.output_format == "text":
        print(
            f"mcode: interrupted: the task did not finish (session {session.id[:12]}; "
            f"`mcode exec --resume {session.id[:12]}` continues it)",
            file=sys.stderr,
        )

    if code == EXIT_DENIED:
        for d in outcome.denials:
            print(session.scrub(f"mcode: denied: {d['name']}({d['subject']})"), file=sys.stderr)
    if args.output_format == "json":
        result: dict[str, Any] = {
            "session_id": session.id,
            "result": answer,
            "reason": outcome.reason,
            "exit_code": code,
            "error": None
            if outcome.error is None
            else {"message": outcome.error.message, "hint": outcome.error.hint},
            "provider": session.model_info.provider,
            "model": session.model_info.model,
            "usage": session.totals.usage.to_dict(),
            "model_calls": session.totals.model_calls,
            "tool_calls": session.totals.tool_calls,
            "compactions": session.totals.compactions,
            "denials": session.totals.denials,
            "duration_s": round(time.monotonic() - started, 3),
        }
        if team is not None and team.result is not None:
            result["team"] = {
                "tasks": [dict(t) for t in team.result.tasks],
                "reason": team.result.reason,
            }
        # Scrubbed like every event: the answer or a denied command may quote the API key.
        _print(clean_text(session.scrub(json.dumps(result, ensure_ascii=False))))
    return code


def list_sessions(args: argparse.Namespace) -> int:
    from mcode.config import check_environment, data_home
    from mcode.store import Store

    try:
        check_environment(os.environ)
        store = Store(data_home() / "sessions.db")
    except MCodeError as e:
        _complain(e)
        return e.exit_code
    cwd = None if args.all else str(Path(args.cwd or os.getcwd()).resolve())
    rows = store.sessions(cwd=cwd, limit=args.limit)
    store.close()
    if not rows:
        print("no sessions" + ("" if args.all else " in this folder (try --all)"))
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.updated_at))
        title = r.title.replace("\n", " ")[:60]
        where = f"  {r.cwd}" if args.all else ""
        if not _print(f"{r.id[:12]}  {when}  {r.provider}/{r.model}  {title}{where}"):
            break
    return 0
