"""Token counting and the context budget.

How many tokens the next request holds decides when the conversation is compacted. Three sources,
best first:

1. **The API's own count.** Every answer reports the input tokens of its request (cached ones
   included, see :class:`mcode.messages.Usage`). That number is exact for the history the request
   held; the answer's output tokens add the message it appended. So the next request is
   ``reported input + reported output + an estimate of what was appended since`` (tool results, a
   steer): only one round is ever estimated.
2. **The model's tokenizer**, where mcode has it (the embedded model: llama.cpp counts the rendered
   prompt exactly). A provider offers it as ``count_request(request) -> int | None``.
3. **A calibrated estimate** per model family: bytes per token of code-heavy agent context (JSON
   tool arguments, source, shell output), and about one token per non-ASCII character. The
   families' ratios are conservative (they overcount a little, so compaction comes early rather
   than the request failing); each reported count then corrects the ratio for this session
   (``correction``), so a family mcode does not know converges after one answer.

The budget: a request may hold ``window - reserve`` input tokens, where ``reserve`` is what the
answer may take (the model's output cap, at most a quarter of the window). Compaction fires only
when the next request would not fit that: never while the conversation fits the declared window
with room for an answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mcode.messages import ImagePart, Message, TextPart, ThinkingPart, ToolSpec, Usage
from mcode.providers.base import ModelRequest

# Bytes of ASCII per token, by model-name prefix (the longest match wins). Measured ranges for
# code and JSON: BPE vocabularies of ~200K entries (MiniMax, GPT-4o's o200k) reach ~3.8-4.2,
# Claude's ~3.3-3.6, Llama-style 32-50K vocabularies (SmolLM2) ~3.0-3.3 (tests/test_tokens.py
# checks SmolLM2's against its real tokenizer). Each is set at the low end: overcounting
# compacts a little early, undercounting sends a request the API rejects.
FAMILY_BYTES_PER_TOKEN: dict[str, float] = {
    "MiniMax-": 3.6,
    "claude-": 3.2,
    "gpt-4o": 3.7,
    "gpt-4.1": 3.7,
    "gpt-5": 3.7,
    "o3": 3.7,
    "o4": 3.7,
    "SmolLM2": 2.9,
}
DEFAULT_BYTES_PER_TOKEN = 3.0
# Images: Anthropic bills (width*height)/750 tokens, up to ~1,600 for a 1.15-megapixel image
# (larger ones are downscaled); MiniMax and OpenAI are in the same range. Without decoding the
# image, assume the most.
IMAGE_TOKENS = 1_600
MESSAGE_OVERHEAD = 4  # role markers and separators per message
TOOL_CALL_OVERHEAD = 8  # id, name and framing per call


def bytes_per_token(model: str) -> float:
    family = max((p for p in FAMILY_BYTES_PER_TOKEN if model.startswith(p)), key=len, default="")
    return FAMILY_BYTES_PER_TOKEN.get(family, DEFAULT_BYTES_PER_TOKEN)


def estimate_text(text: str, ratio: float) -> float:
    """Tokens in ``text`` at ``ratio`` ASCII bytes per token; non-ASCII characters (CJK,
    emoji, accents) count about one token each in every tokenizer mcode meets."""
    if text.isascii():
        return len(text) / ratio
    ascii_count = len(text.encode("ascii", "ignore"))
    return ascii_count / ratio + (len(text) - ascii_count)


def estimate_message(message: Message, ratio: float) -> float:
    tokens = float(MESSAGE_OVERHEAD)
    for part in message.parts:
        if isinstance(part, TextPart | ThinkingPart):
            tokens += estimate_text(part.text, ratio)
        elif isinstance(part, ImagePart):
            tokens += IMAGE_TOKENS
    for call in message.tool_calls:
        tokens += TOOL_CALL_OVERHEAD + estimate_text(call.name + call.arguments, ratio)
    return tokens


def estimate_tools(tools: Sequence[ToolSpec], ratio: float) -> float:
    return sum(estimate_text(_spec_text(t), ratio) for t in tools)


# Each tool's spec as estimated, serialised once: a request's specs are built afresh from the
# same tools every step, and dumping a dozen JSON schemas was ~70 us of every estimate. Keyed
# by the schema dict's identity (a tool's is built once, a class attribute for the built-ins),
# which the entry holds on to, so the id cannot be reused by another dict.
_SPEC_TEXT: dict[tuple[str, str, int], tuple[dict[str, Any], str]] = {}


def _spec_text(t: ToolSpec) -> str:
    key = (t.name, t.description, id(t.parameters))
    hit = _SPEC_TEXT.get(key)
    if hit is not None and hit[0] is t.parameters:
        return hit[1]
    text = json.dumps([t.name, t.description, t.parameters], separators=(",", ":"))
    _SPEC_TEXT[key] = (t.parameters, text)
    return text


Counter = Callable[[ModelRequest], "int | None"]


@dataclass(slots=True)
class TokenBudget:
    """Counts the next request's tokens and says when it no longer fits.

    ``window``: the declared context window (the model preset's, or ``--context-window``);
    ``reserve``: tokens kept free for the answer; ``ratio``: the family's bytes per token;
    ``counter``: the model's own tokenizer, when the provider has one (exact, used as is).
    ``observe`` takes each answer's usage; ``reset`` forgets everything learned about the
    history when it is replaced (compaction).
    """

    window: int
    reserve: int
    ratio: float
    counter: Counter | None = None
    correction: float = 1.0  # reported / estimated, learned from usage
    # The last request the API counted: how many history messages it held, and its input
    # tokens plus the output tokens of the answer appended right after it.
    anchor_messages: int = 0
    anchor_tokens: int = 0
    # The raw estimate (at ``ratio``) of the first ``_summed`` history messages; history is
    # append-only between compactions, so each message is estimated once.
    _summed: int = 0
    _raw_sum: float = 0.0

    @classmethod
    def for_model(
        cls, model: str, window: int, max_output_tokens: int, counter: Counter | None = None
    ) -> TokenBudget:
        reserve = max(1, min(max_output_tokens, window // 4))
        return cls(window=window, reserve=reserve, ratio=bytes_per_token(model), counter=counter)

    @property
    def limit(self) -> int:
        """The most input tokens a request may hold."""
        return self.window - self.reserve

    def fits(self, tokens: int) -> bool:
        return tokens <= self.limit

    def estimate(self, request: ModelRequest) -> int:
        """The request's input tokens: the tokenizer's count where there is one; else the API's
        count of the last request plus an estimate of what was appended since; else (no count
        yet) an estimate of everything, corrected by what earlier counts taught."""
        if self.counter is not None:
            exact = self.counter(request)
            if exact is not None:
                return exact
        history = request.messages
        if 0 < self.anchor_messages <= len(history):
            fresh = history[self.anchor_messages :]
            raw = sum(estimate_message(m, self.ratio) for m in fresh)
            return self.anchor_tokens + round(raw * self.correction)
        return round(self._raw(request, len(history)) * self.correction)

    def observe(self, usage: Usage, request: ModelRequest, held: int) -> None:
        """Learn from an answer to ``request``, whose history then held ``held`` messages (the
        answer is the next one). Answers without a count (a server that reports no usage)
        teach nothing."""
        if usage.input_tokens <= 0:
            return
        raw = self._raw(request, held)
        if raw > 0:
            # How far off the family ratio is for this model and this content; bounded so one
            # odd answer (a server counting only uncached tokens) cannot derail it.
            self.correction = min(4.0, max(0.25, usage.input_tokens / raw))
        self.anchor_messages = held + 1
        self.anchor_tokens = usage.input_tokens + usage.output_tokens

    def reset(self) -> None:
        self.anchor_messages = self.anchor_tokens = self._summed = 0
        self._raw_sum = 0.0

    def _raw(self, request: ModelRequest, held: int) -> float:
        history = request.messages
        if held < self._summed:  # not append-only after all: start over
            self._summed, self._raw_sum = 0, 0.0
        for m in history[self._summed : held]:
            self._raw_sum += estimate_message(m, self.ratio)
        self._summed = held
        system = estimate_text(request.system, self.ratio)
        return system + estimate_tools(request.tools, self.ratio) + self._raw_sum
