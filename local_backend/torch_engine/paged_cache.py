"""The paged KV cache and its automatic prefix cache.

Memory is one pool of pages of ``page`` tokens (128, the MSA block), laid out as
``mcode.kernels`` reads it: per layer ``[num_pages, Hkv, page, D]`` for K and for V (and
``[num_pages, page, d_idx]`` for index keys when the model has trained index heads; fp8 on
CUDA by default, :func:`default_index_dtype`). A sequence
owns a list of pages, its page table row.

Prefix caching works on *full* pages, as vLLM does: a full page is named by a hash of its tokens
chained with the hash of the page before it, so one hash names a whole prefix. When a sequence
fills a page, the page is published under its hash. A new request walks its prompt's page hashes
from the first and takes every page it finds (the longest matching prefix); those tokens are not
computed again and are reported as cached. A page nobody holds stays in the cache, published,
until the pool runs dry; then the least recently used such page is taken back.

Pages are shared read-only: a sequence writes only into pages past its cached prefix, which
are its own.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from mcode.errors import ProviderError


def chain_hash(parent: bytes, tokens: Sequence[int]) -> bytes:
    """The name of a page holding ``tokens`` after the prefix named ``parent``."""
    h = hashlib.blake2b(parent, digest_size=16)
    h.update(b",".join(str(t).encode() for t in tokens))
    return h.digest()


def page_hashes(tokens: Sequence[int], page: int) -> list[bytes]:
    """The chained hash of every full page of ``tokens``."""
    out: list[bytes] = []
    parent = b""
    for start in range(0, len(tokens) - page + 1, page):
        parent = chain_hash(parent, tokens[start : start + page])
        out.append(parent)
    return out


@dataclass
class SeqPages:
    """The pages of one sequence and how many of its leading pages are published."""

    pages: list[int] = field(default_factory=list)
    published: int = 0
    parent: bytes = b""


def default_index_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """Index keys in fp8 (e4m3) on CUDA, else like K/V. They are most of the bytes an MSA
    decode step reads (every block is scored, only the chosen ones attended), and top-k
    selection keeps its choices at fp8 (local_backend/BENCH.md measures how often); on the CPU
    the references would only convert them back."""
    fp8 = getattr(torch, "float8_e4m3fn", None)
    return fp8 if fp8 is not None and device.type == "cuda" else dtype


class PagedKVCache:
    """A pool of KV pages for every layer, with reference counts and a prefix index."""

    def __init__(
        self,
        *,
        n_layers: int,
        n_kv_heads: int,
        head_dim: int,
        num_pages: int,
        page: int = 128,
        index_dim: int | None = None,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cpu",
        index_dtype: torch.dtype | None = None,
    ) -> None:
        self.page = page
        self.num_pages = num_pages
        shape = (n_layers, num_pages, n_kv_heads, page, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.index_k = (
            torch.zeros(
                (n_layers, num_pages, page, index_dim),
                dtype=index_dtype or default_index_dtype(dtype, torch.device(device)),
                device=device,
            )
            if index_dim
            else None
        )
        self._free: list[int] = list(range(num_pages - 1, -1, -1))
        self._refs = [0] * num_pages
        self._by_hash: dict[bytes, int] = {}
        self._hash_of: dict[int, bytes] = {}
        # Published pages that nobody holds, oldest use first: taken back when the pool is dry.
        self._idle: OrderedDict[int, None] = OrderedDict()
        self.hit_tokens = 0

    # -- bytes ---------------------------------------------------------------------------

    def bytes_per_token(self) -> int:
        """KV bytes one token costs across all layers."""
        per = self.k[:, 0, :, 0].numel() * 2 * self.k.element_size()
        if self.index_k is not None:
            per += self.index_k[:, 0, 0].numel() * self.index_k.element_size()
        return per

    @property
    def free_pages(self) -> int:
        return len(self._free) + len(self._idle)

    # -- allocation ----------------------------------------------------------------------

    def _take(self) -> int:
        if self._free:
            p = self._free.pop()
        elif self._idle:
            p, _ = self._idle.popitem(last=False)
            del self._by_hash[self._hash_of.pop(p)]
        else:
            raise ProviderError(
                "the torch engine's KV cache is full",
                kind="context_overflow",
                retryable=True,
                hint="send fewer or shorter requests at once, or give the engine more pages",
            )
        self._refs[p] = 1
        return p

    def _hold(self, p: int) -> None:
        if self._refs[p] == 0:
            self._idle.pop(p, None)
        self._refs[p] += 1

    def _drop(self, p: int) -> None:
        self._refs[p] -= 1
        if self._refs[p] == 0:
            if p in self._hash_of:
                self._idle[p] = None
            else:
                self._free.append(p)

    def match_prefix(self, tokens: Sequence[int]) -> tuple[SeqPages, int]:
        """Start a sequence for ``tokens``: take the longest run of published pages matching
        its prefix. Returns the sequence and how many tokens it got from the cache (always
        fewer than ``len(tokens)``: the last token must be computed to have logits)."""
        seq = SeqPages()
        for h in page_hashes(tokens[: max(0, len(tokens) - 1)], self.page):
            p = self._by_hash.get(h)
            if p is None:
                break
            self._hold(p)
            seq.pages.append(p)
            seq.published += 1
            seq.parent = h
        cached = len(seq.pages) * self.page
        self.hit_tokens += cached
        return seq, cached

    def reserve(self, seq: SeqPages, n_tokens: int) -> None:
        """Make ``seq`` hold pages for ``n_tokens`` tokens."""
        need = -(-n_tokens // self.page) - len(seq.pages)
        if need > self.free_pages:
            raise ProviderError(
                f"the torch engine's KV cache has {self.free_pages} free pages of {self.page} "
                f"tokens; this sequence needs {need} more",
                kind="context_overflow",
                retryable=True,
                hint="send fewer or shorter requests at once, or give the engine more pages",
            )
        for _ in range(need):
            seq.pages.append(self._take())

    def publish(self, seq: SeqPages, tokens: Sequence[int]) -> None:
        """Publish the full pages of ``seq`` whose tokens (``tokens``, the whole sequence so
        far, all in the cache) are final."""
        full = len(tokens) // self.page
        while seq.published < full:
            i = seq.published
            digest = chain_hash(seq.parent, tokens[i * self.page : (i + 1) * self.page])
            p = seq.pages[i]
            if digest not in self._by_hash and p not in self._hash_of:
                self._by_hash[digest] = p
                self._hash_of[p] = digest
            seq.parent = digest
            seq.published += 1

    def release(self, seq: SeqPages) -> None:
        """Give back the sequence's pages (published ones stay in the prefix cache)."""
        for p in seq.pages:
            self._drop(p)
        seq.pages.clear()
