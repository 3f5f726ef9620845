"""What every HTTP provider does the same way, whatever its wire format.

:class:`RemoteProvider` builds the request bytes once, sends them through :func:`retrying`, reads
the answer as an event stream or (when not streaming, or when a server ignores ``stream: true``)
as one JSON body, and passes each attempt's events through a :class:`LeakGuard`. A wire format
supplies three things: :meth:`RemoteProvider.build_body`, an :class:`Assembler` for its answers,
and :meth:`RemoteProvider.parse_event` for one SSE event's data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from mcode import __version__
from mcode.errors import ProviderError
from mcode.messages import ToolSpec
from mcode.providers.base import ModelEvent, ModelInfo, ModelRequest
from mcode.providers.http import HttpClient, provider_secrets
from mcode.providers.leaked import LeakGuard
from mcode.providers.network import NetworkSettings
from mcode.providers.retry import retrying

if TYPE_CHECKING:  # httpx is imported with the first request (mcode/providers/http.py)
    import httpx

__all__ = ["Assembler", "RemoteProvider"]


class Assembler(Protocol):
    """Accumulates one answer: ``feed`` each parsed stream item, or ``feed_whole`` a complete
    non-streamed body; each returns the events to show now. ``finish`` returns the last events
    (ending with the Completion) or raises a retryable error for an answer that never finished."""

    def feed(self, item: dict[str, Any]) -> list[ModelEvent]: ...

    def feed_whole(self, data: Any) -> list[ModelEvent]: ...

    def finish(self) -> list[ModelEvent]: ...


class RemoteProvider:
    """Base of the HTTP providers. One instance may serve concurrent calls; it must stay on the
    event loop that first used it."""

    # How the stream says it is over: a data sentinel (Chat Completions' "[DONE]") or an event
    # name (Messages' "message_stop"); the rest of the body is drained so the connection is reused.
    sse_until: ClassVar[str | None] = None
    sse_until_event: ClassVar[str | None] = None
    protocol_hint: ClassVar[str] = ""

    def __init__(
        self,
        *,
        model: str,
        url: str,
        api_key: str | None,
        info: ModelInfo,
        network: NetworkSettings,
        transport: httpx.AsyncBaseTransport | None,
        stream: bool,
        headers: Mapping[str, str],
        extra_headers: Mapping[str, str] | None,
    ) -> None:
        self.info = info
        self.model = model
        self.url = url
        self._network = network
        self._stream = stream
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": f"mcode/{__version__}",
            **headers,
            **(extra_headers or {}),
        }
        secrets = provider_secrets(api_key, url, dict(extra_headers or {}))
        self._http = HttpClient(network=network, transport=transport, secrets=secrets)

    # ------------------------------------------------------------------ the wire format's part

    def build_body(self, request: ModelRequest) -> bytes:
        """The exact bytes :meth:`stream` sends for ``request``."""
        raise NotImplementedError

    def new_assembler(self) -> Assembler:
        raise NotImplementedError

    def parse_event(self, data: str, event: str) -> dict[str, Any] | None:
        """One SSE event's data as an object for the assembler; ``None`` to skip it."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the shared part

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

    async def warm(self) -> None:
        await self._http.warm()

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
        n = self._network
        wait = n.first_event_timeout if self._stream else n.first_event_timeout + n.idle_timeout
        deadline = asyncio.get_running_loop().time() + wait
        assembler = self.new_assembler()
        async with self._http.post(self.url, body, self._headers, deadline=deadline) as response:
            ctype = response.headers.get("content-type", "")
            if not self._stream or ("json" in ctype and "event-stream" not in ctype):
                # Also taken when a server ignores stream=true and answers in one JSON body
                # (MiniMax sends its base_resp errors that way).
                data = await self._http.read_json(response, deadline=deadline)
                for event in assembler.feed_whole(data):
                    yield event
            else:
                sse = self._http.iter_sse(
                    response,
                    deadline=deadline,
                    until=self.sse_until,
                    until_event=self.sse_until_event,
                )
                received = False
                async with aclosing(sse):
                    async for message in sse:
                        received = True
                        if self.sse_until is not None and message.data.strip() == self.sse_until:
                            continue
                        item = self.parse_event(message.data, message.event)
                        if item is not None:
                            for event in assembler.feed(item):
                                yield event
                if not received and "event-stream" not in ctype:
                    # An HTML login page or the like, not a cut stream: retrying will not help.
                    raise ProviderError(
                        f"model API protocol error: {self.url} answered with "
                        f"{ctype or 'no content type'}, not an event stream",
                        kind="protocol",
                        retryable=False,
                        hint=self.protocol_hint,
                    )
        for event in assembler.finish():
            yield event
