"""``/team``'s plan dialog, its Edit: the plan as JSON in an editor, submitted to the plan
gate as stream-json's edit is (the team checks it; an invalid one is said in the dialog, the
text kept). Against the scripted model answering per role in a real git repo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import make_repo
from textual.widgets import TextArea
from textual.widgets.text_area import Selection
from tui_helpers import launcher, pilot_test, screen_text, type_text, until

from mcode.tui.app import McodeApp
from mcode.tui.plan_dialog import PlanScreen
from tests.model_server import ScriptedServer
from tests.team_model import Req, TeamModel, call, plan, planner_giving, say, task, verifier_running


class Producer:
    """Writes a.txt; keeps the first user message (the task as the producer got it)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, req: Req) -> dict[str, Any]:
        if req.step == 0:
            self.asked.append(req.user_texts()[0])
            return call("write", {"path": "a.txt", "content": "made by the team\n"})
        return say("wrote a.txt")


def _team(producer: Producer) -> TeamModel:
    return TeamModel(
        planner=planner_giving(plan(task("a", "write a.txt", [("test -f a.txt", 0)]))),
        producer=producer,
        verifier=verifier_running("cat a.txt"),
    )


def _editor(app: McodeApp) -> TextArea:
    return app.screen.query_one("#plan", TextArea)


def _select(editor: TextArea, needle: str) -> None:
    """Select the first ``needle`` in the editor, as a drag of the mouse over it would."""
    before = editor.text[: editor.text.index(needle)]
    row, col = before.count("\n"), len(before) - (before.rfind("\n") + 1)
    editor.selection = Selection((row, col), (row, col + len(needle)))


async def _open(pilot: Any, app: McodeApp) -> PlanScreen:
    await type_text(pilot, "/team write a.txt")
    await pilot.press("enter")
    screen = await until(
        pilot, lambda: isinstance(app.screen, PlanScreen) and app.screen, timeout=60
    )
    assert isinstance(screen, PlanScreen)
    return screen


def _keys(screen: PlanScreen) -> str:
    return str(screen.query_one(".keys").render())


@pilot_test
async def test_an_edited_plan_is_the_one_the_producer_gets(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    producer = Producer()
    model = _team(producer)
    with ScriptedServer([model] * 30) as server:
        app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
        async with app.run_test(size=(110, 40)) as pilot:
            screen = await _open(pilot, app)
            await pilot.press("e")
            editor = _editor(app)
            assert '"instructions": "write a.txt"' in editor.text  # the plan, as JSON
            _select(editor, "write a.txt")
            await type_text(pilot, "write a.txt saying hello")
            _select(editor, "task a")
            await type_text(pilot, "greet")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, PlanScreen), timeout=30)
            await until(pilot, lambda: "team completed" in screen_text(app), timeout=120)
            shown = screen_text(app)
    assert not screen.error
    assert "team: plan edited (by user)" in shown
    assert len(producer.asked) == 1 and "write a.txt saying hello" in producer.asked[0]
    assert "greet" in producer.asked[0]
    assert (repo / "a.txt").read_text() == "made by the team\n"


