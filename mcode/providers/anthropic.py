"""Anthropic Messages over httpx (Anthropic, MiniMax ``/anthropic``, other compatible servers).

Three modules, in wire order: :mod:`~mcode.providers.anthropic_request` builds the request bytes,
:mod:`~mcode.providers.anthropic_stream` parses the answer, and :class:`AnthropicProvider` here
sends, retries and times out (shared with the OpenAI provider: :mod:`mcode.providers.http`,
:mod:`mcode.providers.retry`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mcode.errors import ProviderError
from mcode.providers.anthropic_request import AnthropicRequestBuilder
from mcode.providers.anthropic_stream import PROTOCOL_HINT, MessageAssembler
from mcode.providers.base import ModelInfo, ModelRequest
from mcode.providers.http import bare_url
from mcode.providers.network import NetworkSettings
from mcode.providers.options import AnthropicOptions
from mcode.providers.presets import endpoint_url
from mcode.providers.remote import RemoteProvider
from mcode.secrets import scrub

if TYPE_CHECKING:  # httpx is imported with the first request (mcode/providers/http.py)
    import httpx

__all__ = ["ANTHROPIC_VERSION", "AnthropicOptions", "AnthropicProvider", "messages_url"]

ANTHROPIC_VERSION = "2023-06-01"
# Events whose data must be JSON; "message" is the name of an event sent without one.
_KNOWN_EVENTS = frozenset(
    (
        "message",
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    )
)


def messages_url(base_url: str) -> str:
    """The Messages endpoint under ``base_url``: ``https://api.anthropic.com`` and
    ``https://api.minimax.io/anthropic`` get ``/v1/messages``; a base ending in ``/v1`` gets
    ``/messages``; a base that already is the endpoint is kept."""
    path = urlsplit(base_url).path.rstrip("/")
    return endpoint_url(base_url, "/messages" if path.endswith("/v1") else "/v1/messages")


class AnthropicProvider(RemoteProvider):
    """A :class:`~mcode.providers.base.Provider` for the Anthropic Messages API.

    ``options`` (:class:`~.options.AnthropicOptions`; the defaults when omitted) says how this
    endpoint wants its requests: streaming, the thinking switch and budget, how the key is sent,
    the default ``max_tokens`` and extra headers. ``transport``: an httpx transport to use
    instead of the network one.

    One instance may serve concurrent calls; it must stay on the event loop that first used it.
    """

    sse_until_event = "message_stop"
    protocol_hint = PROTOCOL_HINT

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key: str | None,
        info: ModelInfo,
        network: NetworkSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        options: AnthropicOptions | None = None,
    ) -> None:
        options = options or AnthropicOptions()
        url = messages_url(base_url)
        super().__init__(
            model=model,
            url=url,
            api_key=api_key,
            info=info,
            network=network,
            transport=transport,
            stream=options.stream,
            headers=_auth_headers(api_key, options.auth_style),
            extra_headers=options.extra_headers,
        )
        # Which endpoint and model produced a thinking block: only they can validate it (a
        # signature from MiniMax means nothing to Anthropic), so history from another origin
        # goes back without its thinking.
        self.origin = f"{info.provider}/{model}@{bare_url(url)}"  # stored: no credentials
        self._bodies = AnthropicRequestBuilder(
            model, options, supports_images=info.supports_images, origin=self.origin
        )

    def build_body(self, request: ModelRequest) -> bytes:
        """The exact bytes :meth:`stream` sends for ``request``."""
        return self._bodies.build(request)

    def new_assembler(self) -> MessageAssembler:
        return MessageAssembler(self._http.secrets, origin=self.origin)

    def parse_event(self, data: str, event: str) -> dict[str, Any] | None:
        """An SSE event's JSON data, with its type taken from the ``event:`` name when the data
        lacks one. ``None`` for events that carry nothing to parse."""
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            if "type" not in parsed and event != "message":
                parsed["type"] = event
            return parsed
        if event == "error":
            # A named error event with plain text still reports an error: classify its text.
            return {"type": "error", "error": data}
        if event not in _KNOWN_EVENTS or not data.strip():
            return None  # pings, keep-alives and event types added later carry nothing for us
        snippet = scrub(data[:200], self._http.secrets)
        raise ProviderError(
            f"model API protocol error: the {event!r} event is not a JSON object: {snippet!r}",
            kind="protocol",
            retryable=True,
            hint=PROTOCOL_HINT,
        )


def _auth_headers(api_key: str | None, auth_style: str) -> dict[str, str]:
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    if api_key:
        if auth_style == "bearer":
            headers["Authorization"] = f"Bearer {api_key}"
        else:
            headers["x-api-key"] = api_key
    return headers
