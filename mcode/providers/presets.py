"""Provider presets and model facts, as data.

Adding a provider that speaks an existing wire format, or a model, is a table edit here, not a
code path. ``wire`` names the implementation (``openai`` is Chat Completions).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    name: str
    wire: str  # "openai" | "anthropic" | "local"
    base_url: str
    api_key_env: str | None
    base_url_env: str | None
    default_model: str
    thinking_style: str = "none"  # how --thinking on/off is sent; "none": cannot be switched
    max_tokens_field: str = "max_tokens"
    reasoning_replay: str = "reasoning_content"  # how thinking goes back to the server


@dataclass(frozen=True, slots=True)
class ModelFacts:
    context_window: int
    supports_images: bool = False
    thinking_switchable: bool = False


PRESETS: dict[str, ProviderPreset] = {
    "openai": ProviderPreset(
        name="openai",
        wire="openai",
        base_url="https://api.openai.com/v1",
        api_key_env="OPENAI_API_KEY",
        base_url_env="OPENAI_BASE_URL",
        default_model="gpt-4.1",
        max_tokens_field="max_completion_tokens",
    ),
    # MiniMax's OpenAI-compatible endpoint. Interleaved thinking arrives as <think> in content and
    # must go back exactly as received (MINIMAX_API.md), hence think_tags.
    "minimax": ProviderPreset(
        name="minimax",
        wire="openai",
        base_url="https://api.minimax.io/v1",
        api_key_env="MINIMAX_API_KEY",
        base_url_env="MINIMAX_BASE_URL",
        default_model="MiniMax-M3",
        thinking_style="minimax",
        max_tokens_field="max_completion_tokens",
        reasoning_replay="think_tags",
    ),
    "anthropic": ProviderPreset(
        name="anthropic",
        wire="anthropic",
        base_url="https://api.anthropic.com",
        api_key_env="ANTHROPIC_API_KEY",
        base_url_env="ANTHROPIC_BASE_URL",
        default_model="claude-sonnet-4-5",
    ),
    "local": ProviderPreset(
        name="local",
        wire="local",
        base_url="",
        api_key_env=None,
        base_url_env=None,
        default_model="SmolLM2-135M-Instruct",
    ),
}

MODELS: dict[str, ModelFacts] = {
    "MiniMax-M3": ModelFacts(1_000_000, supports_images=True, thinking_switchable=True),
    "MiniMax-M2.7": ModelFacts(204_800),
    "MiniMax-M2.5": ModelFacts(204_800),
    "MiniMax-M2.1": ModelFacts(204_800),
    "MiniMax-M2.1-highspeed": ModelFacts(204_800),
    "MiniMax-M2": ModelFacts(204_800),
    "gpt-4.1": ModelFacts(1_047_576, supports_images=True),
    "gpt-4o": ModelFacts(128_000, supports_images=True),
    "claude-sonnet-4-5": ModelFacts(200_000, supports_images=True, thinking_switchable=True),
}

# For a model we know nothing about: assume a modest window rather than overfill a small one.
UNKNOWN_MODEL = ModelFacts(128_000, supports_images=True)


def model_facts(model: str) -> ModelFacts:
    return MODELS.get(model, UNKNOWN_MODEL)
