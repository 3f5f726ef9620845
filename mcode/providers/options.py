"""What shapes the requests to one endpoint beyond the conversation: one frozen object per wire
format, checked when made.

The factory makes it once, from the endpoint's preset and the settings; the provider keeps it
whole and hands it whole to its request builder, so a new option is one field here and the line
that reads it, not a keyword threaded through three layers. What the provider learns elsewhere
stays out: the model, its URL, key and network settings, and the model's facts (image input).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mcode.providers.presets import REPLAY_MODES

__all__ = [
    "ANTHROPIC_THINKING_STYLES",
    "AUTH_STYLES",
    "OPENAI_THINKING_STYLES",
    "AnthropicOptions",
    "OpenAIOptions",
]

OPENAI_THINKING_STYLES = ("none", "minimax")
ANTHROPIC_THINKING_STYLES = ("anthropic", "minimax", "none")
AUTH_STYLES = ("x-api-key", "bearer")


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    """How a Chat Completions endpoint wants its requests.

    - ``stream``: ask for SSE (``stream: true``) or one JSON body.
    - ``thinking_style``: ``"none"`` sends no thinking switch; ``"minimax"`` sends
      ``thinking: {"type": "adaptive" | "disabled"}`` when ``request.thinking`` is set.
    - ``max_tokens_field``: MiniMax and OpenAI want ``"max_completion_tokens"``.
    - ``default_max_tokens``: the cap sent when a request names none (``None``: send none, the
      server's default; a cap above a small local model's window would be an error there).
    - ``reasoning_replay``: how earlier thinking goes back: ``"mirror"`` (each part the way it
      arrived: inline ``<think>``, ``reasoning_details``, ``reasoning_content`` or ``reasoning``),
      or pinned: ``"reasoning_content"`` (DeepSeek), ``"reasoning"`` (vLLM >= 0.16),
      ``"think_tags"`` (all of it inline in content) or ``"none"``. Thinking that arrived inline
      as ``<think>`` goes back inline in every mode but ``"none"``.
    - ``think_in_prompt``: the server's chat template opens ``<think>`` in the prompt, so even
      the first answer starts inside the reasoning (:class:`~.openai_stream.ThinkOpening`).
    - ``extra_body``: keys merged into every request body (e.g. ``{"reasoning_split": True}``).
    - ``extra_headers``: headers sent with every request.
    """

    stream: bool = True
    thinking_style: str = "none"
    max_tokens_field: str = "max_tokens"
    default_max_tokens: int | None = None
    reasoning_replay: str = "mirror"
    think_in_prompt: bool = False
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reasoning_replay not in REPLAY_MODES:
            raise ValueError(f"reasoning_replay must be one of {REPLAY_MODES}")
        if self.thinking_style not in OPENAI_THINKING_STYLES:
            raise ValueError("thinking_style must be 'none' or 'minimax'")
        object.__setattr__(self, "extra_body", _frozen(self.extra_body))
        object.__setattr__(self, "extra_headers", _frozen(self.extra_headers))


@dataclass(frozen=True, slots=True)
class AnthropicOptions:
    """How a Messages endpoint wants its requests.

    - ``stream``: ask for SSE (``stream: true``) or one JSON body.
    - ``thinking_style``: how ``request.thinking`` is sent. ``"anthropic"``: on ->
      ``{"type": "enabled", "budget_tokens": B}``, off -> ``{"type": "disabled"}``;
      ``"minimax"``: on -> ``{"type": "adaptive"}``, off -> ``{"type": "disabled"}``; ``"none"``:
      never. ``None`` (the provider's default) sends nothing in every style.
    - ``auth_style``: ``"x-api-key"`` (Anthropic) or ``"bearer"`` (``Authorization: Bearer``,
      MiniMax).
    - ``max_output_tokens``: ``max_tokens`` when the request sets none (the API requires one).
    - ``thinking_budget``: ``budget_tokens``, kept in ``[1024, max_tokens)``.
    - ``extra_headers``: headers sent with every request (Anthropic's interleaved-thinking beta).
    - ``computer_tool``: the native tool type a computer-use tool (``ToolSpec.display``) is
      offered as (``computer_20250124``, with its beta header in ``extra_headers``); None: as
      a plain tool with its schema (endpoints that have no native one).
    """

    stream: bool = True
    thinking_style: str = "anthropic"
    auth_style: str = "x-api-key"
    max_output_tokens: int = 32000
    thinking_budget: int = 16000
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    computer_tool: str | None = None

    def __post_init__(self) -> None:
        if self.thinking_style not in ANTHROPIC_THINKING_STYLES:
            raise ValueError(f"thinking_style must be one of {ANTHROPIC_THINKING_STYLES}")
        if self.auth_style not in AUTH_STYLES:
            raise ValueError(f"auth_style must be one of {AUTH_STYLES}")
        if self.max_output_tokens < 1:
            raise ValueError("max_output_tokens must be at least 1")
        object.__setattr__(self, "extra_headers", _frozen(self.extra_headers))
