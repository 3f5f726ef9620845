"""The status bar: model, thinking, permission mode, context use, tokens, cost, elapsed.

Tokens and cost are counted here, call by call, from the session's ``usage`` events (a resumed
session's stored ones included, as its history is drawn), not taken from the session's running
totals: those start again at zero when a session is reopened (``/model``, ``/mode``, a
resume), and the cost of a call is its tokens at the price of the model that answered it,
which the totals do not say. The cost comes from :mod:`mcode.providers.prices`; one call by a
model without a price makes the cost unknown, and then none is shown: never a wrong one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

if TYPE_CHECKING:
    from mcode import events as ev

# The events, messages and prices are imported where they are used, not above: the bar is
# drawn in the first frame, before the session (and the runtime) is there.


def _k(n: int) -> str:
    """A token count in few characters: 950, 1.2k, 128k, 1.5M."""
    for size, unit in ((1_000_000, "M"), (1000, "k")):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + unit
    return str(n)


def usd(amount: float) -> str:
    """A cost as people read it: cents, or a fraction of a cent to four places."""
    return f"${amount:.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


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
    model_calls: int = 0
    spent: float = 0.0
    """USD, of the calls whose model has a price"""
    unpriced_calls: int = 0
    other_models: bool = False
    """a team ran roles on models of their own: their calls' usage events do not say which,
    so what they cost is not known here"""
    clock: Callable[[], float] = time.monotonic  # a snapshot test stops it
    started: float = field(default_factory=time.monotonic)
    turn_started: float | None = None
    opening: str | None = None
    """what the bar says while the session is being opened (or could not be), in place of
    the model and the counts"""

    def take(self, payload: ev.Payload) -> bool:
        """Update from an event; whether anything shown changed."""
        from mcode import events as ev

        match payload:
            case ev.SessionStarted() as s:
                self.model, self.provider = s.model, s.provider
                self.thinking, self.mode = s.thinking, s.permission_mode
                self.context_window = s.context_window
            case ev.ModelChanged() as m:  # an editor's model picker (mcode acp)
                self.model, self.provider = m.model, m.provider
                self.thinking, self.context_window = m.thinking, m.context_window
            case ev.Usage(context_tokens=ctx, context_window=window) as call:
                self.input_tokens += call.input_tokens
                self.output_tokens += call.output_tokens
                self.cached_tokens += call.cached_tokens
                self.model_calls += 1
                from mcode.messages import Usage
                from mcode.providers.prices import price_of

                price = price_of(self.model) if self.model else None
                if price is None:
                    self.unpriced_calls += 1
                else:
                    tokens = (call.input_tokens, call.output_tokens, call.cached_tokens)
                    self.spent += price.cost(Usage(*tokens))
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

    @property
    def cost(self) -> float | None:
        """USD so far; None when a call's model had no price, or this model has none."""
        if self.unpriced_calls or self.other_models or not self.model:
            return None
        from mcode.providers.prices import price_of

        if not self.model_calls and price_of(self.model) is None:
            return None
        return self.spent

    def new_session(self) -> None:
        """Another session is shown: its tokens and cost start from nothing."""
        self.input_tokens = self.output_tokens = self.cached_tokens = 0
        self.model_calls = self.unpriced_calls = 0
        self.spent = 0.0
        self.other_models = False
        self.context_tokens = None

    def usage_text(self) -> str:
        """The tokens and cost, in words (``/cost``)."""
        cost = self.cost
        if cost is not None:
            known = f"cost {usd(cost)}"
        elif self.other_models:
            known = "cost unknown: a team ran roles on models of their own"
        elif self.unpriced_calls in (0, self.model_calls):
            known = f"cost unknown: no price is known for {self.provider}/{self.model}"
        else:
            known = (
                f"cost unknown: {self.unpriced_calls} of them went to a model without a price "
                "(mcode/providers/prices.py has the prices)"
            )
        calls = f"{self.model_calls} model call{'' if self.model_calls == 1 else 's'}"
        return (
            f"{calls}; tokens in {self.input_tokens:,} (cached {self.cached_tokens:,}), "
            f"out {self.output_tokens:,}; {known}"
        )

    def render(self, now: float | None = None) -> Text:
        now = self.clock() if now is None else now
        text = Text()
        if self.opening is not None:
            text.append(self.opening, style="italic")
            return text
        text.append(self.model or "model?", style="bold")
        # The bar is one line: what a model cannot switch is not shown (no "thinking
        # unavailable"), so that the cost and the clock fit in 100 columns.
        if self.thinking != "unavailable":
            text.append(f" · thinking {self.thinking}")
        text.append(f" · {self.mode}")
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
            text.append(f" · {usd(self.cost)}")
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
