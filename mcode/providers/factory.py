"""Settings -> Provider. Implementations are imported here, lazily, and nowhere else."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcode.errors import ConfigError
from mcode.providers.base import ModelInfo, Provider
from mcode.providers.presets import model_facts

if TYPE_CHECKING:
    import httpx

    from mcode.config import Settings


def make_provider(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    preset = settings.preset
    if preset.wire == "local":
        from mcode.providers.local import LocalProvider

        return LocalProvider(
            model_path=settings.local.model_path,
            n_ctx=settings.local.context,
            n_threads=settings.local.threads,
            max_output_tokens=settings.local.max_output_tokens,
            tool_steps=settings.local.tool_steps,
        )
    facts = model_facts(settings.model)
    info = ModelInfo(
        provider=settings.provider,
        model=settings.model,
        context_window=settings.context_window,
        supports_images=facts.supports_images,
        thinking_switchable=facts.thinking_switchable and preset.thinking_style != "none",
    )
    if preset.wire == "openai":
        from mcode.providers.openai import OpenAIProvider

        return OpenAIProvider(
            model=settings.model,
            base_url=settings.base_url,
            api_key=settings.api_key,
            info=info,
            network=settings.network,
            transport=transport,
            thinking_style=preset.thinking_style,
            max_tokens_field=preset.max_tokens_field,
            reasoning_replay=preset.reasoning_replay,
        )
    raise ConfigError(
        f"the {settings.provider!r} provider ({preset.wire} wire format) is not available in "
        "this version of mcode",
        hint="use --provider minimax, openai (any OpenAI-compatible endpoint with --base-url) "
        "or local",
    )
