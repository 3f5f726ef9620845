"""What the TUI's commands draw, compared with stored SVG snapshots at 100x30 (as
test_tui_snapshots.py; `pytest --snapshot-update` rewrites them after a deliberate change):
the status bar with tokens and cost, the /rewind and /sessions pickers, /plan's question,
and the @ completion list."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import make_repo
from test_tui_snapshots import _still
from tui_helpers import launcher, type_text, until

from mcode.store import SessionInfo
from mcode.tui.app import McodeApp
from mcode.tui.blocks import AnswerBlock

SIZE = (100, 30)
USAGE = {"prompt_tokens": 10_000, "completion_tokens": 1_000, "cached_tokens": 4_000}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The welcome shows the workspace from ~: the same picture whatever the temp folder.
    monkeypatch.setenv("HOME", str(tmp_path))
    files = {"a.txt": "alpha\n", "src/main.py": "", "src/util.py": "", "src/tests/t.py": ""}
    return make_repo(tmp_path / "repo", files)


def test_the_status_bar_with_tokens_and_cost(snap_compare, model_server, repo, tmp_path):
    server = model_server([{"text": "Done.", "usage": USAGE}])
    app = McodeApp(launcher(server, repo, tmp_path / "home", model="gpt-4o"))

    async def run_before(pilot) -> None:
        await type_text(pilot, "go")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        await type_text(pilot, "/cost")
        await pilot.press("enter")
        await until(pilot, lambda: len(app.query("Note")) == 1)
        _still(app)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_rewind_picker(snap_compare, model_server, repo, tmp_path):
    server = model_server([{"text": "first answer"}, {"text": "second answer"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))

    async def run_before(pilot) -> None:
        for n, text in enumerate(["rename the helper", "now add a test\nfor it"], 1):
            await type_text(pilot, text.replace("\n", " "))
            await pilot.press("enter")
            await until(pilot, lambda n=n: app.session.idle and len(app.query(AnswerBlock)) == n)
        await type_text(pilot, "/rewind")
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.__class__.__name__ == "TurnPicker")
        _still(app)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_sessions_picker(snap_compare, model_server, repo, tmp_path, monkeypatch):
    from mcode.tui.pickers import SessionPicker

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    server = model_server([])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    day = 1_790_000_000.0
    rows = [
        SessionInfo(f"{i:012x}abcd", day, day - 3600 * i, str(repo), "openai", "m", title)
        for i, title in enumerate(["fix the flaky test", "add --json\nto the CLI", ""], 1)
    ]

    async def run_before(pilot) -> None:
        # Over an open session, as /sessions is used: while it opens, the screen behind differs.
        await until(pilot, lambda: app.ready)
        app.push_screen(SessionPicker(rows))
        await until(pilot, lambda: app.screen.__class__.__name__ == "SessionPicker")
        _still(app)
        await pilot.pause(0.1)

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_plan_question(snap_compare, model_server, repo, tmp_path):
    server = model_server([{"text": "1. read a.txt\n2. change it"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home", mode="auto-edit"))

    async def run_before(pilot) -> None:
        await type_text(pilot, "/plan change a.txt")
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        _still(app)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_file_completion_list(snap_compare, model_server, repo, tmp_path):
    server = model_server([])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))

    async def run_before(pilot) -> None:
        await until(pilot, lambda: app.ready)  # the status bar shows the session
        await until(pilot, lambda: app.files.ready)
        await type_text(pilot, "look at @src/")
        await until(pilot, lambda: app.query_one("#completions").shown)
        _still(app)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
