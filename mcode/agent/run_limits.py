"""Run limits for unattended work: wall time, tokens and cost over a run.

    mcode exec --max-time 3600 --max-tokens 2000000 --max-cost 5 'fix the flaky tests'

A run that nobody watches must stop itself. :class:`RunLimits` is part of a conversation's
limits (beside ``max_turns``), shared by the sub-agents it starts, and checked by the agent loop
at every step boundary: before each model call (time, tokens, cost so far) and after it (the
call's usage counted). Wall time also bounds what runs in between: the model call or the tool
calls in flight are cancelled at the deadline, the way a user's cancel is (an edit finishes its
write, a command's process group is killed), so nothing is half-written. Then the turn ends with
an ``error`` of kind ``budget`` and ``turn.finished`` reason ``budget``; ``mcode exec`` exits 3.

Tokens are input + output of every model call of this run (cached input included: it is still
read). Cost is those tokens at the model's price (:mod:`mcode.providers.prices`); a cost limit
for a model with no known price is refused up front, never ignored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mcode.errors import LimitReached
from mcode.messages import Usage
from mcode.providers.prices import Price


class BudgetReached(LimitReached):
    """A run limit was reached; the turn ends with reason ``budget``."""


@dataclass(slots=True)
class RunLimits:
    """The limits of one run; None means no limit. ``started`` is when the run began
    (``time.monotonic()``); ``price`` is the model's, needed for ``max_cost``."""

    max_time: float | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    price: Price | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.max_time, self.max_tokens, self.max_cost))

    def time_left(self) -> float | None:
        """Seconds until the wall-time limit (0 when past it), or None without one."""
        if self.max_time is None:
            return None
        return max(0.0, self.max_time - (time.monotonic() - self.started))

    def cost(self, usage: Usage) -> float | None:
        return None if self.price is None else self.price.cost(usage)

    def check(self, usage: Usage) -> None:
        """Raise BudgetReached if the run is at or past a limit, given what it used."""
        left = self.time_left()
        if left is not None and left <= 0:
            raise self.out_of_time()
        tokens = usage.input_tokens + usage.output_tokens
        if self.max_tokens is not None and tokens >= self.max_tokens:
            raise BudgetReached(
                f"the run used {tokens:,} tokens, at its limit of {self.max_tokens:,} "
                "(--max-tokens); stopped at a step boundary, nothing half-done",
                hint="continue with a new limit: mcode exec --continue --max-tokens N",
            )
        spent = self.cost(usage)
        if self.max_cost is not None and spent is not None and spent >= self.max_cost:
            raise BudgetReached(
                f"the run cost ${spent:.4f}, at its limit of ${self.max_cost:g} (--max-cost; "
                f"{tokens:,} tokens at {self.price}); stopped at a step boundary, nothing "
                "half-done",
                hint="continue with a new limit: mcode exec --continue --max-cost USD",
            )

    def out_of_time(self) -> BudgetReached:
        return BudgetReached(
            f"the run reached its time limit of {self.max_time:g} s (--max-time); what was "
            "running was stopped as a cancel stops it, nothing half-written",
            hint="continue with a new limit: mcode exec --continue --max-time SECONDS",
        )
