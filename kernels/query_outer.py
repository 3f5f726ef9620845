"""Query-outer sparse forward (flash-moba / NSA style): the honest baseline.

One program per (KV head ``h``, query token ``t``), grid ordered head-major so programs running
together share a head (better L2 reuse of K/V). Rows are the token's ``G`` query heads (padded to
16 for the MMA); the program loops over the token's valid selected blocks (valid entries come
first in ``sel``, per the layout contract; a stray -1 is masked) in sub-tiles of ``BLOCK_N``
keys with online softmax,
and writes the final output and log-sum-exp directly: no partials, no combine.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._tl import load_kv_rows, online_softmax_step, softmax_result
from ._util import next_pow2, upcast_dots

LOG2E = 1.4426950408889634


@triton.jit
def _query_outer_kernel(
    Q,
    K,
    V,
    PT,
    SEL,
    TOK_SEQ,
    TOK_POS,
    OUT,
    LSE,
    qk_scale,
    T,
    stride_q_t,
    stride_q_h,
    stride_k_p,
    stride_k_h,
    stride_k_s,
    stride_v_p,
    stride_v_h,
    stride_v_s,
    stride_pt_b,
    stride_sel_h,
    stride_sel_t,
    stride_o_t,
    stride_o_h,
    stride_lse_t,
    G: tl.constexpr,
    G_PAD: tl.constexpr,
    D: tl.constexpr,
    BS: tl.constexpr,
    KSEL: tl.constexpr,
    K_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    h = pid // T
    t = (pid % T).to(tl.int64)
    b = tl.load(TOK_SEQ + t)
    pos = tl.load(TOK_POS + t)
    g = tl.arange(0, G_PAD)
    gm = g < G
    d = tl.arange(0, D)
    n_off = tl.arange(0, BLOCK_N)
    q = tl.load(
        Q + t * stride_q_t + (h * G + g)[:, None] * stride_q_h + d[None, :],
        mask=gm[:, None],
        other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
    kj = tl.arange(0, K_PAD)
    sel_row = SEL + h * stride_sel_h + t * stride_sel_t
    ids = tl.load(sel_row + kj, mask=kj < KSEL, other=-1)
    # loop up to the last valid entry; a stray -1 before it is masked, never dereferenced
    nloop = tl.max(tl.where(ids >= 0, kj + 1, 0), 0)
    m = tl.full([G_PAD], float("-inf"), tl.float32)
    den = tl.zeros([G_PAD], tl.float32)
    acc = tl.zeros([G_PAD, D], tl.float32)
    for j in range(nloop):
        blk_raw = tl.load(sel_row + j)
        blk = tl.maximum(blk_raw, 0)
        lim = tl.where(blk_raw >= 0, pos, -1)  # a stray -1 entry sees nothing
        page = tl.load(PT + b * stride_pt_b + blk).to(tl.int64)
        kbase = K + page * stride_k_p + h * stride_k_h
        vbase = V + page * stride_v_p + h * stride_v_h
        for sub in tl.static_range(0, BS, BLOCK_N):
            kpos = blk * BS + sub + n_off
            vis = kpos <= lim
            kk, vv = load_kv_rows(kbase, vbase, sub + n_off, d, vis, stride_k_s, stride_v_s, UPCAST)
            s = tl.dot(q, tl.trans(kk)) * qk_scale
            s = tl.where(vis[None, :], s, float("-inf"))
            m, den, acc = online_softmax_step(s, vv, m, den, acc, UPCAST)
    out, lse = softmax_result(acc, m, den)
    tl.store(
        OUT + t * stride_o_t + (h * G + g)[:, None] * stride_o_h + d[None, :],
        out.to(OUT.dtype.element_ty),
        mask=gm[:, None],
    )
    tl.store(LSE + t * stride_lse_t + h * G + g, lse, mask=gm)


def query_outer_forward(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    sel: torch.Tensor,
    page_table: torch.Tensor,
    tok_seq: torch.Tensor,
    tok_pos: torch.Tensor,
    scale: float,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
    block_n: int = 128,
    num_warps: int = 4,
    num_stages: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse forward, query-outer. Returns ``out [T, Hq, D]`` and ``lse [T, Hq]`` fp32."""
    T, Hq, D = q.shape
    Hkv, BS = k_cache.shape[1], k_cache.shape[2]
    G = Hq // Hkv
    K = sel.shape[-1]
    if out is None:
        out = torch.empty_like(q)
    if lse is None:
        lse = torch.empty(T, Hq, dtype=torch.float32, device=q.device)
    if T == 0:
        return out, lse
    block_n = min(block_n, BS)
    _query_outer_kernel[(Hkv * T,)](
        q,
        k_cache,
        v_cache,
        page_table,
        sel,
        tok_seq,
        tok_pos,
        out,
        lse,
        scale * LOG2E,
        T,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        page_table.stride(0),
        sel.stride(0),
        sel.stride(1),
        out.stride(0),
        out.stride(1),
        lse.stride(0),
        G=G,
        G_PAD=max(16, next_pow2(G)),
        D=D,
        BS=BS,
        KSEL=K,
        K_PAD=next_pow2(K),
        BLOCK_N=block_n,
        UPCAST=upcast_dots(),
        num_warps=num_warps,
        num_stages=num_stages,
    )
    return out, lse
