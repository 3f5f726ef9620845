"""MSA (MiniMax Sparse Attention) kernels for Hopper, in Triton, with PyTorch references.

``import mcode.kernels`` never imports torch or triton: the API below is loaded on first use,
and without a GPU (or without triton) every function runs through the PyTorch references.
Layout and contracts: :mod:`mcode.kernels.api`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "dense_attention",
    "dense_decode",
    "msa_attention",
    "msa_decode",
    "msa_prefill",
    "msa_select",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
