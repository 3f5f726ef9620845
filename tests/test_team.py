"""mcode exec --team: plan -> concurrent producers in worktrees -> verifiers -> merge.

Real git, a real mcode process, the scripted model server answering per role
(tests/team_model.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests import team_support
from tests.helpers import exec_args, make_repo, mcode
from tests.model_server import ScriptedServer
from tests.team_model import (
    Req,
    TeamModel,
    call,
    plan,
    planner_giving,
    say,
    task,
    verifier_running,
)
from tests.team_support import TEAM, git, of

repo, env = team_support.repo, team_support.env


def test_two_producers_overlap_in_separate_worktrees_and_both_merge(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    meet = tmp_path / "meet"
    meet.mkdir()

    def producer(req: Req) -> dict[str, Any]:
        me, other = ("a", "b") if req.task_id == "a" else ("b", "a")
        if req.step == 0:
            # Each waits for the other to arrive: this only succeeds if both run at once.
            rendezvous = (
                f"touch {meet}/{me}; for i in $(seq 300); do [ -e {meet}/{other} ] && break; "
                f"sleep 0.05; done; [ -e {meet}/{other} ] && pwd > {me}.where"
            )
            return call("bash", {"command": rendezvous})
        if req.step == 1:
            return call("write", {"path": f"{me}.txt", "content": f"made by {me}\n"})
        return say(f"wrote {me}.txt")

    model = TeamModel(
        planner=planner_giving(
            plan(
                task("a", "write a.txt", [("test -f a.txt && test -f a.where", 0)]),
                task("b", "write b.txt", [("test -f b.txt && test -f b.where", 0)]),
            )
        ),
        producer=producer,
        verifier=verifier_running("cat *.txt"),
    )
    with ScriptedServer([model] * 60) as server:
        run = mcode(*exec_args(server, *TEAM, "make a and b"), cwd=repo, env=env)
    events = run.events()
    assert run.code == 0, run.stderr
    worktrees = {e["data"]["task_id"]: e["data"] for e in of(events, "team.worktree")}
    assert worktrees["a"]["path"] != worktrees["b"]["path"]
    assert all(w["confined"] for w in worktrees.values())
    # Each producer's bash ran in its own worktree, and the rendezvous met.
    assert (repo / "a.where").read_text().strip() == str(Path(worktrees["a"]["path"]).resolve())
    assert (repo / "b.where").read_text().strip() == str(Path(worktrees["b"]["path"]).resolve())
    # The intervals of the two tasks overlap: b started before a finished and the reverse.
    started = {e["data"]["task_id"]: e["seq"] for e in of(events, "team.task.started")}
    finished = {e["data"]["task_id"]: e["seq"] for e in of(events, "team.task.finished")}
    assert started["a"] < finished["b"] and started["b"] < finished["a"]
    # Producer events carry their agent ids.
    agents = {e.get("agent") for e in events if e["type"] == "tool.finished"}
    assert {"producer:a", "producer:b"} <= agents
    # Merged into the user's branch, the user's tree clean, the worktrees gone.
    assert (repo / "a.txt").read_text() == "made by a\n"
    assert (repo / "b.txt").read_text() == "made by b\n"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert [e["data"]["ok"] for e in of(events, "team.merge")] == [True, True]
    assert not Path(worktrees["a"]["path"]).exists()
    done = of(events, "team.finished")[-1]["data"]
    assert done["reason"] == "completed"
    assert sorted((t["id"], t["status"]) for t in done["tasks"]) == [
        ("a", "passed"),
        ("b", "passed"),
    ]


def test_json_output_ends_with_the_team_tasks(repo: Path, env: dict[str, str]) -> None:
    def producer(req: Req) -> dict[str, Any]:
        if req.step == 0:
            return call("write", {"path": "x.txt", "content": "x\n"})
        return say("done")

    model = TeamModel(
        planner=planner_giving(plan(task("x", "write x.txt", [("test -f x.txt", 0)]))),
        producer=producer,
        verifier=verifier_running("cat x.txt"),
    )
    with ScriptedServer([model] * 20) as server:
        run = mcode(
            *exec_args(server, "--team", "--permission-mode", "full-auto"),
            "--output-format",
            "json",
            "make x",
            cwd=repo,
            env=env,
        )
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["team"]["tasks"] == [{"id": "x", "status": "passed", "rounds": 1}]


def test_a_team_needs_a_clean_git_branch_and_says_so(tmp_path: Path, env: dict[str, str]) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with ScriptedServer([]) as server:
        run = mcode(*exec_args(server, *TEAM, "go"), cwd=plain, env=env)
        assert run.code == 2
        assert "not in a git repository" in run.stderr and "git init" in run.stderr
        repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
        (repo / "a.txt").write_text("changed\n")
        run = mcode(*exec_args(server, *TEAM, "go"), cwd=repo, env=env)
        assert run.code == 2
        assert "uncommitted changes (a.txt)" in run.stderr and "git stash" in run.stderr
        assert server.requests == []  # refused before any model call
    assert (repo / "a.txt").read_text() == "changed\n"


def test_text_output_shows_the_team_step_by_step(repo: Path, env: dict[str, str]) -> None:
    def producer(req: Req) -> dict[str, Any]:
        if req.step == 0:
            return call("write", {"path": "x.txt", "content": "x\n"})
        return say("done")

    model = TeamModel(
        planner=planner_giving(plan(task("x", "write x.txt", [("test -f x.txt", 0)]))),
        producer=producer,
        verifier=verifier_running("cat x.txt"),
    )
    with ScriptedServer([model] * 20) as server:
        run = mcode(
            *exec_args(server, "--team", "--permission-mode", "full-auto"),
            "make x",
            cwd=repo,
            env=env,
        )
    assert run.code == 0, run.stderr
    assert run.stdout == "x: passed (1 round(s))\n"  # the answer: each task's outcome
    for line in (
        "team: plan: 1 task(s): x",
        "team: x: round 1 (producer:x)",
        "team: x: PASS, accepted",
        "team: x: merged",
        "team: x: passed (verified and merged)",
    ):
        assert line in run.stderr.splitlines(), run.stderr
