"""The ``local`` provider: a GGUF model run in-process by llama.cpp.

With no argument it runs the embedded SmolLM2-135M-Instruct. Tool calls are grammar-constrained
(:mod:`mcode.local_backend.grammar`), so every call it returns is valid JSON that names one of
the request's tools and fits that tool's schema; one call per step. The model's choices may be
poor; the mechanics are those of any other provider.

llama.cpp is imported when the first request runs, never when this module is imported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

from mcode.agent.ledger import LEDGER_HEADER
from mcode.errors import ProviderError
from mcode.local_backend.chat_template import (
    Segment,
    conversation,
    is_chatml,
    render_chatml,
    render_jinja,
)
from mcode.local_backend.embedded import check_model_file, embedded_model_path, require_llama_cpp
from mcode.local_backend.grammar import (
    ANSWER_ONLY,
    TOOL_CALL_MARKER,
    ToolGrammar,
    build_grammar,
    parse_tool_call,
    tool_name_so_far,
)
from mcode.local_backend.llama_engine import Generated, LlamaEngine, Sampling
from mcode.messages import Message, TextPart, ToolCall, Usage
from mcode.providers.base import (
    Completion,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    TextDelta,
    ToolCallStarted,
)

DEFAULT_TEMPERATURE = 0.2


class LocalProvider:
    """Runs ``model_path`` (default: the embedded model) with an ``n_ctx``-token window.

    ``tool_steps`` paces a small model: the first step after a user message calls a tool, and
    after that many calls it answers (see ``_steered_choice``; 0 leaves the model free).
    ``max_output_tokens`` caps every answer (a request may ask for fewer, not more: a remote
    model's 32K default would not fit the window). ``temperature`` and ``seed`` make runs
    reproducible. Raises ConfigError if llama-cpp-python, the embedded model or the file at
    ``model_path`` is missing.
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        max_output_tokens: int = 1024,
        *,
        temperature: float = DEFAULT_TEMPERATURE,
        seed: int = 0,
        tool_steps: int = 1,
    ) -> None:
        require_llama_cpp()
        path = check_model_file(Path(model_path)) if model_path else embedded_model_path()
        from mcode.config import data_home

        self.engine = LlamaEngine(
            path, n_ctx=n_ctx, n_threads=n_threads, seed=seed, data_dir=data_home()
        )
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self.seed = seed
        self.tool_steps = tool_steps
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
        await self.engine.aload()
        prompt = self._render(request)
        grammar = self._grammar(request)
        sampling = Sampling(
            max_tokens=min(
                request.max_output_tokens or self.max_output_tokens, self.max_output_tokens
            ),
            temperature=(self.temperature if request.temperature is None else request.temperature),
            seed=self.seed,
            grammar=grammar.gbnf if grammar else None,
            free_unless=TOOL_CALL_MARKER if grammar and grammar.allows_text else None,
        )
        call_id = f"call_{1 + sum(len(m.tool_calls) for m in request.messages)}"

        # None until the first character says which branch the grammar took.
        is_call: bool | None = None if grammar else False
        head = ""  # text received before the branch is known
        call_text = ""
        started = False
        result: Generated | None = None
        async with aclosing(self.engine.stream(prompt, sampling)) as items:
            async for item in items:
                if isinstance(item, Generated):
                    result = item
                    break
                if is_call is None:
                    head += item
                    if not head:
                        continue
                    is_call = head.startswith(TOOL_CALL_MARKER)
                    item = head
                if not is_call:
                    if item:
                        yield TextDelta(item)
                    continue
                # A call is streamed as one ToolCallStarted, never as text.
                call_text += item
                if not started and (name := tool_name_so_far(call_text)) is not None:
                    started = True
                    yield ToolCallStarted(index=0, id=call_id, name=name)
        if result is None:  # the engine always ends with Generated; be loud if it did not
            raise ProviderError(
                "the local model stopped without finishing", kind="truncated", retryable=True
            )
        yield self._completion(result, bool(is_call), call_id)

    def count_request(self, request: ModelRequest) -> int | None:
        """The request's prompt tokens, exactly (the model's own tokenizer on the rendered
        prompt); None before the model is loaded (the context budget estimates meanwhile)."""
        if not self.engine.loaded:
            return None
        return len(self.engine.tokenize(self._render(request)))

    def _render(self, request: ModelRequest) -> list[Segment]:
        tools = request.tools
        turns = conversation(request.system, request.messages, tools)
        template = self.engine.chat_template
        if is_chatml(template):
            return render_chatml(turns)
        assert template is not None
        return render_jinja(
            template, turns, bos_token=self.engine.bos_text, eos_token=self.engine.eos_text
        )

    def _grammar(self, request: ModelRequest) -> ToolGrammar | None:
        choice = request.tool_choice or "auto"
        if request.tool_choice is None and self.tool_steps > 0:
            choice = self._steered_choice(request.messages)
        if not request.tools:
            return None
        if choice == "none":
            return ANSWER_ONLY
        if choice == "auto":
            return build_grammar(request.tools)
        if choice == "required":
            return build_grammar(request.tools, require_tool=True)
        chosen = [t for t in request.tools if t.name == choice]
        if not chosen:
            raise ProviderError(
                f"tool_choice names {choice!r}, which is not one of the request's tools",
                kind="bad_request",
                retryable=False,
            )
        return build_grammar(chosen, require_tool=True)

    def _steered_choice(self, messages: list[Message]) -> str:
        """Tool choice for a small model that cannot pace itself.

        A 135M model almost never elects to call a tool (its first token starts a call with ~1%
        probability), so it would answer blind; once it has called one, it copies that call
        forever. So: the first step after a user message must call a tool, and after
        ``tool_steps`` calls it must answer. Remote models are never steered like this.
        """
        calls = 0
        for m in reversed(messages):
            if m is messages[0] and m.role == "user" and m.text.startswith(LEDGER_HEADER):
                # A compacted conversation: the calls it made are in the ledger. Calling more
                # would fill the window again; it answers from what the ledger holds.
                return "none"
            if m.role == "user":
                break
            if m.role == "assistant" and m.tool_calls:
                calls += 1
        if calls == 0:
            return "required"
        return "none" if calls >= self.tool_steps else "auto"

    def _completion(self, result: Generated, is_call: bool, call_id: str) -> Completion:
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
        parsed = parse_tool_call(result.text) if is_call else None
        if parsed is not None:
            name, arguments = parsed
            message = Message(
                role="assistant", tool_calls=(ToolCall(id=call_id, name=name, arguments=arguments),)
            )
            return Completion(message, usage, "tool_calls", raw)
        # A call cut off by the token limit is not a call: it comes back as the text it is, with
        # finish "length", and the agent loop reports the cut (never as a finished answer).
        parts = (TextPart(result.text),) if result.text else ()
        finish = "length" if is_call else result.finish_reason
        return Completion(Message(role="assistant", parts=parts), usage, finish, raw)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.engine.close)
