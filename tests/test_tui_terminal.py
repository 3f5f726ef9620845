"""Terminal manners of the real ``mcode`` under tmux: ``NO_COLOR`` draws no colour (what the
pane holds, escape codes included, is read back with ``capture-pane -e``), and ``--inline``
starts below the shell prompt, answers, and leaves its transcript when it quits."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import pytest
from helpers import clean_env, make_repo, trust
from test_tui_tmux import Tmux

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
# The 16 basic colours that have no hue: black, white, and their bright forms.
_GREY_BASIC = {30, 37, 90, 97, 40, 47, 100, 107}


def colours(screen: str) -> set[tuple[int, int, int] | str]:
    """Every foreground and background colour the escape codes in ``screen`` set: an RGB
    triple, or ``"basic N"`` / ``"256 N"`` for the palette forms."""
    found: set[tuple[int, int, int] | str] = set()
    for params in _SGR.findall(screen):
        codes = [int(c) for c in re.split("[;:]", params) if c]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c in (38, 48) and codes[i + 1 : i + 2] == [2]:
                found.add((codes[i + 2], codes[i + 3], codes[i + 4]))
                i += 5
                continue
            if c in (38, 48) and codes[i + 1 : i + 2] == [5]:
                found.add(f"256 {codes[i + 2]}")
                i += 3
                continue
            if 30 <= c <= 37 or 40 <= c <= 47 or 90 <= c <= 97 or 100 <= c <= 107:
                found.add(f"basic {c}")
            i += 1
    return found


def hued(found: set[tuple[int, int, int] | str]) -> set[tuple[int, int, int] | str]:
    """The colours that are not a shade of grey."""
    out: set[tuple[int, int, int] | str] = set()
    for colour in found:
        if isinstance(colour, tuple):
            r, g, b = colour
            if max(r, g, b) - min(r, g, b) > 8:  # rounding in a grey filter, not a hue
                out.add(colour)
        elif colour.startswith("basic") and int(colour.split()[1]) not in _GREY_BASIC:
            out.add(colour)
        elif colour.startswith("256"):
            n = int(colour.split()[1])
            if not (n in (0, 7, 8, 15, 16, 231) or 232 <= n <= 255):
                out.add(colour)
    return out


def _start(tmp_path: Path, server, *flags: str, **env_extra: str) -> Tmux:
    repo = make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    env = clean_env(tmp_path / "home", TERM="xterm-256color", COLORTERM="truecolor")
    env.pop("NO_COLOR", None)
    env.update(env_extra)
    trust(repo, env)
    argv = [sys.executable, "-m", "mcode", "--provider", "openai", "--base-url", server.base_url]
    argv += ["--model", "m", *flags]
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    script = tmp_path / "run.sh"
    # The shell prints a line first: inline mode draws below it and leaves it on the screen.
    script.write_text(
        f"{exports}cd {shlex.quote(str(repo))}\necho 'shell line before mcode'\n"
        f"exec {shlex.join(argv)}\n"
    )
    tmux = Tmux(f"mcode-term-{os.getpid()}-{len(flags)}-{len(env_extra)}", "t")
    size = ["-x", "120", "-y", "40"]
    tmux(
        "-f", "/dev/null", "new-session", "-d", "-s", "t", *size, f"bash {shlex.quote(str(script))}"
    )
    tmux("set-option", "-t", "t", "remain-on-exit", "on")
    return tmux


def _answer_and_quit(tmux: Tmux) -> tuple[str, bool]:
    """Ask, read the answer, quit: the screen as it was with the answer (escape codes kept)
    and whether it was the alternate screen."""
    tmux.wait_for(" · ctx ")  # the status bar is drawn: the app is up
    tmux("send-keys", "-t", "t", "-l", "what is the answer")
    tmux("send-keys", "-t", "t", "Enter")
    tmux.wait_for("The answer is 42")
    with_codes = tmux("capture-pane", "-p", "-e", "-t", "t")
    alternate = tmux("display-message", "-p", "-t", "t", "#{alternate_on}").strip() == "1"
    tmux("send-keys", "-t", "t", "-l", "/quit")
    tmux("send-keys", "-t", "t", "Enter")
    deadline = time.monotonic() + 15
    while not tmux.dead() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tmux.dead(), tmux.screen()
    return with_codes, alternate


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
def test_no_color_draws_the_app_in_greys_only(model_server, tmp_path, no_color):
    server = model_server([{"text": "The answer is **42**, see `a.txt`."}])
    tmux = _start(tmp_path, server, **({"NO_COLOR": "1"} if no_color else {}))
    try:
        drawn, _ = _answer_and_quit(tmux)
    finally:
        tmux("kill-server")
    found = colours(drawn)
    assert found, "no colour codes at all: capture-pane -e did not give the escape codes"
    if no_color:
        assert not hued(found), sorted(map(str, hued(found)))
    else:
        assert hued(found)  # the same screen in colour: the test can tell the two apart


def test_inline_starts_below_the_shell_line_and_answers(model_server, tmp_path):
    server = model_server([{"text": "The answer is **42**."}])
    tmux = _start(tmp_path, server, "--inline")
    try:
        running, alternate = _answer_and_quit(tmux)
        after = tmux.screen()
    finally:
        tmux("kill-server")
    # Inline: drawn on the normal screen, below what the shell printed, which stays in view
    # (the full-screen mode draws on the alternate screen, which hides it while it runs).
    assert not alternate
    plain = _SGR.sub("", running)
    assert plain.splitlines()[0] == "shell line before mcode"
    assert "The answer is 42" in plain
    assert "> what is the answer" in after and "The answer is **42**." in after
    assert "mcode --resume" in after
    assert server.bodies[0]["messages"][-1]["content"] == "what is the answer"
