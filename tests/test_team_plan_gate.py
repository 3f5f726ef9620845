"""The plan gate of ``mcode exec --team``: with stream-json in and out, no task starts until
``team.plan.asked`` is answered by an ``approve`` line (allow, deny with a reason, or an edit
carrying a whole plan); no answer rejects. A plain run carries the plan out at once.

Real git, a real mcode process, the scripted model server answering per role
(tests/team_model.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests import team_support
from tests.helpers import exec_args, mcode
from tests.model_server import ScriptedServer
from tests.team_model import (
    Req,
    Role,
    TeamModel,
    call,
    plan,
    planner_giving,
    say,
    task,
    verifier_running,
)
from tests.team_support import TEAM, answer, live_team, of, until_agent, writer

repo, env = team_support.repo, team_support.env


def two_tasks() -> TeamModel:
    return TeamModel(
        planner=planner_giving(
            plan(
                task("a", "write a.txt", [("test -f a.txt", 0)]),
                task("b", "write b.txt", [("test -f b.txt", 0)]),
            )
        ),
        producer=writer,
        verifier=verifier_running("ls"),
    )


def a_then_c(producer: Role) -> TeamModel:
    """A planner that plans a, then a and c when a steer asks for c."""
    return TeamModel(
        planner=planner_giving(
            plan(task("a", "write a.txt")),
            plan(task("a", "write a.txt"), task("c", "write c.txt")),
        ),
        producer=producer,
        verifier=verifier_running("ls"),
    )


def producers(model: TeamModel) -> set[str | None]:
    return {task_id for role, task_id in model.calls if role == "producer"}


def test_nothing_starts_until_the_plan_is_approved(repo: Path, env: dict[str, str]) -> None:
    model = two_tasks()
    with live_team(repo, env, model, "write a and b") as (live, ran):
        asked = live.until("team.plan.asked", timeout=60)
        assert "team.task.started" not in live.types() and producers(model) == set()
        live.send(answer(asked["data"]["request_id"], "allow"))
        live.until("team.finished", timeout=90)
    code = ran.code
    events = ran.events
    assert code == 0, live.stderr
    assert asked["data"]["revision"] == 1 and asked["data"]["timeout"] == 300
    decided = of(events, "team.plan.decided")[0]["data"]
    assert decided["decision"] == "approved" and decided["by"] == "user"
    # The ask comes after the plan is shown and before any task starts.
    types = [e["type"] for e in events]
    assert types.index("team.plan") < types.index("team.plan.asked")
    assert types.index("team.plan.decided") < types.index("team.task.started")
    assert (repo / "a.txt").exists() and (repo / "b.txt").exists()
    assert producers(model) == {"a", "b"}


def test_a_rejected_plan_starts_nothing_and_says_why(repo: Path, env: dict[str, str]) -> None:
    model = two_tasks()
    with live_team(repo, env, model, "write a and b", steps=10) as (live, ran):
        asked = live.until("team.plan.asked", timeout=60)
        live.send(answer(asked["data"]["request_id"], "deny", reason="b is not wanted"))
        live.until("team.finished", timeout=30)
    code = ran.code
    events = ran.events
    assert code == 1, live.stderr
    decided = of(events, "team.plan.decided")[0]["data"]
    assert decided == {
        "request_id": asked["data"]["request_id"],
        "decision": "rejected",
        "by": "user",
        "reason": "b is not wanted",
        "steer": None,
    }
    assert of(events, "team.finished")[0]["data"]["reason"] == "rejected"
    assert of(events, "session.finished")[0]["data"]["exit_code"] == 1
    assert "the plan was rejected: b is not wanted" in live.stderr
    assert not of(events, "team.task.started") and not of(events, "team.worktree")
    assert producers(model) == set()
    assert not (repo / "a.txt").exists()


def test_an_edited_plan_is_the_one_that_runs(repo: Path, env: dict[str, str]) -> None:
    model = two_tasks()
    only_b = plan(task("b", "write b.txt", [("test -f b.txt", 0)], title="just b"))
    with live_team(repo, env, model, "write a and b") as (live, ran):
        asked = live.until("team.plan.asked", timeout=60)
        live.send(answer(asked["data"]["request_id"], "edit", plan=only_b))
        live.until("team.finished", timeout=90)
    code = ran.code
    events = ran.events
    assert code == 0, live.stderr
    assert of(events, "team.plan.decided")[0]["data"]["decision"] == "edited"
    plans = [e["data"] for e in of(events, "team.plan")]
    assert [(p["revision"], p["reason"]) for p in plans] == [(1, "initial"), (2, "edit")]
    assert plans[1]["stages"][0]["tasks"][0]["title"] == "just b"
    # Only the edited plan's task ran: the scripted server never saw a's producer.
    assert producers(model) == {"b"}
    assert [e["data"]["task_id"] for e in of(events, "team.task.started")] == ["b"]
    assert of(events, "team.finished")[0]["data"]["tasks"] == [
        {"id": "b", "status": "passed", "rounds": 1}
    ]
    assert (repo / "b.txt").exists() and not (repo / "a.txt").exists()


def test_an_invalid_edit_is_answered_with_the_schema_error_and_asked_again(
    repo: Path, env: dict[str, str]
) -> None:
    model = two_tasks()
    circle = plan(task("a", "x", depends_on=("b",)), task("b", "y", depends_on=("a",)))
    with live_team(repo, env, model, "write a and b") as (live, ran):
        first = live.until("team.plan.asked", timeout=60)["data"]["request_id"]
        live.send(answer(first, "edit", plan=circle))
        error = live.until("error", timeout=30)["data"]
        second = live.until("team.plan.asked", n=2, timeout=30)["data"]["request_id"]
        assert producers(model) == set()  # still nothing started
        live.send(answer(first, "allow"))  # the old question is gone: said, not taken
        live.until("error", n=2, timeout=30)
        live.send(answer(second, "allow"))
        live.until("team.finished", timeout=90)
    code = ran.code
    events = ran.events
    assert code == 0, live.stderr
    assert error["kind"] == "input" and error["recoverable"] is True
    assert "the dependencies go in a circle: a -> b -> a" in error["message"]
    assert '"stages"' in error["hint"]  # the schema, to correct it by
    assert second != first
    stale = of(events, "error")[1]["data"]["message"]
    assert f"no question {first!r} is waiting" in stale
    assert [e["data"]["decision"] for e in of(events, "team.plan.decided")] == ["approved"]
    assert [e["data"]["revision"] for e in of(events, "team.plan")] == [1]  # the planner's
    assert producers(model) == {"a", "b"}


def test_no_answer_in_time_rejects_the_plan(repo: Path, env: dict[str, str]) -> None:
    model = two_tasks()
    with live_team(repo, env, model, "--approval-timeout", "1", "write a and b", steps=10) as (
        live,
        ran,
    ):
        live.until("team.finished", timeout=60)
    code = ran.code
    assert code == 1, live.stderr
    decided = of(live.events, "team.plan.decided")[0]["data"]
    assert decided["decision"] == "rejected" and decided["by"] == "timeout"
    assert "no answer came within 1 s" in decided["reason"]
    assert producers(model) == set()


def test_the_input_ending_at_the_gate_rejects_the_plan(repo: Path, env: dict[str, str]) -> None:
    model = two_tasks()
    with live_team(repo, env, model, "write a and b", steps=10) as (live, ran):
        live.until("team.plan.asked", timeout=60)
    code = ran.code
    assert code == 1, live.stderr
    decided = of(live.events, "team.plan.decided")[0]["data"]
    assert decided["decision"] == "rejected" and decided["by"] == "headless"
    assert producers(model) == set()


def test_an_edit_line_must_carry_a_plan_object() -> None:
    from mcode.exec_input import BadLine, parse_line

    message = parse_line(answer("plan-1.1", "edit", plan={"stages": []}))
    assert message.plan == {"stages": []} and not message.allow
    with pytest.raises(BadLine, match='"plan" goes with "decision": "edit"'):
        parse_line(answer("plan-1.1", "edit"))
    with pytest.raises(BadLine, match="must be a JSON object"):
        parse_line(answer("plan-1.1", "edit", plan=[1]))


def test_a_plain_team_run_is_not_asked(repo: Path, env: dict[str, str]) -> None:
    model = two_tasks()
    with ScriptedServer([model] * 40) as server:
        run = mcode(*exec_args(server, *TEAM, "write a and b"), cwd=repo, env=env)
    assert run.code == 0, run.stderr
    events = run.events()
    assert not of(events, "team.plan.asked") and not of(events, "team.plan.decided")
    assert producers(model) == {"a", "b"}


def test_a_steer_at_the_gate_is_re_planned_once_the_plan_is_approved(
    repo: Path, env: dict[str, str]
) -> None:
    model = a_then_c(writer)
    with live_team(repo, env, model, "write a") as (live, ran):
        asked = live.until("team.plan.asked", timeout=60)
        live.send(json.dumps({"type": "steer", "text": "also write c.txt"}))
        assert live.until("team.steer", timeout=30)["data"]["replan"] is True
        time.sleep(1.5)  # time for a re-plan to reach the server, were it started now
        planner_calls = len(model.calls)
        live.send(answer(asked["data"]["request_id"], "allow"))
        replan = live.until("team.plan.asked", n=2, timeout=60)["data"]
        assert replan["steer"] == "also write c.txt"
        live.send(answer(replan["request_id"], "allow"))
        live.until("team.finished", timeout=90)
    code = ran.code
    events = ran.events
    assert code == 0, live.stderr
    # The planner was not asked to re-plan while the gate waited: only after the answer.
    assert planner_calls == 2
    types = [e["type"] for e in events]
    assert types.index("team.plan.decided") < types.index("team.replan")
    assert of(events, "team.replan")[0]["data"]["added"] == ["c"]
    assert (repo / "a.txt").exists() and (repo / "c.txt").exists()


def test_a_steers_re_plan_is_asked_while_the_running_task_goes_on_and_a_no_keeps_the_plan(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    go = tmp_path / "go"

    def producer(req: Req) -> dict[str, Any]:
        if req.step == 0:  # a works until the test lets it go
            wait = f"for i in $(seq 600); do [ -e {go} ] && break; sleep 0.05; done"
            return call("bash", {"command": wait})
        if req.step == 1:
            return call("write", {"path": f"{req.task_id}.txt", "content": "written\n"})
        return say("done")

    model = a_then_c(producer)
    with live_team(repo, env, model, "write a") as (live, ran):
        first = live.until("team.plan.asked", timeout=60)["data"]
        live.send(answer(first["request_id"], "allow"))
        until_agent(live, "tool.started", "producer:a")  # a's producer is at work
        live.send(json.dumps({"type": "steer", "text": "also write c.txt"}))
        asked = live.until("team.plan.asked", n=2, timeout=60)["data"]
        shown = of(live.events, "team.plan")[-1]["data"]
        # The running task goes on while the re-plan waits: a is verified and merged.
        go.touch()
        live.until("team.merge", timeout=60)
        assert "team.replan" not in live.types() and producers(model) == {"a"}
        live.send(answer(asked["request_id"], "deny", reason="not now"))
        live.until("team.finished", timeout=90)
    code = ran.code
    events = ran.events
    assert code == 0, live.stderr
    assert asked["steer"] == "also write c.txt" and first["steer"] is None
    assert asked["revision"] == shown["revision"] == 2 and shown["reason"] == "steer"
    assert [t["id"] for stage in shown["stages"] for t in stage["tasks"]] == ["a", "c"]
    decided = of(events, "team.plan.decided")[-1]["data"]
    assert decided["decision"] == "rejected" and decided["steer"] == "also write c.txt"
    assert "not now" in decided["reason"] and "stays as it was (revision 1)" in decided["reason"]
    # The old plan held: no re-plan applied, c never started, the run completed with a alone.
    assert of(events, "team.replan") == [] and producers(model) == {"a"}
    assert not (repo / "c.txt").exists() and (repo / "a.txt").exists()
    done = of(events, "team.finished")[-1]["data"]
    assert done["reason"] == "completed" and [t["id"] for t in done["tasks"]] == ["a"]


def test_a_re_plan_edited_at_the_gate_is_the_plan_that_runs(
    repo: Path, env: dict[str, str]
) -> None:
    model = a_then_c(writer)
    with live_team(repo, env, model, "write a") as (live, ran):
        first = live.until("team.plan.asked", timeout=60)["data"]
        # Steered at the gate: the re-plan comes after the answer, and is asked about.
        live.send(json.dumps({"type": "steer", "text": "also write c.txt"}))
        live.until("team.steer", timeout=30)
        live.send(answer(first["request_id"], "allow"))
        asked = live.until("team.plan.asked", n=2, timeout=60)["data"]
        edit = plan(task("a", "write a.txt"), task("d", "write d.txt instead"))
        live.send(answer(asked["request_id"], "edit", plan=edit))
        live.until("team.finished", timeout=90)
    code = ran.code
    events = ran.events
    assert code == 0, live.stderr
    assert of(events, "team.plan.decided")[-1]["data"]["decision"] == "edited"
    last = of(events, "team.plan")[-1]["data"]
    assert last["reason"] == "edit" and last["revision"] == 3
    (replan,) = [e["data"] for e in of(events, "team.replan")]
    assert replan["added"] == ["d"] and replan["revision"] == 3
    assert (repo / "d.txt").exists() and not (repo / "c.txt").exists()
