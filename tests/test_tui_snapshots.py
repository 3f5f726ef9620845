"""What the TUI draws, compared with stored SVG snapshots at a fixed terminal size
(pytest-textual-snapshot; `pytest --snapshot-update` rewrites them after a deliberate change):
the main screen after an answer, a tool card with a diff and command output, and the
approval dialog."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_repo
from tui_helpers import launcher, type_text, until

from mcode.tui.app import McodeApp
from mcode.tui.blocks import AnswerBlock

SIZE = (100, 30)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The welcome shows the workspace from ~: the same picture whatever the temp folder.
    monkeypatch.setenv("HOME", str(tmp_path))
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


def _still(app: McodeApp) -> None:
    """Stop what changes from run to run: the clock in the status bar, tool durations, the
    cursors."""
    # No cursor drawn at all: whether a blinking one is in its on phase, and whether the
    # prompt behind a dialog still counts as focused, changes from run to run.
    for screen in app.screen_stack:
        for widget in screen.query("TextArea, Input"):
            widget._pause_blink(visible=False)
    app.status.state.clock = lambda: 0.0
    app.status.state.started = 0.0
    if app.status.state.turn_started is not None:
        app.status.state.turn_started = 0.0
    for card in app.query("ToolCard"):
        card.duration = 0.0 if card.duration is not None else None
        card._redraw()
    app.status.refresh_state()


def test_the_main_screen_after_an_answer(snap_compare, model_server, repo, tmp_path):
    answer = "Here is the plan:\n\n1. read `a.txt`\n2. **change** it\n\n```python\nprint('hi')\n```"
    server = model_server(
        [{"text": answer, "usage": {"prompt_tokens": 1200, "completion_tokens": 40}}]
    )
    app = McodeApp(launcher(server, repo, tmp_path / "home"))

    async def run_before(pilot) -> None:
        await type_text(pilot, "what will you do?")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        _still(app)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_a_tool_card_with_a_diff_and_command_output(snap_compare, model_server, repo, tmp_path):
    write = {"id": "w1", "name": "write", "arguments": {"path": "b.txt", "content": "one\ntwo\n"}}
    bash = {"id": "b1", "name": "bash", "arguments": {"command": "seq 1 12"}}
    server = model_server([{"tool_calls": [write]}, {"tool_calls": [bash]}, {"text": "done"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))

    async def run_before(pilot) -> None:
        await type_text(pilot, "go")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        _still(app)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_approval_dialog(snap_compare, model_server, repo, tmp_path):
    bash = {"id": "b1", "name": "bash", "arguments": {"command": "git status --short"}}
    server = model_server([{"tool_calls": [bash]}, {"text": "done"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))

    async def run_before(pilot) -> None:
        await type_text(pilot, "status")
        await pilot.press("enter")
        await until(pilot, lambda: app.asking)
        await pilot.press("a")  # the rule field, filled with the suggested pattern
        await pilot.pause(0.3)  # the prompt behind the dialog has taken its blur
        _still(app)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
