"""Mouse and keyboard on an X display, through xdotool.

Each method is one xdotool command line (a few chained commands at most), run with ``DISPLAY``
set to the display this object drives and nothing else of the environment changed. Keys are
xdotool keysyms joined with ``+`` (``ctrl+s``, ``Return``, ``alt+Tab``); text is typed as
given, one character at a time (xdotool ``type`` maps every character, unicode included, to a
key). Coordinates here are screen pixels: mapping the model's image pixels to the screen is the
tool's job (:class:`mcode.computer.capture.Geometry`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Literal

from mcode.computer.display import ComputerUnavailable, need_program
from mcode.errors import ToolError

__all__ = ["BUTTONS", "Button", "ScrollDirection", "XdoTool"]

Button = Literal["left", "middle", "right"]
BUTTONS: dict[str, int] = {"left": 1, "middle": 2, "right": 3}
ScrollDirection = Literal["up", "down", "left", "right"]
_SCROLL_BUTTONS = {"up": 4, "down": 5, "left": 6, "right": 7}
# Milliseconds between typed characters: xdotool's default (12) drops characters in some
# toolkits' entries under load; 8 is what Anthropic's reference implementation uses.
TYPE_DELAY_MS = 8
TYPE_CHUNK = 50  # characters per xdotool call, so a long text cannot outgrow the argv limit


class XdoTool:
    """Input on X display ``display``. ``env`` is the environment xdotool runs in (default:
    mcode's), with ``DISPLAY`` replaced; ``path`` is where xdotool is looked for."""

    def __init__(
        self, display: str, *, env: Mapping[str, str] | None = None, path: str | None = None
    ) -> None:
        base = dict(os.environ if env is None else env)
        self.program = need_program("xdotool", "xdotool", path=path or base.get("PATH"))
        self.display = display
        self.env = {**base, "DISPLAY": display}

    async def move(self, x: int, y: int) -> None:
        await self._run("mousemove", "--sync", str(x), str(y))

    async def click(self, x: int, y: int, button: Button = "left", repeat: int = 1) -> None:
        await self._run(
            "mousemove", "--sync", str(x), str(y),
            "click", "--repeat", str(repeat), "--delay", "80", str(BUTTONS[button]),
        )  # fmt: skip

    async def drag(self, start: tuple[int, int], end: tuple[int, int]) -> None:
        await self._run(
            "mousemove", "--sync", str(start[0]), str(start[1]), "mousedown", "1",
            "mousemove", "--sync", str(end[0]), str(end[1]), "mouseup", "1",
        )  # fmt: skip

    async def button(self, down: bool) -> None:
        """Press (``down``) or release the left button where the mouse is."""
        await self._run("mousedown" if down else "mouseup", "1")

    async def keys_down(self, names: list[str]) -> None:
        await self._run("keydown", "--", *names)

    async def keys_up(self, names: list[str]) -> None:
        await self._run("keyup", "--", *names)

    async def scroll(self, direction: ScrollDirection, amount: int, at: tuple[int, int]) -> None:
        button = str(_SCROLL_BUTTONS[direction])
        await self._run(
            "mousemove", "--sync", str(at[0]), str(at[1]),
            "click", "--repeat", str(amount), "--delay", "20", button,
        )  # fmt: skip

    async def type(self, text: str) -> None:
        for i in range(0, len(text), TYPE_CHUNK):
            chunk = text[i : i + TYPE_CHUNK]
            await self._run("type", "--delay", str(TYPE_DELAY_MS), "--", chunk)

    async def key(self, keys: str) -> None:
        await self._run("key", "--", *keys.split())

    async def hold_key(self, keys: str, seconds: float) -> None:
        names = keys.split()
        await self._run("keydown", "--", *names)
        try:
            await asyncio.sleep(seconds)
        finally:
            # Released even when the call is cancelled: a key left down would type for ever.
            await asyncio.shield(self._run("keyup", "--", *names))

    async def cursor(self) -> tuple[int, int]:
        out = await self._run("getmouselocation", "--shell")
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return int(values["X"]), int(values["Y"])

    async def _run(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.program,
            *args,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await proc.communicate()
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        text = err.decode(errors="replace").strip()
        if "No such key name" in text:  # xdotool skips the key, says so and exits 0
            bad = text.split("'")[1] if text.count("'") >= 2 else text
            raise ToolError(
                f"there is no key named {bad!r}",
                hint="use xdotool keysyms: Return, Tab, BackSpace, Escape, ctrl+s, Page_Down",
            )
        if proc.returncode != 0:
            if "Can't open display" in text or "Failed creating new xdo" in text:
                raise ComputerUnavailable(
                    f"xdotool cannot open X display {self.display}",
                    hint="check that the display is running (xdpyinfo), or use --virtual-display",
                )
            raise ToolError(
                f"xdotool {args[0]} failed (exit {proc.returncode}): {text or 'no message'}",
                hint="check the key names (xdotool keysyms such as ctrl+s, Return, Tab)"
                if args[0] in ("key", "keydown", "keyup")
                else "",
            )
        return out.decode(errors="replace")
