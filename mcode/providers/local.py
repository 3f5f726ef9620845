"""The ``local`` provider: a GGUF model run in-process, by llama.cpp or by our torch engine
(``[local] engine``, :mod:`mcode.local_backend.engines`).

With no argument it runs the embedded SmolLM2-135M-Instruct. Tool calls are grammar-constrained
(:mod:`mcode.local_backend.grammar`), so every call it returns is valid JSON that names one of
the request's tools and fits that tool's schema; one call per step. The model's choices may be
poor; the mechanics are those of any other provider.

The engine's runtime (llama.cpp, torch) is imported when the first request runs, never when
this module is imported.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

from mcode.local_backend.chat import (
    CallStarted,
    ChatResult,
    TextPiece,
    generate,
    grammar_for,
    render,
    sampling_for,
)
from mcode.local_backend.chat_template import Segment
from mcode.local_backend.embedded import embedded_model_path
from mcode.local_backend.engines import build_engine
from mcode.messages import Message, TextPart, ToolCall, Usage
from mcode.providers.base import (
    Completion,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    Provider,
    TextDelta,
    ToolCallStarted,
    Warms,
)

DEFAULT_TEMPERATURE = 0.2


class LocalProvider:
    """Runs ``model_path`` (default: the embedded model) with an ``n_ctx``-token window.

    The request's ``tool_choice`` is honoured as given (the grammar allows a call, requires one,
    or only text): pacing a small model is the agent's decision (:mod:`mcode.agent.pacing`).
    ``max_output_tokens`` caps every answer (a request may ask for fewer, not more: a remote
    model's 32K default would not fit the window). ``temperature`` and ``seed`` make runs
    reproducible. ``end_after``: past this many tokens an answer is steered to end
    (``Sampling.end_after``); None: half of each request's output cap; 0: never. ``engine`` is
    ``llama_cpp`` or ``torch`` (``attention`` is the torch engine's).
    Raises ConfigError if llama-cpp-python (or torch), the embedded model or the file at
    ``model_path`` is missing.
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        max_output_tokens: int = 1024,
        *,
        end_after: int | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        seed: int = 0,
        engine: str = "llama_cpp",
        attention: str = "dense",
    ) -> None:
        path = Path(model_path) if model_path else embedded_model_path()
        from mcode.config import data_home

        self.engine = build_engine(
            engine,
            path,
            model_id=path.name.removesuffix(".gguf"),
            n_ctx=n_ctx,
            threads=n_threads,
            attention=attention,
            seed=seed,
            data_dir=data_home(),
        )
        self.max_output_tokens = max_output_tokens
        self.end_after = end_after
        self.temperature = temperature
        self.seed = seed
        self.info = ModelInfo(
            provider="local",
            model=path.name.removesuffix(".gguf"),
            context_window=n_ctx,
            supports_images=False,
            thinking_switchable=False,
            max_output_tokens=max_output_tokens,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """One model call: text deltas for an answer, or a ``ToolCallStarted`` once a call's
        name is written; then the Completion."""
        if not self.engine.loaded:
            await asyncio.to_thread(self.engine.load)
        prompt = self._render(request)
        cap = min(request.max_output_tokens or self.max_output_tokens, self.max_output_tokens)
        end_after = cap // 2 if self.end_after is None else (self.end_after or None)
        sampling = sampling_for(
            grammar_for(request.tools, request.tool_choice),
            max_tokens=cap,
            temperature=(self.temperature if request.temperature is None else request.temperature),
            seed=self.seed,
            end_after=end_after,
        )
        call_id = f"call_{1 + sum(len(m.tool_calls) for m in request.messages)}"
        async with aclosing(generate(self.engine, prompt, sampling)) as items:
            async for item in items:
                if isinstance(item, TextPiece):
                    yield TextDelta(item.text)
                elif isinstance(item, CallStarted):
                    yield ToolCallStarted(index=0, id=call_id, name=item.name)
                elif isinstance(item, ChatResult):
                    yield self._completion(item, call_id)

    def count_request(self, request: ModelRequest) -> int | None:
        """The request's prompt tokens, exactly (the model's own tokenizer on the rendered
        prompt); None before the model is loaded (the context budget estimates meanwhile)."""
        if not self.engine.loaded:
            return None
        return len(self.engine.tokenize(self._render(request)))

    def _render(self, request: ModelRequest) -> list[Segment]:
        return render(self.engine, request.system, request.messages, request.tools)

    def _completion(self, chat: ChatResult, call_id: str) -> Completion:
        result = chat.generated
        usage = Usage(
            input_tokens=result.prompt_tokens,
            output_tokens=result.completion_tokens,
            cached_tokens=result.cached_tokens,
        )
        raw = {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cached_tokens": result.cached_tokens,
            "prefill_seconds": round(result.prefill_seconds, 4),
            "decode_seconds": round(result.decode_seconds, 4),
        }
        if chat.call is not None:
            name, arguments = chat.call
            message = Message(
                role="assistant", tool_calls=(ToolCall(id=call_id, name=name, arguments=arguments),)
            )
            return Completion(message, usage, "tool_calls", raw)
        # A call cut off by the token limit is not a call: it comes back as the text it is, with
        # finish "length", and the agent loop reports the cut (never as a finished answer).
        parts = (TextPart(result.text),) if result.text else ()
        finish = "length" if chat.cut_call else result.finish_reason
        return Completion(Message(role="assistant", parts=parts), usage, finish, raw)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.engine.close)


class ServedLocalProvider:
    """A provider for a local model served over HTTP (``--provider local --base-url``): the
    OpenAI wire client, sampled at the in-process engine's temperature. (Its tool pacing is the
    agent's, as for the in-process engine: :mod:`mcode.agent.pacing`.)"""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.info = inner.info

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        if request.temperature is None:
            # Sampled as in-process, not at the OpenAI default of 1.0, which sends a small
            # model rambling past its output cap.
            request = dataclasses.replace(request, temperature=DEFAULT_TEMPERATURE)
        return self.inner.stream(request)

    async def warm(self) -> None:
        if isinstance(self.inner, Warms):
            await self.inner.warm()

    async def aclose(self) -> None:
        await self.inner.aclose()
