"""PyTorch references for MSA (fp32 math, bounded memory, any device). Slow but exact.

Layout (see ``kernels/README`` in NOTES.md / KERNELS.md):

* ``q``: ``[T, Hq, D]`` token-major, variable-length sequences packed along ``T`` by
  ``cu_seqlens_q`` (``[B+1]`` int32). Query heads ``h*G .. h*G+G-1`` share KV head ``h``.
* ``k_cache``, ``v_cache``: ``[num_pages, Hkv, page, D]``; ``page_table``: ``[B, max_pages]`` int32
  maps logical block ``n`` of sequence ``b`` to a physical page. Block size == page size.
* ``seqlens_k``: ``[B]`` int32, keys per sequence *including* the queries' own tokens. Queries are
  aligned bottom-right: query ``i`` of an ``Lq``-token chunk sits at ``seqlens_k[b] - Lq + i`` and
  sees keys ``0 .. pos`` (causal).
* ``index_q``: ``[T, Hkv, d_idx]`` (one index head per KV group); ``index_k_cache``:
  ``[num_pages, page, d_idx]`` (a single shared index-key head, same page table).
* selections ``sel``: ``[Hkv, T, k]`` int32 logical block ids, valid entries first then -1, the
  query's own (local) block the last valid entry, otherwise unordered, unique per row.
* outputs: ``out`` ``[T, Hq, D]`` in ``q.dtype``; ``lse`` ``[T, Hq]`` fp32 natural-log
  log-sum-exp of the scaled logits. A query row with no visible key gives ``out = 0`` and
  ``lse = -inf``.
"""

from __future__ import annotations

import math

import torch

_NEG_INF = float("-inf")


def gather_paged(cache: torch.Tensor, pages: torch.Tensor, length: int) -> torch.Tensor:
    """Contiguous copy of one sequence's first ``length`` tokens from a paged cache.

    ``cache``: ``[P, Hkv, page, D]`` (K/V) or ``[P, page, d]`` (index keys); ``pages``: the
    sequence's page-table row. Returns ``[length, Hkv, D]`` or ``[length, d]``.
    """
    if length == 0:
        shape = (0,) + ((cache.shape[1], cache.shape[3]) if cache.dim() == 4 else (cache.shape[2],))
        return cache.new_zeros(shape)
    page = cache.shape[2] if cache.dim() == 4 else cache.shape[1]
    n = (length + page - 1) // page
    blocks = cache[pages[:n].long()]
    if cache.dim() == 4:  # [n, Hkv, page, D] -> [n*page, Hkv, D]
        blocks = blocks.permute(0, 2, 1, 3).reshape(n * page, cache.shape[1], cache.shape[3])
    else:
        blocks = blocks.reshape(n * page, cache.shape[2])
    return blocks[:length]


def _seq_ranges(cu_seqlens_q: torch.Tensor, seqlens_k: torch.Tensor) -> list[tuple[int, int, int]]:
    cu = [int(x) for x in cu_seqlens_q.tolist()]
    lk = [int(x) for x in seqlens_k.tolist()]
    return [(cu[b], cu[b + 1], lk[b]) for b in range(len(lk))]


