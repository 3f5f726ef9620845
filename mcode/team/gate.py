"""What every model call of a team passes through: the request-rate limit and the budgets.

Each team conversation gets its own :class:`GatedProvider` around the session's provider (or
its role's): before a call it asks each of its budgets (the task's and the team's) whether
another call may start, then waits for the shared :class:`RateLimiter`; after it, the tokens
the call used are charged. A spent budget raises :class:`BudgetHit` (a LimitReached), which
ends that turn cleanly as ``max_turns`` at its next model call, never in the middle of a tool.

The limiter keeps at most ``per_minute`` calls in any 60 seconds (MiniMax M3 allows 200 a
minute): a sliding window of start times rather than a token bucket, because a bucket's
burst plus its refill can exceed the provider's own count over a minute.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from mcode.errors import LimitReached
from mcode.providers.base import Completion, ModelEvent, ModelRequest, Provider

__all__ = ["Budget", "BudgetHit", "GatedProvider", "Limits", "RateLimiter"]


class RateLimiter:
    """At most ``per_minute`` acquisitions in any ``window`` seconds, shared by every caller."""

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self._starts: collections.deque[float] = collections.deque()
        self._lock = asyncio.Lock()
        self.waited = 0.0  # seconds callers spent waiting, all together

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: callers get their slots in the order they asked
            while True:
                now = time.monotonic()
                while self._starts and now - self._starts[0] >= self.window:
                    self._starts.popleft()
                if len(self._starts) < self.per_minute:
                    self._starts.append(now)
                    return
                wait = self.window - (now - self._starts[0])
                self.waited += wait
                await asyncio.sleep(wait)


@dataclass(frozen=True, slots=True)
class Limits:
    """Turns (model calls), tokens (input + output) and wall-clock seconds; None: no limit."""

    turns: int | None = None
    tokens: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | None, flag: str) -> Limits:
        """``turns=40,tokens=200000,seconds=600`` (any of them; the grammar is
        :func:`mcode.config.read_limits`'s). ``flag``: what gave it, for the error."""
        from mcode.config import read_limits
        from mcode.errors import UsageError

        if not text:
            return cls()
        try:
            values = read_limits(text)
        except ValueError as e:
            raise UsageError(
                f"{flag} {text!r}: cannot read {e.args[0]!r}",
                hint=f"write {flag} turns=N,tokens=N,seconds=S (any of them, each > 0)",
            ) from None
        return cls(**values)  # type: ignore[arg-type]


class BudgetHit(LimitReached):
    """A budget is spent; ``budget`` says which."""

    def __init__(self, budget: Budget, limit: str, allowed: float, used: float) -> None:
        who = "the team" if budget.task_id is None else f"task {budget.task_id}"
        unit = {"turns": "model calls", "tokens": "tokens", "seconds": "seconds"}[limit]
        super().__init__(
            f"{who} spent its budget of {allowed:g} {unit} (used {used:g})",
            hint="raise it with --team-budget / --task-budget, or give the team a smaller task",
        )
        self.budget = budget
        self.limit = limit
        self.allowed = allowed
        self.used = used


@dataclass(slots=True)
class Budget:
    """What a task (``task_id``) or the whole team (None) may still spend. ``on_hit`` is called
    once, when it first runs out."""

    limits: Limits
    task_id: str | None = None
    on_hit: Callable[[BudgetHit], None] | None = None
    started: float = field(default_factory=time.monotonic)
    turns: int = 0
    tokens: int = 0
    hit: BudgetHit | None = None

    def spent(self) -> BudgetHit | None:
        """The limit that is spent now, or None."""
        if self.hit is not None:
            return self.hit
        limits = self.limits
        used: tuple[str, float, float] | None = None
        if limits.turns is not None and self.turns >= limits.turns:
            used = ("turns", limits.turns, self.turns)
        elif limits.tokens is not None and self.tokens >= limits.tokens:
            used = ("tokens", limits.tokens, self.tokens)
        elif limits.seconds is not None:
            elapsed = time.monotonic() - self.started
            if elapsed >= limits.seconds:
                used = ("seconds", limits.seconds, round(elapsed, 1))
        if used is None:
            return None
        self.hit = BudgetHit(self, *used)
        if self.on_hit is not None:
            self.on_hit(self.hit)
        return self.hit


class GatedProvider:
    """``inner`` behind ``budgets`` and ``limiter``; everything else is ``inner``'s."""

    def __init__(self, inner: Provider, limiter: RateLimiter, budgets: list[Budget]) -> None:
        self.inner = inner
        self.info = inner.info
        self.limiter = limiter
        self.budgets = budgets

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        for budget in self.budgets:
            hit = budget.spent()
            if hit is not None:
                raise hit
        # Counted before the first await: two conversations asking at once cannot both slip
        # under the last turn of a budget.
        for budget in self.budgets:
            budget.turns += 1
        await self.limiter.acquire()
        async for item in self.inner.stream(request):
            if isinstance(item, Completion):
                for budget in self.budgets:
                    budget.tokens += item.usage.input_tokens + item.usage.output_tokens
            yield item

    async def aclose(self) -> None:
        """Nothing: the inner provider is the session's, closed with it."""
