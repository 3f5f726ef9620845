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


@triton.jit
def load_kv_rows(KP, VP, rows, d, mask, stride_k_s, stride_v_s, UPCAST: tl.constexpr):
    """Rows ``rows`` of one KV page-head (``KP``/``VP`` point at its first row): ``(k, v)``, each
    [rows, D], zero where ``mask`` is false; fp32 under ``UPCAST`` (the interpreter's bf16 dot is
    wrong)."""
    kk = tl.load(KP + rows[:, None] * stride_k_s + d[None, :], mask=mask[:, None], other=0.0)
    vv = tl.load(VP + rows[:, None] * stride_v_s + d[None, :], mask=mask[:, None], other=0.0)
    if UPCAST:
        kk = kk.to(tl.float32)
        vv = vv.to(tl.float32)
    return kk, vv


@triton.jit
def softmax_result(acc, m, den):
    """Normalise an online-softmax accumulator: ``(out, lse)`` with ``lse`` in natural-log units
    (``m`` is in log2 units). Rows that saw no visible key give ``out = 0`` and ``lse = -inf``."""
    l_safe = tl.where(den > 0.0, den, 1.0)
    out = acc / l_safe[:, None]
    lse = tl.where(den > 0.0, (m + tl.math.log2(l_safe)) * 0.6931471805599453, float("-inf"))
    return out, lse
