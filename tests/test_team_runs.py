"""A team run meeting the world: a merge conflict, a budget, a worktree the tools escape,
kill -9 and --resume, a requirement added mid-run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests import team_support
from tests.helpers import Live, exec_args, mcode, stored_events
from tests.model_server import ScriptedServer
from tests.team_model import Req, TeamModel, call, plan, planner_giving, say, task, verifier_running
from tests.team_support import TEAM, answer, git, of, until_agent, writer

repo, env = team_support.repo, team_support.env


def approve_plan(live: Live, n: int = 1) -> None:
    """Answer the plan gate's ``n``-th question (stream-json in and out asks before any task
    starts, and again about each steer's re-plan): carry on."""
    asked = live.until("team.plan.asked", n=n, timeout=60)["data"]
    live.send(answer(asked["request_id"], "allow"))


def test_a_merge_conflict_is_aborted_and_reported_with_the_branch_left(
    repo: Path, env: dict[str, str]
) -> None:
    def producer(req: Req) -> dict[str, Any]:
        if req.after_user == 0:  # both tasks write the same file, differently
            return call("write", {"path": "same.txt", "content": f"by {req.task_id}\n"})
        return say("done")

    model = TeamModel(
        planner=planner_giving(plan(task("one", "write same.txt"), task("two", "write it too"))),
        producer=producer,
        verifier=verifier_running("cat same.txt"),
    )
    with ScriptedServer([model] * 40) as server:
        run = mcode(*exec_args(server, *TEAM), "write same.txt", cwd=repo, env=env)
    events = run.events()
    assert run.code == 1, run.stderr
    merges = [e["data"] for e in of(events, "team.merge")]
    assert [m["ok"] for m in merges] == [True, False]
    assert merges[1]["conflicts"] == ["same.txt"]
    # The user's tree is not left half-merged: no merge in progress, nothing changed, the first
    # task's work in, the second's branch still there for the user.
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    loser = merges[1]["task_id"]
    assert (repo / "same.txt").read_text() == f"by {merges[0]['task_id']}\n"
    assert merges[1]["branch"] in git(repo, "branch", "--list", merges[1]["branch"])
    assert f"by {loser}" in git(repo, "show", f"{merges[1]['branch']}:same.txt")
    statuses = {t["id"]: t["status"] for t in of(events, "team.finished")[-1]["data"]["tasks"]}
    assert statuses == {merges[0]["task_id"]: "passed", loser: "failed"}


@pytest.mark.parametrize("where", ["flag", "config"])
def test_a_team_budget_stops_the_run_with_a_clear_event(
    repo: Path, env: dict[str, str], where: str
) -> None:
    budget: tuple[str, ...] = ("--team-budget", "turns=6")
    if where == "config":  # [team] budget in the user's config, no flag
        config = Path(env["XDG_CONFIG_HOME"]) / "mcode" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text('[team]\nbudget = "turns=6"\n')
        budget = ()

    def producer(req: Req) -> dict[str, Any]:  # never done: keeps running commands
        return call("bash", {"command": f"echo step {req.step}"})

    model = TeamModel(
        planner=planner_giving(plan(task("a", "loop"), task("b", "loop"))),
        producer=producer,
        verifier=verifier_running("true"),
    )
    with ScriptedServer([model] * 40) as server:
        run = mcode(*exec_args(server, *TEAM, *budget), "go", cwd=repo, env=env)
    events = run.events()
    assert run.code == 3, run.stderr
    (hit,) = [e["data"] for e in of(events, "team.budget")]
    assert hit == {"scope": "team", "task_id": None, "limit": "turns", "allowed": 6, "used": 6}
    assert len(model.calls) == 6  # no model call after the budget ran out
    done = of(events, "team.finished")[-1]["data"]
    assert done["reason"] == "budget"
    assert {t["status"] for t in done["tasks"]} == {"cancelled"}
    # Each running producer's turn ended cleanly at its next step, its calls all answered.
    ended = [e["data"]["reason"] for e in of(events, "turn.finished") if e.get("agent")]
    assert ended.count("max_turns") == 2


