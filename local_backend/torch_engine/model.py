"""A Llama-family decoder (RMSNorm, RoPE, GQA, SwiGLU) over the paged KV cache.

One forward call runs a *packed batch*: the new tokens of several sequences one after another
(a prefill chunk of one, a single decode token of others), described by :class:`Batch` in the
layout of ``mcode.kernels`` (``cu_seqlens_q``, ``seqlens_k``, a page table). Each layer writes
its new K and V into the pages first, then attends over the cache, so prefill, chunked prefill,
decode and a mix of them are one code path.

A decode step (one new token per sequence) takes the kernels' decode paths: split-KV dense
decode and MSA decode on CUDA, the batched torch paths of ``mcode.kernels.torch_decode`` on the
CPU (the references' per-sequence loops were most of a CPU decode step).

Attention per layer is ``dense`` or ``msa``. MSA scores 128-token blocks and attends to the
top-k of them (plus the local block). SmolLM2 has no trained index heads, so its blocks are
scored with the layer's own keys against the mean query of each GQA group (an index head per
KV head that is the layer itself): selection is per KV head, one ``msa_select`` each. A model
built with ``index_dim`` (the GPU benchmark's M3-shaped stack) has its own index projections,
one index query head per KV group and one shared index-key head, as M3 does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from mcode.kernels.torch_decode import msa_select_decode_torch, sparse_decode_torch

from mcode import kernels

from .paged_cache import PagedKVCache
from .weights import ModelConfig


@dataclass
class Batch:
    """The new tokens of one forward call, packed. ``slot_pages``/``slot_offsets`` say where
    each token's K/V go; ``logit_rows`` which rows need logits (None: every row)."""

    tokens: torch.Tensor  # [T] int64
    positions: torch.Tensor  # [T] int64
    cu_seqlens_q: torch.Tensor  # [B+1] int32
    seqlens_k: torch.Tensor  # [B] int32
    page_table: torch.Tensor  # [B, max_pages] int32
    slot_pages: torch.Tensor  # [T] int64
    slot_offsets: torch.Tensor  # [T] int64
    max_seqlen_q: int
    logit_rows: torch.Tensor | None = None

    @classmethod
    def build(
        cls,
        seqs: Sequence[tuple[Sequence[int], int, Sequence[int]]],
        page: int,
        device: torch.device,
        *,
        all_logits: bool = False,
    ) -> Batch:
        """From ``(new_tokens, start_position, pages)`` per sequence."""
        toks: list[int] = []
        pos: list[int] = []
        cu = [0]
        lk: list[int] = []
        last: list[int] = []
        width = max(len(p) for _, _, p in seqs)
        table = torch.zeros((len(seqs), width), dtype=torch.int32)
        sp: list[int] = []
        so: list[int] = []
        for b, (new, start, pages) in enumerate(seqs):
            toks.extend(new)
            ps = range(start, start + len(new))
            pos.extend(ps)
            sp.extend(pages[p // page] for p in ps)
            so.extend(p % page for p in ps)
            cu.append(cu[-1] + len(new))
            lk.append(start + len(new))
            last.append(cu[-1] - 1)
            table[b, : len(pages)] = torch.tensor(pages, dtype=torch.int32)

        def i64(x: list[int]) -> torch.Tensor:
            return torch.tensor(x, dtype=torch.int64, device=device)

        return cls(
            tokens=i64(toks),
            positions=i64(pos),
            cu_seqlens_q=torch.tensor(cu, dtype=torch.int32, device=device),
            seqlens_k=torch.tensor(lk, dtype=torch.int32, device=device),
            page_table=table.to(device),
            slot_pages=i64(sp),
            slot_offsets=i64(so),
            max_seqlen_q=max(len(n) for n, _, _ in seqs),
            logit_rows=None if all_logits else i64(last),
        )


@dataclass(frozen=True, slots=True)
class AttentionPlan:
    """Which layers run MSA, with how many blocks per query, on which kernels."""

    msa_layers: frozenset[int] = frozenset()
    topk: int = 16
    backend: str = "auto"

    @classmethod
    def parse(
        cls, spec: str, n_layers: int, *, topk: int = 16, backend: str = "auto"
    ) -> AttentionPlan:
        """``dense``, ``msa`` (every layer) or a per-layer list like ``dense,msa,msa,...``."""
        parts = [p.strip() for p in spec.split(",")]
        if len(parts) == 1:
            parts = parts * n_layers
        if len(parts) != n_layers or any(p not in ("dense", "msa") for p in parts):
            from mcode.errors import ConfigError

            raise ConfigError(
                f"attention {spec!r} must be dense, msa, or one of them per layer ({n_layers})",
                hint="e.g. --attention msa, or dense,msa,msa,... with one entry per layer",
            )
        return cls(frozenset(i for i, p in enumerate(parts) if p == "msa"), topk, backend)

    def kernels_for(self, t: torch.Tensor) -> str:
        """The kernels' backend for tensors like ``t``. ``auto`` on the CPU is the torch
        references, never Triton's interpreter (which ``auto`` would pick under
        ``TRITON_INTERPRET=1``, as the kernel tests set it): serving through it is ~100x slower."""
        if self.backend == "auto" and not t.is_cuda:
            return "torch"
        return self.backend


class LlamaModel:
    """Weights on one device, in ``dtype``; attention in the cache's dtype."""

    def __init__(
        self,
        cfg: ModelConfig,
        tensors: dict[str, torch.Tensor],
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        index_dim: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.dtype = dtype
        self.index_dim = index_dim

        def w(name: str) -> torch.Tensor:
            return tensors[name].to(device=self.device, dtype=dtype)

        self.embed = w("token_embd.weight")
        self.norm = w("output_norm.weight")
        self.lm_head = self.embed if cfg.tied_embeddings else w("output.weight")
        self.layers = []
        for i in range(cfg.n_layers):
            p = f"blk.{i}."
            layer = {
                "attn_norm": w(p + "attn_norm.weight"),
                # q, k and v as one matmul.
                "qkv": torch.cat(
                    [w(p + "attn_q.weight"), w(p + "attn_k.weight"), w(p + "attn_v.weight")]
                ),
                "o": w(p + "attn_output.weight"),
                "ffn_norm": w(p + "ffn_norm.weight"),
                "gate_up": torch.cat([w(p + "ffn_gate.weight"), w(p + "ffn_up.weight")]),
                "down": w(p + "ffn_down.weight"),
            }
            if index_dim:
                layer["index"] = w(p + "index.weight")  # [(Hkv + 1) * d_idx, hidden]
            self.layers.append(layer)
        d = cfg.head_dim
        inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        self.inv_freq = (inv / cfg.rope_linear_factor).to(self.device)

    def _rope(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        ang = positions.to(torch.float64)[:, None] * self.inv_freq[None, :]
        cos = ang.cos().to(x.dtype)[:, None, :]
        sin = ang.sin().to(x.dtype)[:, None, :]
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.cfg.rms_eps)
        return xf.to(x.dtype) * weight

    @torch.inference_mode()
    def forward(self, batch: Batch, cache: PagedKVCache, plan: AttentionPlan) -> torch.Tensor:
        """Logits ``[rows, vocab]`` fp32 for ``batch.logit_rows`` (every token if None)."""
        cfg = self.cfg
        T = batch.tokens.shape[0]
        hq, hkv, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        x = self.embed[batch.tokens]
        for i, layer in enumerate(self.layers):
            h = self._rms(x, layer["attn_norm"])
            qkv = h @ layer["qkv"].T
            q = qkv[:, : hq * d].view(T, hq, d)
            k = qkv[:, hq * d : (hq + hkv) * d].view(T, hkv, d)
            v = qkv[:, (hq + hkv) * d :].view(T, hkv, d)
            q = self._rope(q, batch.positions)
            k = self._rope(k, batch.positions)
            kc, vc = cache.k[i], cache.v[i]
            kc[batch.slot_pages, :, batch.slot_offsets] = k.to(kc.dtype)
            vc[batch.slot_pages, :, batch.slot_offsets] = v.to(vc.dtype)
            qc = q.to(kc.dtype)
            if i in plan.msa_layers:
                attn = self._msa(i, qc, h, layer, batch, cache, plan)
            elif batch.max_seqlen_q == 1:  # a decode step: split-KV on CUDA, batched on the CPU
                attn = kernels.dense_decode(
                    qc,
                    kc,
                    vc,
                    batch.page_table,
                    batch.seqlens_k,
                    backend=plan.kernels_for(q),
                )
            else:
                attn = kernels.dense_attention(
                    qc,
                    kc,
                    vc,
                    batch.page_table,
                    batch.cu_seqlens_q,
                    batch.seqlens_k,
                    max_seqlen_q=batch.max_seqlen_q,
                    backend=plan.kernels_for(q),
                )
            assert isinstance(attn, torch.Tensor)
            x = x + attn.reshape(T, hq * d).to(x.dtype) @ layer["o"].T
            h = self._rms(x, layer["ffn_norm"])
            gate, up = (h @ layer["gate_up"].T).chunk(2, dim=-1)
            x = x + (F.silu(gate) * up) @ layer["down"].T
        if batch.logit_rows is not None:
            x = x[batch.logit_rows]
        return (self._rms(x, self.norm) @ self.lm_head.T).float()

    def _msa(
        self,
        i: int,
        q: torch.Tensor,
        h: torch.Tensor,
        layer: dict[str, torch.Tensor],
        batch: Batch,
        cache: PagedKVCache,
        plan: AttentionPlan,
    ) -> torch.Tensor:
        kc, vc = cache.k[i], cache.v[i]
        meta = (batch.page_table, batch.cu_seqlens_q, batch.seqlens_k)
        hkv = kc.shape[1]
        if self.index_dim and cache.index_k is not None:
            di = self.index_dim
            idx = (h @ layer["index"].T).to(kc.dtype)
            iq = idx[:, : hkv * di].view(-1, hkv, di)
            ikc = cache.index_k[i]
            ikc[batch.slot_pages, batch.slot_offsets] = _index_keys(idx[:, hkv * di :], ikc.dtype)
            if batch.max_seqlen_q == 1 and q.is_cuda:
                B = batch.seqlens_k.shape[0]
                out = kernels.msa_decode(
                    q.view(B, 1, *q.shape[1:]),
                    kc,
                    vc,
                    iq.view(B, 1, hkv, di),
                    ikc,
                    batch.page_table,
                    batch.seqlens_k,
                    plan.topk,
                    backend=plan.kernels_for(q),
                )
                assert isinstance(out, torch.Tensor)
                return out.view(q.shape)
            if batch.max_seqlen_q == 1 and plan.kernels_for(q) == "torch":
                sel = msa_select_decode_torch(iq, ikc, batch.page_table, batch.seqlens_k, plan.topk)
                return sparse_decode_torch(q, kc, vc, sel, batch.page_table, batch.seqlens_k)[0]
            sel = kernels.msa_select(
                iq,
                ikc,
                *meta,
                plan.topk,
                max_seqlen_q=batch.max_seqlen_q,
                backend=plan.kernels_for(q),
            )
        elif batch.max_seqlen_q == 1 and plan.kernels_for(q) == "torch":
            # A decode step on the CPU: every KV head's selection in one batched pass.
            B, g = q.shape[0], q.shape[1] // hkv
            mean_q = q.view(B, hkv, g, q.shape[2]).mean(2)
            sel = msa_select_decode_torch(mean_q, kc, batch.page_table, batch.seqlens_k, plan.topk)
            return sparse_decode_torch(q, kc, vc, sel, batch.page_table, batch.seqlens_k)[0]
        else:
            g = q.shape[1] // hkv
            sel = torch.cat(
                [
                    kernels.msa_select(
                        q[:, j * g : (j + 1) * g].mean(1, keepdim=True),
                        kc[:, j],
                        *meta,
                        plan.topk,
                        max_seqlen_q=batch.max_seqlen_q,
                        backend=plan.kernels_for(q),
                    )
                    for j in range(hkv)
                ]
            )
        out = kernels.msa_prefill(q, kc, vc, sel, *meta, backend=plan.kernels_for(q))
        assert isinstance(out, torch.Tensor)
        return out


def _index_keys(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Index keys in the cache's dtype; into fp8 saturated at its largest finite value (a cast
    would make an outlier NaN, and top-k ranks are kept by saturation, not by NaN)."""
    if dtype.itemsize == 1 and dtype.is_floating_point:
        big = torch.finfo(dtype).max
        x = x.clamp(-big, big)
    return x.to(dtype)
