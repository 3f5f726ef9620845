"""Shared helpers: lazy Triton import, backend choice, metadata derived from ``cu_seqlens``.

Nothing here imports Triton at module import time, so ``mcode.kernels`` imports on a machine with
only torch (or with neither: the torch-dependent modules are only loaded when used).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """True when ``import triton`` works (it is never imported at ``mcode.kernels`` import)."""
    try:
        import triton
        import triton.language  # noqa: F401
    except Exception:  # pragma: no cover - depends on the machine
        return False
    return True


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(t: torch.Tensor, backend: str = "auto") -> bool:
    """Decide whether the Triton kernels or the PyTorch references run for tensors like ``t``.

    ``backend``: ``"auto"`` (Triton on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1``;
    references otherwise), ``"triton"`` (Triton or a clear error) or ``"torch"`` (references).
    """
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "torch":
        return False
    ok = triton_available() and (t.is_cuda or (t.device.type == "cpu" and interpreting()))
    if backend == "triton" and not ok:
        raise RuntimeError(
            "backend='triton' needs triton and a CUDA tensor (or TRITON_INTERPRET=1 on the CPU)"
        )
    return ok


def upcast_dots() -> bool:
    """Triton's interpreter computes bf16 x bf16 ``tl.dot`` wrongly (seen with Triton 3.9), so the
    kernels upcast dot operands to fp32 when interpreting; compiled kernels use bf16 tensor
    cores."""
    return interpreting()


def num_sms(device: torch.device) -> int:
    """Multiprocessor count for persistent grids (a small number under the interpreter)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def next_pow2(x: int) -> int:
    return 1 if x <= 1 else 1 << (int(x) - 1).bit_length()


def token_meta(
    cu_seqlens_q: torch.Tensor, seqlens_k: torch.Tensor, total_q: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query token: the sequence it belongs to and its absolute position in that sequence.

    Chunked prefill is aligned bottom-right: the ``Lq`` queries of sequence ``b`` are the last
    ``Lq`` tokens of its ``seqlens_k[b]`` keys, so query ``i`` sits at ``seqlens_k[b] - Lq + i``.
    Returns ``(tok_seq, tok_pos)``, both ``[total_q]`` int32 on the device of ``cu_seqlens_q``,
    computed with device ops only (no host sync).
    """
    dev = cu_seqlens_q.device
    cu = cu_seqlens_q.to(torch.int64)
    tok = torch.arange(total_q, device=dev, dtype=torch.int64)
    seq = torch.searchsorted(cu[1:].contiguous(), tok, right=True)
    seq = seq.clamp_(max=cu.numel() - 2)
    lq = cu[seq + 1] - cu[seq]
    pos = seqlens_k.to(device=dev, dtype=torch.int64)[seq] - lq + (tok - cu[seq])
    return seq.to(torch.int32), pos.to(torch.int32)


def check(cond: Any, msg: str) -> None:
    """Raise ``ValueError(msg)`` unless ``cond``: unsupported inputs fail loudly, never silently."""
    if not cond:
        raise ValueError(msg)
