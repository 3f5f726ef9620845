"""The plain REPL (``mcode chat --plain``) as a user meets it: over a pipe, on a real terminal
under tmux, and driven in-process through prompt-toolkit's pipe input, against the scripted
model server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from computer_fixtures import needs_x
from helpers import clean_env, make_repo, mcode, pane_exit_status, tool_messages

from mcode.computer.display import VirtualDisplay
from mcode.config import load_settings
from mcode.repl.app import QUIT_WINDOW


def chat_args(server: Any, *extra: str) -> list[str]:
    return [
        "chat",
        "--plain",
        "--provider",
        "openai",
        "--base-url",
        server.base_url,
        "--model",
        "test-model",
        *extra,
    ]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"notes.txt": "old\n"})


def test_piped_lines_each_run_a_turn_and_print_the_answer(model_server, repo, tmp_path):
    server = model_server([{"text": "Hello from the model."}, {"text": "Second answer."}])
    env = clean_env(tmp_path)
    # The second line is sent after the first turn ended (a pipe delivers it at once, so the
    # first line's turn must be short: the server answers at once).
    run = mcode(*chat_args(server), cwd=repo, env=env, stdin="say hello\n", timeout=60)
    assert run.code == 0, run.stderr
    assert "Hello from the model." in run.stdout
    assert server.requests[0].body["messages"][-1]["content"] == "say hello"
    # The session is stored like any other: `mcode sessions` lists it by its first prompt.
    assert "say hello" in mcode("sessions", cwd=repo, env=env).stdout


def test_a_line_typed_while_a_turn_runs_steers_it(model_server, repo, tmp_path):
    server = model_server(
        [
            # The first step takes a while, so the second line arrives while it runs.
            {
                "delay": 1.5,
                "tool_calls": [{"id": "c1", "name": "read", "arguments": {"path": "notes.txt"}}],
            },
            {"text": "Done, with tests too."},
        ]
    )
    run = mcode(
        *chat_args(server),
        cwd=repo,
        env=clean_env(tmp_path),
        stdin="tidy the notes\nalso add tests\n",
        timeout=60,
    )
    assert run.code == 0, run.stderr
    assert "steering the running turn" in run.stdout
    second = json.dumps(server.requests[1].body["messages"])
    assert "also add tests" in second  # delivered at the next step, in the same turn
    assert len(server.requests) == 2  # not a turn of its own
    assert "Done, with tests too." in run.stdout


def test_an_unknown_command_is_named_and_help_lists_the_commands(model_server, repo, tmp_path):
    server = model_server([])
    run = mcode(
        *chat_args(server), cwd=repo, env=clean_env(tmp_path), stdin="/nope\n/help\n", timeout=60
    )
    assert run.code == 0, run.stderr
    assert "unknown command /nope" in run.stdout
    assert "/compact" in run.stdout and "/quit" in run.stdout
    assert server.requests == []  # commands never reach the model


def test_resume_shows_the_stored_conversation(model_server, repo, tmp_path):
    server = model_server([{"text": "The first answer."}, {"text": "Later answer."}])
    env = clean_env(tmp_path)
    first = mcode(*chat_args(server), cwd=repo, env=env, stdin="first question\n", timeout=60)
    assert first.code == 0, first.stderr
    again = mcode(
        *chat_args(server, "--continue"), cwd=repo, env=env, stdin="next one\n", timeout=60
    )
    assert again.code == 0, again.stderr
    shown = again.stdout
    assert shown.index("> first question") < shown.index("The first answer.")
    assert shown.index("The first answer.") < shown.index("Later answer.")
    # The model got the whole conversation.
    assert [m["content"] for m in server.requests[1].body["messages"] if m["role"] == "user"] == [
        "first question",
        "next one",
    ]


# -- in-process, through prompt-toolkit's pipe input ----------------------------------------


class Screen:
    """The REPL's output, collected; ``wait_for`` polls it from the test's event loop."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    async def wait_for(self, needle: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never shown; screen:\n{self.text}")
            await asyncio.sleep(0.02)


