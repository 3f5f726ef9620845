"""Network settings, error classification and the retry loop shared by every remote provider.

A provider raises :class:`~mcode.errors.ProviderError` for each failed attempt; :func:`retrying`
decides whether to send the request again, reports the decision as a ``Retrying`` event, waits
(exponential backoff with full jitter, or the server's ``Retry-After``) and tries again, up to
``NetworkSettings.max_retries`` times.

Every message that leaves this module passes through :func:`scrub`: API keys never reach an
exception, an event or a log.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from mcode.errors import ProviderError
from mcode.providers.base import ModelEvent, Retrying
from mcode.secrets import scrub

__all__ = [
    "RETRY_AFTER_CAP",
    "NetworkSettings",
    "backoff_delay",
    "classify_body_error",
    "classify_minimax_code",
    "classify_status",
    "error_message_from_body",
    "hint_for",
    "looks_like_context_overflow",
    "parse_retry_after",
    "retrying",
]

RETRY_AFTER_CAP = 600.0  # a server asking for more than 10 minutes is treated as asking for 10
_MESSAGE_LIMIT = 500


@dataclass(slots=True)
class NetworkSettings:
    """Timeouts (seconds) and retry policy for one provider.

    ``first_event_timeout`` bounds the wait from sending a request to its first SSE event (or, when
    not streaming, to the whole answer together with ``idle_timeout``); ``idle_timeout`` bounds the
    silence between two reads of a streaming answer (long thinking can be silent, hence 300 s).
    ``max_retries`` counts retries, not attempts: 5 means up to 6 requests.
    """

    connect_timeout: float = 10.0
    first_event_timeout: float = 120.0
    idle_timeout: float = 300.0
    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0


# ----------------------------------------------------------------------------- secrets


def _trim(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- backoff


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``Retry-After`` (seconds or
    an HTTP date); ``None`` when absent or unreadable. Never negative."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(
    attempt: int,
    settings: NetworkSettings,
    retry_after: float | None = None,
    *,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    The server's ``Retry-After`` wins when given (even above ``backoff_max``, up to
    :data:`RETRY_AFTER_CAP`); otherwise full jitter: uniform in ``[0, min(max, base * 2**(n-1))]``,
    which spreads a crowd of clients better than a fixed schedule.
    """
    if retry_after is not None:
        return min(max(0.0, retry_after), RETRY_AFTER_CAP)
    ceiling = min(settings.backoff_max, settings.backoff_base * (2 ** max(0, attempt - 1)))
    return max(0.0, ceiling) * rand()


# ----------------------------------------------------------------------------- classification

_OVERFLOW_MARKERS = (
    "context_length_exceeded",
    "too long",
    "maximum context",
    "context length",
    "context window",
    "exceeds the model",
)


def looks_like_context_overflow(text: str) -> bool:
    """Whether an error text says the input is longer than the model accepts."""
    low = text.lower()
    return any(m in low for m in _OVERFLOW_MARKERS)


_HINTS = {
    "rate_limit": "the API is rate-limiting this key: wait a minute, or run fewer agents at once",
    "overloaded": "the provider is overloaded: try again in a few minutes",
    "server": "the provider had an internal error: try again later",
    "connection": "check your network connection and the provider's base URL",
    "timeout": "the model did not answer in time: try again, or raise [network] "
    "first_event_timeout / idle_timeout",
    "truncated": "the connection dropped in the middle of the answer: try again",
    "auth": "check the API key in the provider's environment variable (e.g. MINIMAX_API_KEY, "
    "OPENAI_API_KEY) and that it belongs to this base URL's region",
    "billing": "check the account's balance or plan with the provider",
    "context_overflow": "the conversation no longer fits the model's context: compact it or "
    "start a new session",
    "bad_request": "the provider rejected the request: check the model name and options, or "
    "report this as an mcode bug",
    "content_filter": "the provider's content filter blocked this request: rephrase it",
    "protocol": "the server's answer was not valid OpenAI-compatible output: check that the "
    "base URL points at an OpenAI-compatible API",
}


def hint_for(kind: str) -> str:
    """The one-sentence advice shown with a ProviderError of this kind."""
    return _HINTS.get(kind, "")


