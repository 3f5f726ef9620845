"""Public API of ``mcode.kernels``: MSA (MiniMax Sparse Attention) and dense attention.

Data layout (follows MSA's published contract; see KERNELS.md):

* ``q``: ``[T, Hq, D]`` bf16/fp16, token-major; sequences packed along ``T`` by ``cu_seqlens_q``
  (``[B+1]`` int32). KV head ``h`` serves query heads ``h*G .. h*G+G-1`` (``G = Hq / Hkv``).
* ``k_cache``, ``v_cache``: ``[num_pages, Hkv, page, D]``, same dtype as ``q``, last dim
  contiguous. ``page_table``: ``[B, max_pages]`` int32, logical block ``n`` of sequence ``b`` lives
  in page ``page_table[b, n]``. The sparse block is the page (``page`` = block size).
* ``seqlens_k``: ``[B]`` int32, tokens in the cache for each sequence, *including* the queries.
  Causal alignment is bottom-right: the ``Lq`` queries of sequence ``b`` are its last ``Lq``
  tokens (position ``seqlens_k[b] - Lq + i``); full prefill is ``Lq == seqlens_k[b]``, chunked
  prefill has a cached prefix, decode has ``Lq`` in 1..8.
* ``index_q``: ``[T, Hkv, d_idx]`` bf16/fp16 (one index query head per KV group);
  ``index_k_cache``: ``[num_pages, page, d_idx]`` bf16/fp16 or fp8 (a single shared index-key
  head, same page table).
* ``sel``: ``[Hkv, T, k]`` int32 logical block ids; valid entries first, then -1; the local
  block (``pos // page``) is the last valid entry; otherwise unordered; unique per row.
* outputs: ``out`` like ``q``; ``lse`` ``[T, Hq]`` fp32 (natural log). Rows with no visible key
  (e.g. an all -1 selection) give ``out = 0``, ``lse = -inf``.

Every function takes ``backend``: ``"auto"`` runs the Triton kernels on CUDA tensors (and on CPU
tensors under ``TRITON_INTERPRET=1``) and the PyTorch references otherwise, so mcode works on a
CPU-only machine (slowly); ``"triton"`` or ``"torch"`` force one. The Triton paths never sync with
the host, except to find ``max_seqlen_q`` when it is not given.
"""

from __future__ import annotations

import math

import torch

from . import reference as ref
from ._util import check, token_meta, use_triton

_DTYPES = (torch.bfloat16, torch.float16)
_FP8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))


def _pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


def _i32(t: torch.Tensor, name: str, device: torch.device) -> torch.Tensor:
    check(isinstance(t, torch.Tensor), f"{name} must be a tensor")
    check(not t.is_floating_point(), f"{name} must be an integer tensor, got {t.dtype}")
    return t.to(device=device, dtype=torch.int32).contiguous()


