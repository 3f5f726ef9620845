"""Dense decode, split-KV: one query per sequence over the paged cache, CUDA-graph capturable.

The prefill kernel (:mod:`.dense`) gives a decode step one program per (sequence, KV head):
B x Hkv programs, each walking the whole context alone (at B=1 on M3's shape, 4 programs on a
132-SM GPU). Here the context is split as flash-decoding does:

    program (b, h, split)  ── pages [split*per, (split+1)*per) of sequence b, KV head h ──>
        rows = the G query heads of the group (padded to 16 for the tensor cores),
        online softmax over its pages ──> partial out [B, Hq, S, D] fp32 + lse [B, Hq, S]
    program (b, hq)        ── merge the S partials by log-sum-exp ──> out [B, Hq, D], lse

``S`` (the number of splits) and the pages per split depend only on ``B``, ``Hkv`` and the page
table's width, never on the data, so nothing syncs with the host: a split past a sequence's end
writes ``lse = -inf`` and the merge gives it no weight.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._tl import load_kv_rows, online_softmax_step
from ._util import next_pow2, num_sms, upcast_dots

LOG2E = 1.4426950408889634


@triton.jit
def _split_kernel(
    Q,
    K,
    V,
    PT,
    SEQK,
    PO,
    PLSE,
    qk_scale,
    pages_per_split,
    stride_q_b,
    stride_q_h,
    stride_k_p,
    stride_k_h,
    stride_k_s,
    stride_v_p,
    stride_v_h,
    stride_v_s,
    stride_pt_b,
    stride_po_b,
    stride_po_h,
    stride_po_s,
    stride_pl_b,
    stride_pl_h,
    G: tl.constexpr,
    ROWS: tl.constexpr,
    D: tl.constexpr,
    BS: tl.constexpr,
    UPCAST: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    split = tl.program_id(2)
    lk = tl.load(SEQK + b)
    r = tl.arange(0, ROWS)
    ok = r < G
    hq = h * G + r
    d = tl.arange(0, D)
    s_off = tl.arange(0, BS)
    q = tl.load(
        Q + b.to(tl.int64) * stride_q_b + hq[:, None] * stride_q_h + d[None, :],
        mask=ok[:, None],
        other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
    m = tl.full([ROWS], float("-inf"), tl.float32)
    den = tl.zeros([ROWS], tl.float32)
    acc = tl.zeros([ROWS, D], tl.float32)
    n_pages = (lk + BS - 1) // BS
    first = split * pages_per_split
    last = tl.minimum(first + pages_per_split, n_pages)
    for n in range(first, last):
        page = tl.load(PT + b * stride_pt_b + n).to(tl.int64)
        kpos = n * BS + s_off
        kp = K + page * stride_k_p + h * stride_k_h
        vp = V + page * stride_v_p + h * stride_v_h
        kk, vv = load_kv_rows(kp, vp, s_off, d, kpos < lk, stride_k_s, stride_v_s, UPCAST)
        s = tl.dot(q, tl.trans(kk)) * qk_scale
        s = tl.where(kpos[None, :] < lk, s, float("-inf"))
        m, den, acc = online_softmax_step(s, vv, m, den, acc, UPCAST)
    # This split's own softmax over its keys, and its log-sum-exp (log2 units; -inf if empty).
    l_safe = tl.where(den > 0.0, den, 1.0)
    out = acc / l_safe[:, None]
    lse2 = tl.where(den > 0.0, m + tl.math.log2(l_safe), float("-inf"))
    po = PO + b.to(tl.int64) * stride_po_b + split * stride_po_s
    tl.store(po + hq[:, None] * stride_po_h + d[None, :], out, mask=ok[:, None])
    tl.store(PLSE + b.to(tl.int64) * stride_pl_b + hq * stride_pl_h + split, lse2, mask=ok)


@triton.jit
def _merge_kernel(
    PO,
    PLSE,
    OUT,
    LSE,
    n_split,
    stride_po_b,
    stride_po_h,
    stride_po_s,
    stride_pl_b,
    stride_pl_h,
    stride_o_b,
    stride_o_h,
    stride_lse_b,
    D: tl.constexpr,
    S_PAD: tl.constexpr,
):
    b = tl.program_id(0)
    hq = tl.program_id(1)
    sp = tl.arange(0, S_PAD)
    d = tl.arange(0, D)
    lse2 = tl.load(
        PLSE + b.to(tl.int64) * stride_pl_b + hq * stride_pl_h + sp,
        mask=sp < n_split,
        other=float("-inf"),
    )
    mx = tl.max(lse2, 0)
    mref = tl.where(mx == float("-inf"), 0.0, mx)
    w = tl.math.exp2(lse2 - mref)  # 0 for empty splits
    tot = tl.sum(w, 0)
    po = PO + b.to(tl.int64) * stride_po_b + hq * stride_po_h
    parts = tl.load(
        po + sp[:, None] * stride_po_s + d[None, :], mask=(sp < n_split)[:, None], other=0.0
    )
    t_safe = tl.where(tot > 0.0, tot, 1.0)
    out = tl.sum(parts * w[:, None], 0) / t_safe
    lse = tl.where(tot > 0.0, (mref + tl.math.log2(t_safe)) * 0.6931471805599453, float("-inf"))
    tl.store(OUT + b.to(tl.int64) * stride_o_b + hq * stride_o_h + d, out.to(OUT.dtype.element_ty))
    tl.store(LSE + b.to(tl.int64) * stride_lse_b + hq, lse)


def split_count(B: int, Hkv: int, max_pages: int, device: torch.device) -> int:
    """How many programs share one (sequence, KV head)'s pages: about eight per multiprocessor
    (never more than the page table is wide). Measured on an H200 at M3's shape
    (tests/bench/split_kv.py): two per SM left batch 8 at 1M tokens at 76% of SDPA's speed,
    eight reach 94%; at batch 1 the count hardly matters (the split is capped by the pages)."""
    want = -(-8 * num_sms(device) // max(1, B * Hkv))
    return max(1, min(max_pages, want))


def dense_decode_forward(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    page_table: torch.Tensor,
    seqlens_k: torch.Tensor,
    scale: float,
    n_split: int | None = None,
    num_warps: int = 4,
    num_stages: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``q [B, Hq, D]`` (one query per sequence, its last key) -> ``(out [B, Hq, D], lse [B,
    Hq] fp32)``. ``n_split`` defaults to :func:`split_count`."""
    B, Hq, D = q.shape
    Hkv, BS = k_cache.shape[1], k_cache.shape[2]
    G = Hq // Hkv
    max_pages = page_table.shape[1]
    S = n_split or split_count(B, Hkv, max_pages, q.device)
    per = -(-max_pages // S)
    S = -(-max_pages // per)  # no split left with nothing to read
    out = torch.empty_like(q)
    lse = torch.empty(B, Hq, dtype=torch.float32, device=q.device)
    if B == 0:
        return out, lse
    po = torch.empty(B, Hq, S, D, dtype=torch.float32, device=q.device)
    plse = torch.empty(B, Hq, S, dtype=torch.float32, device=q.device)
    _split_kernel[(B, Hkv, S)](
        q,
        k_cache,
        v_cache,
        page_table,
        seqlens_k,
        po,
        plse,
        scale * LOG2E,
        per,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        page_table.stride(0),
        po.stride(0),
        po.stride(1),
        po.stride(2),
        plse.stride(0),
        plse.stride(1),
        G=G,
        ROWS=max(16, next_pow2(G)),
        D=D,
        BS=BS,
        UPCAST=upcast_dots(),
        num_warps=num_warps,
        num_stages=num_stages,
    )
    _merge_kernel[(B, Hq)](
        po,
        plse,
        out,
        lse,
        S,
        po.stride(0),
        po.stride(1),
        po.stride(2),
        plse.stride(0),
        plse.stride(1),
        out.stride(0),
        out.stride(1),
        lse.stride(0),
        D=D,
        S_PAD=next_pow2(S),
    )
    return out, lse
