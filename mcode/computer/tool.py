"""The ``computer`` tool: Anthropic's computer-use actions on an X display.

    {"action": "left_click", "coordinate": [640, 300]}            one action, as Claude sends it
    {"actions": [{"action": "left_click", "coordinate": [640, 300]},
                 {"action": "type", "text": "hello"},
                 {"action": "key", "text": "Return"}]}            several, in order, one result

Coordinates are pixels of the screenshot the model was last shown (scaled to fit
``max_size``), mapped back to the screen through that screenshot's :class:`Geometry`, so a
model reading positions off the image clicks where it looked. After the actions the result
carries a fresh screenshot (taken ``settle`` seconds after the last action, so the screen has
redrawn); a call of only ``cursor_position`` answers in text.

Each action is a ``computer.action`` event. Screenshots are written to ``shots_dir`` (under the
session's data folder) and the image part records that file, so events and the store keep a
reference, not the image (:class:`mcode.messages.ImagePart` ``ref``). How the tool is offered
(Anthropic's native ``computer_20250124`` type or a plain function) is the request builders'
business: the spec says only that it acts on a screen of the shown size (``ToolSpec.display``).
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mcode import events as ev
from mcode.computer.capture import MAX_SIZE, Capture, Geometry, ImageFormat, capture
from mcode.computer.input import Button, ScrollDirection, XdoTool
from mcode.errors import ToolError
from mcode.messages import ImagePart, ToolSpec
from mcode.tools.base import PermissionClass, Tool, ToolContext, ToolResult

__all__ = ["ACTIONS", "ComputerTool"]

ACTIONS = (
    "screenshot",
    "left_click",
    "right_click",
    "middle_click",
    "double_click",
    "triple_click",
    "mouse_move",
    "left_click_drag",
    "left_mouse_down",
    "left_mouse_up",
    "scroll",
    "type",
    "key",
    "hold_key",
    "wait",
    "cursor_position",
)
_CLICKS: dict[str, tuple[Button, int]] = {
    "left_click": ("left", 1),
    "right_click": ("right", 1),
    "middle_click": ("middle", 1),
    "double_click": ("left", 2),
    "triple_click": ("left", 3),
}
MAX_WAIT = 30.0  # seconds one wait or hold_key may take
MAX_ACTIONS = 30  # per call


@dataclass(frozen=True, slots=True)
class _Action:
    name: str
    coordinate: tuple[int, int] | None = None
    start: tuple[int, int] | None = None
    text: str | None = None
    direction: ScrollDirection = "down"
    amount: int = 3
    duration: float = 0.0


_ACTION_PROPERTIES: dict[str, Any] = {
    "action": {"type": "string", "enum": list(ACTIONS)},
    "coordinate": {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 2,
        "maxItems": 2,
        "description": "[x, y] in the screenshot's pixels",
    },
    "start_coordinate": {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 2,
        "maxItems": 2,
        "description": "left_click_drag: where the drag starts",
    },
    "text": {
        "type": "string",
        "description": "type: the text; key and hold_key: xdotool keys such as ctrl+s or Return; "
        "a click: modifier keys held during it (shift, ctrl)",
    },
    "scroll_direction": {"type": "string", "enum": ["up", "down", "left", "right"]},
    "scroll_amount": {"type": "integer", "description": "scroll: wheel clicks (default 3)"},
    "duration": {"type": "number", "description": "wait and hold_key: seconds"},
}


class ComputerTool(Tool):
    """Acts on X display ``display`` through ``xdo``; captures monitor ``monitor``. ``screen``
    is the captured area's size (for the size the model is told before any capture)."""

    name: ClassVar[str] = "computer"
    # The size is the shown screen's (spec() fills it in). No display name: a virtual display's
    # number changes from run to run, and the tools are the start of every request's prefix.
    description: ClassVar[str] = (
        "See and use this computer's screen with mouse and keyboard. The screen is shown to you "
        "as {size} pixels: give every coordinate in that space. Every call returns a fresh "
        "screenshot after its actions (cursor_position alone answers in text). Take a "
        "screenshot first, then act on what you see. Several actions in one call: "
        '{{"actions": [{{"action": "left_click", "coordinate": [x, y]}}, '
        '{{"action": "type", "text": "..."}}]}}. Keys are xdotool keysyms: Return, Tab, ctrl+s.'
    )
    permission: ClassVar[PermissionClass] = "computer"
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            **_ACTION_PROPERTIES,
            "actions": {
                "type": "array",
                "description": "several actions, done in order (instead of action)",
                "items": {
                    "type": "object",
                    "properties": _ACTION_PROPERTIES,
                    "required": ["action"],
                },
            },
        },
        "additionalProperties": False,
    }

    def __init__(
        self,
        display: str,
        *,
        xdo: XdoTool,
        screen: Geometry,
        shots_dir: Path | None = None,
        settle: float = 0.5,
        image_format: ImageFormat = "png",
        max_size: tuple[int, int] = MAX_SIZE,
        monitor: int = 1,
    ) -> None:
        self.display = display
        self.xdo = xdo
        self.geometry = screen  # of the last screenshot shown, or of the screen before any
        self.offered = screen.shown  # the size the tool's spec states (part of every prefix)
        self.shots_dir = shots_dir
        self.settle = settle
        self.image_format: ImageFormat = image_format
        self.max_size = max_size
        self.monitor = monitor
        # Numbered on from the files already there: a resumed session's history points at them.
        self.shots = _last_number(shots_dir)

    @classmethod
    def open(
        cls,
        display: str,
        *,
        monitor: int = 1,
        max_size: tuple[int, int] = MAX_SIZE,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> ComputerTool:
        """The tool for ``display``, after checking it can be used: xdotool installed, the
        display open, the monitor there. Raises ComputerUnavailable saying what is missing."""
        xdo = XdoTool(display, env=env)
        shot = capture(display, monitor=monitor, max_size=max_size)
        return cls(display, xdo=xdo, screen=shot.geometry, monitor=monitor, max_size=max_size,
                   **kwargs)  # fmt: skip

    def spec(self) -> ToolSpec:
        size = f"{self.offered[0]}x{self.offered[1]}"
        text = self.description.format(size=size)
        return ToolSpec(self.name, text, self.parameters, display=self.offered)

    def subject(self, args: dict[str, Any]) -> str:
        """The actions, comma-separated: ``computer(screenshot)`` allows only looking."""
        raw = args.get("actions")
        items = raw if isinstance(raw, list) else [args]
        return ",".join(str(a.get("action", "")) for a in items if isinstance(a, dict))

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        actions = _parse(args)
        done: list[str] = []
        answer: list[str] = []
        for action in actions:
            line, said = await self._do(action, ctx)
            done.append(line)
            if said:
                answer.append(said)
        if all(a.name == "cursor_position" for a in actions):
            return ToolResult("\n".join(answer), summary=answer[-1])
        if any(a.name != "screenshot" for a in actions) and self.settle > 0:
            await asyncio.sleep(self.settle)
        shot = await asyncio.to_thread(self._capture)
        image = self._image(shot)
        g = shot.geometry
        scaled = "" if g.shown == (g.width, g.height) else f", scaled from {g.width}x{g.height}"
        ctx.emit_event(
            ev.ComputerAction(
                id=ctx.call_id, action="screenshot", size=g.size_text, screenshot=image.ref or None
            )
        )
        lines = [*answer, f"Screenshot {g.size_text}{scaled} after: {'; '.join(done)}."]
        return ToolResult("\n".join(lines), summary="; ".join(done), images=[image])

    async def _do(self, a: _Action, ctx: ToolContext) -> tuple[str, str]:
        """Do one action: (what was done, for the result; what it answers, if anything)."""
        point = self._screen_point(a.coordinate) if a.coordinate is not None else None
        said = ""
        name = a.name
        if name in _CLICKS:
            button, repeat = _CLICKS[name]
            at = point if point is not None else await self.xdo.cursor()
            await self._with_modifiers(a.text, self.xdo.click(at[0], at[1], button, repeat))
        elif name == "mouse_move":
            assert point is not None
            await self.xdo.move(*point)
        elif name == "left_click_drag":
            assert point is not None and a.start is not None
            await self.xdo.drag(self._screen_point(a.start), point)
        elif name in ("left_mouse_down", "left_mouse_up"):
            if point is not None:
                await self.xdo.move(*point)
            await self.xdo.button(name == "left_mouse_down")
        elif name == "scroll":
            at = point if point is not None else await self.xdo.cursor()
            await self.xdo.scroll(a.direction, a.amount, at)
        elif name == "type":
            await self.xdo.type(a.text or "")
        elif name == "key":
            await self.xdo.key(a.text or "")
        elif name == "hold_key":
            await self.xdo.hold_key(a.text or "", a.duration)
        elif name == "wait":
            await asyncio.sleep(a.duration)
        elif name == "cursor_position":
            x, y = self.geometry.to_shown(*await self.xdo.cursor())
            said = f"The mouse is at [{x}, {y}]."
        elif name == "screenshot":
            return "screenshot", said  # the capture every call ends with is its event
        ctx.emit_event(
            ev.ComputerAction(
                id=ctx.call_id,
                action=name,
                coordinate=a.coordinate,
                screen=point,
                text=a.text,
                size=self.geometry.size_text,
            )
        )
        return _described(a), said

    async def _with_modifiers(self, keys: str | None, click: Any) -> None:
        if not keys:
            await click
            return
        names = keys.split("+")
        await self.xdo.keys_down(names)
        try:
            await click
        finally:
            await asyncio.shield(self.xdo.keys_up(names))

    def _screen_point(self, point: tuple[int, int]) -> tuple[int, int]:
        g = self.geometry
        if not g.contains(*point):
            raise ToolError(
                f"coordinate [{point[0]}, {point[1]}] is outside the {g.size_text} screenshot",
                hint=f"give x in 0..{g.shown[0] - 1} and y in 0..{g.shown[1] - 1}",
            )
        return g.to_screen(*point)

    def _capture(self) -> Capture:
        shot = capture(
            self.display,
            monitor=self.monitor,
            max_size=self.max_size,
            image_format=self.image_format,
        )
        self.geometry = shot.geometry
        return shot

    def _image(self, shot: Capture) -> ImagePart:
        self.shots += 1
        data = base64.b64encode(shot.data).decode("ascii")
        source = f"screenshot {self.shots} ({shot.geometry.size_text})"
        if self.shots_dir is None:
            return ImagePart(shot.media_type, data, source=source)
        self.shots_dir.mkdir(parents=True, exist_ok=True)
        suffix = "png" if shot.media_type == "image/png" else "jpg"
        path = self.shots_dir / f"{self.shots:05d}.{suffix}"
        path.write_bytes(shot.data)
        return ImagePart(shot.media_type, data, source=source, ref=str(path))


def _last_number(folder: Path | None) -> int:
    if folder is None or not folder.is_dir():
        return 0
    return max((int(p.stem) for p in folder.iterdir() if p.stem.isdigit()), default=0)


def _parse(args: dict[str, Any]) -> list[_Action]:
    raw = args.get("actions")
    if raw is not None:
        if "action" in args:
            raise ToolError("give either action or actions, not both")
        if not isinstance(raw, list) or not raw:
            raise ToolError("actions must be a non-empty list of action objects")
        if len(raw) > MAX_ACTIONS:
            raise ToolError(f"at most {MAX_ACTIONS} actions per call, not {len(raw)}")
        items = raw
    else:
        if "action" not in args:
            raise ToolError(
                "missing argument action",
                hint=f"one of: {', '.join(ACTIONS)} (or actions: a list of them)",
            )
        items = [args]
    return [_action(item, i) for i, item in enumerate(items)]


def _action(item: Any, index: int) -> _Action:
    where = f"action {index + 1}: " if index else ""
    if not isinstance(item, dict):
        raise ToolError(f'{where}an action must be an object like {{"action": "screenshot"}}')
    name = item.get("action")
    if name not in ACTIONS:
        raise ToolError(f"{where}unknown action {name!r}", hint=f"one of: {', '.join(ACTIONS)}")
    coordinate = _point(item, "coordinate", where)
    start = _point(item, "start_coordinate", where)
    text = item.get("text")
    if text is not None and not isinstance(text, str):
        raise ToolError(f"{where}text must be a string")
    if name in ("mouse_move", "left_click_drag") and coordinate is None:
        raise ToolError(f"{where}{name} needs coordinate: [x, y]")
    if name == "left_click_drag" and start is None:
        raise ToolError(f"{where}left_click_drag needs start_coordinate: [x, y] and coordinate")
    if name in ("type", "key", "hold_key") and not text:
        raise ToolError(f"{where}{name} needs text" + (" (the keys)" if name != "type" else ""))
    direction = item.get("scroll_direction", "down")
    amount = item.get("scroll_amount", 3)
    if name == "scroll":
        if direction not in ("up", "down", "left", "right") or "scroll_direction" not in item:
            raise ToolError(f"{where}scroll needs scroll_direction: up, down, left or right")
        if not isinstance(amount, int) or isinstance(amount, bool) or not 1 <= amount <= 50:
            raise ToolError(f"{where}scroll_amount must be a whole number from 1 to 50")
    duration = item.get("duration", 0.0)
    if name in ("wait", "hold_key"):
        if not isinstance(duration, int | float) or isinstance(duration, bool):
            raise ToolError(f"{where}{name} needs duration: seconds, a number")
        if not 0 <= duration <= MAX_WAIT:
            raise ToolError(f"{where}duration must be between 0 and {MAX_WAIT:g} seconds")
    return _Action(name, coordinate, start, text, direction, amount, float(duration or 0))


def _point(item: dict[str, Any], key: str, where: str) -> tuple[int, int] | None:
    value = item.get(key)
    if value is None:
        return None
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )
    if not ok:
        raise ToolError(f"{where}{key} must be [x, y], two numbers, not {value!r}")
    return round(value[0]), round(value[1])


def _described(a: _Action) -> str:
    if a.name == "type":
        return f"type {len(a.text or '')} characters"
    if a.name in ("key", "hold_key"):
        return f"{a.name} {a.text}"
    if a.name == "left_click_drag" and a.start is not None and a.coordinate is not None:
        return f"drag from [{a.start[0]}, {a.start[1]}] to [{a.coordinate[0]}, {a.coordinate[1]}]"
    if a.name == "scroll":
        return f"scroll {a.direction} {a.amount}"
    if a.name == "wait":
        return f"wait {a.duration:g}s"
    if a.coordinate is not None:
        return f"{a.name} at [{a.coordinate[0]}, {a.coordinate[1]}]"
    return a.name
