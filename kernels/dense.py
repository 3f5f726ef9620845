"""Dense causal GQA attention over the paged cache (for layers that stay dense).

One program per (sequence, tile of ``BLOCK_M // G`` consecutive query tokens, KV head): rows are
the tile's tokens x the ``G`` heads of the group, so every K/V page loaded serves all of them.
Flash-attention online softmax over pages; the causal mask is applied only to the pages that
reach past the tile's first query.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._tl import load_kv_rows, online_softmax_step, softmax_result
from ._util import next_pow2, upcast_dots

LOG2E = 1.4426950408889634


@triton.jit
def _dense_kernel(
    Q,
    K,
    V,
    PT,
    CUQ,
    SEQK,
    OUT,
    LSE,
    qk_scale,
    tiles_per_seq,
    stride_q_t,
    stride_q_h,
    stride_k_p,
    stride_k_h,
    stride_k_s,
    stride_v_p,
    stride_v_h,
    stride_v_s,
    stride_pt_b,
    stride_o_t,
    stride_o_h,
    stride_lse_t,
    G: tl.constexpr,
    D: tl.constexpr,
    BS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1)
    b = pid // tiles_per_seq
    tile = pid % tiles_per_seq
    q_start = tl.load(CUQ + b)
    lq = tl.load(CUQ + b + 1) - q_start
    TPT: tl.constexpr = BLOCK_M // G
    t0 = tile * TPT
    if t0 < lq:
        lk = tl.load(SEQK + b)
        r = tl.arange(0, BLOCK_M)
        tok = r // G
        g = r % G
        ok = (r < TPT * G) & (t0 + tok < lq)
        t = (q_start + t0 + tok).to(tl.int64)
        pos = lk - lq + t0 + tok
        d = tl.arange(0, D)
        s_off = tl.arange(0, BS)
        q = tl.load(
            Q + t[:, None] * stride_q_t + (h * G + g)[:, None] * stride_q_h + d[None, :],
            mask=ok[:, None],
            other=0.0,
        )
        if UPCAST:
            q = q.to(tl.float32)
        m = tl.full([BLOCK_M], float("-inf"), tl.float32)
        den = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, D], tl.float32)
        first_pos = lk - lq + t0
        last_pos = lk - lq + tl.minimum(t0 + TPT, lq) - 1
        n_full = (first_pos + 1) // BS  # pages entirely at or before the tile's first query
        n_all = last_pos // BS + 1
        for n in range(0, n_all):
            page = tl.load(PT + b * stride_pt_b + n).to(tl.int64)
            kpos = n * BS + s_off
            kp = K + page * stride_k_p + h * stride_k_h
            vp = V + page * stride_v_p + h * stride_v_h
            kk, vv = load_kv_rows(kp, vp, s_off, d, kpos < lk, stride_k_s, stride_v_s, UPCAST)
            s = tl.dot(q, tl.trans(kk)) * qk_scale
            if n >= n_full:
                s = tl.where(kpos[None, :] <= pos[:, None], s, float("-inf"))
            m, den, acc = online_softmax_step(s, vv, m, den, acc, UPCAST)
        out, lse = softmax_result(acc, m, den)
        tl.store(
            OUT + t[:, None] * stride_o_t + (h * G + g)[:, None] * stride_o_h + d[None, :],
            out.to(OUT.dtype.element_ty),
            mask=ok[:, None],
        )
        tl.store(LSE + t * stride_lse_t + h * G + g, lse, mask=ok)


def dense_forward(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    page_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    scale: float,
    block_m: int = 128,
    num_warps: int = 8,
    num_stages: int = 2,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense causal attention. ``out [T, Hq, D]`` (q.dtype), ``lse [T, Hq]`` fp32."""
    T, Hq, D = q.shape
    Hkv, BS = k_cache.shape[1], k_cache.shape[2]
    G = Hq // Hkv
    B = seqlens_k.shape[0]
    block_m = max(16, next_pow2(G), min(block_m, next_pow2(max_seqlen_q * G)))
    tpt = block_m // G
    tiles = max(1, -(-max_seqlen_q // tpt))
    if out is None:
        out = torch.empty_like(q)
    if lse is None:
        lse = torch.empty(T, Hq, dtype=torch.float32, device=q.device)
    if T == 0:
        return out, lse
    _dense_kernel[(B * tiles, Hkv)](
        q,
        k_cache,
        v_cache,
        page_table,
        cu_seqlens_q,
        seqlens_k,
        out,
        lse,
        scale * LOG2E,
        tiles,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        page_table.stride(0),
        out.stride(0),
        out.stride(1),
        lse.stride(0),
        G=G,
        D=D,
        BS=BS,
        BLOCK_M=block_m,
        UPCAST=upcast_dots(),
        num_warps=num_warps,
        num_stages=num_stages,
    )
    return out, lse
