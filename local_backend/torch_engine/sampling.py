"""Choosing the next token from logits: greedy, or temperature with top-k, top-p and min-p, in
the order llama.cpp's sampler chain applies them (so both engines read ``Sampling`` alike)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..llama_engine import Sampling


def choose(
    logits: torch.Tensor,
    sampling: Sampling,
    recent: Sequence[int],
    gen: torch.Generator,
    *,
    constrained: bool = False,
    generated: int = 0,
    end_ids: Sequence[int] = (),
) -> int:
    """One token id from ``logits`` ``[vocab]`` fp32; ``recent`` are the tokens so far (for the
    repeat penalty). ``constrained``: the logits are a grammar's mask, and no repeat penalty
    applies (it would push the model away from the quotes and braces JSON needs, as in
    llama.cpp's chain). ``end_ids`` (end of turn) are favoured past ``sampling.end_after``
    with ``generated`` tokens out, as the llama.cpp engine does (``Sampling.end_scale``)."""
    x = logits.clone()
    scale = 0.0 if constrained else sampling.end_scale(generated)
    if scale and end_ids:
        ids = torch.tensor(list(end_ids), dtype=torch.long)
        x[ids] += x[ids].abs() * scale
    if sampling.temperature <= 0:
        return int(x.argmax())
    penalize = sampling.repeat_penalty != 1.0 and not constrained
    if penalize and sampling.repeat_last_n > 0 and recent:
        ids = torch.tensor(sorted(set(recent[-sampling.repeat_last_n :])), dtype=torch.long)
        vals = x[ids]
        x[ids] = torch.where(
            vals > 0, vals / sampling.repeat_penalty, vals * sampling.repeat_penalty
        )
    if 0 < sampling.top_k < x.numel():
        kth = torch.topk(x, sampling.top_k).values[-1]
        x[x < kth] = float("-inf")
    probs = torch.softmax(x / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        p, order = probs.sort(descending=True)
        # Keep the smallest prefix whose mass reaches top_p (its last token included).
        drop = (p.cumsum(0) - p) >= sampling.top_p
        probs[order[drop]] = 0.0
    if sampling.min_p > 0:
        probs[probs < sampling.min_p * probs.max()] = 0.0
    return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))
