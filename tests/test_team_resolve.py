"""A merge conflict meets the resolver: two tasks change the same line of the same file; the
second merge conflicts, a resolver gets the conflict in its own worktree, and mcode merges its
result only when no marker is left and the acceptance checks pass there."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcode.team.git import Git
from mcode.team.resolve import markers_left, settle
from tests import team_support
from tests.helpers import exec_args, make_repo, mcode
from tests.model_server import ScriptedServer
from tests.team_model import Req, TeamModel, call, plan, planner_giving, say, task, verifier_running
from tests.team_support import TEAM, git, of

repo, env = team_support.repo, team_support.env


BOTH = "by one\nby two\n"


def same_line(req: Req) -> dict[str, Any]:
    """A producer that writes ``by <task id>`` over line 1 of same.txt: the two tasks conflict."""
    if req.after_user == 0:
        return call("write", {"path": "same.txt", "content": f"by {req.task_id}\n"})
    return say("done")


def two_tasks() -> dict[str, Any]:
    # Each task's check wants its own line: the resolution must keep both to pass.
    return plan(
        task("one", "write same.txt", checks=[("grep -qx 'by one' same.txt", 0)]),
        task("two", "write it too", checks=[("grep -qx 'by two' same.txt", 0)]),
    )


def resolver_writing(content: str | None) -> Any:
    """A resolver that reads same.txt and, when it holds the conflict's markers, writes
    ``content`` over it (None: writes nothing, the markers stay)."""

    def resolver(req: Req) -> dict[str, Any]:
        if req.step == 0:
            assert "same.txt" in req.user_texts()[0]  # it is told which file conflicts
            return call("read", {"path": "same.txt"})
        if req.step == 1 and content is not None and "<<<<<<<" in (req.last_tool or ""):
            return call("write", {"path": "same.txt", "content": content})
        return say("resolved")

    return resolver


def run_team(repo: Path, env: dict[str, str], resolver: Any) -> tuple[Any, TeamModel]:
    model = TeamModel(
        planner=planner_giving(two_tasks()),
        producer=same_line,
        verifier=verifier_running("cat same.txt"),
        resolver=resolver,
    )
    with ScriptedServer([model] * 60) as server:
        run = mcode(*exec_args(server, *TEAM), "write same.txt", cwd=repo, env=env)
    return run, model


def test_a_resolved_conflict_that_passes_the_checks_is_merged(
    repo: Path, env: dict[str, str]
) -> None:
    run, model = run_team(repo, env, resolver_writing(BOTH))
    events = run.events()
    assert run.code == 0, run.stderr
    merges = [e["data"] for e in of(events, "team.merge")]
    assert [m["ok"] for m in merges] == [True, False, True]
    loser = merges[1]["task_id"]
    assert merges[1]["conflicts"] == ["same.txt"]
    (started,) = [e["data"] for e in of(events, "team.resolve.started")]
    assert started["task_id"] == loser and started["conflicts"] == ["same.txt"]
    assert started["agent"] == f"resolver:{loser}"
    (finished,) = [e["data"] for e in of(events, "team.resolve.finished")]
    assert finished["outcome"] == "resolved" and finished["reason"] == ""
    # Both tasks' checks ran on the resolution and passed.
    assert sorted(c["command"] for c in finished["checks"]) == [
        "grep -qx 'by one' same.txt",
        "grep -qx 'by two' same.txt",
    ]
    assert all(c["passed"] for c in finished["checks"])
    assert ("resolver", loser) in model.calls
    # Its own events carry its agent id: the read of the conflict, the write of the resolution.
    tools = [
        e["data"]["name"] for e in of(events, "tool.finished") if e.get("agent") == started["agent"]
    ]
    assert tools == ["read", "write"]
    # The user's branch holds the resolved text, committed, nothing left in progress.
    assert (repo / "same.txt").read_text() == BOTH
    assert git(repo, "show", "HEAD:same.txt") == BOTH
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    # The resolver's branch and worktree are gone, and so is the merged task's.
    assert git(repo, "branch", "--list", "mcode/*") == ""
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    statuses = {t["id"]: t["status"] for t in of(events, "team.finished")[-1]["data"]["tasks"]}
    assert statuses == {"one": "passed", "two": "passed"}
    assert "merge conflict resolved" in of(events, "team.task.finished")[-1]["data"]["reason"]


@pytest.mark.parametrize(
    ("content", "why"),
    [(None, "conflict markers are left in same.txt"), ("by nobody\n", "acceptance check")],
    ids=["markers", "checks"],
)
def test_a_resolution_left_unresolved_or_failing_its_checks_is_not_merged(
    repo: Path, env: dict[str, str], content: str | None, why: str
) -> None:
    run, _ = run_team(repo, env, resolver_writing(content))
    events = run.events()
    assert run.code == 1, run.stderr
    merges = [e["data"] for e in of(events, "team.merge")]
    assert [m["ok"] for m in merges] == [True, False]
    winner, loser = merges[0]["task_id"], merges[1]["task_id"]
    (finished,) = [e["data"] for e in of(events, "team.resolve.finished")]
    assert finished["outcome"] == "failed" and why in finished["reason"]
    # The user's branch is as the first merge left it: its text, its commit, a clean tree.
    assert git(repo, "rev-parse", "HEAD").strip() == merges[0]["commit"]
    assert (repo / "same.txt").read_text() == f"by {winner}\n"
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    # The task's branch is intact, its own work only; the resolver's branch is gone.
    branch = merges[1]["branch"]
    assert git(repo, "show", f"{branch}:same.txt") == f"by {loser}\n"
    assert git(repo, "rev-list", "--merges", "--count", branch).strip() == "0"
    assert git(repo, "branch", "--list", "mcode/resolve/*") == ""
    statuses = {t["id"]: t["status"] for t in of(events, "team.finished")[-1]["data"]["tasks"]}
    assert statuses == {winner: "passed", loser: "failed"}
    assert "resolver" in of(events, "team.task.finished")[-1]["data"]["reason"]


def test_markers_left_names_only_files_with_a_conflicts_markers(tmp_path: Path) -> None:
    (tmp_path / "open.txt").write_text("a\n<<<<<<< HEAD\nx\n=======\ny\n>>>>>>> other\n")
    (tmp_path / "heading.rst").write_text("Title\n=======\n")  # a reST heading, not a conflict
    (tmp_path / "clean.txt").write_text("x\ny\n")
    names = ("open.txt", "heading.rst", "clean.txt", "deleted.txt")
    assert markers_left(tmp_path, names) == ["open.txt"]


def _conflicted(tmp_path: Path) -> tuple[Path, str]:
    """A repository whose branch ``task`` and ``master`` change line 1 of same.txt."""
    repo = make_repo(tmp_path / "repo", {"same.txt": "base\n"})
    git(repo, "switch", "-q", "-c", "task")
    (repo / "same.txt").write_text("by task\n")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qam", "task")
    git(repo, "switch", "-q", "master")
    (repo / "same.txt").write_text("by master\n")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qam", "master")
    return repo, git(repo, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize(
    "undo", [None, "git merge --abort", "git merge --abort && git switch -q -c elsewhere"]
)
def test_settle_merges_only_a_resolution_that_holds_the_target(
    tmp_path: Path, undo: str | None
) -> None:
    repo, target = _conflicted(tmp_path)
    wt = tmp_path / "resolve"

    async def main() -> str:
        g = await Git.open(repo)
        assert await g.start_resolution(wt, "mcode/resolve/x/task", "task", target)
        assert await g.unmerged(wt) == ["same.txt"]
        assert "<<<<<<<" in (wt / "same.txt").read_text()  # the conflict is in the file
        (wt / "same.txt").write_text("by task and master\n")
        if undo is not None:  # what a resolver's bash could do behind mcode's back
            subprocess.run(undo, shell=True, cwd=wt, check=True, capture_output=True)
        why, _ = await settle(
            g, wt, "mcode/resolve/x/task", target, ("same.txt",), (), {}, None, "m"
        )
        return why

    why = asyncio.run(main())
    if undo is None:
        assert why == ""
        parents = git(wt, "rev-list", "--parents", "-n1", "HEAD").split()
        assert parents[2:] == [target]  # a merge commit: the task's side, then the target
        assert git(wt, "show", "HEAD:same.txt") == "by task and master\n"
    else:
        assert why, "a resolution without the target merged must not pass"
    assert git(repo, "rev-parse", "HEAD").strip() == target  # the user's branch untouched


def test_resolve_attempts_0_in_the_config_reports_the_conflict_without_a_resolver(
    repo: Path, env: dict[str, str]
) -> None:
    config = Path(env["XDG_CONFIG_HOME"]) / "mcode" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[team]\nresolve_attempts = 0\n")
    run, model = run_team(repo, env, resolver_writing(BOTH))
    events = run.events()
    assert run.code == 1, run.stderr
    assert [m["data"]["ok"] for m in of(events, "team.merge")] == [True, False]
    assert of(events, "team.resolve.started") == []
    assert not any(role == "resolver" for role, _ in model.calls)
    loser = of(events, "team.merge")[1]["data"]["task_id"]
    statuses = {t["id"]: t["status"] for t in of(events, "team.finished")[-1]["data"]["tasks"]}
    assert statuses[loser] == "failed"