def test_a_task_budget_fails_that_task_only(repo: Path, env: dict[str, str]) -> None:
    def producer(req: Req) -> dict[str, Any]:
        if req.task_id == "slow":
            return call("bash", {"command": "echo again"})
        return writer(req)

    model = TeamModel(
        planner=planner_giving(plan(task("slow", "loop"), task("quick", "write"))),
        producer=producer,
        verifier=verifier_running("cat quick.txt"),
    )
    with ScriptedServer([model] * 40) as server:
        run = mcode(*exec_args(server, *TEAM, "--task-budget", "turns=5"), "go", cwd=repo, env=env)
    events = run.events()
    assert run.code == 1, run.stderr
    assert [e["data"]["task_id"] for e in of(events, "team.budget")] == ["slow"]
    statuses = {t["id"]: t["status"] for t in of(events, "team.finished")[-1]["data"]["tasks"]}
    assert statuses == {"slow": "failed", "quick": "passed"}
    assert model.calls.count(("producer", "slow")) == 5  # its budget's calls, not one more


def test_a_worktree_the_tools_escape_is_refused_before_anything_runs(
    repo: Path, env: dict[str, str]
) -> None:
    model = TeamModel(
        planner=planner_giving(plan(task("a", "write a.txt"))),
        producer=writer,
        verifier=verifier_running("true"),
    )
    with ScriptedServer([model] * 10) as server:
        # --add-dir of the user's own tree would let a producer's tools write there.
        run = mcode(*exec_args(server, *TEAM, "--add-dir", str(repo)), "go", cwd=repo, env=env)
    events = run.events()
    assert run.code == 1, run.stderr
    (worktree,) = [e["data"] for e in of(events, "team.worktree")]
    assert worktree["confined"] is False
    assert str(repo) in worktree["reason"]
    assert ("producer", "a") not in model.calls  # the producer never got a request
    finished = of(events, "team.task.finished")[-1]["data"]
    assert finished["status"] == "failed" and "refused" in finished["reason"]


