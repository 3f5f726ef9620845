"""TUI benchmark: start-up to the first frame, 1 MB of Markdown streamed in 64-character
chunks, keystroke-to-screen latency while streaming, frame time scrolling a 1,000-message
history, a 10,000-line ``bash`` output (its result to its card drawn, keystrokes meanwhile). Headless (Textual's test driver), the app on a scripted model server, events fed as
the Session's adapter posts them. Prints a table.

    python tests/bench/tui.py [--mb 1.0] [--first-frame | --tool-output]

Targets (issue 13): first frame < 400 ms; >= 2,000 tokens/s (a token taken as 4 characters);
keystroke < 50 ms while streaming; no frame over 100 ms at 1,000 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from helpers import make_repo  # noqa: E402
from model_server import ScriptedServer  # noqa: E402
from test_tui_sessions import _store_long_session  # noqa: E402
from tui_helpers import launcher  # noqa: E402

CHUNK = 64


def _markdown(size: int) -> str:
    para = (
        "Some **bold** words, `code`, and a [link](http://x). The quick brown fox jumps over "
        "the lazy dog again and again.\n\n- a point\n- another point\n\n"
        "```python\ndef f(x):\n    return x * 2\n```\n\n"
    )
    return (para * (size // len(para) + 1))[:size]


# The first frame: the first screen update Textual composes (headless, it is not written out).
_FRAME_HOOK = """
import time as _time
import textual.app as _textual_app
_frames = []
_display = _textual_app.App._display
def _timed_display(self, screen, renderable):
    if renderable is not None and not _frames:
        _frames.append(_time.time())
    return _display(self, screen, renderable)
_textual_app.App._display = _timed_display
"""

# A fresh process doing what ``mcode`` does before its first frame (mcode/tui/launch.py: the
# settings checked, the app started; the store and the session are opened behind the first
# frame), headless; it prints seconds since ``t0`` at the first frame, then when the session is
# bound (``app.ready``).
_FIRST_FRAME = (
    """
import asyncio, sys, time
from pathlib import Path
t0, root, url = float(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
"""
    + _FRAME_HOOK
    + """
from mcode.tui.launch import Launcher
home = root / "home-ff"
flags = {"provider": "openai", "base_url": url, "model": "m", "permission_mode": "ask"}
env = {"XDG_CONFIG_HOME": str(home / "cfg"), "HOME": str(home)}
launcher = Launcher(root, None, flags, env=env, data_dir=home / "data")
launcher.store_path = home / "sessions.db"
launcher.check()
from mcode.tui.app import McodeApp
async def main():
    app = McodeApp(launcher, opening={})
    async with app.run_test(size=(120, 40)) as pilot:
        while not app.ready:
            await asyncio.sleep(0.005)
        print(_frames[0] - t0, time.time() - t0)
    launcher.store.close()
asyncio.run(main())
"""
)

# The floor: a bare Textual app (a Static and a TextArea, nothing of mcode), the same way.
_BARE_TEXTUAL = (
    """
import asyncio, sys, time
t0 = float(sys.argv[1])
"""
    + _FRAME_HOOK
    + """
from textual.app import App
from textual.widgets import Static, TextArea
class Bare(App):
    def compose(self):
        yield Static("conversation")
        yield TextArea()
        yield Static("status")
async def main():
    async with Bare().run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        print(_frames[0] - t0, 0.0)
asyncio.run(main())
"""
)


def _first_frame(root: Path, runs: int = 5) -> tuple[float, float, float]:
    """Medians, in seconds from starting a process, of mcode's first frame, of its session
    bound, and of a bare Textual app's first frame (runs alternated; imports included)."""
    server = ScriptedServer([]).start()
    try:
        mcode, ready, bare = [], [], []
        for i in range(runs + 1):  # the first run writes the bytecode caches: not timed
            for script, into in ((_FIRST_FRAME, mcode), (_BARE_TEXTUAL, bare)):
                out = subprocess.run(
                    [sys.executable, "-c", script, repr(time.time()), str(root), server.base_url],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                frame, bound = map(float, out.stdout.strip().splitlines()[-1].split())
                if i:
                    into.append(frame)
                    if script is _FIRST_FRAME:
                        ready.append(bound)
        return statistics.median(mcode), statistics.median(ready), statistics.median(bare)
    finally:
        server.stop()


# The same bare app, for a real terminal (tmux): it says so once drawn.
_BARE_ON_TERMINAL = """
from textual.app import App
from textual.widgets import Static, TextArea
class Bare(App):
    def compose(self):
        yield Static("bare app drawn")
        yield TextArea()
        yield Static("status")
Bare().run()
"""


def _tmux_first_screen(root: Path, runs: int = 7) -> tuple[float, float] | None:
    """Medians, in seconds from asking tmux for the pane, of the real ``mcode`` showing its
    first screen on a 120x40 terminal, and of the bare Textual app showing its own (alternated;
    polled with ``capture-pane`` every 5 ms). None without tmux."""
    if shutil.which("tmux") is None:
        return None
    home = root.parent / "home-tmux"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "cfg"),
        "XDG_DATA_HOME": str(home / "data"),
        "TERM": "xterm-256color",
    }
    env.pop("TMUX", None)
    # Nothing listens on the discard port: the first frame does not wait for the model.
    mcode = (
        f"{sys.executable} -m mcode --provider openai --base-url http://127.0.0.1:9/v1 --model m"
    )
    bare_script = root.parent / "bare_app.py"
    bare_script.write_text(_BARE_ON_TERMINAL)
    cases = (
        (mcode, "opening the session", []),
        (f"{sys.executable} {bare_script}", "bare app drawn", []),
    )
    for i in range(runs + 1):  # the first run writes the bytecode caches: not timed
        for command, drawn, into in cases:
            socket = f"mcode-bench-{time.monotonic_ns()}"

            def tmux(*args: str, socket: str = socket) -> str:
                return subprocess.run(
                    ["tmux", "-L", socket, *args], capture_output=True, text=True, env=env
                ).stdout

            t0 = time.monotonic()
            tmux("new-session", "-d", "-s", "m", "-x", "120", "-y", "40", "-c", str(root), command)
            while drawn not in tmux("capture-pane", "-p", "-t", "m"):
                if time.monotonic() - t0 > 30:
                    raise RuntimeError(f"{command!r} drew no {drawn!r} in 30 s")
                time.sleep(0.005)
            if i:
                into.append(time.monotonic() - t0)
            tmux("kill-server")
    return statistics.median(cases[0][2]), statistics.median(cases[1][2])


