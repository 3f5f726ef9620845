"""Triton device functions shared by the attention kernels (imported only with Triton)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def online_softmax_step(s, vv, m, den, acc, UPCAST: tl.constexpr):
    """One flash-attention update over a tile of keys.

    ``s``: [ROWS, KEYS] scores in log2 units, masked keys at -inf; ``vv``: [KEYS, D] values;
    ``m``, ``den``: [ROWS] running max and denominator; ``acc``: [ROWS, D] fp32. Rows that have
    seen no visible key keep ``m = -inf`` and ``den = 0`` (no NaN from -inf - -inf).
    Returns the new ``(m, den, acc)``.
    """
    m_new = tl.maximum(m, tl.max(s, 1))
    m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.math.exp2(m - m_ref)
    p = tl.math.exp2(s - m_ref[:, None])
    den = den * alpha + tl.sum(p, 1)
    if UPCAST:
        acc = acc * alpha[:, None] + tl.dot(p, vv)
    else:
        acc = acc * alpha[:, None] + tl.dot(p.to(vv.dtype), vv)
    return m_new, den, acc
