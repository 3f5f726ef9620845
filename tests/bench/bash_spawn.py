"""What the supervisor costs a bash call: the bash tool running ``true``, end to end.

    python tests/bench/bash_spawn.py [--runs 50]

Rows: the tool as shipped (``bash -c`` under :mod:`mcode.tools.supervisor`, which makes the
command die with mcode), and the same tool starting ``bash -c`` directly, as it did before.
Each call is ``BashTool.run`` with a fresh ``true`` in a temp folder: spawn, wait, drain, the
group check. The third row is the floor of any Python supervisor: ``python -I -S -c pass``.
Median and worst of N calls, interleaved so load hits every row alike. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mcode.tools import bash
from mcode.tools.base import ToolContext
from mcode.tools.workspace import Workspace


async def one_call(
    tool: bash.BashTool, ctx: ToolContext, argv: Callable[[str], list[str]]
) -> float:
    bash.command_argv = argv  # type: ignore[assignment]
    started = time.perf_counter()
    result = await tool.run({"command": "true"}, ctx)
    elapsed = time.perf_counter() - started
    assert not result.is_error, result.content
    return elapsed


async def main(runs: int) -> None:
    supervised = bash.command_argv

    def direct(command: str) -> list[str]:
        return ["bash", "-c", command]

    floor = "`python -I -S -c pass` alone"
    rows: dict[str, list[float]] = {
        "supervised (shipped)": [],
        "direct `bash -c` (before)": [],
        floor: [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        ctx = ToolContext(workspace=Workspace(Path(tmp)))
        tool = bash.BashTool()
        for _ in range(runs):
            rows["supervised (shipped)"].append(await one_call(tool, ctx, supervised))
            rows["direct `bash -c` (before)"].append(await one_call(tool, ctx, direct))
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(sys.executable, "-I", "-S", "-c", "pass")
            await proc.wait()
            rows[floor].append(time.perf_counter() - started)
    print("| bash tool, `true` | calls | median (ms) | worst (ms) |")
    print("| --- | ---: | ---: | ---: |")
    for name, times in rows.items():
        print(
            f"| {name} | {runs} | {statistics.median(times) * 1e3:.1f} | {max(times) * 1e3:.1f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    asyncio.run(main(parser.parse_args().runs))
