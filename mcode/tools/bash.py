"""bash: run a shell command in the workspace root, and leave nothing running behind it.

The command runs as ``bash -c``, leading a new session (so its own process group), with stdin
from /dev/null, stderr merged into stdout and the environment ``ctx.env`` (no credentials).
Output streams to ``ctx.emit_output`` as it arrives, up to ``ctx.output_cap`` characters (then
a marker); the model gets at most ``ctx.output_cap`` characters too, head and tail kept. When
the command ends, times out or is cancelled, whatever is left of its process group
(background jobs included) gets SIGTERM, then SIGKILL after a grace period; when mcode dies
(``kill -9`` included) the supervisor (:mod:`mcode.tools.supervisor`) does the same at once.
The group is registered with it, and noted by ``ctx.record_command`` (so ``--resume`` after a
crash can report and kill what is left), before the command passes its gate and runs.
A process that leaves the group on purpose (``setsid``, a double-forking daemon) escapes all
this; nothing short of cgroups catches it — except inside the sandbox
(:mod:`mcode.tools.sandbox`), where ``bash`` runs under bubblewrap in its own PID namespace:
bwrap leads the group, the gate works through it (bwrap passes stdin on), and when the
namespace's first process dies the kernel kills everything else in it.

A command killed by a signal reads "killed by SIGSEGV", sandboxed or not. bwrap alone cannot
say so: it exits 128+N both for a child killed by signal N and for one that chose ``exit
128+N`` (``kill -SEGV $$`` and ``exit 139`` both come back as 139, as from Codex's Linux
sandbox). So inside the sandbox bash runs under a reporter (:func:`reporter`), a few lines of
perl that wait for it and write its raw status to a pipe mcode holds; bwrap's exit code is read
only when the reporter left nothing (it was killed itself: a timeout or a cancel).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import os
import shutil
import signal
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from mcode.errors import ToolError
from mcode.tools import supervisor
from mcode.tools.base import Tool, ToolContext, ToolResult
from mcode.tools.sandbox import SandboxPolicy, sandboxed_argv
from mcode.tools.supervisor import group_alive

MAX_TIMEOUT = 600.0
KILL_GRACE = 2.0
# How long output may keep arriving after bash exits (from jobs it left running) before they
# are killed.
DRAIN_GRACE = 0.5


# The reporter: run the rest of its argv as a child and write how it ended ("exit N" or
# "signal N") to the fd it is given first. The child does not get that fd (a background job
# holding it would keep mcode reading). perl where there is one (Debian and Ubuntu always have
# it): it starts in a few milliseconds, where even an isolated Python without site takes
# ~25 ms (BENCH.md); that Python where there is no perl.
PERL_REPORTER = (
    "open(S,'>&=',shift)or exit 126;my$p=fork;defined$p or exit 126;"
    "if(!$p){close S;exec{$ARGV[0]}@ARGV;exit 127}"
    "waitpid($p,0);my$s=$?;my$n=$s&127;"
    'if($n){syswrite S,"signal $n";exit 128+$n}'
    "syswrite S,'exit '.($s>>8);exit $s>>8"
)
PYTHON_REPORTER = (
    "import os,sys\n"
    "fd=int(sys.argv[1])\n"
    "pid=os.fork()\n"
    "if pid==0:\n"
    " os.close(fd)\n"
    " try:os.execvp(sys.argv[2],sys.argv[2:])\n"
    " finally:os._exit(127)\n"
    "_,st=os.waitpid(pid,0)\n"
    "sig=os.WIFSIGNALED(st)\n"
    "n=os.WTERMSIG(st) if sig else os.waitstatus_to_exitcode(st)\n"
    "os.write(fd,(('signal %d' if sig else 'exit %d')%n).encode())\n"
    "os._exit(128+n if sig else n)\n"
)


@functools.cache
def reporter() -> tuple[str, ...]:
    """The reporter's command line, up to the fd (the root is the same inside the sandbox)."""
    perl = shutil.which("perl")
    if perl is not None:
        return (perl, "-e", PERL_REPORTER, "--")
    return (sys.executable, "-I", "-S", "-c", PYTHON_REPORTER)