def _error(
    message: str,
    kind: str,
    retryable: bool,
    *,
    status: int | None = None,
    retry_after: float | None = None,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    secrets = tuple(secrets)
    return ProviderError(
        scrub(message, secrets),
        kind=kind,
        retryable=retryable,
        status=status,
        retry_after=retry_after,
        hint=hint_for(kind),
    )


_STATUS_KINDS: dict[int, tuple[str, bool, str]] = {
    401: ("auth", False, "authentication failed"),
    402: ("billing", False, "payment required"),
    403: ("auth", False, "access denied"),
    404: ("bad_request", False, "not found (check the base URL and model name)"),
    408: ("timeout", True, "request timeout"),
    413: ("context_overflow", False, "request too large"),
    429: ("rate_limit", True, "rate limited"),
    500: ("server", True, "server error"),
    502: ("server", True, "bad gateway"),
    503: ("server", True, "service unavailable"),
    504: ("server", True, "gateway timeout"),
    529: ("overloaded", True, "overloaded"),
}


def classify_status(
    status: int,
    server_message: str = "",
    *,
    retry_after: float | None = None,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    """The ProviderError for an HTTP error status, carrying the server's own message (trimmed,
    scrubbed). A 400 whose text says the input is too long becomes ``context_overflow``."""
    kind, retryable, what = _STATUS_KINDS.get(status, ("", False, ""))
    if not kind:
        if 500 <= status < 600:
            kind, retryable, what = "server", True, "server error"
        else:
            kind, retryable, what = "bad_request", False, "bad request"
    if status in (400, 422) and looks_like_context_overflow(server_message):
        kind, retryable, what = "context_overflow", False, "input too long for the model"
    message = f"model API error: HTTP {status} {what}"
    if server_message:
        message += f": {_trim(server_message)}"
    return _error(message, kind, retryable, status=status, retry_after=retry_after, secrets=secrets)


def error_message_from_body(body: bytes | str) -> str:
    """The human part of an error response: ``error.message``, MiniMax ``base_resp.status_msg``,
    a FastAPI ``detail``, or else the raw text (trimmed)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return _trim(text)
    return _trim(_describe(data))


def _describe(data: Any) -> str:
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            parts = [str(err.get("message") or "")]
            for key in ("type", "code"):
                if err.get(key) not in (None, ""):
                    parts.append(f"[{key}: {err[key]}]")
            text = " ".join(p for p in parts if p)
            if text:
                return text
        elif isinstance(err, str) and err:
            return err
        base = data.get("base_resp")
        if isinstance(base, dict) and base.get("status_code"):
            return f"{base.get('status_msg', '')} [code: {base['status_code']}]".strip()
        for key in ("message", "detail"):
            if data.get(key):
                value = data[key]
                return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(data, ensure_ascii=False)


_RETRYABLE_WORDS = {
    "overloaded": ("overload", "529", "capacity"),
    "rate_limit": ("rate limit", "rate_limit", "ratelimit", "too many requests", "429"),
    "server": (
        "server_error",
        "server error",
        "internal",
        "unavailable",
        "timeout",
        "timed out",
        "500",
        "502",
        "503",
        "504",
    ),
}


def classify_body_error(error: Any, *, secrets: Iterable[str | None] = ()) -> ProviderError:
    """The ProviderError for an ``{"error": ...}`` object received inside a 200 response.

    A numeric HTTP-like status in it is classified like an HTTP error; otherwise it is retryable
    only if its text looks like overload, rate limiting or a server fault.
    """
    secrets = tuple(secrets)
    text = _describe({"error": error})
    status = None
    if isinstance(error, dict):
        for key in ("status", "status_code", "code"):
            value = error.get(key)
            if isinstance(value, int) and 400 <= value < 600:
                status = value
                break
    if status is not None:
        err = classify_status(status, text, secrets=secrets)
        err.message = scrub(f"model API error inside the stream: {_trim(text)}", secrets)
        return err
    message = f"model API error inside the stream: {_trim(text)}"
    if looks_like_context_overflow(text):
        return _error(message, "context_overflow", False, secrets=secrets)
    low = text.lower()
    for kind, words in _RETRYABLE_WORDS.items():
        if any(w in low for w in words):
            return _error(message, kind, True, secrets=secrets)
    if any(w in low for w in ("api key", "api_key", "unauthorized", "authentication")):
        return _error(message, "auth", False, secrets=secrets)
    return _error(message, "server", False, secrets=secrets)


# Spine II classifies MiniMax codes fully; these follow MINIMAX_API.md "Errors and retries".
_MINIMAX_CODES: dict[int, tuple[str, bool]] = {
    1000: ("server", True),
    1001: ("timeout", True),
    1002: ("rate_limit", True),
    1024: ("server", True),
    1033: ("server", True),
    1039: ("rate_limit", True),
    2045: ("rate_limit", True),
    1004: ("auth", False),
    2049: ("auth", False),
    1008: ("billing", False),
    1028: ("billing", False),
    1030: ("billing", False),
    2056: ("billing", False),
    2061: ("billing", False),
    1026: ("content_filter", False),
    1027: ("content_filter", False),
    2013: ("bad_request", False),
}


def classify_minimax_code(
    code: int, status_msg: str = "", *, secrets: Iterable[str | None] = ()
) -> ProviderError:
    """The ProviderError for a MiniMax ``base_resp.status_code`` other than 0."""
    kind, retryable = _MINIMAX_CODES.get(code, ("server", False))
    if code == 2013 and looks_like_context_overflow(status_msg):
        kind = "context_overflow"
    message = f"model API error: MiniMax code {code}"
    if status_msg:
        message += f": {_trim(status_msg)}"
    return _error(message, kind, retryable, secrets=secrets)


# ----------------------------------------------------------------------------- the loop


async def retrying(
    attempt: Callable[[], AsyncGenerator[ModelEvent, None]],
    settings: NetworkSettings,
    *,
    secrets: Iterable[str | None] = (),
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> AsyncGenerator[ModelEvent, None]:
    """Run ``attempt()`` (one model call, as an async iterator of events) until it completes.

    A retryable ProviderError leads to a ``Retrying`` event, a wait and a fresh ``attempt()``;
    events already yielded by the failed attempt are void (front ends drop them on ``Retrying``).
    After ``settings.max_retries`` retries, or on a non-retryable error, the last error is raised
    with the number of attempts in its message.
    """
    secrets = tuple(secrets)
    retries = 0
    while True:
        try:
            # aclosing: if our consumer stops early, the attempt (and its open response) is
            # closed now, not whenever the garbage collector gets to it.
            async with aclosing(attempt()) as events:
                async for event in events:
                    yield event
            return
        except ProviderError as err:
            if not err.retryable:
                raise
            if retries >= settings.max_retries:
                tries = retries + 1
                err.message = f"{err.message} (gave up after {tries} attempt{'s' * (tries > 1)})"
                err.args = (err.message,)
                raise
            retries += 1
            wait = backoff_delay(retries, settings, err.retry_after)
            yield Retrying(retries, scrub(_trim(err.message, 300), secrets), wait, err.kind)
            await sleep(wait)
