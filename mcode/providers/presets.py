"""Provider presets and model facts, as data.

Adding a provider that speaks an existing wire format, a region or a model is a table edit here,
not a code path. A preset names the provider's endpoints: each *API* (``openai`` = Chat
Completions, ``anthropic`` = Messages) with the way that endpoint wants thinking switched, tokens
capped, reasoning replayed and the key sent. :func:`resolve_preset` picks one endpoint for the
configured region and API.

On the providers' ground floor with :mod:`.network`: it imports nothing from mcode, so the
configuration reads presets and model facts without loading any provider code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

# How earlier thinking goes back on Chat Completions (see openai_request.py). ``mirror``: each
# part the way it arrived; the others pin one way for every part.
REPLAY_MODES = ("mirror", "reasoning_content", "reasoning", "think_tags", "none")


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    """One endpoint of a provider, fully resolved.

    - ``wire``: the implementation (``openai`` | ``anthropic`` | ``local``).
    - ``thinking_style``: how ``--thinking on/off`` is sent (``none``: it cannot be switched;
      ``minimax``: ``{"type": "adaptive" | "disabled"}``; ``anthropic``: enabled with a budget).
    - ``thinking_default``: what to send when the user said nothing (MiniMax's two endpoints
      default differently, so mcode says it explicitly); ``None`` sends nothing.
    - ``max_tokens_field`` / ``send_max_tokens`` / ``reasoning_replay`` / ``think_in_prompt``:
      Chat Completions only. ``think_in_prompt``: the server's chat template opens ``<think>`` in
      the prompt, so answers start inside the reasoning from the first (else learned from the
      first answer that shows it).
    - ``auth_style``: ``bearer`` or ``x-api-key`` (Anthropic Messages only).
    - ``regions``: region -> API -> base URL; ``apis``: the APIs the provider offers, default first.
    - ``headers``: extra request headers the endpoint needs (Anthropic's interleaved-thinking beta).
    """

    name: str
    wire: str
    base_url: str
    api_key_env: str | None
    base_url_env: str | None
    default_model: str
    thinking_style: str = "none"
    thinking_default: bool | None = None
    max_tokens_field: str = "max_tokens"
    send_max_tokens: bool = False  # Chat Completions: send the model's output cap explicitly
    reasoning_replay: str = "mirror"
    think_in_prompt: bool = False
    auth_style: str = "bearer"
    region: str = "global"
    regions: dict[str, dict[str, str]] = field(default_factory=dict)
    variants: dict[str, dict[str, object]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request

    @property
    def apis(self) -> tuple[str, ...]:
        return tuple(self.variants) or (self.wire,)


@dataclass(frozen=True, slots=True)
class ModelFacts:
    context_window: int
    supports_images: bool = False
    thinking_switchable: bool = False
    max_output_tokens: int = 32_000


_MINIMAX_REGIONS = {
    "global": {
        "anthropic": "https://api.minimax.io/anthropic",
        "openai": "https://api.minimax.io/v1",
    },
    "cn": {
        "anthropic": "https://api.minimaxi.com/anthropic",
        "openai": "https://api.minimaxi.com/v1",
    },
}

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
    # MiniMax's Anthropic-compatible endpoint is the default, as MiniMax's own tools use it; the
    # OpenAI-compatible /v1 is selectable. On /v1 interleaved thinking arrives as <think> in the
    # content and must go back exactly as received (MINIMAX_API.md), hence think_tags. Thinking
    # is on by default for /v1 and off for /anthropic: mcode sends it explicitly (on).
    "minimax": ProviderPreset(
        name="minimax",
        wire="anthropic",
        base_url=_MINIMAX_REGIONS["global"]["anthropic"],
        api_key_env="MINIMAX_API_KEY",
        base_url_env="MINIMAX_BASE_URL",
        default_model="MiniMax-M3",
        thinking_style="minimax",
        thinking_default=True,
        auth_style="bearer",
        regions=_MINIMAX_REGIONS,
        variants={
            "anthropic": {"wire": "anthropic", "auth_style": "bearer"},
            "openai": {
                "wire": "openai",
                "max_tokens_field": "max_completion_tokens",
                # Thinking spends the budget first; MiniMax's default cap is easily too small.
                "send_max_tokens": True,
                "reasoning_replay": "think_tags",
            },
        },
    ),
    "anthropic": ProviderPreset(
        name="anthropic",
        wire="anthropic",
        base_url="https://api.anthropic.com",
        api_key_env="ANTHROPIC_API_KEY",
        base_url_env="ANTHROPIC_BASE_URL",
        default_model="claude-sonnet-4-5",
        thinking_style="anthropic",
        auth_style="x-api-key",
        # Without it Claude 4 models think once at the start of a turn, not between tool calls.
        headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    ),
    # Self-hosted servers (scale-out is their job: tensor parallelism, many GPUs); mcode is
    # their client. Both stream reasoning in a separate field when started with a reasoning
    # parser (vLLM ``--reasoning-parser minimax_m2``: ``reasoning_content``, newer releases
    # ``reasoning``, both read; SGLang ``--reasoning-parser``: ``reasoning_content``); tool calls
    # need ``--enable-auto-tool-choice --tool-call-parser minimax_m2`` (vLLM) or
    # ``--tool-call-parser minimax-m2`` (SGLang). Cached tokens arrive in
    # ``usage.prompt_tokens_details.cached_tokens`` (vLLM: with
    # ``--enable-prompt-tokens-details``). No key unless the server was started with one
    # (``--api-key``: name its variable in ``[providers.vllm] api_key_env``).
    "vllm": ProviderPreset(
        name="vllm",
        wire="openai",
        base_url="http://127.0.0.1:8000/v1",
        api_key_env=None,
        base_url_env="VLLM_BASE_URL",
        default_model="MiniMaxAI/MiniMax-M2",
        send_max_tokens=True,
        reasoning_replay="reasoning_content",
    ),
    "sglang": ProviderPreset(
        name="sglang",
        wire="openai",
        base_url="http://127.0.0.1:30000/v1",
        api_key_env=None,
        base_url_env="SGLANG_BASE_URL",
        default_model="MiniMaxAI/MiniMax-M2",
        send_max_tokens=True,
        reasoning_replay="reasoning_content",
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
    "MiniMax-M2.5-highspeed": ModelFacts(204_800),
    "MiniMax-M2.7-highspeed": ModelFacts(204_800),
    "MiniMax-M2": ModelFacts(204_800),
    "gpt-4.1": ModelFacts(1_047_576, supports_images=True),
    "gpt-4o": ModelFacts(128_000, supports_images=True, max_output_tokens=16_384),
    "claude-sonnet-4-5": ModelFacts(200_000, supports_images=True, thinking_switchable=True),
    "claude-opus-4-1": ModelFacts(200_000, supports_images=True, thinking_switchable=True),
}

# Model families, for names not in MODELS (a new release, a dated snapshot, a -highspeed
# variant): the longest matching prefix decides.
FAMILIES: dict[str, ModelFacts] = {
    "MiniMax-M3": MODELS["MiniMax-M3"],
    "MiniMax-M2": ModelFacts(204_800),
    "claude-": ModelFacts(200_000, supports_images=True, thinking_switchable=True),
    "gpt-4.1": MODELS["gpt-4.1"],
    "gpt-4o": MODELS["gpt-4o"],
}

# For a model we know nothing about: assume a modest window rather than overfill a small one.
UNKNOWN_MODEL = ModelFacts(128_000, supports_images=True)


def model_facts(model: str) -> ModelFacts:
    if model in MODELS:
        return MODELS[model]
    family = max((p for p in FAMILIES if model.startswith(p)), key=len, default=None)
    return FAMILIES[family] if family is not None else UNKNOWN_MODEL


def api_from_url(base_url: str) -> str | None:
    """The API a base URL points at, when its path says so: ``…/anthropic…`` is Messages,
    ``…/v1`` is Chat Completions (``MINIMAX_BASE_URL=https://api.minimaxi.com/v1``), and so is a
    full endpoint URL (``…/chat/completions``, ``…/messages``)."""
    path = urlsplit(base_url).path.rstrip("/")
    if path.endswith("/chat/completions"):
        return "openai"
    if "/anthropic" in path or path.endswith("/messages"):
        return "anthropic"
    if path.endswith("/v1"):
        return "openai"
    return None


def endpoint_url(base_url: str, endpoint: str) -> str:
    """``base_url`` with ``endpoint`` appended to its path, unless the path already ends with it
    (users paste the full endpoint URL from a provider's docs where the base URL belongs). A query
    (``?api-version=...``) stays at the end."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if not path.endswith(endpoint):
        path += endpoint
    return urlunsplit(parts._replace(path=path))


def resolve_preset(
    name: str,
    *,
    api: str | None = None,
    region: str | None = None,
    base_url: str | None = None,
) -> ProviderPreset:
    """The preset ``name`` for one region and API. ``api`` wins; else a custom ``base_url``
    whose path names an API picks it; else the provider's default. Raises ValueError with a
    sentence for the user on an unknown region or API."""
    preset = PRESETS[name]
    if region is not None and region not in (preset.regions or {"global": {}}):
        known = ", ".join(preset.regions or {"global": {}})
        raise ValueError(f"the {name} provider has no region {region!r} (regions: {known})")
    if api is not None and api not in preset.apis:
        raise ValueError(f"the {name} provider has no {api!r} API (APIs: {', '.join(preset.apis)})")
    if api is None and base_url and len(preset.apis) > 1:
        guessed = api_from_url(base_url)
        api = guessed if guessed in preset.apis else None
    chosen = dataclasses.replace(preset)
    if api is not None and preset.variants:
        chosen = dataclasses.replace(chosen, **preset.variants[api])  # type: ignore[arg-type]
    if region is not None or api is not None:
        region = region or preset.region
        url = preset.regions.get(region, {}).get(chosen.wire)
        chosen = dataclasses.replace(chosen, region=region, base_url=url or chosen.base_url)
    return chosen
