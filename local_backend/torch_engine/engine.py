"""The torch engine: our decoder, the paged KV cache with prefix caching, continuous batching.

A scheduler thread owns the model and the cache. Requests arrive on a queue; the scheduler
admits them in order while the pool has pages for their prompt plus ``max_tokens`` (so a
running sequence never runs out), and then, step after step, runs **one forward call** holding
one decode token of every running sequence and the next prefill chunk (``chunk`` tokens) of the
oldest sequence still prefilling. A long prompt therefore never stalls the others' decoding for
more than a chunk, and decode steps are batched across requests.

Tool calls: a request whose ``Sampling.grammar`` is set gets its own grammar state
(:mod:`.constrain`, llama.cpp's GBNF sampler over the tokenizer's vocabulary) at admission; each
step masks that request's logits before sampling and advances the grammar by the chosen token.
As in the llama.cpp engine, the grammar is dropped once the output has left the only branch it
constrains (``Sampling.free_unless``).

Cached tokens: at admission a request takes the longest run of published pages matching its
prompt (see :mod:`.paged_cache`) and only computes the rest. ``Generated.cached_tokens`` says
how many it got.

``stream`` is the Engine protocol's: text pieces as they decode, then one ``Generated``; a
consumer that stops iterating sets the request's stop flag and the scheduler frees its pages at
the next step.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcode.errors import ProviderError

from ..chat_template import Segment
from ..feed import Feed
from ..llama_engine import Generated, Sampling
from ..logprobs import TokenLogprob, token_logprob
from ..stops import find_stop, may_be_call

Emit = Callable[[Any], None]


@dataclass
class _Request:
    prompt: list[int]
    sampling: Sampling
    emit: Emit
    stop: threading.Event
    seq: Any = None
    cached: int = 0
    done_prefill: int = 0  # prompt tokens in the cache
    out: list[int] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    decoder: Any = None
    gen: Any = None
    grammar: Any = None  # a GrammarMask while the output is constrained
    said: str = ""  # the answer's text so far, for stop strings
    started: float = 0.0
    prefilled: float = 0.0

    def in_cache(self) -> list[int]:
        """Token ids whose K/V are in the cache once the pending token is fed."""
        return self.prompt + self.out[:-1]


class TorchEngine:
    """One Llama-family model (GGUF or safetensors) on CPU or CUDA (``device="auto"``: CUDA
    when there is one), attention dense or MSA."""

    supports_grammar = True
    supports_logprobs = True

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int | None = None,
        device: str = "cpu",
        attention: str = "dense",
        topk: int = 16,
        num_pages: int | None = None,
        chunk: int = 512,
        max_batch: int = 32,
        threads: int | None = None,
        tokenizer_path: Path | None = None,
        model_id: str | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        # A GGUF carries its vocabulary, a Hugging Face folder its tokenizer.json; a GGUF named
        # here tokenizes instead.
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path else None
        self.model_id = model_id or self.model_path.name.removesuffix(".gguf")
        self._n_ctx = n_ctx
        self.device = device
        self.attention = attention
        self.topk = topk
        self.num_pages = num_pages
        self.chunk = chunk
        self.max_batch = max_batch
        self.threads = threads
        self.model: Any = None
        self.cache: Any = None
        self.plan: Any = None
        self.tok: Any = None
        self.meta: dict[str, Any] = {}
        self._inbox: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # What the scheduler did: forward calls, the most decode rows one call carried, tokens
        # decoded, requests admitted and dropped because their consumer left, cached tokens.
        self.stats = {
            "steps": 0,
            "max_decode_rows": 0,
            "decoded_tokens": 0,
            "requests": 0,
            "cancelled": 0,
            "cached_tokens": 0,
        }

    # -- loading ------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return self._n_ctx or 8192

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> None:
        """Load weights, tokenizer and cache; start the scheduler (idempotent)."""
        with self._lock:
            if self.model is not None:
                return
            import torch

            from .model import AttentionPlan, LlamaModel
            from .paged_cache import PagedKVCache
            from .tokenizer import Tokenizer
            from .weights import load_checkpoint

            if self.threads:
                torch.set_num_threads(self.threads)
            if self.device == "auto":
                self.device = "cuda" if torch.cuda.is_available() else "cpu"
            cfg, tensors = load_checkpoint(self.model_path)
            self._n_ctx = min(self._n_ctx or cfg.n_ctx, cfg.n_ctx)
            cuda = self.device.startswith("cuda")
            self.model = LlamaModel(
                cfg, tensors, device=self.device, dtype=torch.bfloat16 if cuda else torch.float32
            )
            pages = self.num_pages or 4 * (-(-self.n_ctx // 128))
            self.cache = PagedKVCache(
                n_layers=cfg.n_layers,
                n_kv_heads=cfg.n_kv_heads,
                head_dim=cfg.head_dim,
                num_pages=pages,
                dtype=torch.bfloat16 if cuda else torch.float16,
                device=self.device,
            )
            self.plan = AttentionPlan.parse(self.attention, cfg.n_layers, topk=self.topk)
            if self.tokenizer_path is not None:
                self.tok = Tokenizer(self.tokenizer_path)
            elif self.model_path.is_dir():  # a Hugging Face folder: its tokenizer.json
                from .hf_tokenizer import HFTokenizer

                self.tok = HFTokenizer(self.model_path, cfg)
            else:
                self.tok = Tokenizer(self.model_path)
            self._thread = threading.Thread(target=self._loop, name="torch-engine", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the scheduler and free the model and cache."""
        with self._lock:
            if self._thread is not None:
                self._inbox.put(None)
                self._thread.join()
                self._thread = None
            if self.tok is not None:
                self.tok.close()
            self.model = self.cache = self.tok = None

    # -- model facts --------------------------------------------------------------------

    @property
    def chat_template(self) -> str | None:
        # A folder's tokenizer_config.json template; a GGUF's is ChatML, the chat layer's
        # default (SmolLM2's own).
        return getattr(self.tok, "template", None)

    @property
    def bos_text(self) -> str:
        return str(getattr(self.tok, "bos_text", ""))

    @property
    def eos_text(self) -> str:
        return str(getattr(self.tok, "eos_text", "<|im_end|>"))

    def tokenize(self, segments: Sequence[Segment]) -> list[int]:
        self.load()
        return list(self.tok.tokenize(segments))

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self.tok.encode(text))

    # -- generation ---------------------------------------------------------------------

    async def stream(
        self, prompt: Sequence[Segment], sampling: Sampling
    ) -> AsyncIterator[str | TokenLogprob | Generated]:
        """Text pieces as they decode (each token's :class:`TokenLogprob` first, if
        ``sampling.logprobs`` asks), then one :class:`Generated`. Raises ProviderError
        (``context_overflow``) when the prompt plus ``max_tokens`` does not fit the window."""
        await asyncio.to_thread(self.load)
        ids = self.tokenize(prompt)
        if not ids:
            raise ProviderError("the prompt is empty", kind="bad_request", retryable=False)
        if len(ids) + sampling.max_tokens > self.n_ctx:
            raise ProviderError(
                f"the prompt is {len(ids)} tokens; with {sampling.max_tokens} reserved for the "
                f"answer it does not fit the torch engine's {self.n_ctx}-token window",
                kind="context_overflow",
                retryable=False,
                hint="compact or clear the conversation, or raise the context size",
            )
        feed = Feed(end=Generated)
        self._inbox.put(_Request(ids, sampling, feed.emit, feed.stop))
        try:
            async for item in feed.items():
                yield item
        finally:
            feed.stop.set()

    # -- the scheduler ------------------------------------------------------------------

    def _loop(self) -> None:
        waiting: list[_Request] = []
        running: list[_Request] = []
        while True:
            block = not waiting and not running
            try:
                while True:
                    item = self._inbox.get(block=block)
                    block = False
                    if item is None:
                        for r in running:
                            self._drop(r)
                        return
                    waiting.append(item)
            except queue.Empty:
                pass
            for r in [r for r in running if r.stop.is_set()]:
                running.remove(r)
                self._drop(r)
                self.stats["cancelled"] += 1
            waiting = [r for r in waiting if not r.stop.is_set()]
            self._admit(waiting, running)
            if running:
                try:
                    self._step(running)
                except Exception as e:  # a model failure must reach every caller
                    err = ProviderError(
                        f"the torch engine failed: {e}",
                        kind="server",
                        retryable=False,
                        hint="run again; if it repeats, report it with the model file used",
                    )
                    for r in running:
                        self._drop(r)
                        r.emit(err)
                    running.clear()

    def _admit(self, waiting: list[_Request], running: list[_Request]) -> None:
        import torch

        while waiting and len(running) < self.max_batch:
            r = waiting[0]
            need = len(r.prompt) + r.sampling.max_tokens
            seq, cached = self.cache.match_prefix(r.prompt)
            if -(-need // self.cache.page) - len(seq.pages) > self.cache.free_pages:
                self.cache.release(seq)
                self.cache.hit_tokens -= cached
                if not running:  # it will never fit: say so instead of waiting forever
                    waiting.pop(0)
                    r.emit(
                        ProviderError(
                            f"the request needs {need} tokens of KV cache; the torch engine "
                            f"has {self.cache.free_pages * self.cache.page}",
                            kind="context_overflow",
                            retryable=False,
                            hint="shorten the prompt or max_tokens, or give the engine more pages",
                        )
                    )
                    continue
                return
            waiting.pop(0)
            if r.sampling.grammar is not None:
                try:
                    r.grammar = self.tok.grammar(r.sampling.grammar)
                except ProviderError as e:
                    self.cache.release(seq)
                    self.cache.hit_tokens -= cached
                    r.emit(e)
                    continue
            self.cache.reserve(seq, need)
            r.seq, r.cached, r.done_prefill = seq, cached, cached
            self.stats["requests"] += 1
            self.stats["cached_tokens"] += cached
            r.started = time.perf_counter()
            r.decoder = self.tok.decoder()
            r.gen = torch.Generator().manual_seed(r.sampling.seed)
            running.append(r)

    def _step(self, running: list[_Request]) -> None:
        from .model import Batch
        from .sampling import choose

        parts: list[tuple[list[int], int, list[int]]] = []
        members: list[_Request] = []
        prefilling = None
        for r in running:
            if r.done_prefill < len(r.prompt):
                if prefilling is None:
                    prefilling = r
                    new = r.prompt[r.done_prefill : r.done_prefill + self.chunk]
                    parts.append((new, r.done_prefill, r.seq.pages))
                    members.append(r)
            else:
                start = len(r.prompt) + len(r.out) - 1
                parts.append(([r.out[-1]], start, r.seq.pages))
                members.append(r)
        batch = Batch.build(parts, self.cache.page, self.model.device)
        decode_rows = len(parts) - (prefilling is not None)
        self.stats["steps"] += 1
        self.stats["max_decode_rows"] = max(self.stats["max_decode_rows"], decode_rows)
        self.stats["decoded_tokens"] += decode_rows
        logits = self.model.forward(batch, self.cache, self.plan).cpu()
        for row, (r, (new, _, _)) in enumerate(zip(members, parts, strict=True)):
            if r.done_prefill < len(r.prompt):
                r.done_prefill += len(new)
                self.cache.publish(r.seq, r.prompt[: r.done_prefill])
                if r.done_prefill < len(r.prompt):
                    continue
                r.prefilled = time.perf_counter()
            else:
                self.cache.publish(r.seq, r.in_cache())
            row_logits = logits[row] if r.grammar is None else r.grammar.apply(logits[row])
            token = choose(
                row_logits,
                r.sampling,
                r.prompt + r.out,
                r.gen,
                constrained=r.grammar is not None,
                generated=len(r.out),
                end_ids=self.tok.end_ids,
            )
            self._accept(r, token, running, logits[row])

    def _accept(self, r: _Request, token: int, running: list[_Request], logits: Any = None) -> None:
        finish = None
        cut: int | None = None
        if token in self.tok.stop_ids:
            finish = "stop"
        else:
            r.out.append(token)
            piece = self.tok.piece(token)
            r.data += piece
            marker = (r.sampling.free_unless or "").encode("utf-8")
            if r.grammar is not None:
                r.grammar.accept(token)
                if marker and r.data and not r.data.startswith(marker):
                    # An answer, not a call: the grammar can reject nothing from here on.
                    r.grammar.close()
                    r.grammar = None
            if r.sampling.logprobs is not None and logits is not None:
                r.emit(token_logprob(logits.numpy(), token, r.sampling.logprobs, self.tok.piece))
            text = r.decoder.decode(piece)
            if text:
                r.emit(text)
            if r.sampling.stop and not may_be_call(r.data, marker):
                checked, r.said = len(r.said), r.said + text
                cut = find_stop(r.said, r.sampling.stop, checked)
            if cut is not None:
                finish = "stop"
            elif len(r.out) >= r.sampling.max_tokens or len(r.prompt) + len(r.out) >= self.n_ctx:
                finish = "length"
        if finish is None:
            return
        if cut is None:
            tail = r.decoder.decode(b"", final=True)
            if tail:
                r.emit(tail)
        running.remove(r)
        self._drop(r)
        now = time.perf_counter()
        r.emit(
            Generated(
                text=r.said[:cut] if cut is not None else r.data.decode("utf-8", "replace"),
                prompt_tokens=len(r.prompt),
                cached_tokens=r.cached,
                completion_tokens=len(r.out),
                finish_reason=finish,
                prefill_seconds=r.prefilled - r.started,
                decode_seconds=now - r.prefilled,
            )
        )

    def _drop(self, r: _Request) -> None:
        """Give back what a request held: its pages and its grammar state."""
        self.cache.release(r.seq)
        if r.grammar is not None:
            r.grammar.close()
            r.grammar = None
