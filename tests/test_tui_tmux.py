"""The real ``mcode`` in a real terminal: tmux runs it on a trusted temp repository against the
scripted model server; the test types a task, reads the answer off the screen, quits, and
finds the session's transcript left in the terminal (the pane is kept after mcode exits); and
Ctrl-C hammered to quit still leaves it, with exit 0."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, make_repo, pane_exit_status, trust

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """One tmux session on a private server socket (the user's tmux is never touched)."""

    def __init__(self, socket: str, name: str) -> None:
        self.base = ["tmux", "-L", socket]
        self.name = name

    def __call__(self, *args: str) -> str:
        out = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=10)
        return out.stdout

    def screen(self) -> str:
        # -S -: from the start of the scrollback, so the transcript printed on exit is found.
        return self("capture-pane", "-p", "-J", "-S", "-", "-t", self.name)

    def wait_for(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}")

    def dead(self) -> bool:
        return self("display-message", "-p", "-t", self.name, "#{pane_dead}").strip() == "1"

    def exit_status(self) -> str | None:
        return pane_exit_status(self, self.name)


def mcode_script(server: Any, tmp_path: Path) -> Path:
    """A script that runs the real ``mcode`` (exec'd: the pane's program is mcode itself) on a
    trusted temp repository, its HOME and XDG folders under ``tmp_path``, against ``server``."""
    repo = make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    env = clean_env(tmp_path / "home", TERM="xterm-256color")
    trust(repo, env)
    script = tmp_path / "run.sh"
    argv = [sys.executable, "-m", "mcode", "--provider", "openai", "--base-url", server.base_url]
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    script.write_text(f"{exports}cd {shlex.quote(str(repo))}\nexec {shlex.join(argv)} --model m\n")
    return script


def _start(server, tmp_path) -> Tmux:
    """The real ``mcode`` on a trusted temp repository, in a 120x40 tmux pane kept after it
    exits, pointed at ``server``."""
    script = mcode_script(server, tmp_path)
    tmux = Tmux(f"mcode-test-{time.monotonic_ns()}", "t")
    size = ("-x", "120", "-y", "40")
    tmux(
        "-f", "/dev/null", "new-session", "-d", "-s", "t", *size, f"bash {shlex.quote(str(script))}"
    )
    tmux("set-option", "-t", "t", "remain-on-exit", "on")
    return tmux


def test_mcode_answers_in_tmux_and_leaves_its_transcript_after_quitting(model_server, tmp_path):
    server = model_server([{"text": "The answer is **42**."}])
    tmux = _start(server, tmp_path)
    try:
        tmux.wait_for(" · ctx ")  # the status bar is drawn: the app is up
        tmux("send-keys", "-t", "t", "-l", "what is the answer")
        tmux("send-keys", "-t", "t", "Enter")
        tmux.wait_for("The answer is 42")  # Markdown rendered: the bold marks are gone
        tmux("send-keys", "-t", "t", "-l", "/quit")
        tmux("send-keys", "-t", "t", "Enter")
        deadline = time.monotonic() + 15
        while not tmux.dead() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tmux.dead(), tmux.screen()
        after = tmux.screen()
    finally:
        tmux("kill-server")
    # Printed on the normal screen after the app left the alternate one: the scrollback has it.
    assert "> what is the answer" in after
    assert "The answer is **42**." in after
    assert "mcode --resume" in after
    assert server.bodies[0]["messages"][-1]["content"] == "what is the answer"


def test_ctrl_c_hammered_to_quit_leaves_the_transcript_and_exits_0(model_server, tmp_path):
    """Ctrl-C pressed over and over after an answer: the first quits the app, the rest come
    as signals while it leaves (the terminal is no longer raw). mcode still prints its
    transcript and exits 0; before, it died of SIGINT in its own exit, every time."""
    server = model_server([{"text": "The answer is **42**."}])
    tmux = _start(server, tmp_path)
    try:
        tmux.wait_for(" · ctx ")
        tmux("send-keys", "-t", "t", "-l", "what is the answer")
        tmux("send-keys", "-t", "t", "Enter")
        tmux.wait_for("The answer is 42")
        for _ in range(15):
            tmux("send-keys", "-t", "t", "C-c")
            time.sleep(0.02)
        deadline = time.monotonic() + 15
        while (status := tmux.exit_status()) is None:
            assert time.monotonic() < deadline, tmux.screen()
            time.sleep(0.1)
        after = tmux.screen()
    finally:
        tmux("kill-server")
    assert status == "0", after
    assert "The answer is **42**." in after and "mcode --resume" in after