@pilot_test
async def test_an_invalid_edit_is_said_in_the_dialog_and_the_next_goes_through(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    producer = Producer()
    model = _team(producer)
    with ScriptedServer([model] * 30) as server:
        app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await _open(pilot, app)
            first = screen.request_id
            await pilot.press("e")
            editor = _editor(app)
            # Not JSON at all: said here, nothing sent.
            _select(editor, '"depends_on": []')
            await type_text(pilot, '"depends_on": [')
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "is not JSON" in screen.error)
            assert screen.request_id == first and not screen.checking
            # JSON, but a dependency on no task: the team's own check refuses it.
            await type_text(pilot, '"zz"]')
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "which are not in the plan" in screen.error, timeout=30)
            await until(pilot, lambda: screen.request_id != first and not screen.checking)
            refused = screen.error
            assert app.screen is screen and _keys(screen).startswith("ctrl+s submit")
            assert '"depends_on": ["zz"]' in editor.text  # nothing typed is lost
            # On a small terminal too, the error and the keys are on the screen, not under it.
            for shown in (screen.query_one(".error"), screen.query_one(".keys"), editor):
                assert screen.region.contains_region(shown.region) and shown.region.height
            assert producer.asked == []
            _select(editor, '"zz"')
            await pilot.press("backspace", "ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, PlanScreen), timeout=30)
            await until(pilot, lambda: "team completed" in screen_text(app), timeout=120)
            shown = screen_text(app)
    assert "task 'a' depends on ['zz'], which are not in the plan" in refused
    assert "team: plan edited (by user)" in shown
    assert len(producer.asked) == 1


@pilot_test
async def test_esc_in_the_editor_goes_back_to_the_choice_with_the_text_kept(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    producer = Producer()
    model = _team(producer)
    with ScriptedServer([model] * 30) as server:
        app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
        async with app.run_test(size=(110, 40)) as pilot:
            screen = await _open(pilot, app)
            await pilot.press("e")
            editor = _editor(app)
            _select(editor, "write a.txt")
            await type_text(pilot, "never sent")
            await pilot.press("escape")
            assert app.screen is screen and not screen.editing
            assert _keys(screen).startswith("y yes") and not editor.display
            await pilot.press("e")
            assert '"instructions": "never sent"' in editor.text
            await pilot.press("escape", "y")  # y: the plan as the planner made it
            await until(pilot, lambda: "team completed" in screen_text(app), timeout=120)
            shown = screen_text(app)
    assert "team: plan approved (by user)" in shown
    assert len(producer.asked) == 1 and "never sent" not in producer.asked[0]
    assert "write a.txt" in producer.asked[0]


@pilot_test
async def test_a_steers_re_plan_edited_in_the_dialog_is_the_plan_that_runs(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    go = tmp_path / "go"
    asked: dict[str, str] = {}

    def producer(req: Req) -> dict[str, Any]:
        if req.step == 0:
            asked[req.task_id or ""] = req.user_texts()[0]
            if req.task_id == "a":  # a works until the test lets it go
                wait = f"for i in $(seq 600); do [ -e {go} ] && break; sleep 0.05; done"
                return call("bash", {"command": wait})
        if req.step <= 1:
            return call("write", {"path": f"{req.task_id}.txt", "content": "written\n"})
        return say("done")

    model = TeamModel(
        planner=planner_giving(
            plan(task("a", "write a.txt")),
            plan(task("a", "write a.txt"), task("c", "write c.txt")),
        ),
        producer=producer,
        verifier=verifier_running("ls"),
    )
    with ScriptedServer([model] * 40) as server:
        app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
        async with app.run_test(size=(110, 40)) as pilot:
            first = await _open(pilot, app)
            await pilot.press("y")
            await until(pilot, lambda: "a" in asked, timeout=60)  # a's producer is at work
            await until(pilot, lambda: app.screen is not first)
            await type_text(pilot, "also write c.txt")
            await pilot.press("enter")
            replan = await until(
                pilot,
                lambda: (
                    isinstance(app.screen, PlanScreen) and app.screen is not first and app.screen
                ),
                timeout=60,
            )
            assert "revised for 'also write c.txt'" in replan.question
            await pilot.press("e")
            _select(_editor(app), "write c.txt")
            await type_text(pilot, "write c.txt in capitals")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, PlanScreen), timeout=30)
            go.touch()
            await until(pilot, lambda: "team completed" in screen_text(app), timeout=120)
            shown = screen_text(app)
    assert "team: plan edited (by user)" in shown
    assert "write c.txt in capitals" in asked["c"]
    assert (repo / "a.txt").exists() and (repo / "c.txt").exists()
