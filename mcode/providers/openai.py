"""OpenAI Chat Completions over httpx (MiniMax ``/v1``, OpenAI, DeepSeek, vLLM, our local server).

Three modules, in wire order: :mod:`~mcode.providers.openai_request` builds the request bytes,
:mod:`~mcode.providers.openai_stream` parses the answer, and :class:`OpenAIProvider` here sends,
retries and times out (see :mod:`mcode.providers.retry`).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from mcode.errors import ProviderError
from mcode.providers.base import ModelInfo, ModelRequest
from mcode.providers.openai_request import REPLAY_MODES, build_body
from mcode.providers.openai_stream import ChatAssembler, ThinkOpening
from mcode.providers.presets import endpoint_url
from mcode.providers.remote import RemoteProvider
from mcode.providers.retry import NetworkSettings, classify_body_error, hint_for
from mcode.secrets import scrub

__all__ = ["OpenAIProvider"]


class OpenAIProvider(RemoteProvider):
    """A :class:`~mcode.providers.base.Provider` for OpenAI-compatible Chat Completions.

    - ``thinking_style``: ``"none"`` sends no thinking switch; ``"minimax"`` sends
      ``thinking: {"type": "adaptive" | "disabled"}`` when ``request.thinking`` is set.
    - ``reasoning_replay``: how earlier thinking goes back: ``"mirror"`` (each part the way it
      arrived: inline ``<think>``, ``reasoning_details``, ``reasoning_content`` or ``reasoning``),
      or pinned: ``"reasoning_content"`` (DeepSeek), ``"reasoning"`` (vLLM >= 0.16),
      ``"think_tags"`` (all of it inline in content) or ``"none"``. Thinking that arrived inline
      as ``<think>`` goes back inline in every mode but ``"none"``.
    - ``think_in_prompt``: the server's chat template opens ``<think>`` in the prompt, so even
      the first answer starts inside the reasoning (:class:`~.openai_stream.ThinkOpening`).
    - ``max_tokens_field``: MiniMax wants ``"max_completion_tokens"``.
    - ``default_max_tokens``: the cap sent when a request names none (``None``: send none, the
      server's default; a cap above a small local model's window would be an error there).
    - ``extra_body``: keys merged into every request (e.g. ``{"reasoning_split": True}``).
    - ``transport``: an httpx transport to use instead of the network one.

    One instance may serve concurrent calls; it must stay on the event loop that first used it.
    """

    sse_until = "[DONE]"
    protocol_hint = hint_for("protocol")

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key: str | None,
        info: ModelInfo,
        network: NetworkSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        stream: bool = True,
        thinking_style: str = "none",
        max_tokens_field: str = "max_tokens",
        default_max_tokens: int | None = None,
        extra_headers: dict[str, str] | None = None,
        reasoning_replay: str = "mirror",
        think_in_prompt: bool = False,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if reasoning_replay not in REPLAY_MODES:
            raise ValueError(f"reasoning_replay must be one of {REPLAY_MODES}")
        if thinking_style not in ("none", "minimax"):
            raise ValueError("thinking_style must be 'none' or 'minimax'")
        url = endpoint_url(base_url, "/chat/completions")
        super().__init__(
            model=model,
            url=url,
            api_key=api_key,
            info=info,
            network=network,
            transport=transport,
            stream=stream,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            extra_headers=extra_headers,
        )
        self._thinking_style = thinking_style
        self._max_tokens_field = max_tokens_field
        self._default_max_tokens = default_max_tokens
        self._reasoning_replay = reasoning_replay
        self._extra_body = dict(extra_body or {})
        # Whether this endpoint's template opens <think> in the prompt: said by the config, or
        # learned from its answers and from the history of the first request (a resumed session).
        self._opening = ThinkOpening(think_in_prompt)
        self._history_read = False

    def build_body(self, request: ModelRequest) -> bytes:
        """The exact bytes :meth:`stream` sends for ``request``."""
        if not self._history_read:
            self._history_read = True
            self._opening.learn_from(request.messages)
        return build_body(
            request,
            model=self.model,
            stream=self._stream,
            thinking_style=self._thinking_style,
            max_tokens_field=self._max_tokens_field,
            default_max_tokens=self._default_max_tokens,
            reasoning_replay=self._reasoning_replay,
            supports_images=self.info.supports_images,
            extra_body=self._extra_body,
        )

    def new_assembler(self) -> ChatAssembler:
        return ChatAssembler(self._http.secrets, opening=self._opening)

    def parse_event(self, data: str, event: str) -> dict[str, Any] | None:
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if event == "error":
            if isinstance(chunk, dict) and chunk.get("error"):
                chunk = chunk["error"]
            raise classify_body_error(
                chunk if chunk is not None else data, secrets=self._http.secrets
            )
        if isinstance(chunk, dict):
            return chunk
        if event != "message" or not data.strip():
            return None  # unknown named events and empty keep-alive data are ignored
        snippet = scrub(data[:200], self._http.secrets)
        raise ProviderError(
            f"model API protocol error: a stream event is not a JSON object: {snippet!r}",
            kind="protocol",
            retryable=True,
            hint=hint_for("protocol"),
        )
