"""An agent team on N independent tasks against a scripted model of fixed latency: wall time
with ``--parallel P`` against ``--parallel 1``, and the harness's own cost per task (a script
printing a table, not a test).

    python tests/bench/team.py [--tasks 4 8] [--parallel 4] [--latency 0.5] [--repeat 1]

Each row runs the real ``mcode exec --team --permission-mode full-auto --output-format
stream-json`` (a subprocess, private XDG folders, a scratch git repo) against the scripted
server (tests/model_server.py, in this process), every answer held back ``--latency`` seconds.
The planner plans N independent tasks (2 model calls); each task is a producer writing one file
(2 calls) and a verifier running ``cat`` and citing it (3 calls): 5 calls a task.

Columns:

- **wall s**: the whole run, process start to exit.
- **team s**: from the plan (``team.plan``) to ``team.finished``, the part parallelism can
  shorten; **speed-up** is the ``--parallel 1`` row's team s over this row's, against the
  target of 0.8 x min(N, P).
- **model s / task**: the latency the task's 5 calls must wait for (5 x latency): the floor.
- **harness ms / task**: what mcode adds per task in the sequential run beyond that floor:
  (team s - N x 5 x latency) / N — the worktree, the commit, the checks, the merge, the
  worktree's removal, the turns' own work.

The git steps alone (worktree add, commit, merge, remove) are timed in-process with
:class:`mcode.team.git.Git` on the same kind of repo, per task, as **git ms / task**.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers import clean_env, exec_args, make_repo  # noqa: E402
from tests.model_server import ScriptedServer  # noqa: E402
from tests.team_model import (  # noqa: E402
    Req,
    TeamModel,
    call,
    plan,
    planner_giving,
    say,
    task,
    verifier_running,
)

CALLS_PER_TASK = 5


def _model(n: int, latency: float) -> TeamModel:
    def producer(req: Req) -> dict[str, Any]:
        if req.after_user == 0:
            step = call("write", {"path": f"{req.task_id}.txt", "content": f"{req.task_id}\n"})
        else:
            step = say("done")
        return {**step, "delay": latency}

    def slow(role: Any) -> Any:
        return lambda req: {**role(req), "delay": latency}

    tasks = [task(f"t{i}", f"write t{i}.txt", [(f"test -f t{i}.txt", 0)]) for i in range(n)]
    return TeamModel(
        planner=slow(planner_giving(plan(*tasks))),
        producer=producer,
        verifier=slow(verifier_running("cat *.txt")),
    )


def run_team(n: int, parallel: int, latency: float) -> tuple[float, float]:
    """(wall s, team s) of one run."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        repo = make_repo(Path(tmp) / "repo", {"README.md": "bench\n"})
        env = clean_env(home)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        model = _model(n, latency)
        with ScriptedServer([model] * (n * CALLS_PER_TASK + 10)) as server:
            args = exec_args(
                server,
                "--team",
                "--parallel",
                str(parallel),
                "--permission-mode",
                "full-auto",
                "--output-format",
                "stream-json",
                "bench",
            )
            start = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "mcode", *args],
                cwd=repo,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            wall = time.monotonic() - start
        if proc.returncode != 0:
            raise SystemExit(f"the team run failed ({proc.returncode}): {proc.stderr[-2000:]}")
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        plan_ts = next(e["ts"] for e in events if e["type"] == "team.plan")
        done_ts = next(e["ts"] for e in events if e["type"] == "team.finished")
        return wall, done_ts - plan_ts


def git_cost(n: int) -> float:
    """Seconds per task of worktree add + commit + merge + remove, in-process."""
    from mcode.team.git import Git

    async def go(repo: Path, trees: Path) -> float:
        git = await Git.open(repo)
        start = time.monotonic()
        for i in range(n):
            path, branch = trees / f"t{i}", f"bench/t{i}"
            await git.add_worktree(path, branch, await git.head())
            (path / f"t{i}.txt").write_text("x\n")
            await git.commit_all(path, f"t{i}")
            result = await git.merge(branch, f"merge t{i}")
            assert result.ok, result.message
            await git.remove_worktree(path, branch)
        return (time.monotonic() - start) / n

    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "repo", {"README.md": "bench\n"})
        os.environ.setdefault("GIT_AUTHOR_NAME", "bench")
        return asyncio.run(go(repo, Path(tmp) / "trees"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the median is shown")
    args = parser.parse_args()
    print(
        f"# {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"latency {args.latency} s a call"
    )
    print(
        "| tasks | parallel | wall s | team s | speed-up | target | model s / task "
        "| harness ms / task | git ms / task |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.tasks:
        git_ms = git_cost(n) * 1000
        sequential = 0.0
        for parallel in (1, args.parallel):
            runs = sorted(
                (run_team(n, parallel, args.latency) for _ in range(args.repeat)),
                key=lambda r: r[1],
            )
            wall, team_s = runs[len(runs) // 2]
            floor = CALLS_PER_TASK * args.latency
            if parallel == 1:
                sequential = team_s
                speed, target = "1.00", "—"
                harness = f"{(team_s - n * floor) / n * 1000:.0f}"
            else:
                speed = f"{sequential / team_s:.2f}"
                target = f"{0.8 * min(n, parallel):.1f}"
                harness = "—"
            print(
                f"| {n} | {parallel} | {wall:.1f} | {team_s:.1f} | {speed} | {target} "
                f"| {floor:.1f} | {harness} | {git_ms:.0f} |"
            )


if __name__ == "__main__":
    main()
