"""Token log-probabilities (the request's ``logprobs`` / ``top_logprobs``), as both engines
report them: read off the model's logits for each generated token before sampling touches them
(no temperature, no grammar mask: the model's own distribution, as OpenAI and vLLM report it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token and its log-probability (natural log), with the ``top`` most
    likely tokens at that position, best first, each ``(text, bytes, logprob)``."""

    token: str
    bytes: bytes
    logprob: float
    top: tuple[tuple[str, bytes, float], ...] = ()

    def wire(self) -> dict[str, object]:
        """OpenAI's ``logprobs.content[i]`` object."""
        return {
            "token": self.token,
            "logprob": self.logprob,
            "bytes": list(self.bytes),
            "top_logprobs": [
                {"token": t, "logprob": lp, "bytes": list(b)} for t, b, lp in self.top
            ],
        }


def token_logprob(
    logits: np.ndarray, token: int, top: int, piece: Callable[[int], bytes]
) -> TokenLogprob:
    """``token``'s log-probability under ``logits`` (``[vocab]``, any float dtype) and the
    ``top`` best tokens; ``piece`` gives a token's bytes."""
    x = logits.astype(np.float64, copy=False)
    m = float(x.max())
    lse = m + float(np.log(np.exp(x - m).sum()))
    best: tuple[tuple[str, bytes, float], ...] = ()
    if top > 0:
        ids = np.argpartition(-x, top - 1)[:top]
        ids = ids[np.argsort(-x[ids], kind="stable")]
        best = tuple((_text(piece(int(i))), piece(int(i)), float(x[i]) - lse) for i in ids.tolist())
    b = piece(token)
    return TokenLogprob(_text(b), b, float(x[token]) - lse, best)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")
