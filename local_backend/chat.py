"""The chat layer between a conversation and an engine, shared by ``mcode serve`` and the
in-process ``local`` provider:

    system + messages + tools ──render──> Segments ──> engine.stream ──split──> text | one call
            tool_choice ───────grammar───> GBNF (answer | toolcall)  ┘

- :func:`render` writes the conversation in the model's chat format (ChatML, or the GGUF's own
  Jinja template).
- :func:`grammar_for` turns ``tool_choice`` into the grammar that constrains the output:
  ``auto`` answer or call, ``none`` answer only, ``required`` a call, a tool's name a call to
  that tool.
- :func:`generate` runs the engine and splits what it writes: :class:`TextPiece` for an answer,
  or :class:`CallStarted` then :class:`CallArguments` fragments for a call (the call's markup
  never reaches the caller as text); the last item is a :class:`ChatResult`. An answer's text
  that may begin a stop string is held back until it is known not to (:mod:`.stops`); each
  answer token's :class:`~.logprobs.TokenLogprob` comes before its text, when asked for.

Which ``tool_choice`` to ask for when a caller leaves it open (pacing a small model) is the
caller's policy, not this layer's.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from mcode.errors import ProviderError
from mcode.messages import Message, ToolSpec

from .chat_template import Segment, conversation, is_chatml, render_chatml, render_jinja
from .engine import Engine
from .grammar import (
    ANSWER_ONLY,
    TOOL_CALL_MARKER,
    ToolGrammar,
    build_grammar,
    parse_tool_call,
    tool_call_prefix,
    tool_name_so_far,
)
from .llama_engine import Generated, Sampling
from .logprobs import TokenLogprob
from .stops import find_stop, held_back

# What closes a call's arguments (see grammar.format_tool_call): held back while streaming.
_ARGS_SUFFIX_LEN = len("}</tool_call>")


@dataclass(frozen=True, slots=True)
class TextPiece:
    text: str


@dataclass(frozen=True, slots=True)
class CallStarted:
    name: str


@dataclass(frozen=True, slots=True)
class CallArguments:
    """A fragment of the call's JSON arguments; the fragments concatenate to the whole."""

    text: str


@dataclass(frozen=True, slots=True)
class ChatResult:
    """The end of one generation. ``call`` is ``(name, raw JSON arguments)`` for a complete
    tool call; ``cut_call`` is True when a call was started but cut off by the token limit
    (never pass half a call off as an answer)."""

    generated: Generated
    call: tuple[str, str] | None
    cut_call: bool

    @property
    def text(self) -> str:
        return "" if self.call or self.cut_call else self.generated.text


ChatItem = TextPiece | TokenLogprob | CallStarted | CallArguments | ChatResult


def render(
    engine: Engine, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
) -> list[Segment]:
    """The prompt for ``engine`` (loaded), its assistant turn opened. Raises ProviderError
    (bad_request) for what the model cannot read (an image) or its template cannot render."""
    turns = conversation(system, messages, tools)
    template = engine.chat_template
    if is_chatml(template):
        return render_chatml(turns)
    assert template is not None
    return render_jinja(template, turns, bos_token=engine.bos_text, eos_token=engine.eos_text)


def grammar_for(tools: Sequence[ToolSpec], choice: str | None) -> ToolGrammar | None:
    """The grammar for ``tool_choice`` (None or ``auto``, ``none``, ``required``, a tool's
    name); None when there are no tools. Raises ProviderError(bad_request) for a name that is
    not one of ``tools`` and ValueError for a schema llama.cpp cannot express."""
    if not tools:
        return None
    choice = choice or "auto"
    if choice == "none":
        return ANSWER_ONLY
    if choice == "auto":
        return build_grammar(tools)
    if choice == "required":
        return build_grammar(tools, require_tool=True)
    chosen = [t for t in tools if t.name == choice]
    if not chosen:
        raise ProviderError(
            f"tool_choice names {choice!r}, which is not one of the request's tools",
            kind="bad_request",
            retryable=False,
        )
    return build_grammar(chosen, require_tool=True)


def sampling_for(
    grammar: ToolGrammar | None,
    *,
    max_tokens: int,
    temperature: float,
    seed: int = 0,
    top_p: float = 0.95,
    stop: tuple[str, ...] = (),
    logprobs: int | None = None,
    end_after: int | None = None,
) -> Sampling:
    """How to sample under ``grammar`` (None: free text)."""
    return Sampling(
        max_tokens=max_tokens,
        end_after=end_after,
        temperature=temperature,
        seed=seed,
        top_p=top_p,
        stop=stop,
        logprobs=logprobs,
        grammar=grammar.gbnf if grammar else None,
        free_unless=TOOL_CALL_MARKER if grammar and grammar.allows_text else None,
    )


async def generate(
    engine: Engine, prompt: Sequence[Segment], sampling: Sampling
) -> AsyncGenerator[ChatItem, None]:
    """Run one generation and split it into an answer or a call (see the module docstring).
    Closing this iterator early stops the engine."""
    constrained = sampling.grammar is not None
    # None until the first character says which branch the grammar took.
    is_call: bool | None = None if constrained else False
    head = ""
    call_text = ""
    name: str | None = None
    sent = 0  # argument characters handed out
    answered = ""  # answer text handed out, and (below) the tail held back for stop strings
    held = ""
    early: list[TokenLogprob] = []  # log-probabilities before the branch is known
    result: Generated | None = None
    items = engine.stream(prompt, sampling)
    try:
        async for item in items:
            if isinstance(item, Generated):
                result = item
                break
            if isinstance(item, TokenLogprob):
                if is_call is None:
                    early.append(item)
                elif not is_call:
                    yield item
                continue
            if is_call is None:
                head += item
                if not head:
                    continue
                is_call = head.startswith(TOOL_CALL_MARKER)
                item = head
                if not is_call:
                    for lp in early:
                        yield lp
                early.clear()
            if not is_call:
                if sampling.stop:
                    held += item
                    # A whole stop string (the engine ends here) or the start of one waits.
                    at = find_stop(held, sampling.stop)
                    cut = len(held) - held_back(held, sampling.stop) if at is None else at
                    item, held = held[:cut], held[cut:]
                if item:
                    answered += item
                    yield TextPiece(item)
                continue
            call_text += item
            if name is None and (name := tool_name_so_far(call_text)) is not None:
                yield CallStarted(name)
            if name is not None:
                # Arguments so far, less what may be the start of the closing markup.
                args = call_text[len(tool_call_prefix(name)) : len(call_text) - _ARGS_SUFFIX_LEN]
                if len(args) > sent:
                    yield CallArguments(args[sent:])
                    sent = len(args)
    finally:
        # Closing the engine's stream is what stops its worker (the Engine protocol promises
        # an async iterator; every engine's is a generator with aclose).
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
    if result is None:  # the engine always ends with Generated; be loud if it did not
        raise ProviderError(
            "the local model stopped without finishing", kind="truncated", retryable=True
        )
    if sampling.stop and not is_call and len(result.text) > len(answered):
        # What was held back and is not part of a stop string (the engine cut the text there).
        yield TextPiece(result.text[len(answered) :])
    call = parse_tool_call(result.text) if is_call else None
    if call is not None and len(call[1]) > sent:
        yield CallArguments(call[1][sent:])
    yield ChatResult(result, call, cut_call=bool(is_call) and call is None)


__all__ = [
    "CallArguments",
    "CallStarted",
    "ChatItem",
    "ChatResult",
    "TextPiece",
    "generate",
    "grammar_for",
    "render",
    "sampling_for",
]
