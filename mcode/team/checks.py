"""A task's acceptance checks, run by mcode itself in the task's worktree.

The verifier's word is not enough (verdict.py): before a PASS is accepted, mcode runs each
check of the plan (``bash -c COMMAND`` in the worktree, the tools' environment, a timeout) and
compares the exit code and, when the plan asks for it, the output (stdout and stderr together).

A check is a command like any other, so it runs in the OS sandbox (mcode/tools/sandbox.py)
with the producer's policy: the task's worktree writable, the user's tree and everything else
read-only. A check that writes outside its worktree fails; a sandbox that cannot start raises
SandboxError before anything runs (the task fails with that error), never an unsandboxed run.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from mcode.events import CheckRun
from mcode.team.plan import Check
from mcode.tools.sandbox import SandboxPolicy, sandboxed_argv

__all__ = ["run_checks"]

CHECK_TIMEOUT = 300.0


async def run_checks(
    checks: tuple[Check, ...],
    cwd: Path,
    env: dict[str, str],
    sandbox: SandboxPolicy | None,
    timeout: float = CHECK_TIMEOUT,
) -> list[CheckRun]:
    """Each check's result, in order. ``sandbox``: the task's policy (None only in-process,
    where no session sandbox exists). Raises SandboxError when the sandbox cannot start."""
    return [await _run(check, cwd, env, sandbox, timeout) for check in checks]


async def _run(
    check: Check, cwd: Path, env: dict[str, str], sandbox: SandboxPolicy | None, timeout: float
) -> CheckRun:
    argv = ["bash", "-c", check.command]
    if sandbox is not None:
        argv = sandboxed_argv(argv, sandbox)  # before anything starts: may refuse
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as e:
        _kill(proc.pid)
        await proc.wait()
        if isinstance(e, asyncio.CancelledError):
            raise
        return {
            "command": check.command,
            "exit_code": -1,
            "passed": False,
            "why": f"timed out after {timeout:g} s",
        }
    code = proc.returncode if proc.returncode is not None else -1
    output = out.decode("utf-8", errors="replace")
    why = ""
    if code != check.exit_code:
        why = f"exited {code}, expected {check.exit_code}: {_tail(output)}"
    elif check.output_contains is not None and check.output_contains not in output:
        why = f"output lacks {check.output_contains!r}: {_tail(output)}"
    return {"command": check.command, "exit_code": code, "passed": not why, "why": why}


def _kill(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(output: str, limit: int = 600) -> str:
    text = output.strip()
    return text if len(text) <= limit else "…" + text[-limit:]
