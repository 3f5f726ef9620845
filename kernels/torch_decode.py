"""Decode on the CPU: one query per sequence, vectorised over the batch in plain torch.

The references in :mod:`.reference` are written to be exact and obvious: a Python loop over
sequences and query chunks, each gathering its pages again. For a decode step that loop *is*
the cost (a few small ops per sequence per layer, and one query row each). Here a step is a
handful of batched ops whatever the batch:

    page_table[:, :n] ──gather──> K, V [B, Hkv, n*page, D]   (every sequence padded to n pages)
    q [B, Hkv, G, D] @ K^T ──mask (past seqlens_k)──> softmax ──@ V──> out [B, Hq, D]

and for MSA the same gather twice: once for the block scores (max over each block's keys of the
index query's dot product; top-k as :func:`.reference.topk_select_ref`, so the selection is the
reference's, ties included), once for the attention over only the chosen blocks.

fp32 math on the gathered tiles (the CPU has no fast fp16 matmul), outputs in ``q.dtype``; the
tests hold these functions to the references within rounding.
"""

from __future__ import annotations

import math

import torch

from .reference import topk_select_ref

_NEG_INF = float("-inf")


def _gather(cache: torch.Tensor, page_table: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` pages of every sequence: ``[B, Hkv, n*page, D]`` fp32 (K/V cache
    ``[P, Hkv, page, D]``) or ``[B, n*page, d]`` (index-key cache ``[P, page, d]``)."""
    B = page_table.shape[0]
    # index_select, not cache[ids]: advanced indexing measured 10x slower for this gather.
    blocks = cache.index_select(0, page_table[:, :n].reshape(-1).long())
    if cache.dim() == 4:  # [B*n, Hkv, page, D] -> [B, Hkv, n*page, D]
        blocks = blocks.view(B, n, *cache.shape[1:]).transpose(1, 2)
        return blocks.reshape(B, cache.shape[1], n * cache.shape[2], -1).float()
    return blocks.reshape(B, n * cache.shape[1], -1).float()


def _softmax_av(
    s: torch.Tensor, visible: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``s [B, H, G, L]`` scores, ``visible [B, H or 1, L]``, ``v [B, H, L, D]``: ``(out [B,
    H, G, D], lse [B, H, G])``; a row with nothing visible gives 0 and -inf. Invisible values
    are zeroed too: a page's slots past its sequence hold whatever was there (0 x NaN = NaN)."""
    s = s.masked_fill(~visible[:, :, None, :], _NEG_INF)
    v = v.masked_fill(~visible[..., None], 0.0)
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse.masked_fill(lse == _NEG_INF, 0.0)[..., None])
    return p @ v, lse


def dense_decode_torch(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    page_table: torch.Tensor,
    seqlens_k: torch.Tensor,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense attention of one query per sequence (``q [B, Hq, D]``, the last of its
    ``seqlens_k[b]`` keys) over the paged cache. Returns ``(out [B, Hq, D], lse [B, Hq])``."""
    B, Hq, D = q.shape
    Hkv, page = k_cache.shape[1], k_cache.shape[2]
    G = Hq // Hkv
    scale = scale if scale is not None else 1.0 / math.sqrt(D)
    longest = int(seqlens_k.max()) if B else 0
    n = max(1, -(-longest // page))
    k = _gather(k_cache, page_table, n)
    v = _gather(v_cache, page_table, n)
    qf = q.float().view(B, Hkv, G, D)
    if B == 1:  # the CPU's usual step: cut to the length, and nothing needs a mask
        k, v = k[:, :, :longest], v[:, :, :longest]
    s = (qf @ k.transpose(-1, -2)) * scale  # [B, Hkv, G, L]
    if B == 1:
        lse = torch.logsumexp(s, dim=-1)
        out = torch.softmax(s, dim=-1) @ v
    else:
        visible = torch.arange(n * page, device=q.device)[None, :] < seqlens_k.long()[:, None]
        out, lse = _softmax_av(s, visible[:, None, :], v)
    return out.reshape(B, Hq, D).to(q.dtype), lse.reshape(B, Hq)


def block_scores_decode_torch(
    index_q: torch.Tensor,
    keys: torch.Tensor,
    page_table: torch.Tensor,
    seqlens_k: torch.Tensor,
) -> torch.Tensor:
    """Block scores of one index query per sequence and head (``index_q [B, H, d]``) against
    ``keys``: per-head keys ``[P, H, page, d]`` (a layer's own K as its index) or one shared
    index-key head ``[P, page, d]``. Returns ``[H, B, max_pages]`` fp32, the max over each
    block's visible keys, -inf for blocks past the sequence (as
    :func:`.reference.index_scores_ref`)."""
    B, H, _ = index_q.shape
    page = keys.shape[2] if keys.dim() == 4 else keys.shape[1]
    nb = page_table.shape[1]
    n = max(1, -(-int(seqlens_k.max()) // page)) if B else 1
    k = _gather(keys, page_table, n)
    qf = index_q.float()
    if keys.dim() == 4:
        s = (qf[:, :, None, :] @ k.transpose(-1, -2)).squeeze(2)  # [B, H, L]
    else:
        s = qf @ k.transpose(-1, -2)  # [B, H, L]
    visible = torch.arange(n * page, device=keys.device)[None, :] < seqlens_k.long()[:, None]
    s = s.masked_fill(~visible[:, None, :], _NEG_INF).view(B, H, n, page).amax(-1)
    out = torch.full((H, B, nb), _NEG_INF, dtype=torch.float32, device=keys.device)
    out[:, :, :n] = s.permute(1, 0, 2)
    return out


def msa_select_decode_torch(
    index_q: torch.Tensor,
    keys: torch.Tensor,
    page_table: torch.Tensor,
    seqlens_k: torch.Tensor,
    topk: int,
) -> torch.Tensor:
    """The reference's selection (:func:`.reference.msa_select_ref`) for one query per
    sequence: ``sel [H, B, topk]`` int32, the local block last."""
    page = keys.shape[2] if keys.dim() == 4 else keys.shape[1]
    scores = block_scores_decode_torch(index_q, keys, page_table, seqlens_k)
    return topk_select_ref(scores, seqlens_k.long() - 1, page, topk)


def sparse_decode_torch(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    sel: torch.Tensor,
    page_table: torch.Tensor,
    seqlens_k: torch.Tensor,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of one query per sequence over exactly the blocks of ``sel [Hkv, B, k]``
    (-1 entries ignored), as :func:`.reference.sparse_attention_ref`. Returns ``(out [B, Hq,
    D], lse [B, Hq])``."""
    B, Hq, D = q.shape
    Hkv, page = k_cache.shape[1], k_cache.shape[2]
    G = Hq // Hkv
    kk = sel.shape[-1]
    scale = scale if scale is not None else 1.0 / math.sqrt(D)
    blk = sel.permute(1, 0, 2).long().contiguous()  # [B, Hkv, k] logical blocks
    nb = -(-seqlens_k.long() // page)  # [B]
    ok = (blk >= 0) & (blk < nb[:, None, None])
    pages = page_table.long().gather(1, blk.clamp(min=0).view(B, -1)).view(B, Hkv, kk)
    heads = torch.arange(Hkv, device=q.device)[None, :, None]
    kg = k_cache[pages, heads].float().reshape(B, Hkv, kk * page, D)  # [B, Hkv, k*page, D]
    vg = v_cache[pages, heads].float().reshape(B, Hkv, kk * page, D)
    kpos = (blk[..., None] * page + torch.arange(page, device=q.device)).view(B, Hkv, kk * page)
    visible = ok.repeat_interleave(page, dim=-1) & (kpos < seqlens_k.long()[:, None, None])
    s = (q.float().view(B, Hkv, G, D) @ kg.transpose(-1, -2)) * scale
    out, lse = _softmax_av(s, visible, vg)
    return out.reshape(B, Hq, D).to(q.dtype), lse.reshape(B, Hq)
