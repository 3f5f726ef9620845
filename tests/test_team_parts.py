"""The team's parts, in-process: a producer's own workspace (Conversation.child), the
confinement check, plan validation (also through the planner's turn), the rate limiter,
role files (mcode/roles.py) and a role's model and instructions reaching its requests."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from mcode.config import load_settings
from mcode.roles import RoleError, load_role, load_roles, role_dirs
from mcode.runtime.build import open_session
from mcode.store import Store
from mcode.team.confine import confinement
from mcode.team.gate import RateLimiter
from mcode.team.git import task_place
from mcode.team.plan import PlanError, parse_plan
from mcode.team.state import team_record
from mcode.tools.workspace import Workspace
from tests.helpers import clean_env, exec_args, make_repo, mcode, trust
from tests.model_server import ScriptedServer
from tests.team_model import Req, TeamModel, call, plan, planner_giving, say, task, verifier_running

TEAM = ("--team", "--permission-mode", "full-auto", "--output-format", "stream-json")


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


def _session(server: ScriptedServer, repo: Path, home: Path, **flags: Any) -> Any:
    settings = load_settings(
        repo,
        flags={
            "provider": "openai",
            "base_url": server.base_url,
            "model": "m",
            "permission_mode": "full-auto",
            **flags,
        },
        env={"XDG_CONFIG_HOME": str(home / "cfg"), "HOME": str(home)},
    )
    return open_session(settings, Store(home / "sessions.db"), interactive=False)


def test_a_child_with_a_workspace_works_there_with_its_own_tool_context(
    repo: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "worktree"
    elsewhere.mkdir()
    steps = [
        {"tool_calls": [{"id": "1", "name": "read", "arguments": {"path": "a.txt"}}]},
        {
            "tool_calls": [
                {"id": "2", "name": "write", "arguments": {"path": "a.txt", "content": "x\n"}}
            ]
        },
        {"tool_calls": [{"id": "3", "name": "bash", "arguments": {"command": "pwd"}}]},
        {"text": "done"},
    ]
    (elsewhere / "a.txt").write_text("other\n")
    with ScriptedServer(steps) as server:
        session = _session(server, repo, tmp_path / "home")
        main = session.main
        child = main.child("p", system_prompt="producer", workspace=Workspace(elsewhere))
        session.add(child)
        outcome = asyncio.run(session.submit("go", agent="p"))
        pwd = server.bodies[-1]["messages"][-1]["content"]
    assert outcome.reason == "completed"
    assert (elsewhere / "a.txt").read_text() == "x\n"
    assert (repo / "a.txt").read_text() == "alpha\n"  # the session's tree is untouched
    assert pwd.strip() == str(elsewhere.resolve())
    assert child.tool_context is not main.tool_context
    assert list(child.tool_context.file_stamps) == [str((elsewhere / "a.txt").resolve())]
    assert not main.tool_context.file_stamps
    assert child.permissions.workspace is child.tool_context.workspace
    assert main.permissions.workspace is main.tool_context.workspace
    assert main.tool_context.workspace.root == repo.resolve()
    # Without a workspace (the task tool's sub-agent) the child shares its parent's.
    shared = main.child("t", system_prompt="sub")
    assert shared.tool_context is main.tool_context and shared.permissions is main.permissions


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda wt, repo: Workspace(wt), ""),
        (lambda wt, repo: Workspace(wt, allow_outside=True), "allows paths outside"),
        (lambda wt, repo: Workspace(wt, extra_roots=[repo]), "reaches the user's tree"),
        (lambda wt, repo: Workspace(wt, extra_roots=[repo.parent]), "reaches the user's tree"),
        (lambda wt, repo: Workspace(repo), "not the worktree"),
    ],
    ids=["confined", "allow-outside", "extra-root-repo", "extra-root-above", "rooted-elsewhere"],
)
def test_confinement_refuses_every_way_out_of_the_worktree(
    repo: Path, tmp_path: Path, make: Any, problem: str
) -> None:
    wt = tmp_path / "wt"
    wt.mkdir()
    with ScriptedServer([]) as server:
        main = _session(server, repo, tmp_path / "home").main
        child = main.child("p", system_prompt="x", workspace=make(wt, repo))
    found = confinement(child, wt, repo)
    if problem:
        assert problem in found
    else:
        assert found == ""


def test_a_worktree_that_is_a_link_to_the_users_tree_is_refused(repo: Path, tmp_path: Path) -> None:
    link = tmp_path / "wt-link"
    link.symlink_to(repo)
    with ScriptedServer([]) as server:
        main = _session(server, repo, tmp_path / "home").main
        child = main.child("p", system_prompt="x", workspace=Workspace(link))
    assert "is reachable from the worktree's tools" in confinement(child, link, repo)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"stages": []}, "non-empty list"),
        (plan({"id": "a", "title": "t", "instructions": "i", "depends_on": []}), "lacks checks"),
        (plan(task("a", "i", depends_on=("zz",))), "not in the plan"),
        (plan(task("a", "i"), task("a", "j")), "used twice"),
        (plan(task("a", "i", depends_on=("b",)), task("b", "j", depends_on=("a",))), "circle"),
        (
            plan({**task("a", "i"), "checks": [{"command": "true", "expect": {"code": 0}}]}),
            "expect must be an object of exit_code",
        ),
        (plan(task("bad id!", "i")), "use 1-40 letters"),
    ],
)
def test_a_malformed_plan_names_its_problem_and_shows_the_schema(
    value: dict[str, Any], problem: str
) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(value)
    assert problem in caught.value.message
    assert '"stages"' in caught.value.hint  # the schema, for the planner's next try


def test_the_planner_is_told_what_was_wrong_and_asked_again(repo: Path, tmp_path: Path) -> None:
    bad = plan({"id": "a", "title": "t", "instructions": "write a", "depends_on": []})
    good = plan(task("a", "write a2.txt", [("test -f a2.txt", 0)]))

    def planner(req: Req) -> dict[str, Any]:
        if req.step == 0:
            return call("plan", bad)
        if req.step == 1:
            assert "the plan was not accepted" in (req.last_tool or "")
            return call("plan", good)
        return say("planned")

    def producer(req: Req) -> dict[str, Any]:
        if req.after_user == 0:
            return call("write", {"path": "a2.txt", "content": "a\n"})
        return say("done")

    model = TeamModel(planner=planner, producer=producer, verifier=verifier_running("ls"))
    env = clean_env(tmp_path / "home")
    with ScriptedServer([model] * 20) as server:
        run = mcode(*exec_args(server, *TEAM, "write a"), cwd=repo, env=env)
    events = run.events()
    assert run.code == 0, run.stderr
    plans = [e for e in of(events, "tool.finished") if e["data"]["name"] == "plan"]
    assert [p["data"]["ok"] for p in plans] == [False, True]
    assert "lacks checks" in plans[0]["data"]["message"]["parts"][0]["text"]
    (shown,) = of(events, "team.plan")  # only the valid plan is the plan
    assert shown["data"]["stages"][0]["tasks"][0]["id"] == "a"


def test_a_planner_that_never_gives_a_plan_ends_the_run_no_plan(repo: Path, tmp_path: Path) -> None:
    model = TeamModel(
        planner=lambda req: say("I would rather not"),
        producer=lambda req: say("?"),
        verifier=lambda req: say("?"),
    )
    env = clean_env(tmp_path / "home")
    with ScriptedServer([model] * 20) as server:
        run = mcode(*exec_args(server, *TEAM, "write a"), cwd=repo, env=env)
    assert run.code == 1
    assert len(model.calls) == 3  # asked three times, then given up on
    assert of(run.events(), "team.finished")[-1]["data"] == {"tasks": [], "reason": "no_plan"}


def test_the_rate_limiter_never_lets_more_than_its_rate_start_in_a_window() -> None:
    limiter = RateLimiter(3, window=0.3)
    starts: list[float] = []

    async def caller() -> None:
        for _ in range(3):
            await limiter.acquire()
            starts.append(time.monotonic())

    async def main() -> None:
        await asyncio.gather(*(caller() for _ in range(3)))

    asyncio.run(main())
    starts.sort()
    assert len(starts) == 9
    # Any 4 consecutive starts span at least one window: never 4 in 0.3 s.
    assert all(starts[i + 3] - starts[i] >= 0.3 - 1e-3 for i in range(len(starts) - 3))


CLAUDE_AGENT = """---
name: reviewer
description: Reviews code for bugs
tools: Read, Grep, Glob, Bash
model: sonnet
---
You review code. Be thorough.
"""


def test_roles_read_claude_agent_files_as_they_are_and_the_project_wins(tmp_path: Path) -> None:
    home, config, project = tmp_path / "home", tmp_path / "cfg", tmp_path / "project"
    (home / ".claude" / "agents").mkdir(parents=True)
    (home / ".claude" / "agents" / "reviewer.md").write_text(CLAUDE_AGENT)
    (project / ".mcode" / "agents").mkdir(parents=True)
    (project / ".mcode" / "agents" / "verifier.md").write_text(
        "---\nname: verifier\ndescription: breaks things\nthinking: off\ntools:\n  - read\n"
        "  - bash\n---\nBreak it.\n"
    )
    roles = load_roles(role_dirs(project, config, home, trusted=True))
    reviewer = roles["reviewer"]
    assert reviewer.tools == ("read", "grep", "glob", "bash")
    assert reviewer.model == "sonnet" and reviewer.instructions == "You review code. Be thorough."
    assert roles["verifier"].tools == ("read", "bash") and roles["verifier"].thinking is False
    # An untrusted project's roles do not apply (a cloned repo must not instruct its agents).
    assert "verifier" not in load_roles(role_dirs(project, config, home, trusted=False))


def test_a_bad_role_file_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.md"
    bad.write_text("---\nname: x\nthis is not a key\n---\nbody\n")
    with pytest.raises(RoleError) as caught:
        load_role(bad)
    assert f"{bad}:3" in caught.value.message
    bad.write_text("---\nname: x\ntools: Read, Teleport\n---\n")
    with pytest.raises(RoleError, match="unknown tool 'Teleport'"):
        load_role(bad)


def test_a_verifier_role_brings_its_model_and_instructions(repo: Path, tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home")
    agents = Path(env["XDG_CONFIG_HOME"]) / "mcode" / "agents"
    agents.mkdir(parents=True)
    (agents / "verifier.md").write_text(
        "---\nname: verifier\ndescription: strict\nmodel: judge-model\n---\nAlso run ls -la.\n"
    )

    def producer(req: Req) -> dict[str, Any]:
        if req.after_user == 0:
            return call("write", {"path": "v.txt", "content": "v\n"})
        return say("done")

    model = TeamModel(
        planner=planner_giving(plan(task("v", "write v.txt"))),
        producer=producer,
        verifier=verifier_running("cat v.txt"),
    )
    with ScriptedServer([model] * 20) as server:
        run = mcode(*exec_args(server, *TEAM, "write v"), cwd=repo, env=env)
        bodies = server.bodies
    assert run.code == 0, run.stderr
    systems = {b["model"]: b["messages"][0]["content"] for b in bodies}
    judge = systems["judge-model"]
    assert judge.startswith("You are the VERIFIER") and "Also run ls -la." in judge
    assert systems["test-model"].startswith(("You are the PLANNER", "You are a PRODUCER"))
    producers = [b for b in bodies if b["messages"][0]["content"].startswith("You are a PRODUCER")]
    assert {b["model"] for b in producers} == {"test-model"}
    # The producer's own task comes first in its prompt; the plan after it, as context.
    first = producers[0]["messages"][1]["content"]
    assert first.startswith("Your task:\n\nTask id: v\nTitle: task v")
    assert first.index("write v.txt") < first.index("for context only")


def test_every_member_follows_the_projects_agents_md(repo: Path, tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home")
    (repo / "AGENTS.md").write_text("Use tabs, never spaces.\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "agents"],
        cwd=repo,
        check=True,
    )
    trust(repo, env)

    def producer(req: Req) -> dict[str, Any]:
        if req.after_user == 0:
            return call("write", {"path": "t.txt", "content": "t\n"})
        return say("done")

    model = TeamModel(
        planner=planner_giving(plan(task("t", "write t.txt"))),
        producer=producer,
        verifier=verifier_running("ls"),
    )
    with ScriptedServer([model] * 20) as server:
        run = mcode(*exec_args(server, *TEAM, "write t"), cwd=repo, env=env)
        systems = {b["messages"][0]["content"] for b in server.bodies}
    assert run.code == 0, run.stderr
    assert len(systems) == 3  # planner, producer, verifier
    assert all("Use tabs, never spaces." in s for s in systems)


def test_a_tasks_producer_and_resolver_places_never_meet() -> None:
    # A task may be called "resolve": its producer's place still differs from any resolver's.
    base = Path("/data/worktrees")
    for task_id in ("a", "resolve"):
        path, branch = task_place(base, "0123456789abcdef", task_id)
        assert (path, branch) == (base / "01234567" / task_id, f"mcode/team/01234567/{task_id}")
    assert task_place(base, "0123456789abcdef", "a", resolver=True) == (
        base / "01234567" / ".resolve" / "a",
        "mcode/resolve/01234567/a",
    )


def test_a_resumed_run_keeps_the_plan_in_force_not_a_re_plan_still_asked_or_rejected() -> None:
    def e(kind: str, **data: Any) -> dict[str, Any]:
        return {"type": kind, "data": data}

    one = plan(task("a", "write a.txt"))
    two = plan(task("a", "write a.txt"), task("c", "write c.txt"))
    asked = {"revision": 2, "timeout": 300.0, "steer": "also c"}
    events = [
        e("team.started", task="write a"),
        e("team.plan", revision=1, reason="initial", stages=one["stages"]),
        e("team.plan.asked", request_id="plan-1.1", revision=1, timeout=300.0, steer=None),
        e("team.plan.decided", request_id="plan-1.1", decision="approved", steer=None),
        e("team.steer", text="also c", to=["planner"], replan=True),
        e("team.plan", revision=2, reason="steer", stages=two["stages"]),
        e("team.plan.asked", request_id="plan-1.2", **asked),
    ]
    record = team_record(events)
    assert record is not None and record.plan is not None
    # Killed while the re-plan was asked: the first plan holds, the steer is re-planned.
    assert list(record.plan.tasks) == ["a"] and record.in_force == 1 and not record.plan_asked
    assert record.steers == ["also c"] and record.revision == 2
    rejected = e("team.plan.decided", request_id="plan-1.2", decision="rejected", steer="also c")
    record = team_record([*events, rejected])
    assert record is not None and record.plan is not None
    assert list(record.plan.tasks) == ["a"] and record.steers == []  # answered: not again
    approved = e("team.plan.decided", request_id="plan-1.2", decision="approved", steer="also c")
    replan = e("team.replan", revision=2, steer="also c", reopened=[])
    record = team_record([*events, approved, replan])
    assert record is not None and record.plan is not None
    assert list(record.plan.tasks) == ["a", "c"] and record.in_force == 2