async def _drive(server: Any, repo: Path, home: Path, script) -> tuple[Screen, Any]:
    """Run the REPL in-process on a terminal input fed by ``script(pipe, screen, session)``."""
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from mcode.repl.app import Repl, TerminalInput
    from mcode.runtime.build import open_session
    from mcode.store import Store

    env = clean_env(home)

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_settings(
            repo,
            {"provider": "openai", "base_url": server.base_url, "model": "test-model"},
        )
        store = Store(home / "data" / "mcode" / "sessions.db")
        session = open_session(settings, store, interactive=True)
        screen = Screen()
        with create_pipe_input() as pipe:
            holder: list[Repl] = []
            inp = TerminalInput(lambda: holder[0].prompt(), None, input=pipe, output=DummyOutput())
            inp.write = screen.write  # type: ignore[method-assign]
            repl = Repl(
                session,
                lambda: session.start(
                    cwd=str(repo),
                    provider_reason="test",
                    permission_mode="ask",
                    resumed=False,
                ),
                inp,
                store=store,
                cwd=str(repo),
            )
            holder.append(repl)
            runner = asyncio.ensure_future(repl.run(None))
            try:
                await script(pipe, screen, session)
            finally:
                pipe.send_text("\x04")  # Ctrl-D: the end of input
                await asyncio.wait_for(runner, 30)
                inp.close()
                await session.close()
                store.close()
        return screen, session
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _write_call(path: str, text: str, call_id: str = "w1") -> dict[str, Any]:
    return {
        "tool_calls": [
            {"id": call_id, "name": "write", "arguments": {"path": path, "content": text}}
        ]
    }


def test_a_question_is_answered_yes_and_the_edit_is_made(model_server, repo, tmp_path):
    server = model_server([_write_call("todo.txt", "new\n"), {"text": "Written."}])

    async def script(pipe, screen, session):
        pipe.send_text("rewrite the notes\r")
        await screen.wait_for("write wants to run: todo.txt")
        pipe.send_text("y\r")
        await screen.wait_for("Written.")

    screen, _ = asyncio.run(_drive(server, repo, tmp_path, script))
    assert (repo / "todo.txt").read_text() == "new\n", screen.text


def test_a_denial_with_a_reason_reaches_the_model(model_server, repo, tmp_path):
    server = model_server([_write_call("todo.txt", "new\n"), {"text": "Understood."}])

    async def script(pipe, screen, session):
        pipe.send_text("rewrite the notes\r")
        await screen.wait_for("write wants to run")
        pipe.send_text("n keep the old notes\r")
        await screen.wait_for("Understood.")

    asyncio.run(_drive(server, repo, tmp_path, script))
    assert not (repo / "todo.txt").exists()
    result = tool_messages(server.requests[1].body)[0]["content"]
    assert "keep the old notes" in result


def test_always_allows_the_same_call_for_the_rest_of_the_session(model_server, repo, tmp_path):
    server = model_server(
        [
            _write_call("todo.txt", "one\n", "w1"),
            {"text": "First."},
            _write_call("todo.txt", "one\n", "w2"),
            {"text": "Second."},
        ]
    )

    async def script(pipe, screen, session):
        pipe.send_text("write one\r")
        await screen.wait_for("write wants to run")
        pipe.send_text("a\r")
        await screen.wait_for("First.")
        pipe.send_text("write one again\r")
        await screen.wait_for("Second.")
        assert screen.text.count("write wants to run") == 1  # not asked the second time

    asyncio.run(_drive(server, repo, tmp_path, script))


def test_ctrl_c_interrupts_the_running_turn_and_the_repl_goes_on(model_server, repo, tmp_path):
    # Line mode shows whole lines: the first chunk is one, then the stream stalls.
    long = {
        "text": "Working on it.\n" + "more " * 50,
        "chunk_size": 15,
        "stall_after": 4,
        "stall": 30,
    }
    server = model_server([long, {"text": "Next."}])

    async def script(pipe, screen, session):
        pipe.send_text("write a lot\r")
        await screen.wait_for("Working on it.")
        pipe.send_text("\x03")  # Ctrl-C
        await screen.wait_for("interrupted: the turn stopped")
        pipe.send_text("and now?\r")
        await screen.wait_for("Next.")

    asyncio.run(_drive(server, repo, tmp_path, script))


