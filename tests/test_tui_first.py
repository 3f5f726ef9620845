"""The TUI's first frame comes before its session: the prompt is up (focused, taking keys)
while the session opens behind it; what is typed meanwhile is sent once it is open; an open
that fails is an error card, and the app still quits. Driven by Textual's Pilot against the
scripted model server, with a Launcher whose ``open`` waits for the test to let it go."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import make_repo
from tui_helpers import launcher, pilot_test, screen_text, type_text, until

from mcode.errors import MCodeError
from mcode.tui.app import McodeApp
from mcode.tui.blocks import AnswerBlock, UserBlock
from mcode.tui.launch import Launcher

SIZE = (100, 32)


class HeldLauncher(Launcher):
    """Its first ``open`` blocks (in the app's opening thread) until ``release`` is set."""

    release: threading.Event

    def open(self, **kw: Any) -> Any:
        self.release.wait(30)
        return super().open(**kw)


def _held(server: Any, repo: Path, home: Path) -> HeldLauncher:
    plain = launcher(server, repo, home)
    held = HeldLauncher(plain.workspace, plain.store, plain.flags, plain.env, plain.data_dir)
    held.release = threading.Event()
    return held


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


@pilot_test
async def test_the_prompt_is_up_and_takes_keys_before_the_session_is_open(
    model_server, repo, tmp_path
):
    lnch = _held(model_server([]), repo, tmp_path / "home")
    app = McodeApp(lnch, opening={})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert not app.ready
        assert app.focused is app.prompt
        assert "opening the session" in str(app.status.render())
        await type_text(pilot, "still opening")
        assert app.prompt.text == "still opening"
        lnch.release.set()
        await until(pilot, lambda: app.ready)
        assert "opening" not in str(app.status.render())
        assert "m" in str(app.status.render())  # the model's name, once there is a session


@pilot_test
async def test_what_is_typed_during_the_open_is_sent_once_it_is_open(model_server, repo, tmp_path):
    server = model_server([{"text": "the answer, after all"}])
    lnch = _held(server, repo, tmp_path / "home")
    app = McodeApp(lnch, opening={})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_text(pilot, "early question")
        await pilot.press("enter")
        await pilot.pause()
        assert app.prompt.text == ""
        assert app.queue_bar.has_class("-shown")  # it waits, and says so
        assert "early question" in str(app.queue_bar.render())
        assert not server.bodies
        lnch.release.set()
        answer = await until(pilot, lambda: list(app.query(AnswerBlock)))
        assert answer[-1].text == "the answer, after all"
        assert [u.text for u in app.query(UserBlock)] == ["early question"]
        assert not app.queue_bar.has_class("-shown")  # nothing waits any more
    assert server.bodies[0]["messages"][-1]["content"] == "early question"
    assert "the answer, after all" in app.transcript.text()


class BrokenLauncher(HeldLauncher):
    def open(self, **kw: Any) -> Any:
        self.release.wait(30)
        raise MCodeError("config.toml line 3: unknown key 'modle'", hint="fix or remove it")


@pilot_test
async def test_an_open_that_fails_is_an_error_card_and_the_app_still_quits(
    model_server, repo, tmp_path
):
    plain = launcher(model_server([]), repo, tmp_path / "home")
    lnch = BrokenLauncher(plain.workspace, plain.store, plain.flags, plain.env, plain.data_dir)
    lnch.release = threading.Event()
    app = McodeApp(lnch, opening={}, prompt="from the command line")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_text(pilot, "kept")
        await pilot.press("enter")
        lnch.release.set()
        text = await until(pilot, lambda: "modle" in screen_text(app) and screen_text(app))
        assert "fix or remove it" in text
        assert "Ctrl+C quits" in str(app.status.render())
        # Back in the prompt, not lost: the command line's prompt, then what was typed.
        kept = "from the command line\nkept"
        await until(pilot, lambda: app.prompt.text == kept)
        await pilot.press("enter")  # with no session to send it to, it stays there
        await pilot.pause()
        assert app.prompt.text == kept
        await pilot.press("ctrl+c")
        await until(pilot, lambda: not app.is_running)
    assert app.return_code == 0


def test_the_settings_checked_on_the_terminal_open_the_first_session(
    model_server, repo, tmp_path, monkeypatch
):
    """`mcode` reads the config files once before its first session (the check on the terminal
    is what the session opens with); a later open with a changed setting reads them again."""
    import mcode.config

    reads: list[dict[str, Any]] = []
    real = mcode.config.load_settings

    def counted(workspace: Path, flags: dict[str, Any], **kw: Any) -> Any:
        reads.append(flags)
        return real(workspace, flags, **kw)

    monkeypatch.setattr(mcode.config, "load_settings", counted)
    lnch = launcher(model_server([]), repo, tmp_path / "home")
    lnch.check()
    session, settings = lnch.open()
    assert len(reads) == 1 and settings is not None
    asyncio.run(session.close())
    session, settings = lnch.open(permission_mode="read-only")
    assert len(reads) == 2 and settings.permission_mode == "read-only"
    asyncio.run(session.close())
    lnch.store.close()
