"""Index branch on the GPU: block scoring (matmul + max-per-block epilogue) and top-k.

Scoring packs the index heads of several tokens into one tile: rows are ``(token, index head)``
pairs of one sequence (``index_q`` is ``[T, Hkv, d_idx]``, so a tile's rows are contiguous), and
every program streams a range of key blocks of the single shared index-key head, so each key
block is read once per tile for all heads. Output ``[T, Hkv, max_pages]`` fp32 holds the block
maxima with ``-inf`` for invisible blocks and for each row's own (local) block, which is appended
last by the top-k step instead of being ranked. Top-k is ``torch.topk`` (device-only ops).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._util import next_pow2, upcast_dots
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


def topk_from_scores(
    scores: torch.Tensor, tok_pos: torch.Tensor, block_size: int, topk: int
) -> torch.Tensor:
    """``[T, Hkv, nb]`` scores (local already ``-inf``) -> ``sel`` ``[Hkv, T, topk]`` int32."""
    T, H, nb = scores.shape
    m = min(topk - 1, nb)
    local = (tok_pos.to(torch.int64) // block_size).view(T, 1).expand(T, H)
    if m > 0:
        vals, idx = torch.topk(scores, m, dim=-1, largest=True, sorted=True)
    else:
        vals = scores[..., :0]
        idx = vals.to(torch.int64)
    sel = assemble_selection(idx, vals, local, topk)  # [T, H, k]
    return sel.permute(1, 0, 2).contiguous()
