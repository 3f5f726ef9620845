"""Sessions in the TUI: a stored one resumed with its history drawn (also one `mcode exec` left,
by /resume, and a 1,000-message one, which loads as cheap blocks and scrolls), and /undo between
turns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import clean_env, exec_args, make_repo, mcode
from tui_helpers import launcher, pilot_test, screen_text, type_text, until

from mcode import events as ev
from mcode.messages import Message, TextPart, user_message
from mcode.store import Store
from mcode.tui.app import HISTORY_WINDOW, McodeApp
from mcode.tui.blocks import AnswerBlock, LiveAnswer, UserBlock
from mcode.tui.cards import ToolCard
from mcode.tui.launch import Launcher

SIZE = (100, 32)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


@pilot_test
async def test_a_resumed_session_shows_its_history_and_continues_it(model_server, repo, tmp_path):
    server = model_server([{"text": "the first answer"}, {"text": "the second answer"}])
    home = tmp_path / "home"
    first = McodeApp(launcher(server, repo, home))
    async with first.run_test(size=SIZE) as pilot:
        await type_text(pilot, "first question")
        await pilot.press("enter")
        await until(pilot, lambda: first.session.idle and first.query(AnswerBlock))
        session_id = first.session.id
    first.launcher.store.close()

    again = launcher(server, repo, home)
    app = McodeApp(again, first=again.open(resume_id=session_id[:8]), resumed=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert [u.text for u in app.query(UserBlock)] == ["first question"]
        assert [a.text for a in app.query(AnswerBlock)] == ["the first answer"]
        await type_text(pilot, "and then")
        await pilot.press("enter")
        await until(pilot, lambda: len(app.query(AnswerBlock)) == 2 and app.session.idle)
        assert app.session.id == session_id
    contents = [m["content"] for m in server.bodies[1]["messages"] if m["role"] != "system"]
    assert contents == ["first question", "the first answer", "and then"]


@pilot_test
async def test_a_session_run_by_exec_is_resumed_by_slash_resume_with_its_tool_call(
    model_server, repo, tmp_path
):
    """`mcode exec` leaves a session in the store; the TUI's /resume ID draws it (the prompt,
    the tool call as a finished card, the answer) and the next message continues it."""
    read = {"id": "r1", "name": "read", "arguments": {"path": "a.txt"}}
    server = model_server(
        [
            {"tool_calls": [read]},
            {"text": "a.txt says alpha"},
            {"text": "picked up where exec stopped"},
        ]
    )
    env = clean_env(tmp_path / "home")
    run = mcode(
        *exec_args(server, "--output-format", "json", "what is in a.txt?"), cwd=repo, env=env
    )
    assert run.code == 0, run.stderr
    session_id = json.loads(run.stdout)["session_id"]
    store = Store(Path(env["XDG_DATA_HOME"]) / "mcode" / "sessions.db")
    given = {"provider": "openai", "base_url": server.base_url, "model": "test-model"}
    home = {"XDG_CONFIG_HOME": env["XDG_CONFIG_HOME"], "HOME": env["HOME"]}
    app = McodeApp(Launcher(repo, store, given, env=home))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.ready)
        await type_text(pilot, f"/resume {session_id[:8]}")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.id == session_id and app.query(AnswerBlock))
        assert [u.text for u in app.query(UserBlock)] == ["what is in a.txt?"]
        (card,) = app.query(ToolCard)
        assert card.name_ == "read" and card.status == "ok", card.status
        assert "a.txt says alpha" in screen_text(app)
        await type_text(pilot, "go on")
        await pilot.press("enter")
        await until(pilot, lambda: len(app.query(AnswerBlock)) == 2 and app.session.idle)
    store.close()
    sent = [m for m in server.bodies[2]["messages"] if m["role"] != "system"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[-1]["content"] == "go on"


def _store_long_session(lnch, messages: int) -> str:
    """A stored session of ``messages`` messages (user and assistant in turn, Markdown in the
    answers), written through a real Session's emit, as a long run would leave it."""
    session, _ = lnch.open()
    session.start(
        cwd=str(lnch.workspace), provider_reason="t", permission_mode="ask", resumed=False
    )
    for i in range(messages // 2):
        session.emit(ev.TurnStarted())
        session.emit(ev.MessageUser(message=user_message(f"question {i}")))
        answer = f"Answer **{i}**:\n\n- one point\n- another\n\n```python\nx = {i}\n```"
        reply = Message("assistant", (TextPart(answer),))
        session.emit(ev.MessageAssistant(message=reply, finish_reason="stop"))
        session.emit(ev.TurnFinished(reason="completed"))
    return session.id


@pilot_test
async def test_a_thousand_message_history_loads_as_cheap_blocks_and_scrolls(
    model_server, repo, tmp_path
):
    server = model_server([])
    lnch = launcher(server, repo, tmp_path / "home")
    session_id = _store_long_session(lnch, 1000)
    app = McodeApp(lnch, first=lnch.open(resume_id=session_id), resumed=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        view = app.view
        shown = len(app.query(UserBlock)) + len(app.query(AnswerBlock))
        assert 0 < shown <= HISTORY_WINDOW  # the newest first; the rest waits above
        assert "question 499" in screen_text(app)
        assert not app.query(LiveAnswer)  # no live Markdown document for old messages
        # Only what the screen shows was rendered; the rest of what is mounted waits, its
        # height an estimate (a page of Markdown per frame, not a history's worth).
        drawn = [a for a in app.query(AnswerBlock) if any(a._lines)]
        assert 0 < len(drawn) <= SIZE[1] // 8 + 1 < len(app.query(AnswerBlock))
        await until(pilot, lambda: view.max_scroll_y > 0 and view.scroll_y == view.max_scroll_y)
        for _ in range(3):
            await pilot.press("pageup")
        assert view.scroll_y < view.max_scroll_y  # PageUp scrolls it, though the prompt has focus
        # Reaching the top loads the next older messages above, and what was shown stays put.
        waiting = len(view.earlier)
        top = view.children[0]
        view.scroll_home(animate=False, immediate=True)
        await until(pilot, lambda: len(view.earlier) == waiting - HISTORY_WINDOW)
        await until(pilot, lambda: not view._loading)
        assert view.scroll_y > 0  # kept in place: the old top is where it was, not jumped over
        assert abs(view.scroll_y - top.virtual_region.y) <= 2
        assert f"question {499 - HISTORY_WINDOW // 2 - 1}" in screen_text(app)


@pilot_test
async def test_undo_restores_what_the_last_turn_wrote(model_server, repo, tmp_path):
    call = {"id": "w1", "name": "write", "arguments": {"path": "new.txt", "content": "made\n"}}
    server = model_server([{"tool_calls": [call]}, {"text": "changed it"}, {"text": "noted"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "make new.txt")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        assert (repo / "new.txt").read_text() == "made\n"
        await type_text(pilot, "/undo")
        await pilot.press("enter")
        await until(pilot, lambda: "new.txt" in screen_text(app) and "Undoing" in screen_text(app))
        assert not (repo / "new.txt").exists()
        await type_text(pilot, "thanks")
        await pilot.press("enter")
        await until(pilot, lambda: len(app.query(AnswerBlock)) == 2 and app.session.idle)
    # The model hears of the undo with the next message (the session was resumed after it).
    assert "undid the file changes" in server.bodies[2]["messages"][-1]["content"]