async def _key(app: Any, typed: str) -> tuple[str, float]:
    """Press the next key of the typist's text as the terminal driver delivers it
    (``pilot.press`` would wait for the whole screen to go idle, which a stream never lets it);
    the prompt's text then, and the seconds until the prompt showed it."""
    from textual import events

    ch = "abcdefghij"[len(typed) % 10]
    typed += ch
    t = time.perf_counter()
    app.post_message(events.Key(ch, ch))
    while app.prompt.text != typed:
        await asyncio.sleep(0.001)
    return typed, time.perf_counter() - t


async def _stream(root: Path, size: int) -> tuple[float, float, list[float]]:
    """Seconds to show ``size`` characters streamed (until the finished answer is drawn),
    and keystroke latencies measured meanwhile."""

    from mcode import events as ev
    from mcode.messages import Message, TextPart
    from mcode.tui.adapter import Poster
    from mcode.tui.app import McodeApp
    from mcode.tui.blocks import AnswerBlock

    server = ScriptedServer([]).start()
    text = _markdown(size)
    try:
        app = McodeApp(launcher(server, root, root / "home-st"))
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            while not app.ready:  # opened behind the first frame
                await asyncio.sleep(0.01)
            sid = app.session.id
            seq = iter(range(1, 10**9))
            poster = Poster(app)  # what the Session's subscriber is: a burst becomes one message

            def post(payload: ev.Payload) -> None:
                poster(ev.Event.of(payload, next(seq), sid, "t", time.time()))

            latencies: list[float] = []

            streaming = True

            async def typist() -> None:
                # A key as the terminal driver delivers it (pilot.press would wait for the
                # whole screen to go idle, which a stream never lets it), every 20 ms for as
                # long as the answer streams; the last one may land just after it.
                typed = ""
                while streaming:
                    await asyncio.sleep(0.02)
                    typed, latency = await _key(app, typed)
                    latencies.append(latency)

            t0 = time.perf_counter()
            typing = asyncio.ensure_future(typist())
            post(ev.TurnStarted())
            for i in range(0, len(text), CHUNK):
                post(ev.TextDelta(text=text[i : i + CHUNK]))
                if i % (CHUNK * 64) == 0:
                    await asyncio.sleep(0)  # a provider's stream yields between reads
            message = Message("assistant", (TextPart(text),))
            post(ev.MessageAssistant(message=message, finish_reason="stop"))
            # Shown: the finished answer's last block is mounted (every event before it is
            # handled, the answer's earlier blocks mounted above it).
            while not app.query(AnswerBlock) or app.lanes[None].answer is not None:
                await asyncio.sleep(0.01)
            await pilot.pause()  # and drawn: a screen update after it
            elapsed = time.perf_counter() - t0
            streaming = False
            block = app.query(AnswerBlock).last()
            assert block.text == text and block._lines[-1] is not None  # its end was rendered
            await typing
            return elapsed, len(text) / 4 / elapsed, latencies
    finally:
        server.stop()


