"""Helpers for the TUI tests: an app on a scripted model server, and waiting on it."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcode.store import Store
from mcode.tui.app import McodeApp
from mcode.tui.launch import Launcher


def pilot_test(scenario: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """A test written as a coroutine (the app's Pilot is async), run in its own event loop."""

    @functools.wraps(scenario)
    def test(*args: Any, **kwargs: Any) -> None:
        asyncio.run(scenario(*args, **kwargs))

    return test


def launcher(server: Any, repo: Path, home: Path, mode: str = "ask", **flags: Any) -> Launcher:
    """A Launcher whose sessions talk to ``server`` (Chat Completions) in ``repo``."""
    env = {"XDG_CONFIG_HOME": str(home / "cfg"), "HOME": str(home)}
    given = {
        "provider": "openai",
        "base_url": server.base_url,
        "model": "m",
        "permission_mode": mode,
        **flags,
    }
    return Launcher(repo, Store(home / "sessions.db"), given, env=env, data_dir=home / "data")


async def until(pilot: Any, condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Let the app run until ``condition()`` is true (its value), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except AttributeError:
            # ``app.session`` before the session, opened behind the first frame, is bound.
            if getattr(pilot.app, "ready", True):
                raise
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("the app never got there")
        await pilot.pause(0.02)
        await asyncio.sleep(0)


async def type_text(pilot: Any, text: str) -> None:
    """Type ``text`` into the focused prompt key by key, as a user would."""
    keys = ["space" if c == " " else c for c in text]
    await pilot.press(*keys)


def screen_text(app: McodeApp) -> str:
    """Everything the conversation shows, as plain text (what a user reads)."""
    from mcode.tui.blocks import AnswerBlock, LiveAnswer, Note, UserBlock
    from mcode.tui.cards import ErrorCard, ToolCard

    parts = []
    for w in app.query("UserBlock, AnswerBlock, LiveAnswer, Note, ErrorCard, ToolCard"):
        if isinstance(w, UserBlock | AnswerBlock | LiveAnswer | Note):
            parts.append(w.text)
        elif isinstance(w, ErrorCard):
            parts.append(f"{w.message} {w.hint}")
        elif isinstance(w, ToolCard):
            parts.append(f"[{w.name_} {w.status}] {w.summary} {w.output}")
    return "\n".join(parts)


async def ask(pilot: Any, app: McodeApp, text: str, answers: int) -> None:
    """Type ``text``, send it, and wait until the app shows ``answers`` answers, idle."""
    from mcode.tui.blocks import AnswerBlock

    await type_text(pilot, text)
    await pilot.press("enter")
    await until(pilot, lambda: app.session.idle and len(app.query(AnswerBlock)) == answers)


async def command(pilot: Any, app: McodeApp, line: str, shows: str) -> None:
    """Type the command ``line``, send it, and wait until the conversation shows ``shows``."""
    await type_text(pilot, line)
    await pilot.press("enter")  # a command typed out in full is sent, not completed
    await until(pilot, lambda: shows in screen_text(app))