def test_kill_9_mid_run_then_resume_finishes_without_redoing_accepted_tasks(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    def stuck(req: Req) -> dict[str, Any]:
        if req.task_id == "b":  # b hangs: the run is killed while it works
            return call("bash", {"command": "sleep 300"})
        return writer(req)

    first = TeamModel(
        planner=planner_giving(plan(task("a", "write a.txt"), task("b", "write b.txt"))),
        producer=stuck,
        verifier=verifier_running("cat a.txt"),
    )
    with ScriptedServer([first] * 40) as server:
        live = Live(exec_args(server, *TEAM, "--parallel", "1", "go"), cwd=repo, env=env)
        try:
            live.until("team.merge", timeout=60)
            until_agent(live, "tool.started", "producer:b")  # b's sleep runs
        finally:
            live.kill()  # SIGKILL
    session_id = live.events[0]["session_id"]
    assert (repo / "a.txt").exists()
    again = TeamModel(
        planner=planner_giving(plan(task("unused", "x"))),
        producer=writer,
        verifier=verifier_running("cat b.txt"),
    )
    with ScriptedServer([again] * 40) as server:
        run = mcode(
            *exec_args(server, "--permission-mode", "full-auto", "--output-format", "json"),
            "--resume",
            session_id,
            cwd=repo,
            env=env,
        )
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["team"]["tasks"] == [
        {"id": "a", "status": "passed", "rounds": 1},
        {"id": "b", "status": "passed", "rounds": 1},
    ]
    # The resumed run asked no planner and never touched a again.
    assert {role for role, _ in again.calls} == {"producer", "verifier"}
    assert {t for _, t in again.calls} == {"b"}
    assert (repo / "b.txt").read_text() == "b\n"
    assert git(repo, "log", "--oneline", "--merges").count("mcode team: a:") == 1
    stored = stored_events(Path(env["HOME"]), session_id)
    assert [e["data"]["resumed"] for e in of(stored, "team.started")] == [False, True]


def test_a_requirement_added_mid_run_changes_the_plan_and_the_result(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    go = tmp_path / "go"

    def producer(req: Req) -> dict[str, Any]:
        if req.task_id == "a" and req.step == 0:  # a works until the test lets it go
            wait = f"for i in $(seq 400); do [ -e {go} ] && break; sleep 0.05; done"
            return call("bash", {"command": wait})
        if req.task_id == "a" and req.step == 1:
            return call("write", {"path": "a.txt", "content": "a\n"})
        if req.task_id == "c" and req.step == 0:
            return call("write", {"path": "c.txt", "content": "c\n"})
        return say("done")

    model = TeamModel(
        planner=planner_giving(
            plan(task("a", "write a.txt")),
            plan(task("a", "write a.txt"), task("c", "write c.txt", [("test -f c.txt", 0)])),
        ),
        producer=producer,
        verifier=verifier_running("ls"),
    )
    with ScriptedServer([model] * 60) as server:
        live = Live(
            exec_args(server, *TEAM, "--input-format", "stream-json", "write a"), cwd=repo, env=env
        )
        try:
            approve_plan(live)
            until_agent(live, "tool.started", "producer:a")  # a's producer is at work
            live.send(json.dumps({"type": "steer", "text": "also write c.txt"}))
            receipt = live.until("team.steer", timeout=30)["data"]
            approve_plan(live, n=2)  # the re-plan is asked about as the first plan was
            live.until("team.replan", timeout=30)
            go.touch()
            live.close()
            code = live.wait(timeout=90)
        finally:
            live.kill()
    events = live.events
    assert code == 0, live.stderr
    assert receipt["to"] == ["planner", "producer:a"] and receipt["replan"] is True
    replan = of(events, "team.replan")[0]["data"]
    assert replan["added"] == ["c"] and replan["steer"] == "also write c.txt"
    assert [e["data"]["revision"] for e in of(events, "team.plan")] == [1, 2]
    # The running producer got it at its next step, in its own conversation.
    delivered = [e for e in of(events, "steer.delivered") if e.get("agent") == "producer:a"]
    assert delivered and delivered[0]["data"]["text"] == "also write c.txt"
    assert (repo / "a.txt").exists() and (repo / "c.txt").read_text() == "c\n"
    done = of(events, "team.finished")[-1]["data"]["tasks"]
    assert {t["id"]: t["status"] for t in done} == {"a": "passed", "c": "passed"}


def test_a_steer_that_invalidates_an_accepted_task_reopens_it(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    go = tmp_path / "go"

    def producer(req: Req) -> dict[str, Any]:
        if req.task_id == "b" and req.step == 0:
            wait = f"for i in $(seq 400); do [ -e {go} ] && break; sleep 0.05; done"
            return call("bash", {"command": wait})
        if req.task_id == "b" and req.step == 1:
            return call("write", {"path": "b.txt", "content": "b\n"})
        again = "accepted before" in req.user_texts()[0]
        if req.task_id == "a" and not again and req.step == 0:
            return call("write", {"path": "a.txt", "content": "a\n"})
        if req.task_id == "a" and again and req.step == 0:  # the reopened task's producer
            return call("read", {"path": "a.txt"})
        if req.task_id == "a" and again and req.step == 1:
            return call("write", {"path": "a.txt", "content": "A2\n"})
        return say("done")

    a, b = task("a", "write a.txt"), task("b", "write b.txt")
    model = TeamModel(
        planner=planner_giving(plan(a, b), plan(a, b, reopen=("a",))),
        producer=producer,
        verifier=verifier_running("ls"),
    )
    with ScriptedServer([model] * 60) as server:
        live = Live(
            exec_args(server, *TEAM, "--input-format", "stream-json", "write a and b"),
            cwd=repo,
            env=env,
        )
        try:
            approve_plan(live)
            live.until("team.merge", timeout=60)  # a is accepted and merged; b still works
            live.send(json.dumps({"type": "steer", "text": "a.txt must say A2"}))
            approve_plan(live, n=2)
            live.until("team.replan", timeout=30)
            live.until("team.merge", n=2, timeout=60)  # a again
            go.touch()
            live.close()
            code = live.wait(timeout=90)
        finally:
            live.kill()
    events = live.events
    assert code == 0, live.stderr
    assert of(events, "team.replan")[0]["data"]["reopened"] == ["a"]
    assert of(events, "team.steer")[0]["data"]["to"] == ["planner", "producer:b"]
    merged = [e["data"]["task_id"] for e in of(events, "team.merge") if e["data"]["ok"]]
    assert merged == ["a", "a", "b"]
    assert (repo / "a.txt").read_text() == "A2\n" and (repo / "b.txt").exists()
    started = [e["data"]["agent"] for e in of(events, "team.task.started")]
    assert "producer:a.2" in started  # a new producer, told what changed
    done = of(events, "team.finished")[-1]["data"]["tasks"]
    assert {t["id"]: (t["status"], t["rounds"]) for t in done} == {
        "a": ("passed", 2),
        "b": ("passed", 1),
    }


def test_a_cancel_line_stops_the_team_and_leaves_the_tree_clean(
    repo: Path, env: dict[str, str]
) -> None:
    def producer(req: Req) -> dict[str, Any]:
        return call("bash", {"command": "sleep 300"})

    model = TeamModel(
        planner=planner_giving(plan(task("a", "x"), task("b", "y", depends_on=("a",)))),
        producer=producer,
        verifier=verifier_running("true"),
    )
    with ScriptedServer([model] * 20) as server:
        live = Live(
            exec_args(server, *TEAM, "--input-format", "stream-json", "go"), cwd=repo, env=env
        )
        try:
            approve_plan(live)
            until_agent(live, "tool.started", "producer:a")
            live.send(json.dumps({"type": "cancel"}))
            live.until("team.finished", timeout=30)
            live.close()  # stdin open, a run waits for the next message (as after any cancel)
            code = live.wait(timeout=60)
        finally:
            live.kill()
    assert code == 130, live.stderr
    done = of(live.events, "team.finished")[-1]["data"]
    assert done["reason"] == "cancelled"
    assert {t["id"]: t["status"] for t in done["tasks"]} == {"a": "cancelled", "b": "cancelled"}
    assert [e["data"]["reason"] for e in of(live.events, "turn.finished")][-1] == "cancelled"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert ("producer", "b") not in model.calls


def test_a_re_plan_the_killed_run_owed_is_made_on_resume(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    go = tmp_path / "go"

    def producer(req: Req) -> dict[str, Any]:
        if req.task_id == "a" and req.step == 0:
            wait = f"for i in $(seq 600); do [ -e {go} ] && break; sleep 0.05; done"
            return call("bash", {"command": wait})
        return writer(req) if req.step == 0 or req.after_user else say("done")

    def slow_planner(req: Req) -> dict[str, Any]:
        if req.after_user == 0 and any("added a requirement" in t for t in req.user_texts()):
            return {**say("thinking"), "delay": 60}  # the run is killed while it re-plans
        return planner_giving(plan(task("a", "write a.txt")))(req)

    first = TeamModel(planner=slow_planner, producer=producer, verifier=verifier_running("ls"))
    with ScriptedServer([first] * 30) as server:
        live = Live(
            exec_args(server, *TEAM, "--input-format", "stream-json", "write a"), cwd=repo, env=env
        )
        try:
            approve_plan(live)
            until_agent(live, "tool.started", "producer:a")
            live.send(json.dumps({"type": "steer", "text": "also write c.txt"}))
            live.until("team.steer", timeout=30)
            deadline = time.monotonic() + 30
            while ("planner", None) not in first.calls[2:] and time.monotonic() < deadline:
                time.sleep(0.05)  # the re-plan request is at the server
        finally:
            live.kill()
    go.touch()
    session_id = live.events[0]["session_id"]
    again = TeamModel(
        planner=planner_giving(plan(task("a", "write a.txt"), task("c", "write c.txt"))),
        producer=writer,
        verifier=verifier_running("ls"),
    )
    with ScriptedServer([again] * 40) as server:
        run = mcode(
            *exec_args(server, *TEAM),
            "--resume",
            session_id,
            cwd=repo,
            env=env,
        )
    events = run.events()
    assert run.code == 0, run.stderr
    (replan,) = [e["data"] for e in of(events, "team.replan")]
    assert replan["steer"] == "also write c.txt" and replan["added"] == ["c"]
    # The resumed planner is a new conversation: its re-plan request carries the request.
    asked = [b for b in server.bodies if b["messages"][0]["content"].startswith("You are the PL")]
    assert "write a" in asked[0]["messages"][1]["content"]
    assert (repo / "c.txt").exists() and (repo / "a.txt").exists()


def test_a_prompt_given_with_resume_is_a_new_requirement_for_the_team(
    repo: Path, env: dict[str, str]
) -> None:
    def stuck(req: Req) -> dict[str, Any]:
        return call("bash", {"command": "sleep 300"})

    first = TeamModel(
        planner=planner_giving(plan(task("a", "write a.txt"))),
        producer=stuck,
        verifier=verifier_running("ls"),
    )
    with ScriptedServer([first] * 10) as server:
        live = Live(exec_args(server, *TEAM, "write a"), cwd=repo, env=env)
        try:
            until_agent(live, "tool.started", "producer:a")
        finally:
            live.kill()
    again = TeamModel(
        planner=planner_giving(plan(task("a", "write a.txt"), task("d", "write d.txt"))),
        producer=writer,
        verifier=verifier_running("ls"),
    )
    with ScriptedServer([again] * 40) as server:
        run = mcode(
            *exec_args(server, *TEAM),
            "--resume",
            live.events[0]["session_id"],
            "also write d.txt",
            cwd=repo,
            env=env,
        )
    events = run.events()
    assert run.code == 0, run.stderr
    assert of(events, "team.steer")[0]["data"]["text"] == "also write d.txt"
    assert of(events, "team.replan")[0]["data"]["added"] == ["d"]
    assert (repo / "a.txt").exists() and (repo / "d.txt").exists()


@pytest.mark.parametrize(("limit", "spec"), [("tokens", "tokens=40"), ("seconds", "seconds=3")])
def test_token_and_wall_time_budgets_stop_the_run_too(
    repo: Path, env: dict[str, str], limit: str, spec: str
) -> None:
    def producer(req: Req) -> dict[str, Any]:  # never done; each call 15 tokens, 0.4 s
        return {**call("bash", {"command": "echo again"}), "delay": 0.4}

    model = TeamModel(
        planner=planner_giving(plan(task("a", "loop"))),
        producer=producer,
        verifier=verifier_running("true"),
    )
    with ScriptedServer([model] * 60) as server:
        run = mcode(*exec_args(server, *TEAM, "--team-budget", spec), "go", cwd=repo, env=env)
    events = run.events()
    assert run.code == 3, run.stderr
    (hit,) = [e["data"] for e in of(events, "team.budget")]
    assert (hit["scope"], hit["limit"]) == ("team", limit)
    assert hit["used"] >= hit["allowed"]
    assert len(model.calls) < 15  # stopped near the limit, not at the turn's own cap (50)
    if limit == "tokens":
        assert hit["used"] == 45 and len(model.calls) == 3  # 15 a call: the 4th never went
    assert of(events, "team.finished")[-1]["data"]["reason"] == "budget"
