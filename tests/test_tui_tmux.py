"""The real ``mcode`` in a real terminal: tmux runs it on a trusted temp repository against the
scripted model server; the test types a task, reads the answer off the screen, quits, and
finds the session's transcript left in the terminal (the pane is kept after mcode exits)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest
from helpers import clean_env, make_repo, trust

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


def test_mcode_answers_in_tmux_and_leaves_its_transcript_after_quitting(model_server, tmp_path):
    server = model_server([{"text": "The answer is **42**."}])
    repo = make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    env = clean_env(tmp_path / "home", TERM="xterm-256color")
    trust(repo, env)
    script = tmp_path / "run.sh"
    argv = [sys.executable, "-m", "mcode", "--provider", "openai", "--base-url", server.base_url]
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    script.write_text(f"{exports}cd {shlex.quote(str(repo))}\nexec {shlex.join(argv)} --model m\n")
    tmux = Tmux(f"mcode-test-{os.getpid()}", "t")
    tmux(
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "120",
        "-y",
        "40",
        f"bash {shlex.quote(str(script))}",
    )
    try:
        tmux("set-option", "-t", "t", "remain-on-exit", "on")
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
