"""Sparse decode: 1 to 8 new tokens per request, CUDA-graph capturable.

Per step: (1) block scores of the new tokens' index queries against the request's whole
index-key cache (:func:`.select.block_scores`, rows = new tokens x index heads), (2) top-k of
each new token by iterated arg-max, one program per (request, KV head, token), exact ties to the
lower id, (3) per (request, KV head) the union of the new tokens' blocks, each union entry
carrying a bit mask of the tokens that chose it (bit ``s`` = new token ``s``), so every block is
read once (a torch fallback handles more than ``16384`` pages per request),
(4) the union split over ``n_split`` programs, each running online softmax for all ``S * G`` rows
over its blocks (a row only sees blocks whose bit is set, causally), writing fp32 partials,
(5) a merge by log-sum-exp. Shapes and grids depend only on ``(B, S, Hkv, k, max_pages)``, never
on data, and nothing syncs with the host, so the whole step captures in a CUDA graph.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._tl import load_kv_rows, online_softmax_step, softmax_result
from ._util import next_pow2, num_sms, upcast_dots
from .select import block_scores, topk_from_scores

LOG2E = 1.4426950408889634


def union_blocks(sel: torch.Tensor, B: int, S: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sel [Hkv, B*S, k]`` -> ``(ublk, ubits)`` ``[B, Hkv, S*k]`` int32: the sorted unique
    blocks of each (request, head) (then -1) and, per entry, the mask of tokens that chose it."""
    Hkv, _, k = sel.shape
    U = S * k
    s = sel.view(Hkv, B, U).permute(1, 0, 2).to(torch.int64)  # [B, Hkv, U]
    valid = s >= 0
    big = torch.iinfo(torch.int64).max
    key = torch.where(valid, s, torch.full_like(s, big))
    skey, perm = torch.sort(key, dim=-1)
    svalid = skey != big
    prev = torch.cat([torch.full_like(skey[..., :1], -1), skey[..., :-1]], dim=-1)
    new = svalid & (skey != prev)
    grp = torch.cumsum(new.to(torch.int64), -1) - 1
    dst = torch.where(svalid, grp, torch.full_like(grp, U))  # invalid -> dump slot U
    ublk = torch.full((B, Hkv, U + 1), -1, dtype=torch.int64, device=sel.device)
    ublk.scatter_(-1, torch.where(new, grp, torch.full_like(grp, U)), skey)
    bits = torch.bitwise_left_shift(torch.ones_like(perm), perm // k)
    ubits = torch.zeros((B, Hkv, U + 1), dtype=torch.int64, device=sel.device)
    ubits.scatter_add_(-1, dst, torch.where(svalid, bits, torch.zeros_like(bits)))
    return ublk[..., :U].to(torch.int32).contiguous(), ubits[..., :U].to(torch.int32).contiguous()


@triton.jit
def _decode_topk_kernel(
    SC,
    SEQK,
    SEL,
    stride_sc_t,
    stride_sc_h,
    stride_sel_h,
    stride_sel_t,
    nb_max,
    Hkv,
    S: tl.constexpr,
    KSEL: tl.constexpr,
    BS: tl.constexpr,
    NB_PAD: tl.constexpr,
    K_PAD: tl.constexpr,
):
    """One program per (request, KV head, new token): top-(k-1) by iterated arg-max (exact ties
    to the lower id; scores already hold -inf for the local and invisible blocks), then local."""
    pid = tl.program_id(0)
    s = pid % S
    bh = pid // S
    b = bh // Hkv
    h = bh % Hkv
    t = b * S + s
    lk = tl.load(SEQK + b)
    local = (lk - S + s) // BS
    n = tl.arange(0, NB_PAD)
    jj = tl.arange(0, K_PAD)
    sc = tl.load(SC + t * stride_sc_t + h * stride_sc_h + n, mask=n < nb_max, other=float("-inf"))
    ent = tl.full([K_PAD], -1, tl.int32)
    nvalid = 0
    for j in tl.static_range(KSEL - 1):
        m = tl.max(sc, 0)
        idx = tl.argmax(sc, 0, tie_break_left=True).to(tl.int32)
        ok = m > float("-inf")
        ent = tl.where(jj == j, tl.where(ok, idx, -1), ent)
        nvalid += ok.to(tl.int32)
        sc = tl.where(n == idx, float("-inf"), sc)
    ent = tl.where(jj == nvalid, local, ent)
    tl.store(SEL + h * stride_sel_h + t * stride_sel_t + jj, ent, mask=jj < KSEL)


@triton.jit
def _decode_union_kernel(
    SEL,
    UBLK,
    UBITS,
    stride_sel_h,
    stride_sel_t,
    Hkv,
    S: tl.constexpr,
    KSEL: tl.constexpr,
    U: tl.constexpr,
    U_PAD: tl.constexpr,
):
    """One program per (request, KV head): the union of its S rows (first occurrences, in
    order), each entry with the bit mask of the new tokens that chose it."""
    pid = tl.program_id(0)
    b = pid // Hkv
    h = pid % Hkv
    u = tl.arange(0, U_PAD)
    tok = u // KSEL
    in_u = u < U
    ent = tl.load(
        SEL + h * stride_sel_h + (b * S + tok) * stride_sel_t + u % KSEL, mask=in_u, other=-1
    )
    valid = (ent >= 0) & in_u
    eq = (ent[:, None] == ent[None, :]) & valid[:, None] & valid[None, :]
    before = u[None, :] < u[:, None]
    dup = tl.sum((eq & before).to(tl.int32), 1)
    new = valid & (dup == 0)
    bits = tl.sum(tl.where(eq, tl.full([U_PAD, U_PAD], 1, tl.int32) << tok[None, :], 0), 1)
    rank = tl.cumsum(new.to(tl.int32), 0) - 1
    match = new[None, :] & (rank[None, :] == u[:, None])
    has = tl.sum(match.to(tl.int32), 1) > 0
    ublk = tl.where(has, tl.sum(tl.where(match, ent[None, :], 0), 1), -1)
    ubits = tl.sum(tl.where(match, bits[None, :], 0), 1)
    tl.store(UBLK + pid * U + u, ublk, mask=in_u)
    tl.store(UBITS + pid * U + u, ubits, mask=in_u)


@triton.jit
def _decode_split_kernel(
    Q,
    K,
    V,
    PT,
    SEQK,
    UBLK,
    UBITS,
    PO,
    PLSE,
    qk_scale,
    stride_q_b,
    stride_q_s,
    stride_q_h,
    stride_k_p,
    stride_k_h,
    stride_k_s,
    stride_v_p,
    stride_v_h,
    stride_v_s,
    stride_pt_b,
    Hkv,
    n_split,
    S: tl.constexpr,
    G: tl.constexpr,
    ROWS: tl.constexpr,
    D: tl.constexpr,
    BS: tl.constexpr,
    U: tl.constexpr,
    UPS: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    sp = tl.program_id(1)
    b = pid_bh // Hkv
    h = pid_bh % Hkv
    r = tl.arange(0, ROWS)
    st = r // G
    g = r % G
    rok = r < S * G
    d = tl.arange(0, D)
    s_off = tl.arange(0, BS)
    lk = tl.load(SEQK + b)
    pos = lk - S + st
    q = tl.load(
        Q
        + b * stride_q_b
        + st[:, None] * stride_q_s
        + (h * G + g)[:, None] * stride_q_h
        + d[None, :],
        mask=rok[:, None],
        other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
    m = tl.full([ROWS], float("-inf"), tl.float32)
    den = tl.zeros([ROWS], tl.float32)
    acc = tl.zeros([ROWS, D], tl.float32)
    ubase = pid_bh * U
    for i in range(UPS):
        u = sp * UPS + i
        blk = tl.load(UBLK + ubase + u, mask=u < U, other=-1)
        if blk >= 0:
            bits = tl.load(UBITS + ubase + u)
            page = tl.load(PT + b * stride_pt_b + blk).to(tl.int64)
            kpos = blk * BS + s_off
            kin = kpos < lk
            kp = K + page * stride_k_p + h * stride_k_h
            vp = V + page * stride_v_p + h * stride_v_h
            kk, vv = load_kv_rows(kp, vp, s_off, d, kin, stride_k_s, stride_v_s, UPCAST)
            s = tl.dot(q, tl.trans(kk)) * qk_scale
            chosen = ((bits >> st) & 1) != 0
            vis = chosen[:, None] & (kpos[None, :] <= pos[:, None])
            s = tl.where(vis, s, float("-inf"))
            m, den, acc = online_softmax_step(s, vv, m, den, acc, UPCAST)
    l_safe = tl.where(den > 0.0, den, 1.0)
    o = acc / l_safe[:, None]
    lse = tl.where(den > 0.0, m + tl.math.log2(l_safe), float("-inf"))  # log2 units
    base = (pid_bh * n_split + sp).to(tl.int64) * ROWS
    tl.store(PO + (base + r)[:, None] * D + d[None, :], o)
    tl.store(PLSE + base + r, lse)


@triton.jit
def _decode_merge_kernel(
    PO,
    PLSE,
    OUT,
    LSE,
    stride_o_b,
    stride_o_s,
    stride_o_h,
    stride_l_b,
    stride_l_s,
    Hkv,
    n_split,
    S: tl.constexpr,
    G: tl.constexpr,
    ROWS: tl.constexpr,
    D: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    b = pid_bh // Hkv
    h = pid_bh % Hkv
    r = tl.arange(0, ROWS)
    st = r // G
    g = r % G
    rok = r < S * G
    d = tl.arange(0, D)
    m = tl.full([ROWS], float("-inf"), tl.float32)
    den = tl.zeros([ROWS], tl.float32)
    acc = tl.zeros([ROWS, D], tl.float32)
    for sp in range(n_split):
        base = (pid_bh * n_split + sp).to(tl.int64) * ROWS
        lse_j = tl.load(PLSE + base + r)
        o_j = tl.load(PO + (base + r)[:, None] * D + d[None, :])
        m_new = tl.maximum(m, lse_j)
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m - m_ref)
        beta = tl.math.exp2(lse_j - m_ref)
        acc = acc * alpha[:, None] + o_j * beta[:, None]
        den = den * alpha + beta
        m = m_new
    out, lse = softmax_result(acc, m, den)
    tl.store(
        OUT
        + b * stride_o_b
        + st[:, None] * stride_o_s
        + (h * G + g)[:, None] * stride_o_h
        + d[None, :],
        out.to(OUT.dtype.element_ty),
        mask=rok[:, None],
    )
    tl.store(LSE + b * stride_l_b + st * stride_l_s + h * G + g, lse, mask=rok)


def decode_forward(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    index_q: torch.Tensor,
    index_k_cache: torch.Tensor,
    page_table: torch.Tensor,
    seqlens_k: torch.Tensor,
    topk: int,
    scale: float,
    n_split: int | None = None,
    score_blocks_per_prog: int | None = None,
    score_num_warps: int = 4,
    score_num_stages: int = 6,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Select + sparse attention for ``S`` new tokens per request (already in the caches).

    ``q [B, S, Hq, D]``, ``index_q [B, S, Hkv, d_idx]``; returns ``out [B, S, Hq, D]``,
    ``lse [B, S, Hq]`` fp32 and ``sel [Hkv, B*S, k]``.
    """
    B, S, Hq, D = q.shape
    Hkv, BS = k_cache.shape[1], k_cache.shape[2]
    G = Hq // Hkv
    dev = q.device
    cu = torch.arange(0, (B + 1) * S, S, dtype=torch.int32, device=dev)
    iq = index_q.reshape(B * S, Hkv, index_q.shape[-1])
    if score_blocks_per_prog is None:  # enough programs to fill the GPU (~4 per SM)
        want = -(-B * page_table.shape[1] // (4 * num_sms(dev)))
        score_blocks_per_prog = min(64, max(4, next_pow2(want)))
    scores = block_scores(
        iq,
        index_k_cache,
        page_table,
        cu,
        seqlens_k,
        S,
        blocks_per_prog=score_blocks_per_prog,
        num_warps=score_num_warps,
        num_stages=score_num_stages,
    )
    U = S * topk
    nb_pad = next_pow2(page_table.shape[1])
    if nb_pad <= 16384:
        sel = torch.empty(Hkv, B * S, topk, dtype=torch.int32, device=dev)
        ublk = torch.empty(B, Hkv, U, dtype=torch.int32, device=dev)
        ubits = torch.empty(B, Hkv, U, dtype=torch.int32, device=dev)
        _decode_topk_kernel[(B * Hkv * S,)](
            scores,
            seqlens_k,
            sel,
            scores.stride(0),
            scores.stride(1),
            sel.stride(0),
            sel.stride(1),
            page_table.shape[1],
            Hkv,
            S=S,
            KSEL=topk,
            BS=BS,
            NB_PAD=nb_pad,
            K_PAD=next_pow2(topk),
            num_warps=8 if nb_pad >= 4096 else 4,
        )
        _decode_union_kernel[(B * Hkv,)](
            sel,
            ublk,
            ubits,
            sel.stride(0),
            sel.stride(1),
            Hkv,
            S=S,
            KSEL=topk,
            U=U,
            U_PAD=next_pow2(U),
            num_warps=4,
        )
    else:
        st = torch.arange(B * S, device=dev, dtype=torch.int64) % S
        pos = seqlens_k.to(torch.int64).repeat_interleave(S, output_size=B * S) - S + st
        sel = topk_from_scores(scores, pos, BS, topk)
        ublk, ubits = union_blocks(sel, B, S)
    if n_split is None:  # at most 4 union blocks per program, and >= ~4 programs per SM
        n_split = max(1, min(U, max(-(-U // 4), -(-4 * num_sms(dev) // (B * Hkv)))))
    ups = -(-U // n_split)
    n_split = -(-U // ups)
    rows = max(16, next_pow2(S * G))
    po = torch.empty(B * Hkv * n_split * rows, D, dtype=torch.float32, device=dev)
    plse = torch.empty(B * Hkv * n_split * rows, dtype=torch.float32, device=dev)
    _decode_split_kernel[(B * Hkv, n_split)](
        q,
        k_cache,
        v_cache,
        page_table,
        seqlens_k,
        ublk,
        ubits,
        po,
        plse,
        scale * LOG2E,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        page_table.stride(0),
        Hkv,
        n_split,
        S=S,
        G=G,
        ROWS=rows,
        D=D,
        BS=BS,
        U=U,
        UPS=ups,
        UPCAST=upcast_dots(),
        num_warps=8 if rows >= 64 else 4,
        num_stages=2,
    )
    if out is None:
        out = torch.empty_like(q)
    if lse is None:
        lse = torch.empty(B, S, Hq, dtype=torch.float32, device=dev)
    _decode_merge_kernel[(B * Hkv,)](
        po,
        plse,
        out,
        lse,
        out.stride(0),
        out.stride(1),
        out.stride(2),
        lse.stride(0),
        lse.stride(1),
        Hkv,
        n_split,
        S=S,
        G=G,
        ROWS=rows,
        D=D,
        num_warps=4,
    )
    return out, lse, sel