def _check_meta(
    page_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor | None,
    seqlens_k: torch.Tensor,
    T: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    page_table = _i32(page_table, "page_table", device)
    check(
        page_table.dim() == 2, f"page_table must be [B, max_pages], got {tuple(page_table.shape)}"
    )
    seqlens_k = _i32(seqlens_k, "seqlens_k", device)
    B = page_table.shape[0]
    check(seqlens_k.shape == (B,), f"seqlens_k must be [B={B}], got {tuple(seqlens_k.shape)}")
    if cu_seqlens_q is not None:
        cu_seqlens_q = _i32(cu_seqlens_q, "cu_seqlens_q", device)
        check(
            cu_seqlens_q.shape == (B + 1,),
            f"cu_seqlens_q must be [B+1={B + 1}], got {tuple(cu_seqlens_q.shape)}",
        )
        if device.type == "cpu":  # cheap here; on the GPU it would be a host sync
            lq = cu_seqlens_q[1:] - cu_seqlens_q[:-1]
            check(
                int(cu_seqlens_q[0]) == 0 and int(cu_seqlens_q[-1]) == T and bool((lq >= 0).all()),
                "cu_seqlens_q must start at 0, be non-decreasing and end at T",
            )
            check(bool((seqlens_k >= lq).all()), "seqlens_k must be >= each sequence's query count")
    return page_table, cu_seqlens_q, seqlens_k


def _check_qkv(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor
) -> tuple[int, int, int]:
    check(q.dim() == 3, f"q must be [T, Hq, D], got shape {tuple(q.shape)}")
    check(
        k_cache.dim() == 4 and v_cache.shape == k_cache.shape,
        f"k_cache/v_cache must both be [num_pages, Hkv, page, D], got {tuple(k_cache.shape)} "
        f"and {tuple(v_cache.shape)}",
    )
    check(q.dtype in _DTYPES, f"q must be bf16 or fp16, got {q.dtype}")
    check(
        k_cache.dtype == q.dtype and v_cache.dtype == q.dtype,
        f"k_cache/v_cache dtype ({k_cache.dtype}, {v_cache.dtype}) must match q ({q.dtype})",
    )
    check(k_cache.device == q.device and v_cache.device == q.device, "q and caches on one device")
    T, Hq, D = q.shape
    Hkv, page = k_cache.shape[1], k_cache.shape[2]
    check(k_cache.shape[3] == D, f"head dim of the caches ({k_cache.shape[3]}) != q's ({D})")
    check(Hkv > 0 and Hq % Hkv == 0, f"Hq={Hq} must be a multiple of Hkv={Hkv}")
    check(_pow2(D) and 16 <= D <= 256, f"head dim must be a power of two in [16, 256], got {D}")
    check(
        _pow2(page) and 16 <= page <= 256,
        f"page (block) size must be a power of two in [16, 256], got {page}",
    )
    check(k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1, "caches need a contiguous last dim")
    return T, Hq // Hkv, page


def _scale(softmax_scale: float | None, D: int) -> float:
    return float(softmax_scale) if softmax_scale is not None else 1.0 / math.sqrt(D)


def _max_seqlen_q(cu_seqlens_q: torch.Tensor, given: int | None) -> int:
    if given is not None:
        return int(given)
    return (
        int((cu_seqlens_q[1:] - cu_seqlens_q[:-1]).max().item()) if cu_seqlens_q.numel() > 1 else 0
    )


def _check_index(index_q: torch.Tensor, index_k_cache: torch.Tensor, Hkv: int | None) -> None:
    check(index_q.dim() == 3, f"index_q must be [T, Hkv, d_idx], got {tuple(index_q.shape)}")
    check(
        index_k_cache.dim() == 3,
        f"index_k_cache must be [num_pages, page, d_idx], got {tuple(index_k_cache.shape)}",
    )
    check(index_q.dtype in _DTYPES, f"index_q must be bf16 or fp16, got {index_q.dtype}")
    check(
        index_k_cache.dtype in _DTYPES + _FP8,
        f"index_k_cache must be bf16, fp16 or fp8, got {index_k_cache.dtype}",
    )
    di = index_q.shape[2]
    check(index_k_cache.shape[2] == di, "index_q and index_k_cache head dims differ")
    check(
        _pow2(di) and 16 <= di <= 256,
        f"index head dim must be a power of two in [16, 256], got {di}",
    )
    page = index_k_cache.shape[1]
    check(_pow2(page) and 16 <= page <= 256, f"index page size must be a power of two, got {page}")
    if Hkv is not None:
        check(index_q.shape[1] == Hkv, f"index_q has {index_q.shape[1]} heads, expected Hkv={Hkv}")


def msa_select(
    index_q: torch.Tensor,
    index_k_cache: torch.Tensor,
    page_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seqlens_k: torch.Tensor,
    topk: int,
    *,
    max_seqlen_q: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Index branch: per query token and KV group, the ``topk`` blocks to attend.

    A block's score is the max over its (causally visible) tokens of ``index_q[t, h] . index_k``;
    the ``topk - 1`` best non-local visible blocks are kept (raw scores; exact ties go to the
    lower block id, on every path), then the local block;
    tokens seeing fewer than ``topk`` blocks take all of them. Returns ``sel [Hkv, T, topk]``
    int32 (layout in the module docstring).
    """
    _check_index(index_q, index_k_cache, None)
    check(isinstance(topk, int) and topk >= 1, f"topk must be a positive int, got {topk!r}")
    T = index_q.shape[0]
    page_table, cu_seqlens_q, seqlens_k = _check_meta(
        page_table, cu_seqlens_q, seqlens_k, T, index_q.device
    )
    if not use_triton(index_q, backend):
        return ref.msa_select_ref(index_q, index_k_cache, page_table, cu_seqlens_q, seqlens_k, topk)
    from .select import block_scores, topk_from_scores

    msq = _max_seqlen_q(cu_seqlens_q, max_seqlen_q)
    scores = block_scores(index_q, index_k_cache, page_table, cu_seqlens_q, seqlens_k, msq)
    _, pos = token_meta(cu_seqlens_q, seqlens_k, T)
    return topk_from_scores(scores, pos, index_k_cache.shape[1], topk)


def msa_prefill(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    sel: torch.Tensor,
    page_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seqlens_k: torch.Tensor,
    *,
    softmax_scale: float | None = None,
    method: str = "kv_outer",
    return_lse: bool = False,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sparse attention of ``q`` over exactly the blocks in ``sel`` (full or chunked prefill).

    ``method="kv_outer"`` (gather-Q forward + combine; needs ``k * Hq * D * 2`` bytes of partials
    per query token, so chunk long prefills, e.g. 4K-16K tokens per call) or ``"query_outer"``
    (the baseline, no extra memory). Returns ``out [T, Hq, D]`` (and ``lse [T, Hq]`` fp32).
    """
    T, G, _ = _check_qkv(q, k_cache, v_cache)
    Hkv = k_cache.shape[1]
    page_table, cu_seqlens_q, seqlens_k = _check_meta(
        page_table, cu_seqlens_q, seqlens_k, T, q.device
    )
    check(
        method in ("kv_outer", "query_outer"),
        f"method must be kv_outer or query_outer, got {method!r}",
    )
    check(
        sel.dim() == 3 and sel.shape[0] == Hkv and sel.shape[1] == T,
        f"sel must be [Hkv={Hkv}, T={T}, k], got {tuple(sel.shape)}",
    )
    check(sel.dtype == torch.int32, f"sel must be int32, got {sel.dtype}")
    check(sel.device == q.device, "sel must be on q's device")
    check(sel.shape[2] >= 1, "sel needs k >= 1")
    scale = _scale(softmax_scale, q.shape[2])
    if not use_triton(q, backend):
        out, lse = ref.sparse_attention_ref(
            q, k_cache, v_cache, sel, page_table, cu_seqlens_q, seqlens_k, scale
        )
        return (out, lse) if return_lse else out
    sel = sel.contiguous()
    q = q if q.stride(-1) == 1 else q.contiguous()
    tok_seq, tok_pos = token_meta(cu_seqlens_q, seqlens_k, T)
    if method == "query_outer":
        from .query_outer import query_outer_forward

        out, lse = query_outer_forward(
            q, k_cache, v_cache, sel, page_table, tok_seq, tok_pos, scale
        )
    else:
        from .invert import build_worklist
        from .prefill import combine, kv_outer_forward, tokens_per_work

        wl = build_worklist(
            sel, tok_seq, page_table.shape[0], page_table.shape[1], tokens_per_work(G), tok_pos
        )
        po, plse = kv_outer_forward(
            q, k_cache, v_cache, page_table, seqlens_k, wl, sel.shape[2], scale
        )
        out, lse = combine(po, plse, sel)
    return (out, lse) if return_lse else out


def msa_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    index_q: torch.Tensor,
    index_k_cache: torch.Tensor,
    page_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seqlens_k: torch.Tensor,
    topk: int,
    *,
    softmax_scale: float | None = None,
    max_seqlen_q: int | None = None,
    method: str = "kv_outer",
    return_lse: bool = False,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Whole MSA layer for prefill (full or chunked): :func:`msa_select`, then
    :func:`msa_prefill`."""
    sel = msa_select(
        index_q,
        index_k_cache,
        page_table,
        cu_seqlens_q,
        seqlens_k,
        topk,
        max_seqlen_q=max_seqlen_q,
        backend=backend,
    )
    return msa_prefill(
        q,
        k_cache,
        v_cache,
        sel,
        page_table,
        cu_seqlens_q,
        seqlens_k,
        softmax_scale=softmax_scale,
        method=method,
        return_lse=return_lse,
        backend=backend,
    )


def msa_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    index_q: torch.Tensor,
    index_k_cache: torch.Tensor,
    page_table: torch.Tensor,
    seqlens_k: torch.Tensor,
    topk: int,
    *,
    softmax_scale: float | None = None,
    return_lse: bool = False,
    return_sel: bool = False,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Sparse decode step: ``S`` (1..8) new tokens per request, already written to the caches.

    ``q [B, S, Hq, D]``, ``index_q [B, S, Hkv, d_idx]``, ``seqlens_k [B]`` (context including the
    new tokens). Selects per token as :func:`msa_select`, reads each request's union of chosen
    blocks once, and returns ``out [B, S, Hq, D]`` (plus ``lse [B, S, Hq]`` and/or
    ``sel [Hkv, B*S, topk]`` if asked). The Triton path has fixed shapes and no host sync, so it
    can be captured in a CUDA graph (warm it up once first, to compile).
    """
    check(q.dim() == 4, f"q must be [B, S, Hq, D], got {tuple(q.shape)}")
    B, S, Hq, D = q.shape
    check(1 <= S <= 8, f"decode takes 1..8 new tokens per request, got S={S}")
    _check_qkv(
        q.view(B * S, Hq, D) if q.is_contiguous() else q.reshape(B * S, Hq, D), k_cache, v_cache
    )
    Hkv = k_cache.shape[1]
    check(
        index_q.dim() == 4 and index_q.shape[:3] == (B, S, Hkv),
        f"index_q must be [B={B}, S={S}, Hkv={Hkv}, d_idx], got {tuple(index_q.shape)}",
    )
    iq3 = index_q.reshape(B * S, Hkv, index_q.shape[3])
    _check_index(iq3, index_k_cache, Hkv)
    check(
        index_k_cache.shape[1] == k_cache.shape[2], "index and KV caches must share the page size"
    )
    check(isinstance(topk, int) and topk >= 1, f"topk must be a positive int, got {topk!r}")
    page_table, _, seqlens_k = _check_meta(page_table, None, seqlens_k, B * S, q.device)
    if q.device.type == "cpu":
        check(bool((seqlens_k >= S).all()), "seqlens_k must include the S new tokens")
    scale = _scale(softmax_scale, D)
    if use_triton(q, backend):
        from .decode import decode_forward

        out, lse, sel = decode_forward(
            q, k_cache, v_cache, index_q, index_k_cache, page_table, seqlens_k, topk, scale
        )
    else:
        cu = torch.arange(0, (B + 1) * S, S, dtype=torch.int32, device=q.device)
        sel = ref.msa_select_ref(iq3, index_k_cache, page_table, cu, seqlens_k, topk)
        o, lse_c = ref.sparse_attention_ref(
            q.reshape(B * S, Hq, D), k_cache, v_cache, sel, page_table, cu, seqlens_k, scale
        )
        out, lse = o.view(B, S, Hq, D), lse_c.view(B, S, Hq)
    res: tuple[torch.Tensor, ...] = (out,)
    if return_lse:
        res += (lse,)
    if return_sel:
        res += (sel,)
    return res[0] if len(res) == 1 else res


def dense_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    page_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seqlens_k: torch.Tensor,
    *,
    softmax_scale: float | None = None,
    max_seqlen_q: int | None = None,
    return_lse: bool = False,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Dense causal GQA attention over the paged cache (layers that stay dense), same layout and
    bottom-right causal alignment as :func:`msa_prefill`. Returns ``out`` (and ``lse``)."""
    T, _, _ = _check_qkv(q, k_cache, v_cache)
    page_table, cu_seqlens_q, seqlens_k = _check_meta(
        page_table, cu_seqlens_q, seqlens_k, T, q.device
    )
    scale = _scale(softmax_scale, q.shape[2])
    if not use_triton(q, backend):
        out, lse = ref.dense_attention_ref(
            q, k_cache, v_cache, page_table, cu_seqlens_q, seqlens_k, scale
        )
    elif max_seqlen_q == 1 and page_table.shape[0] == T:
        # One query per sequence (a decode step): split-KV, so a long context is not one
        # program's walk. Only when the caller says so: finding out would sync with the host.
        from .split_kv import dense_decode_forward

        q = q if q.stride(-1) == 1 else q.contiguous()
        out, lse = dense_decode_forward(q, k_cache, v_cache, page_table, seqlens_k, scale)
    else:
        from .dense import dense_forward

        q = q if q.stride(-1) == 1 else q.contiguous()
        out, lse = dense_forward(
            q,
            k_cache,
            v_cache,
            page_table,
            cu_seqlens_q,
            seqlens_k,
            _max_seqlen_q(cu_seqlens_q, max_seqlen_q),
            scale,
        )
    return (out, lse) if return_lse else out


def dense_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    page_table: torch.Tensor,
    seqlens_k: torch.Tensor,
    *,
    softmax_scale: float | None = None,
    return_lse: bool = False,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Dense decode: ``q [B, Hq, D]``, one query per sequence (its last key, already in the
    cache), over the paged cache. Triton's split-KV kernel (:mod:`.split_kv`, no host
    sync, graph-capturable) or, on the CPU, a vectorised torch path (:mod:`.torch_decode`);
    both equal :func:`dense_attention` with ``cu_seqlens_q = arange(B + 1)``. Returns ``out [B,
    Hq, D]`` (and ``lse [B, Hq]`` fp32)."""
    B, _, _ = _check_qkv(q, k_cache, v_cache)
    page_table, _, seqlens_k = _check_meta(page_table, None, seqlens_k, B, q.device)
    check(page_table.shape[0] == B, f"q has {B} rows; one query per sequence of page_table")
    scale = _scale(softmax_scale, q.shape[2])
    if use_triton(q, backend):
        from .split_kv import dense_decode_forward

        q = q if q.stride(-1) == 1 else q.contiguous()
        out, lse = dense_decode_forward(q, k_cache, v_cache, page_table, seqlens_k, scale)
    else:
        from .torch_decode import dense_decode_torch

        out, lse = dense_decode_torch(q, k_cache, v_cache, page_table, seqlens_k, scale)
    return (out, lse) if return_lse else out
