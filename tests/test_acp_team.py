"""mcode acp's ``/team``: an agent team in an ACP session, with real git, a real ``mcode acp``
process and the scripted model answering per role (tests/team_model.py): the plan and each
task's status streamed as ``plan`` updates, the summary as a message, the stop reason from the
team's end, and a cancel mid-run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import acp
import pytest
import team_support
from acp_client import editor
from helpers import clean_env, gone, sleeper, stored_events
from team_model import Req, TeamModel, call, plan, planner_giving, say, task, verifier_running
from team_support import git

repo, env = team_support.repo, team_support.env


FULL_AUTO = ("--permission-mode", "full-auto")


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, 150))


def writer(req: Req) -> dict[str, Any]:
    if req.after_user == 0:
        return call("write", {"path": f"{req.task_id}.txt", "content": f"made by {req.task_id}\n"})
    return say("done")


def test_team_streams_the_plan_and_each_tasks_status_and_ends_end_turn(
    model_server: Any, repo: Path, env: dict[str, str]
) -> None:
    model = TeamModel(
        planner=planner_giving(
            plan(
                task("a", "write a.txt", [("test -f a.txt", 0)], title="write a"),
                task("b", "write b.txt", [("test -f b.txt", 0)], depends_on=("a",), title="b"),
            )
        ),
        producer=writer,
        verifier=verifier_running("cat *.txt"),
    )
    server = model_server([model] * 60)

    async def scenario() -> tuple[Any, str, Any]:
        async with editor(server, cwd=repo, env=env, extra=FULL_AUTO) as ed:
            sid = await ed.new(repo)
            reply = await ed.prompt(sid, "/team make a, then b")
            return ed, sid, reply

    ed, sid, reply = run(scenario())
    assert reply.stop_reason == "end_turn"
    assert (repo / "a.txt").read_text() == "made by a\n"
    assert (repo / "b.txt").read_text() == "made by b\n"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    plans = [[(e.content, e.status) for e in u.entries] for u in ed.of(sid, "plan")]
    # First the plan as the planner gave it, every task pending.
    assert plans[0] == [("a: write a", "pending"), ("b: b", "pending")]
    # Then each task's status as it changed: a runs, is judged, merged, completed; then b.
    a_states = [p[0] for p in plans]
    assert ("a: write a — round 1", "in_progress") in a_states
    assert ("a: write a — PASS, accepted", "in_progress") in a_states
    assert ("a: write a — passed: verified and merged", "completed") in a_states
    first_b_running = next(i for i, p in enumerate(plans) if p[1][1] == "in_progress")
    first_a_done = next(i for i, p in enumerate(plans) if p[0][1] == "completed")
    assert first_a_done < first_b_running  # b depends on a
    assert plans[-1] == [
        ("a: write a — passed: verified and merged", "completed"),
        ("b: b — passed: verified and merged", "completed"),
    ]
    # The summary as the agent's message.
    text = ed.text(sid)
    assert text.startswith("Team run completed.")
    assert "- a: passed (1 round(s))" in text and "- b: passed (1 round(s))" in text
    # The members' tool calls are listed, named after the member, without a diff of the
    # user's files.
    writes = [u for u in ed.of(sid, "tool_call") if u.kind == "edit"]
    assert sorted(u.title for u in writes) == [
        "producer:a: Write a.txt",
        "producer:b: Write b.txt",
    ]
    assert all(not u.content and not u.locations for u in writes)


def test_cancel_during_a_team_ends_cancelled_and_leaves_the_tree_clean(
    model_server: Any, repo: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = clean_env(home)
    pid = tmp_path / "sleep.pid"

    def producer(req: Req) -> dict[str, Any]:
        return call("bash", {"command": sleeper(pid)})

    model = TeamModel(
        planner=planner_giving(plan(task("a", "x"), task("b", "y", depends_on=("a",)))),
        producer=producer,
        verifier=verifier_running("true"),
    )
    server = model_server([model] * 20)

    async def scenario() -> tuple[Any, str, Any]:
        async with editor(server, cwd=repo, env=env, extra=FULL_AUTO) as ed:
            sid = await ed.new(repo)
            prompt = asyncio.ensure_future(ed.prompt(sid, "/team do a then b"))
            for _ in range(1500):
                if pid.exists():
                    break
                await asyncio.sleep(0.02)
            assert pid.exists(), "producer a's command never started"
            await ed.conn.cancel(session_id=sid)
            reply = await asyncio.wait_for(prompt, 30)
            return ed, sid, reply

    ed, sid, reply = run(scenario())
    assert reply.stop_reason == "cancelled"
    assert gone(pid)
    assert ("producer", "b") not in model.calls
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert git(repo, "worktree", "list").count("\n") == 1
    assert "Team run cancelled." in ed.text(sid)
    done = [e["data"] for e in stored_events(home, sid) if e["type"] == "team.finished"][-1]
    assert {t["id"]: t["status"] for t in done["tasks"]} == {"a": "cancelled", "b": "cancelled"}


def test_team_without_a_clean_branch_is_refused_with_the_reason(
    model_server: Any, repo: Path, env: dict[str, str]
) -> None:
    (repo / "README.md").write_text("changed, not committed\n")
    server = model_server([])

    async def scenario() -> acp.RequestError:
        async with editor(server, cwd=repo, env=env, extra=FULL_AUTO) as ed:
            sid = await ed.new(repo)
            with pytest.raises(acp.RequestError) as info:
                await ed.prompt(sid, "/team anything")
            return info.value

    error = run(scenario())
    assert "uncommitted changes (README.md)" in str(error.data)
    assert server.requests == []
