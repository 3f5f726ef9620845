"""llama.cpp in-process: load a GGUF once, stream tokens from a worker thread.

    engine = LlamaEngine(path, n_ctx=8192)
    async for item in engine.stream(segments, Sampling(max_tokens=256, grammar=gbnf)):
        ...   # str pieces of text as they decode, then one Generated (counts, finish reason)

Decoding runs in a worker thread so the event loop stays live; a consumer that stops iterating
(or is cancelled) sets a flag the worker checks between tokens and between prompt chunks, and
the engine waits for the worker before it returns, so the next call finds the model idle.

The KV cache survives between calls: the new prompt is compared with the tokens already in the
cache and only the part after the common prefix is evaluated (that count is ``cached_tokens``).
Text the model generated is remembered with its exact tokens, so when it comes back as history
it re-tokenizes to what is already cached rather than to a different split of the same text.

Sampling is our own loop over llama.cpp's sampler chain (not ``Llama.generate``): it lets the
grammar be dropped as soon as the output has left the only branch it constrains.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcode.errors import ConfigError, ProviderError

from .chat_template import Segment
from .feed import Feed
from .logprobs import TokenLogprob, token_logprob
from .probe import ensure_runs
from .stops import find_stop, may_be_call

_REMEMBERED_OUTPUTS = 16
# DRY's sequence breakers (llama.cpp's defaults): a repeat is not followed across them.
_DRY_BREAKERS = [b"\n", b":", b'"', b"*"]


@dataclass(frozen=True, slots=True)
class Sampling:
    """How to sample one answer.

    ``grammar`` (GBNF text) constrains the output. ``free_unless`` names the first character of
    the only outputs the grammar constrains beyond their first character: once an output starts
    with anything else the grammar is dropped (it would accept every continuation anyway, and
    checking a grammar against the whole vocabulary every token halves the speed).

    ``dry_*``: the DRY sampler (p-e-w's "don't repeat yourself", llama.cpp's
    ``llama_sampler_init_dry``), on by default for free text: it penalises a token that would
    extend a sequence the answer already holds by more than ``dry_allowed_length`` tokens,
    growing with the length of the repeat. The short-range repeat penalty cannot stop a small
    model repeating whole sentences (SmolLM2-135M looped on the README's main command until
    the output cap, exit 3); DRY ends that. ``dry_multiplier=0`` turns it off. Never under a
    grammar: JSON repeats its keys and braces by design. The torch engine has no DRY.

    ``end_after``: past this many generated tokens of free text, the end-of-turn token is
    favoured more with every token (Hugging Face's exponential decay length penalty: its logit
    grows by ``|logit| * (end_factor ** (n - end_after) - 1)``), so an answer ends at a point
    where ending is plausible instead of running on to ``max_tokens`` and being cut there. A
    small model that paraphrases itself (DRY sees no repeat) never samples the end by itself:
    SmolLM2-135M ran the README's main command to the cap in 3 of 8 README variants (BENCH.md).
    None: off (``mcode serve`` leaves it off: a client's ``max_tokens`` is its own).

    ``stop``: strings that end the answer where one first appears (cut from the text, finish
    ``stop``; never checked inside a tool call). ``logprobs``: None, or how many top
    alternatives to report with each generated token's log-probability (:mod:`.logprobs`).
    """

    max_tokens: int
    temperature: float = 0.2
    seed: int = 0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    dry_multiplier: float = 0.8
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_last_n: int = 1024
    end_after: int | None = None
    end_factor: float = 1.05
    grammar: str | None = None
    free_unless: str | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None

    def end_scale(self, generated: int) -> float:
        """How much the end-of-turn logit's magnitude is added to it with ``generated``
        tokens out (0: not favoured)."""
        if self.end_after is None or generated <= self.end_after:
            return 0.0
        return self.end_factor ** min(generated - self.end_after, 400) - 1.0


def end_tokens(vocab: Any) -> list[int]:
    """The vocabulary's end-of-turn tokens (eos, eot), what ``Sampling.end_after`` favours."""
    import llama_cpp

    ends = {llama_cpp.llama_vocab_eos(vocab), llama_cpp.llama_vocab_eot(vocab)} - {-1}
    return sorted(int(t) for t in ends)


@dataclass(frozen=True, slots=True)
class Generated:
    """The end of one generation. ``finish_reason`` is ``stop`` (end-of-turn token or a stop
    string, cut from ``text``) or ``length`` (``max_tokens`` reached); ``cached_tokens`` prompt
    tokens were reused from the KV cache."""

    text: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    finish_reason: str
    prefill_seconds: float
    decode_seconds: float


class LlamaEngine:
    """One GGUF model in this process. Loaded on first use; one generation at a time.
    ``model_id`` (default: the file's name less ``.gguf``) is the name it is served under."""

    supports_grammar = True
    supports_logprobs = True

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        n_batch: int = 512,
        seed: int = 0,
        extra_bufts: bool = False,
        check_in_child: bool = True,
        data_dir: Path | None = None,
        verbose: bool = False,
        model_id: str | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.model_id = model_id or self.model_path.name.removesuffix(".gguf")
        self.n_ctx = n_ctx
        # Default: half the logical CPUs, for prompt processing too. llama-cpp-python would
        # use every CPU for prompts, and its OpenMP threads spin: on a machine where anything
        # else is running, that measured 5x slower than one thread here.
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self.n_batch = n_batch
        self.seed = seed
        # llama.cpp's extra buffer types (AMX tiles, weight repacking) off by default: on CPUs
        # that report AMX but whose hypervisor does not give the process tile state, the AMX
        # matmul dies on its first ``ldtilecfg`` (SIGSEGV); what it costs is in BENCH.md.
        self.extra_bufts = extra_bufts
        # A native crash cannot be caught in-process: a child process tries the model first
        # (once per machine, llama.cpp build and model; the verdict is kept in data_dir).
        self.check_in_child = check_in_child
        self.data_dir = data_dir
        self.verbose = verbose
        self.load_seconds: float | None = None
        self._llm: Any = None
        self._lock = threading.Lock()
        self._outputs: OrderedDict[str, list[int]] = OrderedDict()

    # -- loading --------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self) -> None:
        """Load the model (blocking; idempotent). Raises ConfigError if llama.cpp is missing or
        cannot read the file, ProviderError(kind="engine_crash") if it would crash this process
        (see :mod:`.probe`)."""
        with self._lock:
            if self._llm is not None:
                return
            started = time.perf_counter()
            if self.check_in_child:
                ensure_runs(self.model_path, extra_bufts=self.extra_bufts, data_dir=self.data_dir)
            try:
                import llama_cpp
            except ImportError as e:
                raise ConfigError(
                    f"cannot import llama-cpp-python: {e}",
                    hint="run: pip install 'mcode[local]'",
                ) from None
            # verbose=False makes llama-cpp-python silence llama.cpp's load-time chatter on
            # stderr (it would scribble over a full-screen UI).
            try:
                with _model_params(extra_bufts=self.extra_bufts):
                    self._llm = llama_cpp.Llama(
                        model_path=str(self.model_path),
                        n_ctx=self.n_ctx,
                        n_batch=self.n_batch,
                        n_threads=self.n_threads,
                        n_threads_batch=self.n_threads,
                        seed=self.seed,
                        verbose=self.verbose,
                    )
            except (ValueError, RuntimeError, OSError) as e:
                raise ConfigError(
                    f"llama.cpp could not load {self.model_path}: {e}",
                    hint="check that the file is a complete GGUF model llama.cpp supports",
                ) from None
            self.load_seconds = time.perf_counter() - started

    async def aload(self) -> None:
        """:meth:`load` off the event loop."""
        if self._llm is None:
            await asyncio.to_thread(self.load)

    def close(self) -> None:
        """Free the model and its KV cache."""
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None
            self._outputs.clear()

    # -- model facts (after load) ----------------------------------------------------------

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._require().metadata)

    @property
    def chat_template(self) -> str | None:
        return self._require().metadata.get("tokenizer.chat_template")

    def token_text(self, token: int) -> str:
        return self._require().detokenize([token], special=True).decode("utf-8", "replace")

    @property
    def bos_text(self) -> str:
        return self.token_text(self._require().token_bos())

    @property
    def eos_text(self) -> str:
        return self.token_text(self._require().token_eos())

    def tokenize(self, segments: Sequence[Segment]) -> list[int]:
        """Token ids for a prompt: markup segments may hold control tokens, content segments
        never do; text this engine generated comes back as the tokens it was sampled as."""
        import llama_cpp

        llm = self._require()
        ids: list[int] = []
        for seg in segments:
            remembered = None if seg.special else self._outputs.get(seg.text)
            if remembered is not None:
                ids.extend(remembered)
            elif seg.text:
                ids.extend(
                    llm.tokenize(seg.text.encode("utf-8"), add_bos=False, special=seg.special)
                )
        bos = llm.token_bos()
        wants_bos = llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model))
        if wants_bos and bos >= 0 and (not ids or ids[0] != bos):
            ids.insert(0, bos)
        return ids

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is as content (for prompt budgets)."""
        return len(self._require().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # -- generation -----------------------------------------------------------------------

    async def stream(
        self, prompt: Sequence[Segment], sampling: Sampling
    ) -> AsyncIterator[str | TokenLogprob | Generated]:
        """Generate: text pieces as they decode (each token's :class:`TokenLogprob` first, if
        ``sampling.logprobs`` asks), then one :class:`Generated`.

        Raises ProviderError(kind="context_overflow") if the prompt plus ``max_tokens`` does not
        fit in the window.
        """
        await self.aload()
        feed = Feed(end=Generated)
        loop = asyncio.get_running_loop()
        worker = loop.run_in_executor(None, self._run, list(prompt), sampling, feed.stop, feed.emit)
        try:
            async for item in feed.items():
                yield item
        finally:
            feed.stop.set()
            # Wait for the worker (at most one token or prompt chunk) so the model is idle when
            # we return; a second cancellation still propagates.
            await asyncio.shield(worker)

    def _run(
        self,
        prompt: list[Segment],
        sampling: Sampling,
        stop: threading.Event,
        emit: Callable[[str | TokenLogprob | Generated | BaseException], None],
    ) -> None:
        try:
            with self._lock:
                result = self._generate(prompt, sampling, stop, emit)
            if result is not None:
                emit(result)
        except ProviderError as e:
            emit(e)
        # A llama.cpp failure must reach the caller, not die silently in a thread.
        except Exception as e:
            emit(
                ProviderError(
                    f"the local model failed: {e}",
                    kind="server",
                    retryable=False,
                    hint="run again; if it repeats, report it with the model file used",
                )
            )

    def _generate(
        self,
        prompt: list[Segment],
        sampling: Sampling,
        stop: threading.Event,
        emit: Callable[[str | TokenLogprob | Generated | BaseException], None],
    ) -> Generated | None:
        import llama_cpp

        llm = self._require()
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        tokens = self.tokenize(prompt)
        if not tokens:
            raise ProviderError("the prompt is empty", kind="bad_request", retryable=False)
        budget = self.n_ctx - sampling.max_tokens
        if len(tokens) > budget:
            raise ProviderError(
                f"the prompt is {len(tokens)} tokens; with {sampling.max_tokens} reserved for the "
                f"answer it does not fit the local model's {self.n_ctx}-token window",
                kind="context_overflow",
                retryable=False,
                hint="compact or clear the conversation, or raise the context size",
            )

        started = time.perf_counter()
        cached = self._prefill(tokens, stop)
        if cached is None:
            return None
        prefilled = time.perf_counter()

        free = self._chain(sampling, grammar=None)
        constrained = self._chain(sampling, grammar=sampling.grammar) if sampling.grammar else None
        sampler = constrained if constrained is not None else free
        marker = (sampling.free_unless or "").encode("utf-8")
        ends = end_tokens(vocab)
        out: list[int] = []
        data = bytearray()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        finish = "length"
        said = ""  # the text so far, for stop strings
        cut: int | None = None
        try:
            while len(out) < sampling.max_tokens and len(tokens) + len(out) < self.n_ctx:
                if stop.is_set():
                    return None
                raw = self._logits() if sampling.logprobs is not None else None
                scale = sampling.end_scale(len(out))
                if scale and sampler is free:  # (under a grammar the end is the grammar's)
                    self._favour_end(ends, scale)
                token = llama_cpp.llama_sampler_sample(sampler, llm.ctx, -1)
                # End of turn, or a control token such as <|im_start|> starting a fake turn.
                if llama_cpp.llama_vocab_is_eog(vocab, token) or llama_cpp.llama_vocab_is_control(
                    vocab, token
                ):
                    finish = "stop"
                    break
                out.append(token)
                piece = llm.detokenize([token])
                data += piece
                if raw is not None:
                    emit(token_logprob(raw, token, sampling.logprobs or 0, self._piece))
                text = decoder.decode(piece)
                if text:
                    emit(text)
                if sampler is constrained and marker and data and not data.startswith(marker):
                    sampler = free
                if sampling.stop and not may_be_call(data, marker):
                    checked, said = len(said), said + text
                    cut = find_stop(said, sampling.stop, checked)
                    if cut is not None:
                        finish = "stop"
                        break
                if len(out) < sampling.max_tokens:
                    llm.eval([token])
        finally:
            for chain in (free, constrained):
                if chain is not None:
                    llama_cpp.llama_sampler_free(chain)
        if cut is not None:
            text = said[:cut]  # the last token's K/V are not in the cache: evaluated on demand
        else:
            tail = decoder.decode(b"", final=True)
            if tail:
                emit(tail)
            text = data.decode("utf-8", "replace")
            self._remember(text, out)
        return Generated(
            text=text,
            prompt_tokens=len(tokens),
            cached_tokens=cached,
            completion_tokens=len(out),
            finish_reason=finish,
            prefill_seconds=prefilled - started,
            decode_seconds=time.perf_counter() - prefilled,
        )

    def _favour_end(self, tokens: list[int], scale: float) -> None:
        """Raise the end-of-turn tokens' logits in the context's buffer, which the sampler
        chain reads next (the logprobs reported were copied before: the model's own)."""
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self._require().ctx, -1)
        for t in tokens:
            ptr[t] += abs(ptr[t]) * scale

    def _logits(self) -> Any:
        """The last position's logits, a copy (``[n_vocab]`` fp32)."""
        import llama_cpp
        import numpy as np

        llm = self._require()
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()

    def _piece(self, token: int) -> bytes:
        return bytes(self._require().detokenize([token], special=True))

    def _prefill(self, tokens: list[int], stop: threading.Event) -> int | None:
        """Evaluate ``tokens`` after the longest prefix already in the KV cache, in chunks so a
        cancel lands within one chunk. Returns the reused count, or None if stopped."""
        llm = self._require()
        in_cache = llm.input_ids[: llm.n_tokens]
        common = 0
        for a, b in zip(in_cache, tokens, strict=False):
            if a != b:
                break
            common += 1
        # At least one token must be evaluated to get fresh logits to sample from.
        reused = min(common, len(tokens) - 1)
        # Llama.eval drops every cached position from n_tokens on before evaluating.
        llm.n_tokens = reused
        for start in range(reused, len(tokens), self.n_batch):
            if stop.is_set():
                return None
            llm.eval(tokens[start : start + self.n_batch])
        return reused

    def _chain(self, sampling: Sampling, *, grammar: str | None) -> Any:
        import llama_cpp

        llm = self._require()
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

        def add(sampler: Any) -> None:
            llama_cpp.llama_sampler_chain_add(chain, sampler)

        if grammar is not None:
            # First in the chain: it must see the whole vocabulary, or the one token a grammar
            # allows (a forced literal) may already have been cut by top-k.
            vocab = llama_cpp.llama_model_get_vocab(llm.model)
            g = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
            if not g:
                llama_cpp.llama_sampler_free(chain)
                raise ProviderError(
                    "llama.cpp rejected the tool grammar", kind="bad_request", retryable=False
                )
            add(g)
        if sampling.temperature <= 0:
            add(llama_cpp.llama_sampler_init_greedy())
            return chain
        add(llama_cpp.llama_sampler_init_top_k(sampling.top_k))
        if grammar is None and sampling.repeat_penalty != 1.0:
            # Tiny models loop; a mild penalty helps prose. Not under a grammar, where it would
            # push the model away from the quotes and braces JSON needs.
            add(
                llama_cpp.llama_sampler_init_penalties(
                    llm.n_vocab(), sampling.repeat_last_n, sampling.repeat_penalty, 0.0, 0.0
                )
            )
        if grammar is None and sampling.dry_multiplier > 0:
            vocab = llama_cpp.llama_model_get_vocab(llm.model)
            breakers = (ctypes.c_char_p * len(_DRY_BREAKERS))(*_DRY_BREAKERS)
            add(
                llama_cpp.llama_sampler_init_dry(
                    vocab,
                    sampling.dry_multiplier,
                    sampling.dry_base,
                    sampling.dry_allowed_length,
                    sampling.dry_last_n,
                    breakers,
                    len(_DRY_BREAKERS),
                )
            )
        add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
        add(llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
        add(llama_cpp.llama_sampler_init_temp(sampling.temperature))
        add(llama_cpp.llama_sampler_init_dist(sampling.seed & 0xFFFFFFFF))
        return chain

    def _remember(self, text: str, tokens: list[int]) -> None:
        if not text:
            return
        self._outputs[text] = list(tokens)
        self._outputs.move_to_end(text)
        while len(self._outputs) > _REMEMBERED_OUTPUTS:
            self._outputs.popitem(last=False)

    def _require(self) -> Any:
        if self._llm is None:
            raise RuntimeError("LlamaEngine used before load()")
        return self._llm


# llama-cpp-python's Llama takes no argument for the extra buffer types: it builds its model
# parameters from llama_model_default_params() inside __init__ and loads at once. So, for the
# duration of one load, that function returns them with our choice set. Loads are serialised
# by this lock: the patch is process-wide.
_PARAMS_LOCK = threading.Lock()


@contextmanager
def _model_params(*, extra_bufts: bool) -> Iterator[None]:
    import llama_cpp.llama as llama_module

    module = llama_module.llama_cpp
    default = module.llama_model_default_params

    def chosen() -> Any:
        params = default()
        if hasattr(type(params), "use_extra_bufts"):  # llama.cpp before mid-2025 has no field
            params.use_extra_bufts = extra_bufts
        return params

    with _PARAMS_LOCK:
        module.llama_model_default_params = chosen
        try:
            yield
        finally:
            module.llama_model_default_params = default
