"""OpenAI Chat Completions over httpx (MiniMax ``/v1``, OpenAI, DeepSeek, vLLM, our local server).

Three modules, in wire order: :mod:`~mcode.providers.openai_request` builds the request bytes,
:mod:`~mcode.providers.openai_stream` parses the answer, and :class:`OpenAIProvider` here sends,
retries and times out (see :mod:`mcode.providers.retry`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mcode.errors import ProviderError
from mcode.providers.base import ModelInfo, ModelRequest
from mcode.providers.classify import classify_body_error, hint_for
from mcode.providers.network import NetworkSettings
from mcode.providers.openai_request import OpenAIRequestBuilder
from mcode.providers.openai_stream import ChatAssembler, ThinkOpening
from mcode.providers.options import OpenAIOptions
from mcode.providers.presets import endpoint_url
from mcode.providers.remote import RemoteProvider
from mcode.secrets import scrub

if TYPE_CHECKING:  # httpx is imported with the first request (mcode/providers/http.py)
    import httpx

__all__ = ["OpenAIOptions", "OpenAIProvider"]


class OpenAIProvider(RemoteProvider):
    """A :class:`~mcode.providers.base.Provider` for OpenAI-compatible Chat Completions.

    ``options`` (:class:`~.options.OpenAIOptions`; the defaults when omitted) says how this
    endpoint wants its requests: streaming, the thinking switch, the max-tokens field, how
    thinking is replayed, extra body keys and headers. ``transport``: an httpx transport to use
    instead of the network one.

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
        options: OpenAIOptions | None = None,
    ) -> None:
        options = options or OpenAIOptions()
        url = endpoint_url(base_url, "/chat/completions")
        super().__init__(
            model=model,
            url=url,
            api_key=api_key,
            info=info,
            network=network,
            transport=transport,
            stream=options.stream,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            extra_headers=options.extra_headers,
        )
        self._bodies = OpenAIRequestBuilder(model, options, supports_images=info.supports_images)
        # Whether this endpoint's template opens <think> in the prompt: said by the config, or
        # learned from its answers and from the history of the first request (a resumed session).
        self._opening = ThinkOpening(options.think_in_prompt)
        self._history_read = False

    def build_body(self, request: ModelRequest) -> bytes:
        """The exact bytes :meth:`stream` sends for ``request``."""
        if not self._history_read:
            self._history_read = True
            self._opening.learn_from(request.messages)
        return self._bodies.build(request)

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
