"""Tool cards and error cards.

A tool card follows one call through its events: ``tool.requested`` (name and arguments; an
edit shows its diff at once, so it can be judged before it is approved), ``permission.*``,
``tool.started``, ``tool.output`` (the tail of a command's output, the whole of it one
Enter or click away), ``tool.finished`` (ok or failed, its summary, how long it took). A
``task`` call's card also holds the sub-agent's own lane (mcode/tui/lanes.py).

Every part is a child made in ``__init__``, so a card is filled in before it is mounted as
well as after (a resumed session's history is built in one batch, then mounted).
"""

from __future__ import annotations

import difflib
import json
import time
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Text
from textual.containers import Vertical
from textual.geometry import Size
from textual.selection import Selection
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from mcode.tui.selection import drawn, selected_text

TAIL_LINES = 8
DIFF_LINES = 40
FULL_OUTPUT_LINES = 2000
# What bash appends where it stopped streaming a long output (mcode/tools/bash.py, _pump):
# such a card shows the result at the end, whose tail is the output's real end.
LIVE_CUT = "[… live output stops here"


def _arguments(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def describe_call(name: str, raw: str) -> str:
    """The call in a few words: what a user reads to know what it does."""
    args = _arguments(raw)
    if name == "bash":
        return f"$ {args.get('command', '')}"
    if name in ("read", "write", "edit", "ls") and "path" in args:
        extra = ""
        if name == "read" and ("offset" in args or "limit" in args):
            extra = f" (from line {args.get('offset', 1)}, {args.get('limit', 'all')} lines)"
        if name == "write":
            extra = f" ({str(args.get('content', '')).count(chr(10)) + 1} lines)"
        return f"{args['path']}{extra}"
    if name == "grep":
        where = args.get("path") or args.get("glob") or ""
        return f"{args.get('pattern', '')!r}" + (f" in {where}" if where else "")
    if name == "glob":
        return str(args.get("pattern", ""))
    if name == "task":
        first = str(args.get("description") or args.get("prompt") or "").strip().splitlines()
        return first[0][:120] if first else ""
    if name == "todo":
        todos = args.get("todos")
        return f"{len(todos)} items" if isinstance(todos, list) else ""
    text = raw if len(raw) <= 160 else raw[:157] + "…"
    return text


def diff_of(name: str, raw: str) -> Text | None:
    """An edit as a coloured unified diff (a write as added lines); None for other tools."""
    args = _arguments(raw)
    if name == "edit" and "old_string" in args and "new_string" in args:
        old = str(args["old_string"]).splitlines()
        new = str(args["new_string"]).splitlines()
        lines = list(difflib.unified_diff(old, new, lineterm="", n=2))[2:]
    elif name == "write" and "content" in args:
        lines = ["+" + line for line in str(args["content"]).splitlines()]
    else:
        return None
    text = Text()
    for line in lines[:DIFF_LINES]:
        style = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1], "")
        text.append(line + "\n", style=style)
    if len(lines) > DIFF_LINES:
        text.append(f"… {len(lines) - DIFF_LINES} more lines\n", style="dim")
    text.rstrip()
    return text