async def _scroll(root: Path, messages: int) -> tuple[float, list[float], list[float]]:
    """Seconds to open a stored ``messages``-message session; scrolling up a page at a time
    through what is mounted (older blocks mount as the top is reached) and back down, each
    page's wall time and its longest screen update (layout and render: the frame).

    The wall time includes ``pilot.pause()``, which queues a callback on every mounted widget
    and waits for all of them: test-driver work that grows with the widget count, not a frame.
    The frame is timed inside Textual's own screen update (``Screen._on_timer_update``)."""
    from textual.screen import Screen

    from mcode.tui.app import McodeApp

    updates: list[float] = []
    update = Screen._on_timer_update

    def timed(screen: Screen[Any]) -> None:
        t = time.perf_counter()
        update(screen)
        updates.append(time.perf_counter() - t)

    server = ScriptedServer([]).start()
    Screen._on_timer_update = timed  # type: ignore[method-assign,assignment]
    try:
        lnch = launcher(server, root, root / "home-sc")
        sid = _store_long_session(lnch, messages)
        t0 = time.perf_counter()
        app = McodeApp(lnch, first=lnch.open(resume_id=sid), resumed=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            opened = time.perf_counter() - t0
            walls, frames = [], []
            for direction in (-1, 1):
                for _ in range(25):
                    updates.clear()
                    t = time.perf_counter()
                    app.action_page(direction)
                    await pilot.pause()
                    walls.append(time.perf_counter() - t)
                    frames.append(max(updates, default=0.0))
            return opened, walls, frames
    finally:
        Screen._on_timer_update = update  # type: ignore[method-assign]
        server.stop()


async def _tool_output(
    root: Path, lines: int, runs: int = 5
) -> tuple[list[float], list[float], tuple[float, float]]:
    """A real ``bash`` call of ``seq {lines}`` (full-auto, on the scripted model server),
    ``runs`` turns: per run, seconds from its ``tool.finished`` reaching the lane to the end of
    the first screen update after it (the finished card drawn); and keystroke latencies
    measured (a key every 10 ms, as in ``_stream``) from the turn's start to that frame; then
    the screen updates after expanding the last card (Enter: up to 2,000 lines) until it is
    drawn: their total and the longest, in seconds."""
    from textual.screen import Screen

    from mcode import events as ev
    from mcode.tui.app import McodeApp
    from mcode.tui.cards import ToolCard
    from mcode.tui.lanes import Lane

    finished_at: list[float] = []
    frames_done: list[float] = []
    show, update = Lane.show, Screen._on_timer_update

    async def timed_show(self: Lane, payload: ev.Payload) -> None:
        if isinstance(payload, ev.ToolFinished):
            finished_at.append(time.perf_counter())
        await show(self, payload)

    frame_times: list[float] = []

    def timed_update(screen: Screen[Any]) -> None:
        t = time.perf_counter()
        update(screen)
        frames_done.append(time.perf_counter())
        frame_times.append(frames_done[-1] - t)

    call = {"id": "c1", "name": "bash", "arguments": {"command": f"seq {lines}"}}
    # One more run than measured: the first (the first answer's Markdown imports) is not.
    runs += 1
    script = [step for _ in range(runs) for step in ({"tool_calls": [call]}, {"text": "done"})]
    server = ScriptedServer(script).start()
    Lane.show = timed_show  # type: ignore[method-assign]
    Screen._on_timer_update = timed_update  # type: ignore[method-assign,assignment]
    try:
        app = McodeApp(launcher(server, root, root / f"home-to{lines}", mode="full-auto"))
        drawn: list[float] = []
        latencies: list[float] = []
        async with app.run_test(size=(120, 40)) as pilot:
            while not app.ready:
                await asyncio.sleep(0.01)
            for run in range(runs):
                app.prompt.set_text("")
                typed = ""
                app.send_prompt(f"count {run}")
                while True:
                    await asyncio.sleep(0.01)
                    typed, latency = await _key(app, typed)
                    if run:
                        latencies.append(latency)
                    if len(finished_at) > run and frames_done[-1] > finished_at[run]:
                        break
                after = next(f for f in frames_done if f > finished_at[run])
                if run:
                    drawn.append(after - finished_at[run])
                card = app.query(ToolCard).last()
                assert card.status == "ok" and card.output.endswith(f"{lines}\n")
                while not app.session.idle:
                    await asyncio.sleep(0.01)
            # The last card expanded (up to 2,000 lines): the screen updates until it is
            # settled (two pilot pauses), their total and the longest.
            await pilot.pause(0.2)
            frame_times.clear()
            app.query(ToolCard).last().action_toggle_output()
            await pilot.pause()
            await pilot.pause()
            expand = (sum(frame_times), max(frame_times, default=0.0))
        return drawn, latencies, expand
    finally:
        Lane.show = show  # type: ignore[method-assign]
        Screen._on_timer_update = update  # type: ignore[method-assign]
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--first-frame", action="store_true", help="only the start-up rows")
    parser.add_argument("--tool-output", action="store_true", help="only the tool-output rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_repo(Path(tmp) / "repo", {"a.txt": "a\n"})
        if args.tool_output:
            for lines in (10_000, 10):
                drawn, keys, expand = asyncio.run(_tool_output(root, lines))
                print(
                    f"seq {lines}: result to card drawn median {statistics.median(drawn) * 1000:.1f}"
                    f" ms, max {max(drawn) * 1000:.1f} ms; {len(keys)} keys median "
                    f"{statistics.median(keys) * 1000:.0f} ms, max {max(keys) * 1000:.0f} ms; "
                    f"expanded: frames {expand[0] * 1000:.0f} ms, longest {expand[1] * 1000:.0f} ms"
                )
            return
        first, ready, bare = _first_frame(root)
        on_terminal = _tmux_first_screen(root)
        if args.first_frame:
            print(
                f"first frame {first * 1000:.0f} ms, session bound {ready * 1000:.0f} ms, "
                f"bare Textual {bare * 1000:.0f} ms"
            )
            if on_terminal:
                print(
                    f"under tmux: mcode's first screen {on_terminal[0] * 1000:.0f} ms, "
                    f"bare Textual's {on_terminal[1] * 1000:.0f} ms"
                )
            return
        elapsed, tps, keys = asyncio.run(_stream(root, int(args.mb * 1_000_000)))
        opened, walls, frames = asyncio.run(_scroll(root, args.messages))
        big_drawn, big_keys, big_expand = asyncio.run(_tool_output(root, 10_000))
        small_drawn, small_keys, _ = asyncio.run(_tool_output(root, 10))
    rows = [
        (
            "start-up to first frame, fresh process, median of 5",
            f"{first * 1000:.0f} ms",
            "< 400 ms",
        ),
        ("  the session bound behind it, median", f"{ready * 1000:.0f} ms", ""),
        ("  a bare Textual app's first frame, median", f"{bare * 1000:.0f} ms", "(the floor)"),
        *(
            [
                (
                    "`mcode` under tmux, spawn to first screen, median of 7",
                    f"{on_terminal[0] * 1000:.0f} ms",
                    "< 400 ms",
                ),
                ("  a bare Textual app under tmux, median", f"{on_terminal[1] * 1000:.0f} ms", ""),
            ]
            if on_terminal
            else []
        ),
        (f"{args.mb:g} MB Markdown in {CHUNK}-char chunks", f"{elapsed:.2f} s", ""),
        ("  throughput (4 chars = 1 token)", f"{tps:,.0f} tokens/s", ">= 2,000 tokens/s"),
        (
            f"keystroke to screen while streaming ({len(keys)} keys), median",
            f"{statistics.median(keys) * 1000:.0f} ms",
            "< 50 ms",
        ),
        ("keystroke to screen while streaming, max", f"{max(keys) * 1000:.0f} ms", ""),
        (f"open a {args.messages}-message session", f"{opened * 1000:.0f} ms", ""),
        (
            "scroll a page, wall incl. pilot.pause, median",
            f"{statistics.median(walls) * 1000:.1f} ms",
            "",
        ),
        ("scroll a page, wall incl. pilot.pause, max", f"{max(walls) * 1000:.1f} ms", ""),
        ("scroll frame (screen update), median", f"{statistics.median(frames) * 1000:.1f} ms", ""),
        ("scroll frame (screen update), max", f"{max(frames) * 1000:.1f} ms", "<= 100 ms"),
        (
            "bash `seq 10000`: tool result to card drawn, median of 5",
            f"{statistics.median(big_drawn) * 1000:.1f} ms",
            "",
        ),
        ("  the same, max", f"{max(big_drawn) * 1000:.1f} ms", ""),
        (
            f"  keystroke to screen meanwhile ({len(big_keys)} keys), median",
            f"{statistics.median(big_keys) * 1000:.0f} ms",
            "< 50 ms",
        ),
        ("  keystroke to screen meanwhile, max", f"{max(big_keys) * 1000:.0f} ms", ""),
        (
            "  expand its card (2,000 lines): frames total / longest",
            f"{big_expand[0] * 1000:.0f} / {big_expand[1] * 1000:.0f} ms",
            "",
        ),
        (
            "bash `seq 10` (the floor): result to card drawn, median",
            f"{statistics.median(small_drawn) * 1000:.1f} ms",
            "",
        ),
        (
            f"  keystroke to screen meanwhile ({len(small_keys)} keys), max",
            f"{max(small_keys) * 1000:.0f} ms",
            "",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':>18}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>18}  {target}")


if __name__ == "__main__":
    main()
