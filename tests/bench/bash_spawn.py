"""What making commands die with mcode costs a bash call: the bash tool running ``true``.

    python tests/bench/bash_spawn.py [--runs 50] [--before REV|none]

Rows: the tool as shipped (``bash -c`` behind the supervisor's gate, its group registered with
the one supervisor per mcode, :mod:`mcode.tools.supervisor`); the same tool starting
``bash -c`` directly, which does not die with mcode (the floor); and the per-call Python
supervisor of ``REV`` (default ``f91585e``, read with ``git show``), which led each command's
group and polled its parent. Each call is ``BashTool.run`` with a fresh ``true`` in a temp
folder: spawn, wait, drain, the group check. Median and worst of N calls, interleaved
(every order in turn) so load hits every row alike. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mcode.tools import bash
from mcode.tools.base import ToolContext
from mcode.tools.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


async def one_call(
    tool: bash.BashTool, ctx: ToolContext, argv: Callable[[str], list[str]]
) -> float:
    bash.command_argv = argv  # type: ignore[assignment]
    started = time.perf_counter()
    result = await tool.run({"command": "true"}, ctx)
    elapsed = time.perf_counter() - started
    assert not result.is_error, result.content
    return elapsed


async def main(runs: int, before: str) -> None:
    shipped = bash.command_argv

    def direct(command: str) -> list[str]:
        return ["bash", "-c", command]

    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "supervisor.py"
        if before != "none":
            old.write_bytes(
                subprocess.run(
                    ["git", "-C", str(REPO), "show", f"{before}:mcode/tools/supervisor.py"],
                    check=True,
                    capture_output=True,
                ).stdout
            )

        def per_call(command: str) -> list[str]:
            return [sys.executable, "-I", "-S", str(old), str(os.getpid()), "bash", "-c", command]

        rows: dict[str, tuple[Callable[[str], list[str]], list[float]]] = {
            "shipped: gate + one supervisor per mcode": (shipped, []),
            "direct `bash -c` (does not die with mcode)": (direct, []),
            f"per-call Python supervisor ({before})": (per_call, []),
        }
        if before == "none":
            del rows[f"per-call Python supervisor ({before})"]
        (Path(tmp) / "ws").mkdir()
        ctx = ToolContext(workspace=Workspace(Path(tmp) / "ws"))
        tool = bash.BashTool()
        await one_call(tool, ctx, shipped)  # starts the supervisor: once per mcode, not timed
        # Every order in turn: a row must not always follow the same one (a Python start's
        # teardown slows whatever runs next).
        orders = list(itertools.permutations(rows.values()))
        for n in range(runs):
            for argv, times in orders[n % len(orders)]:
                times.append(await one_call(tool, ctx, argv))
    print("| bash tool, `true` | calls | median (ms) | worst (ms) |")
    print("| --- | ---: | ---: | ---: |")
    for name, (_, times) in rows.items():
        print(
            f"| {name} | {runs} | {statistics.median(times) * 1e3:.1f} | {max(times) * 1e3:.1f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--before", default="f91585e", help="the old supervisor's revision, or none: no such row"
    )
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.before))
