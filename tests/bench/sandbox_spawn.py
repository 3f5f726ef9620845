"""What the sandbox costs a bash call: the bash tool running ``true``, in and out of bubblewrap.

    python tests/bench/sandbox_spawn.py [--runs 60]

Rows: the tool as shipped with the default sandbox (``workspace-write``: bwrap with a read-only
root, the workspace bound writable, ``.git/hooks`` and ``.git/config`` re-bound read-only, new
PID, IPC and network namespaces); the same without the signal reporter (bash straight under
bwrap, as before the reporter: the baseline of what it costs); ``read-only``; and no sandbox
(``danger-full-access``). Each
call is ``BashTool.run({"command": "true"})`` end to end in a temp git repository, interleaved
(every order in turn) so load hits every row alike; the sandbox's one-time probe is taken
before timing. Prints a Markdown table: median and worst of N calls.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from mcode.tools import bash
from mcode.tools.base import ToolContext
from mcode.tools.bash import BashTool
from mcode.tools.sandbox import SandboxPolicy, problem
from mcode.tools.workspace import Workspace

SHIPPED = bash.command_argv
NO_REPORTER = "workspace-write, no signal reporter (baseline)"


def without_reporter(
    command: str, sandbox: SandboxPolicy | None = None, status_fd: int | None = None
) -> list[str]:
    return SHIPPED(command, sandbox)


async def one_call(tool: BashTool, ctx: ToolContext, reporter: bool) -> float:
    bash.command_argv = SHIPPED if reporter else without_reporter
    started = time.perf_counter()
    result = await tool.run({"command": "true"}, ctx)
    elapsed = time.perf_counter() - started
    bash.command_argv = SHIPPED
    assert not result.is_error, result.content
    return elapsed


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        git = root / ".git"
        protected = (git / "hooks", git / "config")
        rows = {
            "workspace-write (default)": SandboxPolicy(
                "workspace-write", writable=(root,), protected=protected
            ),
            NO_REPORTER: SandboxPolicy("workspace-write", writable=(root,), protected=protected),
            "read-only": SandboxPolicy("read-only", writable=(root,)),
            "danger-full-access (no sandbox)": None,
        }
        for policy in rows.values():
            if policy is not None and (failure := problem(policy)) is not None:
                raise SystemExit(f"the sandbox cannot run here: {failure}")
        tool = BashTool()
        times: dict[str, list[float]] = {name: [] for name in rows}
        orders = itertools.cycle(itertools.permutations(rows))
        while min(len(t) for t in times.values()) < runs:
            for name in next(orders):
                ctx = ToolContext(workspace=Workspace(root), sandbox=rows[name])
                times[name].append(await one_call(tool, ctx, name != NO_REPORTER))
    print("| bash tool, `true` | calls | median (ms) | worst (ms) |")
    print("| --- | ---: | ---: | ---: |")
    for name, samples in times.items():
        median = statistics.median(samples) * 1000
        print(f"| {name} | {len(samples)} | {median:.1f} | {max(samples) * 1000:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    asyncio.run(main(parser.parse_args().runs))