def dense_attention_ref(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    page_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seqlens_k: torch.Tensor,
    softmax_scale: float | None = None,
    chunk: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense causal GQA attention over a paged cache, fp32 math. Returns ``(out, lse)``."""
    T, Hq, D = q.shape
    Hkv = k_cache.shape[1]
    G = Hq // Hkv
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(D)
    out = torch.zeros(T, Hq, D, dtype=torch.float32, device=q.device)
    lse = torch.full((T, Hq), _NEG_INF, dtype=torch.float32, device=q.device)
    for b, (q0, q1, lk) in enumerate(_seq_ranges(cu_seqlens_q, seqlens_k)):
        lq = q1 - q0
        if lq == 0:
            continue
        kb = gather_paged(k_cache, page_table[b], lk).float()  # [Lk, Hkv, D]
        vb = gather_paged(v_cache, page_table[b], lk).float()
        kpos = torch.arange(lk, device=q.device)
        for c0 in range(0, lq, chunk):
            c1 = min(lq, c0 + chunk)
            qc = q[q0 + c0 : q0 + c1].float().view(c1 - c0, Hkv, G, D)
            pos = lk - lq + torch.arange(c0, c1, device=q.device)
            s = torch.einsum("chgd,khd->chgk", qc, kb) * scale
            s = s.masked_fill((kpos[None, :] > pos[:, None])[:, None, None, :], _NEG_INF)
            lse_c = torch.logsumexp(s, dim=-1)  # [C, Hkv, G]
            p = torch.exp(s - lse_c[..., None].masked_fill(lse_c[..., None] == _NEG_INF, 0.0))
            o = torch.einsum("chgk,khd->chgd", p, vb)
            out[q0 + c0 : q0 + c1] = o.reshape(c1 - c0, Hq, D)
            lse[q0 + c0 : q0 + c1] = lse_c.reshape(c1 - c0, Hq)
    return out.to(q.dtype), lse


def index_scores_ref(
    index_q: torch.Tensor,
    index_k_cache: torch.Tensor,
    page_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seqlens_k: torch.Tensor,
    chunk: int = 64,
) -> torch.Tensor:
    """Block scores of the index branch: ``[Hkv, T, max_pages]`` fp32.

    ``score[h, t, n] = max`` over the visible tokens ``j`` of block ``n`` of
    ``index_q[t, h] . index_k[j]`` (raw logits, causal); ``-inf`` where block ``n`` holds no
    visible token (after the query, or past ``max_pages``).
    """
    T, Hkv, _ = index_q.shape
    page = index_k_cache.shape[1]
    nbmax = page_table.shape[1]
    scores = torch.full((Hkv, T, nbmax), _NEG_INF, dtype=torch.float32, device=index_q.device)
    for b, (q0, q1, lk) in enumerate(_seq_ranges(cu_seqlens_q, seqlens_k)):
        lq = q1 - q0
        if lq == 0:
            continue
        nb = (lk + page - 1) // page
        kb = torch.zeros(nb * page, index_k_cache.shape[2], device=index_q.device)
        kb[:lk] = gather_paged(index_k_cache, page_table[b], lk).float()
        kpos = torch.arange(nb * page, device=index_q.device)
        for c0 in range(0, lq, chunk):
            c1 = min(lq, c0 + chunk)
            pos = lk - lq + torch.arange(c0, c1, device=index_q.device)
            s = torch.einsum("chd,kd->hck", index_q[q0 + c0 : q0 + c1].float(), kb)
            s = s.masked_fill((kpos[None, :] > pos[:, None])[None], _NEG_INF)
            scores[:, q0 + c0 : q0 + c1, :nb] = s.view(Hkv, c1 - c0, nb, page).amax(-1)
    return scores


def assemble_selection(
    idx: torch.Tensor, vals: torch.Tensor, local: torch.Tensor, topk: int
) -> torch.Tensor:
    """Build ``[..., topk]`` int32 lists from ranked candidates (local block excluded).

    ``idx``/``vals``: ``[..., m]`` candidate ids and scores sorted best first, ``-inf`` marking
    no candidate; ``local``: ``[...]`` local block ids. Output: the valid candidates (at most
    ``topk - 1``), then the local block, then ``-1`` padding. Device ops only (graph-capturable).
    """
    shape = local.shape
    out = torch.full((*shape, topk), -1, dtype=torch.int32, device=local.device)
    m = min(idx.shape[-1], topk - 1)
    if m > 0:
        valid = vals[..., :m] > _NEG_INF
        out[..., :m] = torch.where(valid, idx[..., :m].to(torch.int32), -1)
        nvalid = valid.sum(-1, keepdim=True)
    else:
        nvalid = torch.zeros((*shape, 1), dtype=torch.int64, device=local.device)
    out.scatter_(-1, nvalid, local.to(torch.int32).unsqueeze(-1))
    return out


def topk_select_ref(
    scores: torch.Tensor, tok_pos: torch.Tensor, block_size: int, topk: int
) -> torch.Tensor:
    """Top-k from block scores ``[Hkv, T, nb]``: ``topk - 1`` best non-local visible blocks
    (ties to the lower id, by a stable sort), then the local block ``tok_pos // block_size``."""
    Hkv, T, nb = scores.shape
    local = (tok_pos.long() // block_size).view(1, T).expand(Hkv, T)
    s = scores.clone()
    s.scatter_(-1, local.unsqueeze(-1).clamp(max=nb - 1), _NEG_INF)
    vals, order = torch.sort(s, dim=-1, descending=True, stable=True)
    return assemble_selection(order, vals, local, topk)


def msa_select_ref(
    index_q: torch.Tensor,
    index_k_cache: torch.Tensor,
    page_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seqlens_k: torch.Tensor,
    topk: int,
) -> torch.Tensor:
    """Index branch reference: block scores then top-k. Returns ``sel`` ``[Hkv, T, topk]``."""
    from ._util import token_meta

    scores = index_scores_ref(index_q, index_k_cache, page_table, cu_seqlens_q, seqlens_k)
    _, pos = token_meta(cu_seqlens_q, seqlens_k, index_q.shape[0])
    return topk_select_ref(scores, pos, index_k_cache.shape[1], topk)


def sparse_attention_ref(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    sel: torch.Tensor,
    page_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seqlens_k: torch.Tensor,
    softmax_scale: float | None = None,
    chunk: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse attention over exactly the listed blocks (causal inside them), fp32 math.

    Gathers the selected blocks for ``chunk`` query tokens at a time, so memory stays bounded
    (``Hkv * chunk * k * page * D`` floats). ``-1`` entries are ignored wherever they are.
    Returns ``(out [T, Hq, D] q.dtype, lse [T, Hq] fp32)``.
    """
    T, Hq, D = q.shape
    Hkv, page = k_cache.shape[1], k_cache.shape[2]
    G = Hq // Hkv
    k = sel.shape[-1]
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(D)
    out = torch.zeros(T, Hq, D, dtype=torch.float32, device=q.device)
    lse = torch.full((T, Hq), _NEG_INF, dtype=torch.float32, device=q.device)
    heads = torch.arange(Hkv, device=q.device)[:, None, None]
    for b, (q0, q1, lk) in enumerate(_seq_ranges(cu_seqlens_q, seqlens_k)):
        lq = q1 - q0
        if lq == 0:
            continue
        nb = (lk + page - 1) // page
        kb = torch.zeros(nb * page, Hkv, D, device=q.device)
        vb = torch.zeros(nb * page, Hkv, D, device=q.device)
        kb[:lk] = gather_paged(k_cache, page_table[b], lk).float()
        vb[:lk] = gather_paged(v_cache, page_table[b], lk).float()
        kb = kb.view(nb, page, Hkv, D).permute(2, 0, 1, 3)  # [Hkv, nb, page, D]
        vb = vb.view(nb, page, Hkv, D).permute(2, 0, 1, 3)
        for c0 in range(0, lq, chunk):
            c1 = min(lq, c0 + chunk)
            C = c1 - c0
            ids = sel[:, q0 + c0 : q0 + c1, :].long()  # [Hkv, C, k]
            ok = (ids >= 0) & (ids < nb)
            idc = ids.clamp(0, nb - 1)
            kg = kb[heads, idc].reshape(Hkv, C, k * page, D)
            vg = vb[heads, idc].reshape(Hkv, C, k * page, D)
            pos = lk - lq + torch.arange(c0, c1, device=q.device)
            kpos = (idc[..., None] * page + torch.arange(page, device=q.device)).view(Hkv, C, -1)
            vis = ok[..., None].expand(Hkv, C, k, page).reshape(Hkv, C, -1)
            vis = vis & (kpos <= pos[None, :, None])
            qc = q[q0 + c0 : q0 + c1].float().view(C, Hkv, G, D).permute(1, 0, 2, 3)
            s = torch.einsum("hcgd,hcnd->hcgn", qc, kg) * scale
            s = s.masked_fill(~vis[:, :, None, :], _NEG_INF)
            lse_c = torch.logsumexp(s, dim=-1)  # [Hkv, C, G]
            p = torch.exp(s - lse_c[..., None].masked_fill(lse_c[..., None] == _NEG_INF, 0.0))
            o = torch.einsum("hcgn,hcnd->hcgd", p, vg)
            out[q0 + c0 : q0 + c1] = o.permute(1, 0, 2, 3).reshape(C, Hq, D)
            lse[q0 + c0 : q0 + c1] = lse_c.permute(1, 0, 2).reshape(C, Hq)
    return out.to(q.dtype), lse
