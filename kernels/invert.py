"""Inversion of q->k selections into k->q lists and the work list, on the device, no host sync.

Input ``sel`` ``[Hkv, T, k]`` (logical block ids, -1 padding). Every valid entry ``(h, t, j)``
gets the row key ``(h * B + seq(t)) * max_pages + sel[h, t, j]``; a stable sort of the flattened
keys lists, per (KV head, sequence, block) row, the query tokens that chose it in ascending token
order (so the diagonal/causal tokens come first). Rows are cut into work items of at most
``chunk`` tokens; the number of work items is only known on the device, so the work list is
allocated at a static upper bound and the kernel reads the count from device memory.

Pure torch ops (sort, scatter_add, cumsum, searchsorted): graph-capturable, no ``.item()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class WorkList:
    """k->q lists cut into work items.

    ``ent_tok``/``ent_slot``/``ent_pos``: ``[Hkv*T*k]`` int32, the token, slot and token position
    of each sorted entry (invalid entries sort last and are never referenced by a work item).
    ``work``: ``[cap, 3]`` int32 rows ``(row, start, count)``
    with ``row = (h * B + b) * max_pages + block``; ``num_work``: ``[1]`` int32 on the device.
    """

    ent_tok: torch.Tensor
    ent_slot: torch.Tensor
    ent_pos: torch.Tensor
    work: torch.Tensor
    num_work: torch.Tensor
    capacity: int
    chunk: int


def build_worklist(
    sel: torch.Tensor,
    tok_seq: torch.Tensor,
    num_seqs: int,
    max_pages: int,
    chunk: int,
    tok_pos: torch.Tensor,
) -> WorkList:
    """Invert ``sel`` ``[Hkv, T, k]`` into a work list (see module docstring).

    ``tok_seq``/``tok_pos``: ``[T]`` sequence and position of each query token
    (:func:`._util.token_meta`); ``chunk``: most tokens per work item."""
    Hkv, T, k = sel.shape
    dev = sel.device
    nrows = Hkv * num_seqs * max_pages
    ne = Hkv * T * k
    s = sel.to(torch.int64)
    valid = (s >= 0) & (s < max_pages)
    heads = torch.arange(Hkv, device=dev, dtype=torch.int64).view(Hkv, 1, 1)
    key = (heads * num_seqs + tok_seq.to(torch.int64).view(1, T, 1)) * max_pages + s
    key = torch.where(valid, key, torch.full_like(key, nrows)).flatten()
    _, perm = torch.sort(key, stable=True)
    counts = torch.zeros(nrows + 1, dtype=torch.int64, device=dev)
    counts.scatter_add_(0, key, torch.ones_like(key))
    counts = counts[:nrows]
    row_start = torch.cumsum(counts, 0) - counts
    wcount = (counts + chunk - 1) // chunk
    wend = torch.cumsum(wcount, 0)
    cap = max(1, min(nrows, ne) + ne // chunk + 1)
    w = torch.arange(cap, device=dev, dtype=torch.int64)
    wrow = torch.searchsorted(wend, w, right=True).clamp_(max=max(nrows - 1, 0))
    first_w = wend[wrow] - wcount[wrow]
    off = (w - first_w) * chunk
    start = row_start[wrow] + off
    cnt = (counts[wrow] - off).clamp(min=0, max=chunk)
    num_work = (
        wend[-1:].to(torch.int32) if nrows > 0 else torch.zeros(1, dtype=torch.int32, device=dev)
    )
    cnt = torch.where(w < wend[-1], cnt, torch.zeros_like(cnt))
    work = torch.stack([wrow, start, cnt], dim=1).to(torch.int32).contiguous()
    ent_tok64 = (perm // k) % T
    ent_tok = ent_tok64.to(torch.int32)
    ent_slot = (perm % k).to(torch.int32)
    ent_pos = tok_pos[ent_tok64].to(torch.int32)
    return WorkList(ent_tok, ent_slot, ent_pos, work, num_work.contiguous(), cap, chunk)