def test_image_attaches_a_file_to_the_next_message(model_server, repo, tmp_path):
    (repo / "shot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    server = model_server([{"text": "A black square."}])

    async def script(pipe, screen, session):
        pipe.send_text("/image nope.png\r")
        await screen.wait_for("/image:")  # a missing file is said; nothing attached
        pipe.send_text("/image shot.png\r")
        await screen.wait_for("attached shot.png")
        pipe.send_text("what is in it?\r")
        await screen.wait_for("A black square.")

    screen, _ = asyncio.run(_drive(server, repo, tmp_path, script))
    assert "nope.png" in screen.text
    (user,) = [m for m in server.requests[0].body["messages"] if m["role"] == "user"]
    kinds = [part["type"] for part in user["content"]]
    assert (
        kinds.count("image_url") == 1
        and {"type": "text", "text": "what is in it?"} in (user["content"])
    )


@needs_x
def test_screenshot_attaches_the_screen_and_without_a_display_says_so(model_server, repo, tmp_path):
    server = model_server([{"text": "A grey screen."}])

    async def script(pipe, screen, session):
        os.environ.pop("DISPLAY", None)
        pipe.send_text("/screenshot\r")
        await screen.wait_for("/screenshot:")  # no display: said, nothing attached
        with VirtualDisplay((320, 240)) as shown:
            os.environ["DISPLAY"] = shown.name
            pipe.send_text("/screenshot\r")
            await screen.wait_for("attached a screenshot (320x240)")
        pipe.send_text("what is on it?\r")
        await screen.wait_for("A grey screen.")

    screen, session = asyncio.run(_drive(server, repo, tmp_path, script))
    assert "DISPLAY" in screen.text  # what was wrong: there is no display to capture
    (user,) = [m for m in server.requests[0].body["messages"] if m["role"] == "user"]
    assert [p["type"] for p in user["content"]].count("image_url") == 1
    kept = list((tmp_path / "data" / "mcode" / "screenshots" / session.id).glob("attached-*"))
    assert len(kept) == 1


def test_btw_answers_beside_the_running_turn_and_stays_out_of_it(model_server, repo, tmp_path):
    # The main turn's call waits 2 s; the side question's call comes in meanwhile.
    server = model_server([{"delay": 2, "text": "Main answer."}, {"text": "Side answer."}])

    async def script(pipe, screen, session):
        pipe.send_text("the main task\r")
        await asyncio.sleep(0.3)
        pipe.send_text("/btw what does -n do?\r")
        await screen.wait_for("btw: Side answer.")
        assert session.running  # answered while the main turn still waits for its model
        await screen.wait_for("Main answer.")

    screen, session = asyncio.run(_drive(server, repo, tmp_path, script))
    assert screen.text.count("Side answer.") == 1  # said once, not streamed into the turn
    assert "what does -n do?" in json.dumps(server.requests[1].body["messages"])
    assert "what does -n do?" not in json.dumps([m.to_dict() for m in session.history])


# -- a real terminal: tmux --------------------------------------------------------------------


class Tmux:
    """A tmux server of its own (``-L``), started with exactly ``env``: a shared server would
    hand the program the environment of whoever started it first."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"mcode-test-{time.monotonic_ns()}"
        self.env = env

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
        ).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-J", "-t", "main")  # -J: wrapped lines joined

    def wait_for(self, needle: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while needle not in (text := self.screen()):
            assert time.monotonic() < deadline, f"{needle!r} never on screen:\n{text}"
            time.sleep(0.1)
        return text

    def start(self, repo: Path, command: str) -> None:
        """``command`` in a 120x30 pane kept after it ends; returns once the REPL is up."""
        self("new-session", "-d", "-s", "main", "-x", "120", "-y", "30", "-c", str(repo), command)
        self("set-option", "-t", "main", "remain-on-exit", "on")
        self.wait_for("/help for commands")

    def exit_status(self) -> str | None:
        return pane_exit_status(self, "main")

    def wait_exit(self, timeout: float = 30) -> str:
        """The pane's program's exit status, once it has ended (failing after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while (status := self.exit_status()) is None:
            assert time.monotonic() < deadline, f"it never ended:\n{self.screen()}"
            time.sleep(0.1)
        return status

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_under_tmux_the_prompt_stays_live_and_history_persists(model_server, repo, tmp_path):
    read = {"id": "r1", "name": "read", "arguments": {"path": "notes.txt"}}
    server = model_server(
        [{"delay": 3, "tool_calls": [read]}, {"text": "Answer on a real terminal."}]
    )
    tmux = Tmux(clean_env(tmp_path, TERM="xterm-256color"))
    command = " ".join([sys.executable, "-m", "mcode", *chat_args(server)])
    try:
        tmux.start(repo, command)
        tmux("send-keys", "-t", "main", "what is this repo", "Enter")
        # Typed while the first model call is still out: the input line is live, and Enter
        # steers the running turn.
        tmux("send-keys", "-t", "main", "mention the notes", "Enter")
        tmux.wait_for("steering the running turn")
        tmux.wait_for("Answer on a real terminal.")
        # Ctrl-D on the empty line quits.
        tmux("send-keys", "-t", "main", "C-d")
        assert (status := tmux.wait_exit()) == "0", f"exit {status}:\n{tmux.screen()}"
    finally:
        tmux.kill()
    assert "mention the notes" in json.dumps(server.requests[1].body["messages"])
    history = (tmp_path / "data" / "mcode" / "repl_history").read_text()
    assert "what is this repo" in history and "mention the notes" in history


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_on_a_dumb_terminal_lines_stream_ctrl_c_interrupts_and_twice_quits(
    model_server, repo, tmp_path
):
    """TERM=dumb on a real tty: no prompt-toolkit, lines read plainly and the answer streamed
    as it comes; Ctrl-C (the tty's SIGINT) interrupts the running turn and the REPL goes on;
    two Ctrl-Cs in a row quit it, and the session is stored as cancelled."""
    stalled = {"text": "Working on it. " + "more " * 40, "chunk_size": 15, "stall_after": 2}
    server = model_server([{**stalled, "stall": 30}, {"text": "Next answer."}])
    tmux = Tmux(clean_env(tmp_path))
    # Set in the pane's own command: tmux gives the pane its default-terminal's TERM.
    command = " ".join(["env", "TERM=dumb", sys.executable, "-m", "mcode", *chat_args(server)])
    try:
        tmux.start(repo, command)
        tmux("send-keys", "-t", "main", "write a lot", "Enter")
        tmux.wait_for("Working on it.")  # streamed before the line ends: no line mode here
        tmux("send-keys", "-t", "main", "C-c")
        tmux.wait_for("interrupted")
        tmux("send-keys", "-t", "main", "and now?", "Enter")
        screen = tmux.wait_for("Next answer.")
        # Streamed from the line's start: no "… " prompt in front of what the model says.
        assert "> write a lot\nWorking on it." in screen and "…" not in screen.split("\n")[2]
        time.sleep(QUIT_WINDOW)  # so that the next Ctrl-C is a first one again
        tmux("send-keys", "-t", "main", "C-c")
        tmux.wait_for("Ctrl-C again to quit")
        tmux("send-keys", "-t", "main", "C-c")
        assert (status := tmux.wait_exit()) == "0", f"exit {status}:\n{tmux.screen()}"
    finally:
        tmux.kill()
    assert [m["content"] for m in server.requests[1].body["messages"] if m["role"] == "user"][
        -1
    ] == "and now?"
    listed = mcode("sessions", cwd=repo, env=clean_env(tmp_path)).stdout
    assert "write a lot" in listed


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_ctrl_c_hammered_quits_cleanly(model_server, repo, tmp_path):
    """Ctrl-C pressed over and over (twice quits; the rest land while the REPL shuts down):
    the REPL exits 0 rather than dying of SIGINT in its own exit (which it did, every time,
    before the presses after the quit were ignored)."""
    server = model_server([{"text": "First."}])
    tmux = Tmux(clean_env(tmp_path))
    command = " ".join(["env", "TERM=dumb", sys.executable, "-m", "mcode", *chat_args(server)])
    try:
        tmux.start(repo, command)
        tmux("send-keys", "-t", "main", "hi", "Enter")
        tmux.wait_for("First.")
        for _ in range(12):
            tmux("send-keys", "-t", "main", "C-c")
            time.sleep(0.025)
        assert (status := tmux.wait_exit()) == "0", f"exit {status}:\n{tmux.screen()}"
    finally:
        tmux.kill()