class CardBody(Widget):
    """A card's output (and diff), rendered into lines once per width and style and drawn
    from them. A Static re-rendered its whole content for every layout and paint: an expanded
    card's 2,000 lines wrapped six times over, ~300 ms on a 2-core machine, once here."""

    DEFAULT_CSS = """
    CardBody { height: auto; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._renderable: RenderableType = Text()
        self._strips: list[Strip] = []
        self._key: tuple[int, Style] | None = None

    def update(self, renderable: RenderableType) -> None:
        self._renderable = renderable
        self._key = None
        self.refresh(layout=True)

    def _lines(self, width: int) -> list[Strip]:
        style = self.rich_style
        if self._key != (width, style):
            console = self.app.console
            options = console.options.update_width(max(1, width))
            lines = console.render_lines(self._renderable, options, style=style, pad=False)
            self._strips = [Strip(line).simplify() for line in lines]
            self._key = (width, style)
        return self._strips

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._lines(width))  # an empty body is a line, as an empty Static is

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        lines = self._lines(width)
        pad = Style.from_color(bgcolor=self.rich_style.bgcolor)  # as a Static pads its lines
        if y >= len(lines):
            return Strip.blank(width, pad)
        return drawn(self, lines[y].extend_cell_length(width, pad), y)

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        return selected_text(self._strips, selection) if self._key is not None else None


class ToolCard(Vertical, can_focus=True):
    """One tool call. Enter or a click shows all of its output (and hides it again)."""

    DEFAULT_CSS = """
    ToolCard {
        height: auto;
        margin: 1 0 0 0;
        padding: 0 1;
        border-left: outer $secondary;
    }
    ToolCard:focus { border-left: outer $accent; background: $boost; }
    ToolCard.-failed { border-left: outer $error; }
    ToolCard .body { color: $text-muted; }
    ToolCard .lane { height: auto; padding: 0 0 0 2; display: none; }
    ToolCard .lane.-used { display: block; }
    """
    BINDINGS: ClassVar = [("enter", "toggle_output", "Show all output")]

    def __init__(self, call_id: str, name: str, arguments: str) -> None:
        self.call_id = call_id
        self.name_ = name
        self.arguments = arguments
        self.status = "requested"
        self.summary = ""
        self.duration: float | None = None
        self.output = ""
        self.expanded = False
        self.started_at: float | None = None
        self._header = Static(classes="header")
        self._diff = diff_of(name, arguments)
        self._body = CardBody(classes="body")
        # A task call's sub-agent renders here (its lane mounts into this container).
        self.lane = Vertical(classes="lane")
        super().__init__(self._header, self._body, self.lane)
        self._redraw()

    # -- the events -----------------------------------------------------------------------
    def asked(self) -> None:
        self.status = "asking"
        self._redraw()

    def decided(self, allowed: bool, reason: str) -> None:
        if not allowed:
            self.status = "denied"
            self.summary = reason
            self.add_class("-failed")
        self._redraw()

    def started(self) -> None:
        self.status = "running"
        self.started_at = time.monotonic()
        self._redraw()

    def add_output(self, text: str) -> None:
        self.output += text
        self._redraw()

    def finished(self, ok: bool, summary: str, duration: float, result: str) -> None:
        if self.status == "denied":  # its result only repeats the denial
            self.duration = None
            self._redraw()
            return
        self.status = "ok" if ok else "failed"
        self.summary = summary
        self.duration = duration
        if self.name_ == "bash" and (not self.output or LIVE_CUT in self.output):
            # A resumed session has the result, not the deltas; a long output's deltas stop
            # at the cap, and the result has its head and its last lines.
            self.output = result
        if not ok:
            self.add_class("-failed")
            if not self.output:
                self.output = result
        self._redraw()

    def action_toggle_output(self) -> None:
        self.expanded = not self.expanded
        self._redraw()

    def on_click(self) -> None:
        if self.screen.selections:
            return  # the end of a drag that marked text, not a click
        self.action_toggle_output()

    def focus_on_click(self) -> bool:
        return False  # the prompt keeps the keyboard; Tab reaches a card for Enter

    # -- drawing --------------------------------------------------------------------------
    def _redraw(self) -> None:
        mark, style = {
            "requested": ("○", "dim"),
            "asking": ("?", "yellow"),
            "running": ("●", "yellow"),
            "ok": ("✓", "green"),
            "failed": ("✗", "red"),
            "denied": ("⊘", "red"),
        }[self.status]
        header = Text()
        header.append(f"{mark} ", style=style)
        header.append(self.name_, style="bold")
        described = describe_call(self.name_, self.arguments)
        header.append("  " + described)
        if self.status == "asking":
            header.append("  waiting for your answer", style="yellow")
        if self.duration is not None:
            header.append(f"  {self.duration:.1f}s", style="dim")
        if self.summary and self.summary.strip() != described.strip():
            header.append(f"  {self.summary}", style="dim" if self.status == "ok" else "red")
        self._header.update(header)
        body = self._body_renderable()
        self._body.display = body is not None  # a call with no output is its header alone
        if body is not None:
            self._body.update(body)

    def _body_renderable(self) -> RenderableType | None:
        parts: list[RenderableType] = []
        if self._diff is not None:
            parts.append(self._diff)
        if self.output:
            lines = self.output.rstrip("\n").splitlines()
            keep = FULL_OUTPUT_LINES if self.expanded else TAIL_LINES
            shown = lines[-keep:]
            text = Text()
            if len(lines) > len(shown):
                more = len(lines) - len(shown)
                hint = "" if self.expanded else " (Enter shows more)"
                text.append(f"… {more} earlier lines{hint}\n", style="dim")
            text.append("\n".join(shown))
            parts.append(text)
        return Group(*parts) if parts else None


class ErrorCard(Static):
    """An error: what happened and what to do."""

    DEFAULT_CSS = """
    ErrorCard {
        margin: 1 0 0 0;
        padding: 0 1;
        border-left: outer $error;
        color: $error;
    }
    ErrorCard.-recoverable { border-left: outer $warning; color: $warning; }
    """

    def __init__(self, message: str, hint: str, *, recoverable: bool) -> None:
        text = Text(message, style="bold")
        if hint:
            text.append("\n→ " + hint, style="")
        super().__init__(text)
        self.message = message
        self.hint = hint
        if recoverable:
            self.add_class("-recoverable")
