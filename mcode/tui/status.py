"""The status bar: model, thinking, permission mode, context use, tokens, cost, elapsed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.text import Text
from textual.widgets import Static

from mcode import events as ev


def _k(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


@dataclass
class StatusState:
    model: str = ""
    provider: str = ""
    thinking: str = "default"
    mode: str = "ask"
    context_tokens: int | None = None
    context_window: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None  # no price table is known for any provider yet
    clock: Callable[[], float] = time.monotonic  # a snapshot test stops it
    started: float = field(default_factory=time.monotonic)
    turn_started: float | None = None

    def take(self, payload: ev.Payload) -> bool:
        """Update from an event; whether anything shown changed."""
        match payload:
            case ev.SessionStarted() as s:
                self.model, self.provider = s.model, s.provider
                self.thinking, self.mode = s.thinking, s.permission_mode
                self.context_window = s.context_window
            case ev.Usage(total=total, context_tokens=ctx, context_window=window):
                self.input_tokens = total.input_tokens
                self.output_tokens = total.output_tokens
                self.cached_tokens = total.cached_tokens
                if ctx is not None:
                    self.context_tokens = ctx
                if window:
                    self.context_window = window
            case ev.Compaction(tokens_after=after, window=window):
                self.context_tokens, self.context_window = after, window
            case ev.TurnStarted():
                self.turn_started = self.clock()
            case ev.TurnFinished():
                self.turn_started = None
            case _:
                return False
        return True

    def render(self, now: float | None = None) -> Text:
        now = self.clock() if now is None else now
        text = Text()
        text.append(self.model or "model?", style="bold")
        text.append(f" · thinking {self.thinking} · {self.mode}")
        if self.context_window:
            used = self.context_tokens or 0
            pct = 100 * used / self.context_window
            style = "red" if pct >= 85 else "yellow" if pct >= 60 else ""
            text.append(" · ctx ")
            text.append(f"{_k(used)}/{_k(self.context_window)} ({pct:.0f}%)", style=style)
        text.append(
            f" · in {_k(self.input_tokens)} out {_k(self.output_tokens)} "
            f"cached {_k(self.cached_tokens)}"
        )
        if self.cost is not None:
            text.append(f" · ${self.cost:.2f}")
        elapsed = int(now - self.started)
        text.append(f" · {elapsed // 60}:{elapsed % 60:02d}")
        if self.turn_started is not None:
            text.append(f" · working {now - self.turn_started:.0f}s", style="yellow")
        return text


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar {
        dock: bottom;
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.state = StatusState()

    def on_mount(self) -> None:
        self.set_interval(1.0, self.refresh_state)
        self.refresh_state()

    def take(self, payload: ev.Payload) -> None:
        if self.state.take(payload):
            self.refresh_state()

    def refresh_state(self) -> None:
        self.update(self.state.render())
