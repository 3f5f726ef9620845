"""Our own inference engine in torch: a Llama-family decoder whose attention runs the MSA
kernels of ``mcode.kernels`` (or dense attention), over a paged KV cache with automatic prefix
caching and continuous batching.

Modules, bottom up: :mod:`.weights` (GGUF / safetensors to tensors), :mod:`.paged_cache` (pages,
prefix index), :mod:`.model` (the decoder's forward over a packed batch), :mod:`.sampling`,
:mod:`.tokenizer` (llama.cpp's, vocabulary only), :mod:`.engine` (the scheduler and the Engine
protocol). Importing this package imports nothing heavy; torch loads with the engine.
"""

from __future__ import annotations

from .engine import TorchEngine

__all__ = ["TorchEngine"]
