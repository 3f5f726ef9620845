"""What a model's tokens cost, as data: USD per million tokens, by model name.

Nothing in mcode computed cost before the run limits needed it (``--max-cost``,
:mod:`mcode.agent.run_limits`), so this is a small table of list prices for the models the
presets name, as published by their vendors when it was written (no network lookups: prices
change, and a wrong price is a wrong limit, so check them against your bill). Cached input is
billed at its own rate where the vendor has one; cache writes are billed as input.
A model not in the table has no known price: a cost limit for it is refused, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcode.messages import Usage


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None  # None: billed as input

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.input_tokens)
        fresh = usage.input_tokens - cached
        cached_rate = self.input if self.cached_input is None else self.cached_input
        total = fresh * self.input + cached * cached_rate + usage.output_tokens * self.output
        return total / 1_000_000

    def __str__(self) -> str:
        return f"${self.input:g}/${self.output:g} per M input/output tokens"


PRICES: dict[str, Price] = {
    # MiniMax (platform.minimax.io pay-as-you-go). M3's entry carries M2.x's rate until its
    # own is in this table: check it against your bill.
    "MiniMax-M3": Price(0.3, 1.2, 0.03),
    "MiniMax-M2.7": Price(0.3, 1.2, 0.03),
    "MiniMax-M2.5": Price(0.3, 1.2, 0.03),
    "MiniMax-M2.1": Price(0.3, 1.2, 0.03),
    "MiniMax-M2": Price(0.3, 1.2, 0.03),
    # Anthropic
    "claude-opus-4-5": Price(5.0, 25.0, 0.5),
    "claude-opus-4-1": Price(15.0, 75.0, 1.5),
    "claude-opus-4": Price(15.0, 75.0, 1.5),
    "claude-sonnet-4-5": Price(3.0, 15.0, 0.3),
    "claude-sonnet-4": Price(3.0, 15.0, 0.3),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.1),
    "claude-3-5-haiku": Price(0.8, 4.0, 0.08),
    # OpenAI
    "gpt-5": Price(1.25, 10.0, 0.125),
    "gpt-5-mini": Price(0.25, 2.0, 0.025),
    "gpt-4.1": Price(2.0, 8.0, 0.5),
    "gpt-4.1-mini": Price(0.4, 1.6, 0.1),
    "gpt-4o": Price(2.5, 10.0, 1.25),
    "gpt-4o-mini": Price(0.15, 0.6, 0.075),
}


def price_of(model: str) -> Price | None:
    """The price of ``model``: its own entry, else the longest table name it starts with
    (``claude-sonnet-4-5-20250929`` is ``claude-sonnet-4-5``; a ``-highspeed`` MiniMax variant
    is not its base model, so only names joined by a date or version suffix match), else None.
    The embedded local model costs nothing."""
    if model == "SmolLM2-135M-Instruct" or model.endswith(".gguf"):
        return Price(0.0, 0.0)
    name = model.rsplit("/", 1)[-1]
    if name in PRICES:
        return PRICES[name]
    for known in sorted(PRICES, key=len, reverse=True):
        rest = name[len(known) :]
        if name.startswith(known) and rest[:1] == "-" and rest[1:2].isdigit():
            return PRICES[known]
    return None
