"""Grammar-constrained sampling for the torch engine, by llama.cpp's grammar sampler.

llama.cpp's GBNF sampler needs only a vocabulary, which the tokenizer already holds (llama.cpp
opened ``vocab_only``). So the torch engine keeps its own logits and its own sampler and borrows
just the mask:

    torch logits ──> llama_token_data_array ──llama_sampler_apply──> rejected tokens at -inf
                 <── masked logits (fp32)   <──────────────────────┘
    sample (sampling.choose) ──> token ──llama_sampler_accept──> the grammar advances

One :class:`GrammarMask` per request: the grammar's state is where that request's output is in
the grammar, so the batched scheduler keeps one for every running sequence. The llama.cpp engine
does the same with a sampler chain (``LlamaEngine._chain``); here the grammar is applied alone.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import torch

from mcode.errors import ProviderError

# llama_token_data, as llama.cpp lays it out: id (int32), logit (float), p (float).
_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class GrammarMask:
    """The grammar ``gbnf`` (rule ``root``) over ``vocab`` (a ``llama_vocab`` pointer) with
    ``n_vocab`` tokens. Raises ProviderError(bad_request) if llama.cpp rejects the grammar."""

    def __init__(self, vocab: Any, n_vocab: int, gbnf: str) -> None:
        import llama_cpp

        self._lc = llama_cpp
        self._sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
        if not self._sampler:
            raise ProviderError(
                "llama.cpp rejected the tool grammar", kind="bad_request", retryable=False
            )
        self._n = n_vocab
        self._data = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.intc)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` ``[vocab]`` fp32 on the CPU with every token the grammar rejects at -inf
        (a new tensor)."""
        lc, d = self._lc, self._data
        d["id"] = self._ids
        d["logit"] = logits[: self._n].numpy()
        d["p"] = 0.0
        cur = lc.llama_token_data_array(
            data=d.ctypes.data_as(lc.llama_token_data_p), size=self._n, selected=-1, sorted=False
        )
        lc.llama_sampler_apply(self._sampler, ctypes.byref(cur))
        # The grammar sampler only writes -inf into rejected entries; it neither reorders nor
        # shrinks the array, but read it back by id so that would not matter.
        out = torch.full((logits.shape[0],), float("-inf"), dtype=torch.float32)
        n = int(cur.size)
        out[torch.from_numpy(d["id"][:n].astype(np.int64))] = torch.from_numpy(
            d["logit"][:n].copy()
        )
        return out

    def accept(self, token: int) -> None:
        """Advance the grammar past ``token`` (one it allowed, never an end-of-generation)."""
        self._lc.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        if self._sampler:
            self._lc.llama_sampler_free(self._sampler)
            self._sampler = None
