"""Random MSA inputs on the paged layout, for the kernel tests (and the GPU benchmark)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Case:
    q: torch.Tensor  # [T, Hq, D]
    k_cache: torch.Tensor  # [P, Hkv, BS, D]
    v_cache: torch.Tensor
    index_q: torch.Tensor  # [T, Hkv, DI]
    index_k: torch.Tensor  # [P, BS, DI]
    page_table: torch.Tensor  # [B, max_pages] int32
    cu_seqlens_q: torch.Tensor  # [B+1] int32
    seqlens_k: torch.Tensor  # [B] int32
    tok_pos: torch.Tensor  # [T] int64
    block: int
    max_seqlen_q: int


def make_case(
    seqs: list[tuple[int, int]],
    G: int,
    Hkv: int,
    D: int,
    block: int,
    di: int = 64,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
    poison: bool = True,
) -> Case:
    """``seqs``: ``(Lq, Lk)`` per sequence (queries are the last ``Lq`` of ``Lk`` tokens).

    Pages are shuffled (logical != physical), spare pages exist, and every cache slot past a
    sequence's length is NaN when ``poison``: a kernel reading it leaks NaN into the output.
    """
    gen = generator
    B = len(seqs)
    nbs = [max(1, math.ceil(lk / block)) for _, lk in seqs]
    max_pages = max(nbs) + 1
    P = sum(nbs) + 3
    perm = torch.randperm(P, generator=gen)
    pt = torch.empty(B, max_pages, dtype=torch.int32)
    used = 0
    for b, nb in enumerate(nbs):
        pt[b, :nb] = perm[used : used + nb].to(torch.int32)
        pt[b, nb:] = perm[-1].to(torch.int32)  # spare page, never read
        used += nb
    Hq = G * Hkv
    k = torch.randn(P, Hkv, block, D, generator=gen)
    v = torch.randn(P, Hkv, block, D, generator=gen)
    ik = torch.randn(P, block, di, generator=gen)
    if poison:
        live = torch.zeros(P, block, dtype=torch.bool)
        for b, (_, lk) in enumerate(seqs):
            for n in range(nbs[b]):
                cnt = min(block, lk - n * block)
                live[pt[b, n].long(), :cnt] = True
        k[~live[:, None, :].expand(P, Hkv, block)] = float("nan")
        v[~live[:, None, :].expand(P, Hkv, block)] = float("nan")
        ik[~live] = float("nan")
    T = sum(lq for lq, _ in seqs)
    q = torch.randn(T, Hq, D, generator=gen)
    iq = torch.randn(T, Hkv, di, generator=gen)
    cu = torch.tensor([0] + [lq for lq, _ in seqs], dtype=torch.int64).cumsum(0).to(torch.int32)
    lk_t = torch.tensor([lk for _, lk in seqs], dtype=torch.int32)
    pos = torch.cat([torch.arange(lk - lq, lk) for lq, lk in seqs]) if T else torch.zeros(0)
    dev = torch.device(device)
    return Case(
        q=q.to(dtype).to(dev),
        k_cache=k.to(dtype).to(dev),
        v_cache=v.to(dtype).to(dev),
        index_q=iq.to(dtype).to(dev),
        index_k=ik.to(dtype).to(dev),
        page_table=pt.to(dev),
        cu_seqlens_q=cu.to(dev),
        seqlens_k=lk_t.to(dev),
        tok_pos=pos.to(torch.int64).to(dev),
        block=block,
        max_seqlen_q=max(lq for lq, _ in seqs),
    )


def random_selection(
    tok_pos: torch.Tensor,
    Hkv: int,
    block: int,
    topk: int,
    mode: str = "uniform",
    generator: torch.Generator | None = None,
    max_pages: int | None = None,
) -> torch.Tensor:
    """Selections ``[Hkv, T, topk]`` int32 following the layout contract.

    ``uniform``: random visible blocks; ``prefix``: the first blocks (block 0 chosen by every
    query); ``skewed``: sinks + recent window + Zipf popularity; ``shared``: one random choice per
    128-token query block (best case). Local block last, -1 padding.
    """
    from mcode.kernels.reference import assemble_selection

    dev = tok_pos.device
    T = tok_pos.shape[0]
    local = tok_pos.long() // block
    nb = int(local.max().item()) + 1 if T else 1
    nb = max(nb, max_pages or 0)
    ids = torch.arange(nb, device=dev)
    if mode == "uniform":
        score = torch.rand(Hkv, T, nb, generator=generator, device="cpu").to(dev)
    elif mode == "prefix":
        score = (-ids.float()).expand(Hkv, T, nb).clone()
    elif mode == "skewed":
        u = torch.rand(Hkv, T, nb, generator=generator, device="cpu").to(dev)
        pop = 1.0 / (1.0 + ids.float())  # Zipf-like popularity of early blocks
        recent = (local[None, :, None] - ids[None, None, :]).clamp(min=0).float()
        score = u * pop + (ids < 2).float() * 10 + (recent < 4).float() * 5
    elif mode == "shared":
        qb = tok_pos.long() // 128
        nq = int(qb.max().item()) + 1 if T else 1
        base = torch.rand(Hkv, nq, nb, generator=generator, device="cpu").to(dev)
        score = base[:, qb, :]
    else:
        raise ValueError(mode)
    vis = ids[None, None, :] < local[None, :, None]  # non-local visible
    score = torch.where(vis, score, torch.full_like(score, float("-inf")))
    vals, idx = torch.sort(score, dim=-1, descending=True, stable=True)
    return assemble_selection(idx, vals, local.view(1, T).expand(Hkv, T), topk)


def shuffle_valid(sel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Permute the valid entries of each row (local block included), keeping -1 padding last."""
    valid = sel >= 0
    r = torch.rand(sel.shape, generator=generator, device="cpu").to(sel.device)
    r = torch.where(valid, r, torch.full_like(r, 2.0))
    order = torch.argsort(r, dim=-1)
    return torch.gather(sel, -1, order)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out = out.float()
    ref = ref.float()
    if torch.isnan(out).any():
        return float("nan")
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))
