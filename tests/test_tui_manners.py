"""The TUI's terminal manners, as the issue promises them: the view follows the bottom while an
answer streams, stops when the user scrolls up and follows again once they are back; a
10,000-line tool output is drawn as its tail and leaves the prompt taking keys; a resize
rewraps what is shown; and ``/copy``, Ctrl+Y and text marked with the mouse then Ctrl+C reach
the terminal as OSC 52 (checked under a real tmux, which stores what it receives in a paste
buffer).

What the screen shows is read off Textual's compositor (the cells it would write), not off
the widgets' own text: a line scrolled out of view is not on it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers import make_repo
from test_tui_tmux import Tmux, mcode_script
from tui_helpers import ask, launcher, pilot_test, type_text, until

from mcode.tui.app import McodeApp
from mcode.tui.blocks import AnswerBlock, LiveAnswer, UserBlock
from mcode.tui.cards import ToolCard


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


def shown(app: McodeApp) -> list[str]:
    """The screen's rows as text, as the terminal would show them."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def shown_in(app: McodeApp, widget) -> list[str]:
    """The rows of the screen ``widget`` covers, cut to its columns."""
    region = widget.region
    rows = shown(app)[region.y : region.bottom]
    return [row[region.x : region.right] for row in rows]


def paragraphs_on_screen(app: McodeApp) -> list[int]:
    return [int(n) for n in re.findall(r"Paragraph (\d+) ", "\n".join(shown(app)))]


# -- 1. following the bottom ----------------------------------------------------------------

PARAGRAPHS = 240
CHUNK = 200


def _long_text() -> str:
    return "".join(
        f"Paragraph {i:03d} says a few words about the subject at hand.\n\n"
        for i in range(PARAGRAPHS)
    )


@pilot_test
async def test_the_view_follows_the_bottom_until_scrolled_up_and_again_once_back(
    model_server, repo, tmp_path
):
    text = _long_text()
    pieces = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]
    # SSE chunk 0 is the role; chunk n carries piece n-1. The stream waits at each gate.
    first, second = threading.Event(), threading.Event()
    a, b = len(pieces) // 3, 2 * len(pieces) // 3
    server = model_server(
        [{"text": text, "chunk_size": CHUNK, "gates": [(a + 1, first), (b + 1, second)]}]
    )
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            view = app.view
            await type_text(pilot, "tell me a lot")
            await pilot.press("enter")

            async def streamed(upto: int) -> None:
                prefix = "".join(pieces[:upto])
                live = await until(pilot, lambda: app.query(LiveAnswer).first())
                await until(pilot, lambda: live.text == prefix and not live._unsent)
                for _ in range(3):
                    await pilot.pause()

            # Streaming, and at the bottom: the newest paragraph is on screen.
            await streamed(a)
            assert view.max_scroll_y > 0
            assert view.scroll_y == view.max_scroll_y
            newest = text[: len("".join(pieces[:a]))].count("Paragraph ") - 1
            assert max(paragraphs_on_screen(app)) >= newest - 1

            # The user scrolls up a page: more text streams in, the view stays where it is.
            await pilot.press("pageup")
            await pilot.press("pageup")
            await pilot.pause()
            y, bottom = view.scroll_y, view.max_scroll_y
            assert y < bottom
            before = paragraphs_on_screen(app)
            assert before and max(before) < newest - 5
            first.set()
            await streamed(b)
            assert view.max_scroll_y > bottom  # the answer grew below
            assert view.scroll_y == y  # and the view did not move
            assert paragraphs_on_screen(app) == before  # the same text is still shown

            # Back at the bottom (a page at a time), it follows again to the answer's end.
            for _ in range(40):
                if view.scroll_y >= view.max_scroll_y:
                    break
                await pilot.press("pagedown")
                await pilot.pause()
            assert view.scroll_y == view.max_scroll_y
            second.set()
            await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
            for _ in range(3):
                await pilot.pause()
            assert view.scroll_y == view.max_scroll_y
            assert PARAGRAPHS - 1 in paragraphs_on_screen(app)
    finally:
        first.set()
        second.set()


# -- 3. a 10,000-line tool output -----------------------------------------------------------


