"""Settings -> Provider. Implementations are imported here, lazily, and nowhere else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    if preset.wire == "local" and settings.base_url:
        return _served_local(settings, transport)
    if preset.wire == "local":
        from mcode.providers.local import LocalProvider

        return LocalProvider(
            model_path=settings.local.model_path,
            n_ctx=settings.context_window,  # local.context unless --context-window says
            n_threads=settings.local.threads,
            max_output_tokens=settings.local.max_output_tokens,
            end_after=settings.local.end_after,
            engine=settings.local.engine,
            attention=settings.local.attention,
        )
    facts = model_facts(settings.model)
    # A model that cannot switch thinking (MiniMax M2.x) gets no switch in its requests, whatever
    # the endpoint's style: session.started shows the toggle as unavailable.
    thinking_style = preset.thinking_style if facts.thinking_switchable else "none"
    info = ModelInfo(
        provider=settings.provider,
        model=settings.model,
        context_window=settings.context_window,
        supports_images=facts.supports_images,
        thinking_switchable=thinking_style != "none",
        max_output_tokens=settings.max_output_tokens,
    )
    if preset.wire == "openai":
        from mcode.providers.openai import OpenAIOptions, OpenAIProvider

        return OpenAIProvider(
            model=settings.model,
            base_url=settings.base_url,
            api_key=settings.api_key,
            info=info,
            network=settings.network,
            transport=transport,
            options=OpenAIOptions(
                thinking_style=thinking_style,
                max_tokens_field=preset.max_tokens_field,
                default_max_tokens=settings.max_output_tokens if preset.send_max_tokens else None,
                reasoning_replay=preset.reasoning_replay,
                think_in_prompt=preset.think_in_prompt,
            ),
        )
    if preset.wire == "anthropic":
        from mcode.providers.anthropic import AnthropicOptions, AnthropicProvider

        return AnthropicProvider(
            model=settings.model,
            base_url=settings.base_url,
            api_key=settings.api_key,
            info=info,
            network=settings.network,
            transport=transport,
            options=AnthropicOptions(
                thinking_style=thinking_style,
                auth_style=preset.auth_style,
                max_output_tokens=settings.max_output_tokens,
                thinking_budget=settings.thinking_budget,
                **_computer_options(settings),
            ),
        )
    raise ConfigError(
        f"the {settings.provider!r} provider has an unknown wire format {preset.wire!r}",
        hint="this is an mcode bug: please report it",
    )


# Anthropic's own API offers computer use as a native tool behind a beta header; MiniMax's
# Anthropic-compatible endpoint gets the computer tool as a plain function with its schema.
COMPUTER_TOOL = "computer_20250124"
COMPUTER_BETA = "computer-use-2025-01-24"


def _computer_options(settings: Settings) -> dict[str, Any]:
    """``extra_headers`` and ``computer_tool`` of the AnthropicOptions for ``settings``."""
    headers = dict(settings.preset.headers)
    if not (settings.computer.enabled and settings.preset.name == "anthropic"):
        return {"extra_headers": headers}
    betas = [b for b in headers.get("anthropic-beta", "").split(",") if b]
    headers["anthropic-beta"] = ",".join([*betas, COMPUTER_BETA])
    return {"extra_headers": headers, "computer_tool": COMPUTER_TOOL}


def _served_local(settings: Settings, transport: httpx.AsyncBaseTransport | None) -> Provider:
    """``--provider local --base-url URL``: a local model behind ``mcode serve`` (or any
    OpenAI-compatible server of one), spoken to over Chat Completions, sampled like the
    in-process engine (and paced like it, by the agent)."""
    from mcode.providers.local import ServedLocalProvider
    from mcode.providers.openai import OpenAIOptions, OpenAIProvider

    info = ModelInfo(
        provider="local",
        model=settings.model,
        context_window=settings.context_window,
        supports_images=False,
        thinking_switchable=False,
        max_output_tokens=settings.local.max_output_tokens,
    )
    inner = OpenAIProvider(
        model=settings.model,
        base_url=settings.base_url,
        api_key=settings.api_key,
        info=info,
        network=settings.network,
        transport=transport,
        options=OpenAIOptions(
            thinking_style="none",
            max_tokens_field="max_tokens",
            default_max_tokens=settings.local.max_output_tokens,
            reasoning_replay="none",
        ),
    )
    return ServedLocalProvider(inner)
