"""KV-outer / gather-Q sparse forward writing per-slot partials, and the combine.

Forward: a persistent grid walks the work list (:mod:`.invert`). A work item is one
(KV head ``h``, sequence ``b``, block ``n``) row and a run of at most ``chunk`` query tokens that
chose it. The program loads the block's K and V once from the paged cache and streams the tokens
in tiles of ``BLOCK_M`` rows (``BLOCK_M // G`` tokens x the ``G`` query heads of group ``h``,
gathered from ``q`` ``[T, Hq, D]`` by pointer loads). Exact softmax over the single block (causal
mask on every tile, which only bites on the diagonal), bf16 partial output and fp32 log-sum-exp
written into the token's slot ``j``: ``part_o [T, Hkv, k, G, D]``, ``part_lse [T, Hkv, k, G]``.
No atomics: each (token, slot) is written by exactly one program.

Combine: one program per (token, KV group) merges its ``k`` partials by log-sum-exp; a slot is
valid iff ``sel[h, t, j] >= 0`` (unwritten partials of -1 slots are never read).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._tl import load_kv_rows
from ._util import next_pow2, num_sms, upcast_dots
from .invert import WorkList

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


@triton.jit
def _kv_outer_fwd_kernel(
    Q,
    K,
    V,
    PT,
    SEQK,
    WORK,
    NWORK,
    ENT_TOK,
    ENT_SLOT,
    ENT_POS,
    PO,
    PLSE,
    qk_scale,
    stride_q_t,
    stride_q_h,
    stride_k_p,
    stride_k_h,
    stride_k_s,
    stride_v_p,
    stride_v_h,
    stride_v_s,
    stride_pt_b,
    num_seqs,
    max_pages,
    Hkv,
    G: tl.constexpr,
    D: tl.constexpr,
    BS: tl.constexpr,
    KSEL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    total = tl.load(NWORK)
    TPT: tl.constexpr = BLOCK_M // G
    r = tl.arange(0, BLOCK_M)
    tok_l = r // G
    g = r % G
    d = tl.arange(0, D)
    s_off = tl.arange(0, BS)
    for w in range(pid, total, nprog):
        row = tl.load(WORK + 3 * w)
        start = tl.load(WORK + 3 * w + 1)
        cnt = tl.load(WORK + 3 * w + 2)
        blk = row % max_pages
        hb = row // max_pages
        b = hb % num_seqs
        h = hb // num_seqs
        page = tl.load(PT + b * stride_pt_b + blk).to(tl.int64)
        lk = tl.load(SEQK + b)
        kpos = blk * BS + s_off
        kin = kpos < lk
        kp = K + page * stride_k_p + h * stride_k_h
        vp = V + page * stride_v_p + h * stride_v_h
        kk, vv = load_kv_rows(kp, vp, s_off, d, kin, stride_k_s, stride_v_s, UPCAST)
        for it in range(0, cnt, TPT):
            ok = (r < TPT * G) & (it + tok_l < cnt)
            e = start + it + tok_l
            t = tl.load(ENT_TOK + e, mask=ok, other=0).to(tl.int64)
            j = tl.load(ENT_SLOT + e, mask=ok, other=0)
            pos = tl.load(ENT_POS + e, mask=ok, other=0)
            q = tl.load(
                Q + t[:, None] * stride_q_t + (h * G + g)[:, None] * stride_q_h + d[None, :],
                mask=ok[:, None],
                other=0.0,
            )
            if UPCAST:
                q = q.to(tl.float32)
            s = tl.dot(q, tl.trans(kk)) * qk_scale
            s = tl.where(kpos[None, :] <= pos[:, None], s, float("-inf"))
            m = tl.max(s, 1)
            m_safe = tl.where(m == float("-inf"), 0.0, m)
            p = tl.math.exp2(s - m_safe[:, None])
            den = tl.sum(p, 1)
            if UPCAST:  # noqa: SIM108 (constexpr branch, kept as in the other kernels)
                o = tl.dot(p, vv)
            else:
                o = tl.dot(p.to(vv.dtype), vv)
            l_safe = tl.where(den > 0.0, den, 1.0)
            o = o / l_safe[:, None]
            lse = tl.where(
                den > 0.0, (m_safe + tl.math.log2(l_safe)) * 0.6931471805599453, float("-inf")
            )
            slot = (t * Hkv + h) * KSEL + j
            tl.store(
                PO + (slot * G + g)[:, None] * D + d[None, :],
                o.to(PO.dtype.element_ty),
                mask=ok[:, None],
            )
            tl.store(PLSE + slot * G + g, lse, mask=ok)


@triton.jit
def _combine_kernel(
    PO,
    PLSE,
    SEL,
    OUT,
    LSE,
    stride_sel_h,
    stride_sel_t,
    stride_o_t,
    stride_o_h,
    stride_lse_t,
    Hkv,
    G: tl.constexpr,
    G_PAD: tl.constexpr,
    D: tl.constexpr,
    KSEL: tl.constexpr,
):
    pid = tl.program_id(0)
    t = (pid // Hkv).to(tl.int64)
    h = pid % Hkv
    g = tl.arange(0, G_PAD)
    gm = g < G
    d = tl.arange(0, D)
    m = tl.full([G_PAD], float("-inf"), tl.float32)
    den = tl.zeros([G_PAD], tl.float32)
    acc = tl.zeros([G_PAD, D], tl.float32)
    for j in range(KSEL):
        bsel = tl.load(SEL + h * stride_sel_h + t * stride_sel_t + j)
        if bsel >= 0:
            slot = (t * Hkv + h) * KSEL + j
            lse_j = tl.load(PLSE + slot * G + g, mask=gm, other=float("-inf"))
            o_j = tl.load(
                PO + (slot * G + g)[:, None] * D + d[None, :], mask=gm[:, None], other=0.0
            ).to(tl.float32)
            m_new = tl.maximum(m, lse_j)
            m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp(m - m_ref)
            beta = tl.exp(lse_j - m_ref)
            acc = acc * alpha[:, None] + o_j * beta[:, None]
            den = den * alpha + beta
            m = m_new
    l_safe = tl.where(den > 0.0, den, 1.0)
    out = acc / l_safe[:, None]
    lse = tl.where(den > 0.0, m + tl.log(l_safe), float("-inf"))
    tl.store(
        OUT + t * stride_o_t + (h * G + g)[:, None] * stride_o_h + d[None, :],
        out.to(OUT.dtype.element_ty),
        mask=gm[:, None],
    )
    tl.store(LSE + t * stride_lse_t + h * G + g, lse, mask=gm)


def tokens_per_work(G: int, block_m: int = 64, tiles: int = 32) -> int:
    """Tokens per work item for the KV-outer forward: ``tiles`` tiles of ``block_m // G``."""
    return max(1, block_m // G) * tiles


def kv_outer_forward(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    page_table: torch.Tensor,
    seqlens_k: torch.Tensor,
    wl: WorkList,
    topk: int,
    scale: float,
    part_o: torch.Tensor | None = None,
    part_lse: torch.Tensor | None = None,
    block_m: int = 64,
    num_warps: int = 4,
    num_stages: int = 3,
    programs_per_sm: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write partials ``part_o [T, Hkv, k, G, D]`` (q.dtype) and ``part_lse [T, Hkv, k, G]``.

    ``wl`` must come from :func:`.invert.build_worklist` called with ``tok_pos``."""
    T, Hq, D = q.shape
    Hkv, BS = k_cache.shape[1], k_cache.shape[2]
    G = Hq // Hkv
    if block_m < G:
        block_m = next_pow2(G)
    if part_o is None:
        part_o = torch.empty(T, Hkv, topk, G, D, dtype=q.dtype, device=q.device)
    if part_lse is None:
        part_lse = torch.empty(T, Hkv, topk, G, dtype=torch.float32, device=q.device)
    grid = (max(1, min(wl.capacity, num_sms(q.device) * programs_per_sm)),)
    _kv_outer_fwd_kernel[grid](
        q,
        k_cache,
        v_cache,
        page_table,
        seqlens_k,
        wl.work,
        wl.num_work,
        wl.ent_tok,
        wl.ent_slot,
        wl.ent_pos,
        part_o,
        part_lse,
        scale * LOG2E,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        page_table.stride(0),
        seqlens_k.shape[0],
        page_table.shape[1],
        Hkv,
        G=G,
        D=D,
        BS=BS,
        KSEL=topk,
        BLOCK_M=block_m,
        UPCAST=upcast_dots(),
        num_warps=num_warps,
        num_stages=num_stages,
    )
    return part_o, part_lse


def combine(
    part_o: torch.Tensor,
    part_lse: torch.Tensor,
    sel: torch.Tensor,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
    num_warps: int = 4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge partials into ``out [T, Hq, D]`` and ``lse [T, Hq]`` fp32."""
    T, Hkv, K, G, D = part_o.shape
    if out is None:
        out = torch.empty(T, Hkv * G, D, dtype=part_o.dtype, device=part_o.device)
    if lse is None:
        lse = torch.empty(T, Hkv * G, dtype=torch.float32, device=part_o.device)
    if T == 0:
        return out, lse
    _combine_kernel[(T * Hkv,)](
        part_o,
        part_lse,
        sel,
        out,
        lse,
        sel.stride(0),
        sel.stride(1),
        out.stride(0),
        out.stride(1),
        lse.stride(0),
        Hkv,
        G=G,
        G_PAD=next_pow2(G),
        D=D,
        KSEL=K,
        num_warps=num_warps,
    )
    return out, lse
