"""Index branch on the GPU: block scoring (matmul + max-per-block epilogue) and top-k.

Scoring packs the index heads of several tokens into one tile: rows are ``(token, index head)``
pairs of one sequence (``index_q`` is ``[T, Hkv, d_idx]``, so a tile's rows are contiguous), and
every program streams a range of key blocks of the single shared index-key head, so each key
block is read once per tile for all heads. Output ``[T, Hkv, max_pages]`` fp32 holds the block
maxima with ``-inf`` for invisible blocks and for each row's own (local) block, which is appended
last by the top-k step instead of being ranked.

Top-k (:func:`topk_from_scores`) is exact, ties to the lower block id, like the reference: each
fp32 score becomes an order-preserving unsigned 32-bit key, a bitwise binary search over the key
finds the (k-1)-th largest key of the row (32 rounds of compare + count, the row in registers),
every block above it is taken, and of the blocks equal to it the lowest ids fill the remaining
slots (one prefix count). The kernel writes the final ``[Hkv, T, k]`` lists (chosen ids in
ascending id order, then the local block, then -1). Rows wider than 16384 blocks use an int64
``torch.topk`` on ``(key << 32) | (nb - 1 - id)``, exact too (every packed key is distinct).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._util import check, interpreting, next_pow2, upcast_dots
from .reference import assemble_selection


@triton.jit
def _score_kernel(
    IQ,
    IK,
    PT,
    CUQ,
    SEQK,
    OUT,
    stride_iq_t,
    stride_iq_h,
    stride_ik_p,
    stride_ik_s,
    stride_pt_b,
    stride_o_t,
    stride_o_h,
    tiles_per_seq,
    nb_max,
    H: tl.constexpr,
    DI: tl.constexpr,
    BS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BPP: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid_q = tl.program_id(0)
    pid_k = tl.program_id(1)
    b = pid_q // tiles_per_seq
    tile = pid_q % tiles_per_seq
    q_start = tl.load(CUQ + b)
    lq = tl.load(CUQ + b + 1) - q_start
    TPT: tl.constexpr = BLOCK_M // H
    t0 = tile * TPT
    blk_lo = pid_k * BPP
    if (t0 < lq) & (blk_lo < nb_max):
        lk = tl.load(SEQK + b)
        first_pos = lk - lq
        r = tl.arange(0, BLOCK_M)
        tok = r // H
        hh = r % H
        row_ok = (r < TPT * H) & (t0 + tok < lq)
        t_glob = q_start + t0 + tok
        pos = first_pos + t0 + tok
        local = pos // BS
        d = tl.arange(0, DI)
        q = tl.load(
            IQ + t_glob[:, None] * stride_iq_t + hh[:, None] * stride_iq_h + d[None, :],
            mask=row_ok[:, None],
            other=0.0,
        )
        if UPCAST:  # noqa: SIM108
            q = q.to(tl.float32)
        else:
            q = q.to(tl.bfloat16)
        last_pos = first_pos + tl.minimum(t0 + TPT, lq) - 1
        nb_vis = last_pos // BS + 1
        blk_hi = tl.minimum(blk_lo + BPP, nb_vis)
        s_off = tl.arange(0, BS)
        out_row = OUT + t_glob * stride_o_t + hh * stride_o_h
        for n in range(blk_lo, blk_hi):
            page = tl.load(PT + b * stride_pt_b + n)
            kk = tl.load(
                IK + page.to(tl.int64) * stride_ik_p + s_off[:, None] * stride_ik_s + d[None, :]
            )
            if UPCAST:  # noqa: SIM108
                kk = kk.to(tl.float32)
            else:
                kk = kk.to(tl.bfloat16)
            s = tl.dot(q, tl.trans(kk))
            kpos = n * BS + s_off
            s = tl.where(kpos[None, :] <= pos[:, None], s, float("-inf"))
            m = tl.max(s, 1)
            m = tl.where(local == n, float("-inf"), m)
            tl.store(out_row + n, m, mask=row_ok)
        # blocks of this program's range that no row of the tile can see
        for n in range(tl.maximum(blk_lo, nb_vis), tl.minimum(blk_lo + BPP, nb_max)):
            tl.store(out_row + n, tl.full([BLOCK_M], float("-inf"), tl.float32), mask=row_ok)


def block_scores(
    index_q: torch.Tensor,
    index_k_cache: torch.Tensor,
    page_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    out: torch.Tensor | None = None,
    block_m: int = 128,
    blocks_per_prog: int = 32,
    num_warps: int = 4,
    num_stages: int = 3,
) -> torch.Tensor:
    """Block scores ``[T, Hkv, max_pages]`` fp32 (``-inf``: invisible or local block).

    ``index_q`` ``[T, Hkv, d_idx]`` bf16/fp16; ``index_k_cache`` ``[P, page, d_idx]`` bf16/fp16 or
    fp8 (e4m3/e5m2, upcast in registers; ranking is invariant to a positive per-tensor scale).
    """
    T, H, DI = index_q.shape
    BS = index_k_cache.shape[1]
    nb_max = page_table.shape[1]
    B = seqlens_k.shape[0]
    block_m = max(16, min(block_m, next_pow2(max_seqlen_q * H)))
    tpt = block_m // H
    if tpt == 0:
        raise ValueError(f"block_m={block_m} smaller than the number of index heads {H}")
    tiles = max(1, -(-max_seqlen_q // tpt))
    if out is None:
        out = torch.empty(T, H, nb_max, dtype=torch.float32, device=index_q.device)
    iq = index_q if index_q.stride(-1) == 1 else index_q.contiguous()
    ik = index_k_cache if index_k_cache.is_contiguous() else index_k_cache.contiguous()
    grid = (B * tiles, triton.cdiv(nb_max, blocks_per_prog))
    _score_kernel[grid](
        iq,
        ik,
        page_table,
        cu_seqlens_q,
        seqlens_k,
        out,
        iq.stride(0),
        iq.stride(1),
        ik.stride(0),
        ik.stride(1),
        page_table.stride(0),
        out.stride(0),
        out.stride(1),
        tiles,
        nb_max,
        H=H,
        DI=DI,
        BS=BS,
        BLOCK_M=block_m,
        BPP=blocks_per_prog,
        UPCAST=upcast_dots(),
        num_warps=num_warps,
        num_stages=num_stages,
    )
    return out


@triton.jit
def _topk_kernel(
    SC,
    POS,
    SEL,
    stride_sc_t,
    stride_sc_h,
    stride_sel_h,
    stride_sel_t,
    n_rows,
    nb,
    H: tl.constexpr,
    BS: tl.constexpr,
    M: tl.constexpr,
    KSEL: tl.constexpr,
    ROWS: tl.constexpr,
    NB_PAD: tl.constexpr,
    K_PAD: tl.constexpr,
):
    """``ROWS`` rows ``(token, head)`` per program: exact top-``M`` of the visible non-local
    blocks (ties to the lower id), then the local block, then -1, into ``SEL[h, t, :KSEL]``."""
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = r < n_rows
    t = r // H
    h = r % H
    local = tl.load(POS + t, mask=row_ok, other=0) // BS
    n = tl.arange(0, NB_PAD)
    cand = row_ok[:, None] & (n[None, :] < local[:, None]) & (n[None, :] < nb)
    s = tl.load(
        SC + t.to(tl.int64)[:, None] * stride_sc_t + h[:, None] * stride_sc_h + n[None, :],
        mask=cand,
        other=float("-inf"),
    )
    valid = cand & (s > float("-inf"))
    # order-preserving unsigned key: negatives bit-inverted, positives get the sign bit set;
    # -0.0 and +0.0 share one key (they tie in the reference); invalid -> 0, below every valid key
    ub = s.to(tl.uint32, bitcast=True)
    key = tl.where((ub >> 31) == 1, ub ^ 0xFFFFFFFF, ub | 0x80000000)
    key = tl.where(s == 0.0, tl.full(key.shape, 0x80000000, tl.uint32), key)
    key = tl.where(valid, key, tl.zeros_like(key))
    # thr = the M-th largest key of the row (0 when the row has fewer than M valid blocks)
    thr = tl.zeros([ROWS], dtype=tl.uint32)
    for i in tl.static_range(32):
        c = thr | tl.full([ROWS], 1 << (31 - i), tl.uint32)
        cnt = tl.sum((key >= c[:, None]).to(tl.int32), 1)
        thr = tl.where(cnt >= M, c, thr)
    gt = key > thr[:, None]
    eq = (key == thr[:, None]) & valid
    need = M - tl.sum(gt.to(tl.int32), 1)
    # one prefix count for both: blocks above thr in the high half, ties at thr in the low half
    both = tl.cumsum(gt.to(tl.int32) * 65536 + eq.to(tl.int32), 1)
    n_eq = both & 65535
    take = gt | (eq & (n_eq <= need[:, None]))
    slot = (both >> 16) + tl.minimum(n_eq, need[:, None]) - 1
    out = SEL + h.to(tl.int64) * stride_sel_h + t.to(tl.int64) * stride_sel_t
    tl.store(out[:, None] + slot, n[None, :], mask=take)
    n_take = tl.sum(take.to(tl.int32), 1)
    j = tl.arange(0, K_PAD)
    tail = tl.where(j[None, :] == n_take[:, None], local[:, None], -1)
    tl.store(
        out[:, None] + j[None, :],
        tail,
        mask=row_ok[:, None] & (j[None, :] >= n_take[:, None]) & (j[None, :] < KSEL),
    )


TOPK_KERNEL_MAX_BLOCKS = 16384


def _topk_packed_torch(
    scores: torch.Tensor,
    tok_pos: torch.Tensor,
    block_size: int,
    topk: int,
    elems: int = 1 << 27,
) -> torch.Tensor:
    """Exact top-k with torch ops only: ``torch.topk`` over int64 ``(key << 32) | (nb-1-id)``
    (keys distinct, so no tie is left to the sort), about ``elems`` scores at a time."""
    T, H, nb = scores.shape
    m = min(topk - 1, nb)
    out = torch.empty(H, T, topk, dtype=torch.int32, device=scores.device)
    ids = torch.arange(nb, device=scores.device)
    low = (nb - 1 - ids).to(torch.int64)
    imin = torch.iinfo(torch.int32).min
    step = max(1, elems // max(1, H * nb))
    for t0 in range(0, T, step):
        sc = scores[t0 : t0 + step]
        local = tok_pos[t0 : t0 + step].to(torch.int64) // block_size  # [t]
        if m > 0:
            b = sc.contiguous().view(torch.int32)
            key = b ^ ((b >> 31) & 0x7FFFFFFF)  # order-preserving signed key
            key = torch.where(sc == 0, torch.zeros_like(key), key)  # -0.0 == +0.0
            ok = (ids[None, None, :] < local[:, None, None]) & (sc > float("-inf"))
            key = torch.where(ok, key, torch.full_like(key, imin))
            packed = (key.to(torch.int64) << 32) | low
            del key, ok, b
            top = torch.topk(packed, m, dim=-1, largest=True, sorted=True).values
            idx = nb - 1 - (top & 0xFFFFFFFF)
            # only validity matters to assemble_selection
            vals = torch.where((top >> 32) > imin, 0.0, float("-inf"))
            del packed, top
        else:
            vals = sc[..., :0]
            idx = vals.to(torch.int64)
        loc = local.view(-1, 1).expand(-1, H)
        out[:, t0 : t0 + step] = assemble_selection(idx, vals, loc, topk).permute(1, 0, 2)
    return out


def topk_from_scores(
    scores: torch.Tensor,
    tok_pos: torch.Tensor,
    block_size: int,
    topk: int,
    *,
    method: str = "auto",
    rows_per_prog: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """``[T, Hkv, nb]`` scores -> ``sel`` ``[Hkv, T, topk]`` int32: the ``topk - 1`` best
    visible non-local blocks (exact, ties to the lower id), then the local block
    ``tok_pos // block_size``, then -1. Only blocks ``< local`` are candidates and ``-inf``
    scores are never chosen. ``method``: ``"auto"`` (the Triton kernel on CUDA or under the
    interpreter for rows up to 16384 blocks, else ``"packed"``), ``"triton"`` or ``"packed"``
    (int64 ``torch.topk``). Device ops only, no host sync."""
    T, H, nb = scores.shape
    check(method in ("auto", "triton", "packed"), f"unknown top-k method {method!r}")
    nb_pad = next_pow2(max(nb, 1))
    if method == "auto":
        kernel_ok = scores.is_cuda or (scores.device.type == "cpu" and interpreting())
        method = "triton" if kernel_ok and nb_pad <= TOPK_KERNEL_MAX_BLOCKS else "packed"
    if method == "packed":
        return _topk_packed_torch(scores, tok_pos, block_size, topk)
    sel = torch.empty(H, T, topk, dtype=torch.int32, device=scores.device)
    if T == 0:
        return sel
    if scores.stride(-1) != 1:
        scores = scores.contiguous()
    pos = tok_pos if tok_pos.dtype == torch.int32 else tok_pos.to(torch.int32)
    pos = pos.contiguous()
    # tuned on an H200 (BENCH.md, "Prefill top-k"): ~2048 scores per program with 8 warps,
    # or one row of 4096+ blocks with 16 warps
    if rows_per_prog is None:
        rows_per_prog = max(1, min(64, 2048 // nb_pad))
    if num_warps is None:
        num_warps = 8 if rows_per_prog * nb_pad <= 2048 else 16
    grid = (triton.cdiv(T * H, rows_per_prog),)
    _topk_kernel[grid](
        scores,
        pos,
        sel,
        scores.stride(0),
        scores.stride(1),
        sel.stride(0),
        sel.stride(1),
        T * H,
        nb,
        H=H,
        BS=block_size,
        M=min(topk - 1, nb),
        KSEL=topk,
        ROWS=rows_per_prog,
        NB_PAD=nb_pad,
        K_PAD=next_pow2(topk),
        num_warps=num_warps,
    )
    return sel