def command_argv(
    command: str, sandbox: SandboxPolicy | None = None, status_fd: int | None = None
) -> list[str]:
    """How to start ``command``: bash, waiting at the supervisor's gate until mcode says go,
    inside the session's sandbox (under :func:`reporter` writing to ``status_fd``, when
    given). Raises SandboxError when the sandbox cannot start."""
    argv = ["bash", "-c", supervisor.GATE + command]
    if sandbox is None or not sandbox.active:
        return argv
    if status_fd is not None:
        argv = [*reporter(), str(status_fd), *argv]
    return sandboxed_argv(argv, sandbox)


def _reported(fd: int) -> int | None:
    """The return code (negative: killed by that signal) the reporter wrote to ``fd``, or None
    when it wrote nothing. Closes ``fd``."""
    try:
        os.set_blocking(fd, False)
        said = os.read(fd, 64).decode("ascii", "replace").split()
    except OSError:
        said = []
    finally:
        os.close(fd)
    if len(said) != 2 or not said[1].isdigit():
        return None
    return -int(said[1]) if said[0] == "signal" else int(said[1])


class OutputBuffer:
    """Keeps the first and last ``cap // 2`` characters of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.head_cap = cap // 2
        self.tail_cap = cap - self.head_cap
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.total = 0

    def add(self, text: str) -> None:
        self.total += len(text)
        if self.head_len < self.head_cap:
            take = text[: self.head_cap - self.head_len]
            self.head.append(take)
            self.head_len += len(take)
            text = text[len(take) :]
        if text:
            self.tail.append(text)
            self.tail_len += len(text)
            while self.tail and self.tail_len - len(self.tail[0]) >= self.tail_cap:
                self.tail_len -= len(self.tail.popleft())

    def text(self) -> str:
        head = "".join(self.head)
        tail = "".join(self.tail)
        if self.total <= self.cap:
            return head + tail
        tail = tail[len(tail) - self.tail_cap :] if self.tail_cap else ""
        omitted = self.total - len(head) - len(tail)
        return f"{head}\n[… {omitted} characters omitted …]\n{tail}"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def kill_group(
    pgid: int, grace: float = KILL_GRACE, leader_gone: Callable[[], bool] | None = None
) -> None:
    """SIGTERM the process group, then SIGKILL whatever is still running after ``grace`` s, or
    as soon as ``leader_gone()`` says the group has lost the leader it cannot live without.
    If this wait is itself cancelled, SIGKILL goes out at once.

    The sandbox's group needs ``leader_gone``: a SIGTERM that lands while bwrap sets the
    sandbox up kills bwrap but reaches nothing of the command. The namespace's first process
    ignores it (the kernel drops a default-handled signal to a PID namespace's init) and the
    reporter and bash it starts next were not there to get it, while ``--die-with-parent``
    was not armed yet. Left alone, the command ran through the grace period after a cancel
    (tests/test_sandbox.py caught a ``sleep 1; touch`` finishing). Once bwrap is gone the
    sandbox was meant to be dead anyway (with ``--die-with-parent`` it is SIGKILLed at once),
    so whatever is left gets SIGKILL without waiting."""
    if not group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    try:
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            if not group_alive(pgid):
                return
            if leader_gone is not None and leader_gone():
                break
    finally:
        if group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)


class BashTool(Tool):
    name = "bash"
    description = (
        "Run a bash command in the workspace root (no stdin; stderr merged into stdout). "
        "timeout in seconds, max 600. Processes it leaves running are killed when it ends."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
        "required": ["command"],
        "additionalProperties": False,
    }
    permission = "execute"

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        command: str = args["command"]
        if not command.strip():
            raise ToolError("command is empty")
        timeout = float(args.get("timeout") or ctx.bash_timeout)
        if timeout <= 0:
            raise ToolError("timeout must be a positive number of seconds")
        timeout = min(timeout, MAX_TIMEOUT)
        sandboxed = ctx.sandbox is not None and ctx.sandbox.active
        heard, told = os.pipe() if sandboxed else (-1, -1)
        try:
            # Before anything starts: may refuse.
            argv = command_argv(command, ctx.sandbox, told if sandboxed else None)
        except BaseException:
            if sandboxed:
                os.close(heard)
                os.close(told)
            raise
        gate, go = os.pipe()
        spawn = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *argv,
                cwd=ctx.workspace.root,
                env=ctx.env,
                stdin=gate,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(told,) if sandboxed else (),
            )
        )
        try:
            # Shielded: asyncio's own clean-up of a start cancelled midway kills only the first
            # process (bwrap, in the sandbox) and then waits for its pipes, which the sandbox's
            # children still hold at the gate, waiting for a go that never comes: a deadlock.
            proc = await asyncio.shield(spawn)
        except asyncio.CancelledError:
            os.close(go)  # the command reads end-of-file at the gate: it runs nothing, exits
            _abandon(spawn, gate, *((heard, told) if sandboxed else ()))
            raise
        except OSError as e:
            for fd in (go, gate, *((heard, told) if sandboxed else ())):
                os.close(fd)
            raise ToolError(f"cannot start bash: {e.strerror}") from None
        os.close(gate)
        if sandboxed:
            os.close(told)  # the reporter has its own; end-of-file once it is gone
        reported: int | None = None
        pgid = proc.pid  # start_new_session: the child leads its own session and group
        # In the sandbox the leader is bwrap, and nothing inside should outlive it.
        bwrap_gone = (lambda: proc.returncode is not None) if sandboxed else None
        # bash waits at the gate: nothing of the command runs until it dies with mcode and
        # has its note; a crash before the go leaves bash an empty read, and it exits.
        supervisor.watch(pgid, bound=sandboxed)
        forget = ctx.record_command(pgid, command) if ctx.record_command else None
        _open_gate(go)
        out = OutputBuffer(ctx.output_cap)
        reader = asyncio.create_task(self._pump(proc, out, ctx))
        # proc.wait() also waits for the pipe to close, which a background job can hold open
        # for ever; _exited notices bash itself ending.
        waiter = asyncio.create_task(proc.wait())
        exited = asyncio.create_task(_exited(proc))
        cancelled = asyncio.create_task(ctx.cancel.wait())
        helpers = (reader, waiter, exited, cancelled)
        try:
            done, _ = await asyncio.wait(
                {waiter, exited, cancelled}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if waiter in done or exited in done:
                outcome = "exit"
                await asyncio.wait({reader}, timeout=DRAIN_GRACE)
            else:
                outcome = "cancel" if cancelled in done else "timeout"
            await kill_group(pgid, leader_gone=bwrap_gone)
            # The pipe closes once every holder is dead; a process that escaped the group may
            # keep it open, so don't wait for it for ever.
            await asyncio.wait({reader}, timeout=1.0)
            if proc.returncode is None:
                await asyncio.wait({exited}, timeout=5.0)
            code = proc.returncode
        except asyncio.CancelledError:
            await kill_group(pgid, leader_gone=bwrap_gone)
            # Reaped, and its pipe seen closed, by this loop: a transport left open is closed
            # by the garbage collector after asyncio.run has closed the loop ("Event loop is
            # closed" from BaseSubprocessTransport.__del__).
            await asyncio.wait({waiter}, timeout=1.0)
            raise
        finally:
            for task in helpers:
                task.cancel()
            if forget is not None:
                forget()
            supervisor.release(pgid)
            if sandboxed:
                reported = _reported(heard)
        if outcome == "exit" and reported is not None:
            code = reported  # bwrap's 128+N would not tell a signal from an exit code
        output = out.text()
        shown = command if len(command) <= 80 else command[:77] + "..."
        if outcome == "timeout":
            status = f"[timed out after {timeout:g} s; the command and its children were killed]"
            return ToolResult(
                _join(output, status), summary=f"$ {shown} (timed out)", is_error=True
            )
        if outcome == "cancel":
            status = "[cancelled by the user; the command and its children were killed]"
            return ToolResult(
                _join(output, status), summary=f"$ {shown} (cancelled)", is_error=True
            )
        if code == 0:
            return ToolResult(output or "(no output)", summary=f"$ {shown}", exit_code=0)
        if code is None:
            status = "exit status unknown (bash did not go away after SIGKILL)"
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            status = f"killed by {name}"
        else:
            status = f"exit code {code}"
        return ToolResult(
            _join(output, status),
            summary=f"$ {shown} ({status})",
            is_error=True,
            exit_code=code if code is not None and code > 0 else None,
        )

    @staticmethod
    async def _pump(proc: asyncio.subprocess.Process, out: OutputBuffer, ctx: ToolContext) -> None:
        assert proc.stdout is not None
        # Incremental decoding: a multi-byte character split across reads stays whole.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # The live stream is capped like the result: a 50 MB log must not become 50 MB of
        # events. The result (head and tail) still says what was left out.
        streamed = 0
        while True:
            chunk = await proc.stdout.read(65536)
            text = decoder.decode(chunk, final=not chunk)
            if text:
                out.add(text)
                if streamed < ctx.output_cap:
                    piece = text[: ctx.output_cap - streamed]
                    streamed += len(piece)
                    if streamed >= ctx.output_cap:
                        piece += "\n[… live output stops here; the result keeps head and tail]\n"
                    ctx.emit_output(piece)
            if not chunk:
                return


# Starts cancelled midway, kept until their process is gone (a task nobody holds may be
# collected while it runs).
_abandoned: set[asyncio.Task[None]] = set()


def _abandon(spawn: asyncio.Future[asyncio.subprocess.Process], *fds: int) -> None:
    """Let a cancelled start finish, close mcode's copies of the gate's read end (and the
    reporter's pipe) once the child has its own, and reap the process (it exits at the gate,
    having run nothing)."""

    async def wind_up() -> None:
        try:
            # Shielded again: a cancel of this (asyncio.run's shutdown) must not reach the start.
            proc = await asyncio.shield(spawn)
        except BaseException:
            return
        finally:
            if spawn.done():
                for fd in fds:  # else the start still needs them; the process ends with mcode
                    os.close(fd)
        # It exits at the gate within milliseconds. Waited for even through a cancel (asyncio.run
        # shutting down as the turn that abandoned it ends): reaped by the loop that started it,
        # its transport is not left for the garbage collector to close after the loop has
        # ("Event loop is closed" from BaseSubprocessTransport.__del__).
        # (A fresh wait after the cancel: asyncio.run cancels every task it finds at once, a
        # wait begun before included.)
        try:
            await asyncio.wait_for(proc.wait(), timeout=30)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(proc.wait(), timeout=2)
        except BaseException:
            pass

    task = asyncio.ensure_future(wind_up())
    _abandoned.add(task)
    task.add_done_callback(_abandoned.discard)


def _open_gate(go: int) -> None:
    try:
        os.write(go, b"\n")
    except OSError:
        pass  # bash is gone already (a syntax error on the first line): nothing ran
    finally:
        os.close(go)


async def _exited(proc: asyncio.subprocess.Process) -> int:
    while proc.returncode is None:
        await asyncio.sleep(0.05)
    return proc.returncode


def _join(output: str, status: str) -> str:
    if not output:
        return status
    return output + ("" if output.endswith("\n") else "\n") + status
