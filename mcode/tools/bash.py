"""bash: run a shell command in the workspace root, and leave nothing running behind it.

The command runs as ``bash -c``, leading a new session (so its own process group), with stdin
from /dev/null, stderr merged into stdout and the environment ``ctx.env`` (no credentials).
Output streams to ``ctx.emit_output`` as it arrives (uncapped); the model gets at most
``ctx.output_cap`` characters, head and tail kept. When the command ends, times out or is
cancelled, whatever is left of its process group (background jobs included) gets SIGTERM, then
SIGKILL after a grace period; when mcode dies (``kill -9`` included) the supervisor
(:mod:`mcode.tools.supervisor`) does the same at once. The group is registered with it, and
noted by ``ctx.record_command`` (so ``--resume`` after a crash can report and kill what is
left), before the command passes its gate and runs.
A process that leaves the group on purpose (``setsid``, a double-forking daemon) escapes all
this; nothing short of cgroups catches it — except inside the sandbox
(:mod:`mcode.tools.sandbox`), where ``bash`` runs under bubblewrap in its own PID namespace:
bwrap leads the group, the gate works through it (bwrap passes stdin on), and when the
namespace's first process dies the kernel kills everything else in it.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
from collections import deque
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


def command_argv(command: str, sandbox: SandboxPolicy | None = None) -> list[str]:
    """How to start ``command``: bash, waiting at the supervisor's gate until mcode says go,
    inside the session's sandbox. Raises SandboxError when the sandbox cannot start."""
    argv = ["bash", "-c", supervisor.GATE + command]
    return argv if sandbox is None else sandboxed_argv(argv, sandbox)


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


async def kill_group(pgid: int, grace: float = KILL_GRACE) -> None:
    """SIGTERM the process group, then SIGKILL whatever is still running after ``grace`` s.
    If this wait is itself cancelled, SIGKILL goes out at once."""
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
        argv = command_argv(command, ctx.sandbox)  # before anything starts: may refuse
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
            )
        )
        try:
            # Shielded: asyncio's own clean-up of a start cancelled midway kills only the first
            # process (bwrap, in the sandbox) and then waits for its pipes, which the sandbox's
            # children still hold at the gate, waiting for a go that never comes: a deadlock.
            proc = await asyncio.shield(spawn)
        except asyncio.CancelledError:
            os.close(go)  # the command reads end-of-file at the gate: it runs nothing, exits
            _abandon(spawn, gate)
            raise
        except OSError as e:
            os.close(go)
            os.close(gate)
            raise ToolError(f"cannot start bash: {e.strerror}") from None
        os.close(gate)
        pgid = proc.pid  # start_new_session: the child leads its own session and group
        # bash waits at the gate: nothing of the command runs until it dies with mcode and
        # has its note; a crash before the go leaves bash an empty read, and it exits.
        supervisor.watch(pgid)
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
            await kill_group(pgid)
            # The pipe closes once every holder is dead; a process that escaped the group may
            # keep it open, so don't wait for it for ever.
            await asyncio.wait({reader}, timeout=1.0)
            if proc.returncode is None:
                await asyncio.wait({exited}, timeout=5.0)
            code = proc.returncode
        except asyncio.CancelledError:
            await kill_group(pgid)
            raise
        finally:
            for task in helpers:
                task.cancel()
            if forget is not None:
                forget()
            supervisor.release(pgid)
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


def _abandon(spawn: asyncio.Future[asyncio.subprocess.Process], gate: int) -> None:
    """Let a cancelled start finish, close mcode's copy of the gate's read end once the child
    has its own, and reap the process (it exits at the gate, having run nothing)."""

    async def wind_up() -> None:
        try:
            # Shielded again: a cancel of this (asyncio.run's shutdown) must not reach the start.
            proc = await asyncio.shield(spawn)
        except BaseException:
            return
        finally:
            if spawn.done():
                os.close(gate)  # else the start still needs it; the process ends with mcode
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(proc.wait(), timeout=30)

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
