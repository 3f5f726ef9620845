"""OpenAI Chat Completions over httpx (MiniMax ``/v1``, OpenAI, DeepSeek, vLLM, our local server).

Three modules, in wire order: :mod:`~mcode.providers.openai_request` builds the request bytes,
:mod:`~mcode.providers.openai_stream` parses the answer, and :class:`OpenAIProvider` here sends,
retries and times out (see :mod:`mcode.providers.retry`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

import httpx

from mcode import __version__
from mcode.errors import ProviderError
from mcode.messages import ToolSpec
from mcode.providers.base import (
    ModelEvent,
    ModelInfo,
    ModelRequest,
)
from mcode.providers.http import HttpClient, provider_secrets
from mcode.providers.leaked import LeakGuard
from mcode.providers.openai_request import REPLAY_MODES, build_body
from mcode.providers.openai_stream import ChatAssembler
from mcode.providers.presets import endpoint_url
from mcode.providers.retry import (
    NetworkSettings,
    classify_body_error,
    hint_for,
    retrying,
)
from mcode.secrets import scrub

__all__ = ["OpenAIProvider"]


class OpenAIProvider:
    """A :class:`~mcode.providers.base.Provider` for OpenAI-compatible Chat Completions.

    - ``thinking_style``: ``"none"`` sends no thinking switch; ``"minimax"`` sends
      ``thinking: {"type": "adaptive" | "disabled"}`` when ``request.thinking`` is set.
    - ``reasoning_replay``: how earlier thinking goes back: ``"reasoning_content"`` (DeepSeek,
      MiniMax), ``"reasoning"`` (vLLM >= 0.16), ``"think_tags"`` (all of it inline in content) or
      ``"none"``. Thinking that arrived inline as ``<think>`` goes back inline in every mode but
      ``"none"``.
    - ``max_tokens_field``: MiniMax wants ``"max_completion_tokens"``.
    - ``default_max_tokens``: the cap sent when a request names none (``None``: send none, the
      server's default; a cap above a small local model's window would be an error there).
    - ``extra_body``: keys merged into every request (e.g. ``{"reasoning_split": True}``).
    - ``transport``: an httpx transport to use instead of the network one.

    One instance may serve concurrent calls; it must stay on the event loop that first used it.
    """

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
        reasoning_replay: str = "reasoning_content",
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if reasoning_replay not in REPLAY_MODES:
            raise ValueError(f"reasoning_replay must be one of {REPLAY_MODES}")
        if thinking_style not in ("none", "minimax"):
            raise ValueError("thinking_style must be 'none' or 'minimax'")
        self.info = info
        self.model = model
        self.url = endpoint_url(base_url, "/chat/completions")
        self._network = network
        self._stream = stream
        self._thinking_style = thinking_style
        self._max_tokens_field = max_tokens_field
        self._default_max_tokens = default_max_tokens
        self._reasoning_replay = reasoning_replay
        self._extra_body = dict(extra_body or {})
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": f"mcode/{__version__}",
            **(extra_headers or {}),
        }
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        secrets = provider_secrets(api_key, self.url, extra_headers)
        self._http = HttpClient(network=network, transport=transport, secrets=secrets)

    def build_body(self, request: ModelRequest) -> bytes:
        """The exact bytes :meth:`stream` sends for ``request``."""
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

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        """Stream one model call; see :mod:`mcode.providers.base` for the contract."""
        body = self.build_body(request)
        tools = request.tools
        events = retrying(
            lambda: self._attempt(body, tools), self._network, secrets=self._http.secrets
        )
        async with aclosing(events):
            async for event in events:
                yield event

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _attempt(
        self, body: bytes, tools: Sequence[ToolSpec]
    ) -> AsyncGenerator[ModelEvent, None]:
        """One request. Its events pass through a LeakGuard: tool calls the model wrote as text
        become real ones (or a retryable error, so the model is asked again)."""
        guard = LeakGuard(tools)
        async with aclosing(self._request(body)) as events:
            async for event in events:
                for out in guard.feed(event):
                    yield out

    async def _request(self, body: bytes) -> AsyncGenerator[ModelEvent, None]:
        loop = asyncio.get_running_loop()
        n = self._network
        wait = n.first_event_timeout if self._stream else n.first_event_timeout + n.idle_timeout
        deadline = loop.time() + wait
        assembler = ChatAssembler(self._http.secrets)
        async with self._http.post(self.url, body, self._headers, deadline=deadline) as response:
            ctype = response.headers.get("content-type", "")
            if not self._stream or ("json" in ctype and "event-stream" not in ctype):
                # Also taken when a server ignores stream=true and answers in one JSON body.
                data = await self._http.read_json(response, deadline=deadline)
                for event in assembler.feed_response(data):
                    yield event
            else:
                sse = self._http.iter_sse(response, deadline=deadline, until="[DONE]")
                received = False
                async with aclosing(sse):
                    async for message in sse:
                        received = True
                        if message.data.strip() == "[DONE]":
                            continue
                        chunk = self._parse(message.data, message.event)
                        if chunk is not None:
                            for event in assembler.feed_chunk(chunk):
                                yield event
                if not received and "event-stream" not in ctype:
                    # An HTML login page or the like, not a cut stream: retrying will not help.
                    raise ProviderError(
                        f"model API protocol error: {self.url} answered with "
                        f"{ctype or 'no content type'}, not an event stream",
                        kind="protocol",
                        retryable=False,
                        hint=hint_for("protocol"),
                    )
        for event in assembler.finish():
            yield event

    def _parse(self, data: str, event: str) -> dict[str, Any] | None:
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
