"""``/team`` in the TUI: an agent team run as the session's work, its steps drawn as notes,
against the scripted model answering per role (tests/team_model.py) in a real git repo."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from helpers import make_repo
from textual.widgets import Label
from tui_helpers import launcher, pilot_test, screen_text, type_text, until

from mcode.tui.app import McodeApp
from mcode.tui.plan_dialog import PlanScreen
from tests.model_server import ScriptedServer
from tests.team_model import Req, TeamModel, call, plan, planner_giving, say, task, verifier_running


def _producer(req: Req) -> dict[str, Any]:
    if req.step == 0:
        return call("write", {"path": "a.txt", "content": "made by the team\n"})
    return say("wrote a.txt")


@pilot_test
async def test_slash_team_plans_produces_verifies_and_merges(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    model = TeamModel(
        planner=planner_giving(plan(task("a", "write a.txt", [("test -f a.txt", 0)]))),
        producer=_producer,
        verifier=verifier_running("cat a.txt"),
    )
    with ScriptedServer([model] * 30) as server:
        app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
        async with app.run_test(size=(100, 32)) as pilot:
            await type_text(pilot, "/team write a.txt")
            await pilot.press("enter")
            # The plan is shown and asked about before anything starts.
            await until(pilot, lambda: isinstance(app.screen, PlanScreen), timeout=60)
            question = str(app.screen.query_one(Label).render())
            assert ("producer", "a") not in model.calls
            await pilot.press("y")
            await until(pilot, lambda: "team completed" in screen_text(app), timeout=120)
            shown = screen_text(app)
    assert "work:\n  a: task a" in question and "Carry it out?" in question
    assert "team: plan: 1 task(s): a" in shown
    assert "team: plan approved (by user)" in shown
    assert "team: a: PASS, accepted" in shown and "team: a: merged" in shown
    # Merged into the user's branch, the tree left clean.
    assert (repo / "a.txt").read_text() == "made by the team\n"
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""


@pilot_test
async def test_slash_team_plan_rejected_starts_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    model = TeamModel(
        planner=planner_giving(plan(task("a", "write a.txt", [("test -f a.txt", 0)]))),
        producer=_producer,
        verifier=verifier_running("cat a.txt"),
    )
    with ScriptedServer([model] * 30) as server:
        app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
        async with app.run_test(size=(100, 32)) as pilot:
            await type_text(pilot, "/team write a.txt")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, PlanScreen), timeout=60)
            await pilot.press("n")
            await until(pilot, lambda: "the plan was rejected" in screen_text(app), timeout=60)
            shown = screen_text(app)
    assert "team: plan rejected (by user): rejected in the TUI" in shown
    assert "team error" in shown
    assert [role for role, _ in model.calls] == ["planner", "planner"]  # no producer, no verifier
    assert not (repo / "a.txt").exists()


@pilot_test
async def test_slash_team_plan_unanswered_in_time_is_rejected_and_its_dialog_closed(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    model = TeamModel(
        planner=planner_giving(plan(task("a", "write a.txt", [("test -f a.txt", 0)]))),
        producer=_producer,
        verifier=verifier_running("cat a.txt"),
    )
    with ScriptedServer([model] * 30) as server:
        given = launcher(server, repo, tmp_path / "home", mode="full-auto", approval_timeout=1)
        app = McodeApp(given)
        async with app.run_test(size=(100, 32)) as pilot:
            await type_text(pilot, "/team write a.txt")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, PlanScreen), timeout=60)
            await until(pilot, lambda: "the plan was rejected" in screen_text(app), timeout=30)
            await until(pilot, lambda: not isinstance(app.screen, PlanScreen))
            shown = screen_text(app)
    assert "team: plan rejected (by timeout): no answer came within 1 s" in shown
    assert [role for role, _ in model.calls] == ["planner", "planner"]


@pilot_test
async def test_slash_team_on_a_dirty_tree_says_why_and_starts_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    (repo / "README.md").write_text("changed, not committed\n")
    with ScriptedServer([]) as server:
        app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
        async with app.run_test(size=(100, 32)) as pilot:
            await type_text(pilot, "/team write a.txt")
            await pilot.press("enter")
            await until(pilot, lambda: "uncommitted changes" in screen_text(app))
        assert server.requests == []