def _bash(command: str, call_id: str = "c1") -> dict:
    return {"tool_calls": [{"id": call_id, "name": "bash", "arguments": {"command": command}}]}


@pilot_test
async def test_a_10000_line_output_shows_its_tail_expands_and_the_prompt_takes_keys(
    model_server, repo, tmp_path
):
    server = model_server([_bash("seq 10000"), {"text": "counted to ten thousand"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
    async with app.run_test(size=(100, 30)) as pilot:
        await type_text(pilot, "count")
        await pilot.press("enter")
        # Typed while the call runs and its output is drawn: every key lands in the prompt.
        await until(pilot, lambda: app.query(ToolCard))
        await type_text(pilot, "next question")
        card = await until(pilot, lambda: (c := app.query_one(ToolCard)).status == "ok" and c)
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        await pilot.pause()
        assert app.prompt.text == "next question"
        # Past the live cap (30,000 characters) the card holds the result: head and tail.
        assert card.output.startswith("1\n2\n") and card.output.endswith("9999\n10000\n")

        # The card shows the tail: the last lines, a count of the rest, never line 1.
        app.view.scroll_to_widget(card, top=True, animate=False, immediate=True)
        await pilot.pause()
        rows = [r.strip("▌ ") for r in shown_in(app, card)]
        assert "10000" in rows and "9993" in rows
        assert "9992" not in rows and "1" not in rows
        assert any(re.fullmatch(r"… \d+ earlier lines \(Enter shows more\)", r) for r in rows)

        # A click expands it: 2,000 lines, the rest counted; the prompt keeps the keyboard.
        await pilot.click(card, offset=(4, 0))
        await pilot.pause()
        assert card.expanded
        app.view.scroll_to_widget(card, top=True, animate=False, immediate=True)
        await pilot.pause()
        rows = [r.strip("▌ ") for r in shown_in(app, card)]
        assert any(re.fullmatch(r"… \d+ earlier lines", r) for r in rows), rows
        assert "8001" in rows and "9993" not in rows  # its head on screen, not the tail
        assert card.region.height > 2000

        # Typing after the click still goes into the prompt.
        assert app.focused is app.prompt
        await type_text(pilot, " again")
        await pilot.pause()
        assert app.prompt.text == "next question again"
        assert any("next question again" in r for r in shown_in(app, app.prompt))


# -- 4. resize ------------------------------------------------------------------------------

LONG_LINE = (
    "The resize check: this sentence is long enough to wrap over more lines at sixty columns "
    "than at a hundred, which it does because it goes on and on about nothing in particular, "
    "and it ends with the word zanzibar."
)


@pilot_test
async def test_a_resize_rewraps_the_answer_and_the_app_carries_on(model_server, repo, tmp_path):
    server = model_server([{"text": LONG_LINE}, {"text": "second answer after the resize"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=(100, 30)) as pilot:
        await type_text(pilot, "first")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        await pilot.pause()
        block = app.query(AnswerBlock).last()
        wide = block.region.height

        for width, height in ((60, 20), (100, 30)):
            await pilot.resize_terminal(width, height)
            await until(pilot, lambda w=width: app.screen.size.width == w)
            for _ in range(3):
                await pilot.pause()
            rows = shown(app)
            assert len(rows) == height and all(len(r) <= width for r in rows)
            text = " ".join(r.strip() for r in shown_in(app, block))
            assert "The resize check" in text and "zanzibar" in text  # the whole of it, wrapped
            if width == 60:
                assert block.region.height > wide
            else:
                assert block.region.height == wide
            status = app.status.region
            assert status.bottom == height and " · ctx " in shown(app)[status.y]
            assert app.prompt.region.height > 0 and app.prompt.region.bottom <= status.y

        await type_text(pilot, "second")
        await pilot.press("enter")
        await until(pilot, lambda: len(app.query(AnswerBlock)) == 2 and app.session.idle)
        await pilot.pause()
        assert any("second answer after the resize" in r for r in shown(app))
    assert [b["messages"][-1]["content"] for b in server.bodies] == ["first", "second"]


# -- 2. text marked with the mouse ------------------------------------------------------------

MARKED = "alpha beta gamma\n\n- first point\n- second point\n\nclosing words here"


def _find(app: McodeApp, widget, text: str) -> tuple[int, int]:
    """Where ``text`` is in ``widget`` on the screen, as an offset from the widget's corner."""
    for y, row in enumerate(shown_in(app, widget)):
        if text in row:
            return row.index(text), y
    raise AssertionError(f"{text!r} is not on the screen: {shown_in(app, widget)}")


async def _drag(pilot, start: tuple, end: tuple) -> None:
    await pilot.mouse_down(start[0], offset=start[1])
    await pilot.hover(end[0], offset=end[1])
    await pilot.mouse_up(end[0], offset=end[1])
    await pilot.pause()


@pilot_test
async def test_a_drag_marks_text_in_answers_and_ctrl_c_copies_it(model_server, repo, tmp_path):
    server = model_server([{"text": MARKED}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=(80, 30)) as pilot:
        await ask(pilot, app, "mark this", 1)
        await pilot.pause()
        answer = app.query(AnswerBlock).last()
        # Inside one answer: from "beta" to the last letter of "second" (the cell under the
        # pointer is in the selection, as in a terminal).
        x0, y0 = _find(app, answer, "beta")
        x1, y1 = _find(app, answer, "second point")
        await _drag(pilot, (answer, (x0, y0)), (answer, (x1 + len("second") - 1, y1)))
        selected = app.screen.get_selected_text()
        assert selected == "beta gamma\n\n • first point\n • second"
        # It is drawn marked: the marked cells have the selection's background.
        style = app.screen.get_component_rich_style("screen--selection")
        row = app.screen._compositor.render_strips()[answer.region.y + y0]
        marked = "".join(t for t, s, _ in row if s is not None and s.bgcolor == style.bgcolor)
        assert marked.startswith("beta gamma")
        await pilot.press("ctrl+c")
        assert app.clipboard == selected
        assert app.return_code is None  # copied, not quit
        assert app.screen.get_selected_text() is None  # and the mark is gone
        await pilot.press("ctrl+c")  # nothing marked: Ctrl+C quits, as before
        await until(pilot, lambda: app.return_code == 0)


@pilot_test
async def test_a_drag_from_the_question_into_the_answer_copies_both(model_server, repo, tmp_path):
    server = model_server([{"text": MARKED}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=(80, 30)) as pilot:
        await ask(pilot, app, "mark this", 1)
        await pilot.pause()
        question, answer = app.query(UserBlock).last(), app.query(AnswerBlock).last()
        x1, y1 = _find(app, answer, "closing words")
        start = _find(app, question, "mark this")
        # Across widgets Textual ends the selection before the pointer's cell, not on it.
        await _drag(pilot, (question, start), (answer, (x1 + len("closing"), y1)))
        selected = app.screen.get_selected_text()
        assert selected.startswith("mark this\n") and selected.endswith("\nclosing")
        assert "alpha beta gamma" in selected and "• second point" in selected
        # The prompt keeps the keyboard: what is typed after the drag goes into it.
        await type_text(pilot, "next")
        assert app.prompt.text == "next"


@pilot_test
async def test_a_drag_over_a_cards_output_marks_it_and_leaves_the_card_folded(
    model_server, repo, tmp_path
):
    # Lines that are in its output only, not in the command the card's header shows.
    server = model_server([_bash("for w in one two three; do echo line-$w; done"), {"text": "ok"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
    async with app.run_test(size=(80, 30)) as pilot:
        await ask(pilot, app, "print", 1)
        await pilot.pause()
        card = app.query_one(ToolCard)
        x0, y0 = _find(app, card, "line-two")
        x1, y1 = _find(app, card, "line-three")
        await _drag(pilot, (card, (x0, y0)), (card, (x1 + len("line-three") - 1, y1)))
        assert app.screen.get_selected_text() == "line-two\nline-three"
        assert not card.expanded  # the end of a drag is not a click
        assert app.focused is app.prompt
        await pilot.click(card, offset=(x0, y0))  # a click is: it expands, and clears the mark
        await pilot.pause()
        assert card.expanded and app.screen.get_selected_text() is None


# -- 3. copy over OSC 52, in a real terminal ------------------------------------------------

CODE = "def add(a, b):\n    return a + b\n"
ANSWER = f"Here it is:\n\n```python\n{CODE}```\n\nThat adds two numbers."


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_copy_ctrl_y_and_a_mouse_selection_reach_tmux_as_osc_52(model_server, tmp_path):
    server = model_server([{"text": ANSWER}])
    script = mcode_script(server, tmp_path)
    tmux = Tmux(f"mcode-copy-{os.getpid()}", "t")
    # A placeholder session starts the server, so the option is set before mcode runs.
    tmux("-f", "/dev/null", "new-session", "-d", "-s", "idle", "-x", "80", "-y", "10")
    try:
        tmux("set-option", "-g", "set-clipboard", "on")
        assert tmux("show-options", "-g", "set-clipboard").split() == ["set-clipboard", "on"]
        tmux("new-session", "-d", "-s", "t", "-x", "120", "-y", "40", f"bash {script}")

        def buffer() -> str:
            return tmux("show-buffer")

        def buffer_becomes(text: str, timeout: float = 15) -> str:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if buffer() == text:
                    return text
                time.sleep(0.1)
            raise AssertionError(
                f"the paste buffer holds {buffer()!r}; the screen:\n{tmux.screen()}"
            )

        tmux.wait_for(" · ctx ")
        assert buffer() == ""  # nothing copied yet
        tmux("send-keys", "-t", "t", "-l", "write add")
        tmux("send-keys", "-t", "t", "Enter")
        tmux.wait_for("That adds two numbers.")
        tmux("send-keys", "-t", "t", "-l", "/copy code")
        tmux("send-keys", "-t", "t", "Enter")
        tmux.wait_for(f"copied {len(CODE)} characters")
        buffer_becomes(CODE)
        tmux("send-keys", "-t", "t", "C-y")
        buffer_becomes(ANSWER)
        tmux("send-keys", "-t", "t", "-l", "/copy")
        tmux("send-keys", "-t", "t", "Enter")
        tmux.wait_for(f"copied {len(ANSWER)} characters")
        assert buffer() == ANSWER
        # A drag with the mouse over the answer (SGR mouse reports, as a terminal writes them:
        # press, motion with the button held, release; 1-based), then Ctrl+C: what was marked,
        # as the screen showed it, and mcode goes on.
        rows = tmux("capture-pane", "-p", "-t", "t").splitlines()
        top = next(i for i, row in enumerate(rows) if "Here it is:" in row)
        bottom = next(i for i, row in enumerate(rows) if "That adds two numbers." in row)
        start = rows[top].index("Here") + 1
        end = rows[bottom].index("numbers.") + len("numbers.")  # the "." (1-based)
        press, move = f"{start};{top + 1}", f"{end};{bottom + 1}"
        tmux("send-keys", "-t", "t", "-l", f"\x1b[<0;{press}M\x1b[<32;{move}M\x1b[<0;{move}m")
        tmux("set-buffer", "before the drag")  # what /copy put there is not taken for it
        tmux("send-keys", "-t", "t", "C-c")
        deadline = time.monotonic() + 15
        while buffer() == "before the drag" and time.monotonic() < deadline:
            time.sleep(0.1)
        marked = buffer()
        # The rendered answer, as shown: the code without its fences.
        assert marked.startswith("Here it is:\n") and marked.endswith("\nThat adds two numbers.")
        assert "def add(a, b):" in marked and "return a + b" in marked and "```" not in marked
        tmux.wait_for(f"copied {len(marked)} characters")
        # Ctrl+C with text marked copies, it does not quit: mcode still answers a command.
        tmux("send-keys", "-t", "t", "-l", "/copy code")
        tmux("send-keys", "-t", "t", "Enter")
        buffer_becomes(CODE)
        tmux("send-keys", "-t", "t", "-l", "/quit")
        tmux("send-keys", "-t", "t", "Enter")
    finally:
        subprocess.run([*tmux.base, "kill-server"], capture_output=True, timeout=10)
