"""httpx plumbing shared by the remote providers: one pooled client, deadlines, error mapping.

:class:`HttpClient` sends a POST and hands back the response only if it succeeded; every failure
(HTTP error status, refused connection, timeout, a stream cut mid-body) comes out as a
:class:`~mcode.errors.ProviderError` whose text has been scrubbed of secrets.

Timeouts follow :class:`~mcode.providers.network.NetworkSettings`: httpx enforces the connect
timeout; the first-event deadline (headers plus the first SSE event) and the idle gap between
reads are enforced here with ``asyncio.timeout``, scoped to each read only, so time the caller
spends between events never counts and a deadline never fires inside the caller's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import ssl
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from mcode.errors import ProviderError
from mcode.providers.backoff import parse_retry_after
from mcode.providers.classify import classify_status, error_message_from_body, hint_for
from mcode.providers.network import NetworkSettings
from mcode.providers.sse import SSEEvent, SSEParser, SSETooLarge
from mcode.secrets import scrub

# httpx is imported by the methods that use it, with the first request, not with this module:
# it is ~100 ms of the TUI's start before its first frame (tests/bench/tui.py).
if TYPE_CHECKING:
    import httpx

__all__ = ["HttpClient", "bare_url", "provider_secrets"]

_ERROR_BODY_LIMIT = 64 * 1024
# A whole (non-streamed) answer is a few KB to a few MB; a body past this is not an answer.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_SECRET_WORDS = ("key", "token", "auth", "secret", "sig", "pass")


def provider_secrets(
    api_key: str | None, url: str, extra_headers: Mapping[str, str] | None = None
) -> list[str]:
    """What a provider must scrub from its errors: the key, credential-like extra headers, and
    the credentials a URL may carry (``https://user:password@host``, ``?token=...``): the URL is
    quoted in every connection error."""
    parts = urlsplit(url)
    found = [api_key, parts.username, parts.password]
    found += [v for k, v in (extra_headers or {}).items() if _secretish(k)]
    found += [v for k, v in parse_qsl(parts.query) if _secretish(k)]
    return [s for s in found if s]


def _secretish(name: str) -> bool:
    return any(w in name.lower() for w in _SECRET_WORDS)


def bare_url(url: str) -> str:
    """``url`` without user info or query: what may be stored or shown as an identity."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _refused(error: BaseException) -> bool:
    """Whether a connection error was a refusal (ECONNREFUSED) somewhere down its chain; httpx
    wraps the OSError, and one per address tried when a name resolves to several."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
            return True
        todo += [x for x in (e.__cause__, e.__context__) if x is not None]
        todo += list(getattr(e, "exceptions", ()))
    return False


def _shown(url: str) -> str:
    """``url`` without its user info, to quote in a message (credential-like query values are
    scrubbed with the other secrets)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_tls_lock = threading.Lock()
_tls: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The process's one TLS context for model APIs, made on first use as httpx makes its
    default one (certifi's CA bundle; ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set). Loading
    the bundle takes 50-250 ms, which each new client (every task of an editor server, every
    session) paid again; a context can be shared by clients and threads."""
    import httpx

    global _tls
    with _tls_lock:
        if _tls is None:
            _tls = httpx.create_ssl_context()
        return _tls


class HttpClient:
    """A lazily created ``httpx.AsyncClient`` reused across calls (connection reuse).

    ``transport`` replaces httpx's network transport (tests may pass one; the default talks to
    the network). ``secrets`` are scrubbed from every error message. Close with :meth:`aclose`.
    The client belongs to the event loop that first used it; :meth:`warm` makes it ahead of the
    first request, off the loop.
    """

    def __init__(
        self,
        *,
        network: NetworkSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        secrets: Iterable[str | None] = (),
    ) -> None:
        self.network = network
        self._transport = transport
        self.secrets = tuple(s for s in secrets if s)
        self._client: httpx.AsyncClient | None = None
        self._urls: dict[str, httpx.URL] = {}  # each URL posted to, parsed

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> httpx.AsyncClient:
        import httpx

        n = self.network
        # read/write are None on purpose: the deadlines below replace them (httpx's read
        # timeout would also cut the wait for headers at the idle gap, not the first-event one).
        timeout = httpx.Timeout(
            connect=n.connect_timeout, read=None, write=None, pool=n.connect_timeout
        )
        if self._transport is not None:
            return httpx.AsyncClient(transport=self._transport, timeout=timeout)
        return httpx.AsyncClient(verify=tls_context(), timeout=timeout)

    async def warm(self) -> None:
        """Make the client now, in a thread: the first one of a process costs 100-400 ms (the
        imports of its transport and TLS, the CA bundle loaded), which the first request would
        otherwise wait for on the event loop. A request that comes meanwhile makes its own
        client; this one is then closed unused. (Making a client binds it to no loop yet.)"""
        if self._client is not None:
            return
        client = await asyncio.to_thread(self._new_client)
        if self._client is None:
            self._client = client
        else:
            await client.aclose()

    async def aclose(self) -> None:
        """Close pooled connections. The next request opens a new client."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def error(
        self, message: str, kind: str, retryable: bool, *, hint: str = "", **kw: Any
    ) -> ProviderError:
        """A ProviderError with a scrubbed message and ``hint`` (default: the one for ``kind``)."""
        return ProviderError(
            scrub(message, self.secrets),
            kind=kind,
            retryable=retryable,
            hint=scrub(hint or hint_for(kind), self.secrets),
            **kw,
        )

    @contextlib.asynccontextmanager
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, deadline: float
    ) -> AsyncIterator[httpx.Response]:
        """POST ``body`` and yield the response, its body not yet read.

        ``deadline`` (``loop.time()`` based) bounds the wait for the response headers. An error
        status is read (up to 64 KB) and raised as a classified ProviderError. The response is
        closed when the block exits.
        """
        import httpx

        try:
            # Parsed once: httpx parses a str URL afresh for every request (~35 us of its
            # ~80 us build_request, measured).
            target = self._urls.get(url)
            if target is None:
                target = self._urls[url] = httpx.URL(url)
            request = self._get_client().build_request(
                "POST", target, content=body, headers=headers
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            raise self.error(f"invalid model API URL {url!r}: {e}", "connection", False) from None
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._get_client().send(request, stream=True)
        except TimeoutError:
            raise self.error(
                f"no response from {url} within {self.network.first_event_timeout:g}s "
                "(first-event timeout)",
                "timeout",
                True,
            ) from None
        except httpx.UnsupportedProtocol as e:
            raise self.error(f"invalid model API URL {url!r}: {e}", "connection", False) from None
        except httpx.TimeoutException as e:
            raise self.error(
                f"could not connect to {url}: {type(e).__name__} {e}", "connection", True
            ) from None
        except httpx.TransportError as e:
            if _refused(e) and _is_loopback(url):
                # Nothing listens on this machine's port: no wait makes a server appear (a
                # remote host refusing may be a restarting load balancer, and is retried).
                raise self.error(
                    f"could not connect to {_shown(url)}: connection refused (nothing is "
                    "listening on that port)",
                    "connection",
                    False,
                    hint="start the model server it should reach, or point --base-url at one "
                    "that is running",
                ) from None
            raise self.error(
                f"could not reach {url}: {type(e).__name__} {e}", "connection", True
            ) from None
        try:
            if 300 <= response.status_code < 400:
                raise self._redirected(url, response)
            if response.status_code >= 400:
                raw = await self._read_capped(response, _ERROR_BODY_LIMIT)
                err = classify_status(
                    response.status_code,
                    error_message_from_body(raw),
                    retry_after=parse_retry_after(response.headers),
                    secrets=self.secrets,
                )
                if not err.retryable:  # the message the user ends with says where it failed
                    err.message = f"{err.message} (POST {_shown(url)})"
                    err.args = (err.message,)
                raise err
            yield response
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()
            # httpx's response and its stream refer to each other, so the request (and its
            # body, megabytes on a long session) would live until a full garbage collection.
            response.stream = httpx.ByteStream(b"")

    def _redirected(self, url: str, response: httpx.Response) -> ProviderError:
        # Not followed: httpx would resend a 301/302 POST as a GET, and the key header would go
        # along to whatever host the redirect names. Usually http:// for https:// or a moved API.
        target = response.headers.get("location") or "(no Location header)"
        return self.error(
            f"model API error: HTTP {response.status_code} redirect from {url} to {target}: "
            "set the base URL to the address it redirects to",
            "connection",
            False,
            status=response.status_code,
        )

    async def _read_capped(self, response: httpx.Response, limit: int) -> bytes:
        import httpx

        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.network.idle_timeout):
                async for chunk in response.aiter_bytes():
                    parts.append(chunk)
                    size += len(chunk)
                    if size >= limit:
                        break
        except (TimeoutError, httpx.HTTPError):
            pass  # the status alone still classifies the error
        return b"".join(parts)[:limit]

    async def _drain(self, chunks: AsyncIterator[bytes]) -> None:
        import httpx

        try:
            async with asyncio.timeout(min(1.0, self.network.idle_timeout)):
                async for _ in chunks:
                    pass
        except (TimeoutError, httpx.HTTPError):
            pass  # the answer is complete; only connection reuse is lost

    def _undecodable(self, e: httpx.DecodingError) -> ProviderError:
        # A body its Content-Encoding does not describe (a proxy that labels plain text as gzip,
        # or a corrupt stream): httpx raises this apart from TransportError.
        return self.error(f"could not decode the answer's body: {e}", "protocol", True)

    async def read_json(self, response: httpx.Response, *, deadline: float) -> Any:
        """Read the whole body by ``deadline`` and parse it as JSON (protocol error if not)."""
        import httpx

        try:
            async with asyncio.timeout_at(deadline):
                raw = await self._read_whole(response)
        except TimeoutError:
            raise self.error(
                "the model API did not finish its answer in time", "timeout", True
            ) from None
        except httpx.TransportError as e:
            raise self.error(
                f"the connection dropped while reading the answer: {e}", "truncated", True
            ) from None
        except httpx.DecodingError as e:
            raise self._undecodable(e) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise self.error(
                f"the model API sent invalid JSON: {raw[:200].decode('utf-8', 'replace')!r}",
                "protocol",
                True,
            ) from None

    async def _read_whole(self, response: httpx.Response) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise self.error(
                    f"model API protocol error: the answer is over {MAX_ANSWER_BYTES} bytes",
                    "protocol",
                    False,
                )
            parts.append(chunk)
        return b"".join(parts)

    async def iter_sse(
        self,
        response: httpx.Response,
        *,
        deadline: float,
        until: str | None = None,
        until_event: str | None = None,
    ) -> AsyncGenerator[SSEEvent, None]:
        """Yield the response's SSE events. The first must arrive by ``deadline``; after that,
        each read must come within ``idle_timeout`` (keep-alive comments count as activity).
        Comments before the first event count too (proxies send them while a model thinks
        before its first token), each allowing another ``idle_timeout`` of silence, but the
        first event must still come within ``idle_timeout`` after ``deadline``: a chatty proxy
        in front of a hung model must not keep a call waiting for ever.
        Ends quietly at EOF; whether the answer was complete is the caller's call.

        After an event whose data is ``until`` (e.g. ``"[DONE]"``) or whose name is
        ``until_event`` (e.g. ``"message_stop"``) the rest of the body is read for at most a
        second and dropped: a fully read response lets httpx reuse the connection.
        """
        import httpx

        idle = self.network.idle_timeout
        parser = SSEParser()
        chunks = response.aiter_bytes().__aiter__()
        first = True
        loop = asyncio.get_running_loop()
        latest_first = deadline + idle  # the last moment a first event may come
        try:
            while True:
                try:
                    if first:
                        async with asyncio.timeout_at(deadline):
                            chunk = await chunks.__anext__()
                    else:
                        async with asyncio.timeout(idle):
                            chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if first:
                        raise self.error(
                            f"no answer within {self.network.first_event_timeout:g}s "
                            "(first-event timeout)",
                            "timeout",
                            True,
                        ) from None
                    raise self.error(
                        f"the answer stream went silent for {idle:g}s (idle timeout)",
                        "timeout",
                        True,
                    ) from None
                except httpx.TransportError as e:
                    raise self.error(
                        f"the connection dropped mid-answer: {type(e).__name__} {e}",
                        "truncated",
                        True,
                    ) from None
                except httpx.DecodingError as e:
                    raise self._undecodable(e) from None
                try:
                    events = parser.feed(chunk)
                except SSETooLarge as e:
                    raise self.error(
                        f"model API protocol error: the answer stream sent {e} without ending it",
                        "protocol",
                        False,
                    ) from None
                if first and not events and chunk:
                    # Bytes but no event yet: a keep-alive comment. The server is alive.
                    deadline = max(deadline, min(latest_first, loop.time() + idle))
                for event in events:
                    first = False
                    yield event
                    if (until is not None and event.data.strip() == until) or (
                        until_event is not None and event.event == until_event
                    ):
                        await self._drain(chunks)
                        return
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
