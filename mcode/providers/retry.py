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
import datetime
import email.utils
import html
import json
import random
import re
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, NamedTuple

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
    "minimax_code_in",
    "parse_retry_after",
    "raise_for_base_resp",
    "retrying",
]

# The longest Retry-After waited for. A server asking for more (a daily quota) is not retried: the
# error says when to try again instead of the session hanging for hours.
RETRY_AFTER_CAP = 600.0
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
    "context_overflow": "the request does not fit the model's context even after mcode "
    "compacted the conversation: shorten the prompt or what the tools return, set "
    "--context-window to the model's real window, or start a new session",
    "bad_request": "the provider rejected the request: check the model name and options, or "
    "report this as an mcode bug",
    "content_filter": "the provider's content filter blocked this request: rephrase it",
    "protocol": "the server's answer was not valid OpenAI-compatible output: check that the "
    "base URL points at an OpenAI-compatible API",
    "malformed_tool_call": "the model kept writing tool calls as plain text instead of calling "
    "the tools: try again, rephrase the request or use another model (a self-hosted vLLM or "
    "SGLang server needs its tool-call parser enabled, e.g. --tool-call-parser minimax_m2)",
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
    hint: str = "",
) -> ProviderError:
    secrets = tuple(secrets)
    return ProviderError(
        scrub(message, secrets),
        kind=kind,
        retryable=retryable,
        status=status,
        retry_after=retry_after,
        hint=scrub(hint or hint_for(kind), secrets),
    )


# Retried: 408, 409 (a conflict such as a lock timeout clears on its own), 429 and 5xx except
# 501 and 505, which say the server will never do this request; every other 4xx is final.
_STATUS_KINDS: dict[int, tuple[str, bool, str]] = {
    401: ("auth", False, "authentication failed"),
    402: ("billing", False, "payment required"),
    403: ("auth", False, "access denied"),
    404: ("bad_request", False, "not found (check the base URL and model name)"),
    408: ("timeout", True, "request timeout"),
    409: ("server", True, "conflict"),
    413: ("context_overflow", False, "request too large"),
    429: ("rate_limit", True, "rate limited"),
    500: ("server", True, "server error"),
    501: ("bad_request", False, "not implemented"),
    502: ("server", True, "bad gateway"),
    503: ("server", True, "service unavailable"),
    504: ("server", True, "gateway timeout"),
    505: ("bad_request", False, "HTTP version not supported"),
    529: ("overloaded", True, "overloaded"),
}
# Statuses whose advice is more precise than their kind's.
_STATUS_HINTS = {
    501: "the server at this URL does not implement this API: check --base-url and --provider "
    "(openai speaks Chat Completions at BASE/chat/completions, anthropic Messages at "
    "BASE/v1/messages)",
    505: "the server does not accept this HTTP version: check the base URL's scheme "
    "(http:// or https://) and any proxy in between",
}


def classify_status(
    status: int,
    server_message: str = "",
    *,
    retry_after: float | None = None,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    """The ProviderError for an HTTP error status, carrying the server's own message (trimmed,
    scrubbed). A 400 whose text says the input is too long becomes ``context_overflow``.

    When the body carried a MiniMax error code (``server_message`` as made by
    :func:`error_message_from_body`), a known code decides: it is more specific than the status
    (MiniMax sends an exhausted plan window as HTTP 429, which must not be retried)."""
    kind, retryable, what = _STATUS_KINDS.get(status, ("", False, ""))
    if not kind:
        if 500 <= status < 600:
            kind, retryable, what = "server", True, "server error"
        else:
            kind, retryable, what = "bad_request", False, "bad request"
    found = minimax_code_in(server_message)
    # A code mcode does not know is less specific than a transient status (a 503 with an odd
    # code is still worth another try), but says more than a bare 4xx.
    if found is not None and (found[0] in _MINIMAX_CODES or not retryable):
        code, status_msg = found
        return classify_minimax_code(
            code, status_msg, status=status, retry_after=retry_after, secrets=secrets
        )
    if status in (400, 422) and looks_like_context_overflow(server_message):
        kind, retryable, what = "context_overflow", False, "input too long for the model"
    message = f"model API error: HTTP {status} {what}"
    if server_message:
        message += f": {_trim(server_message)}"
    return _error(
        message,
        kind,
        retryable,
        status=status,
        retry_after=retry_after,
        secrets=secrets,
        hint=_STATUS_HINTS.get(status, ""),
    )


def error_message_from_body(body: bytes | str) -> str:
    """The human part of an error response: ``error.message``, MiniMax ``base_resp.status_msg``
    (as ``MiniMax code N: message``), a FastAPI ``detail``, or else the raw text (trimmed)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return _trim(_html_title(text) or text)
    return _trim(_describe(data))


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _html_title(text: str) -> str:
    """The title of a gateway's HTML error page (Cloudflare, nginx): its markup is noise."""
    if "<html" not in text[:1000].lower():
        return ""
    m = _TITLE.search(text)
    return html.unescape(m.group(1)).strip() if m else ""


def _describe(data: Any) -> str:
    if isinstance(data, dict):
        base = _minimax_base_resp(data)
        if base is not None:
            # Code first, in the form minimax_code_in() reads back: trimming a long message
            # must not cut the code off.
            code, status_msg = base
            return f"MiniMax code {code}: {status_msg}".rstrip(": ")
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

    A MiniMax code in it (a ``base_resp``, or MiniMax's ``message (2056)`` form) is classified
    by :func:`classify_minimax_code`; a numeric HTTP-like status is classified like an HTTP
    error; otherwise it is retryable only if its text looks like overload, rate limiting or a
    server fault.
    """
    secrets = tuple(secrets)
    if isinstance(error, dict):
        base = _minimax_base_resp(error)
        if base is not None:
            return classify_minimax_code(*base, secrets=secrets)
    text = _describe({"error": error})
    found = minimax_code_in(text)
    if found is not None:
        return classify_minimax_code(*found, secrets=secrets)
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


# --- MiniMax ``base_resp.status_code`` (MINIMAX_API.md "Errors and retries"; the meanings follow
# MiniMax's error-code list). MiniMax sends these on every wire it has: a ``base_resp`` object in
# a 200 body, in the last SSE chunk or in an HTTP error body, and on its Anthropic-compatible
# endpoint as ``"message (2056)"`` inside an ordinary error object.

_MINIMAX_DOCS = "https://platform.minimax.io/docs/api-reference/errorcode"


class _MiniMaxCode(NamedTuple):
    kind: str
    retryable: bool
    what: str  # what MiniMax means, in a few words
    hint: str = ""  # what the user should do; "" = the kind's general hint


_KEY_REGION = (
    "a key from platform.minimax.io works only with api.minimax.io, one from "
    "platform.minimaxi.com only with api.minimaxi.com"
)

_MINIMAX_CODES: dict[int, _MiniMaxCode] = {
    # Transient: sent again with backoff.
    1000: _MiniMaxCode("server", True, "unknown error on MiniMax's side"),
    1001: _MiniMaxCode("timeout", True, "request timed out on MiniMax's side"),
    1002: _MiniMaxCode("rate_limit", True, "requests-per-minute limit reached"),
    1024: _MiniMaxCode("server", True, "internal error"),
    1033: _MiniMaxCode("server", True, "system or downstream service error"),
    1039: _MiniMaxCode("rate_limit", True, "tokens-per-minute limit reached"),
    2045: _MiniMaxCode("rate_limit", True, "request rate rising too fast"),
    # The key: sending again cannot help.
    1004: _MiniMaxCode(
        "auth",
        False,
        "not authorized",
        f"MiniMax did not accept the API key: check MINIMAX_API_KEY ({_KEY_REGION}) and that "
        "the key is still active in the MiniMax console",
    ),
    2049: _MiniMaxCode(
        "auth",
        False,
        "invalid API key",
        "the API key is not valid here: copy it again from the MiniMax console into "
        f"MINIMAX_API_KEY, and check the base URL's region ({_KEY_REGION})",
    ),
    # Money and plans: the user has to act.
    1008: _MiniMaxCode(
        "billing",
        False,
        "insufficient balance",
        "the MiniMax account balance is used up: top it up in the MiniMax console, or use a "
        "plan key (sk-cp-...)",
    ),
    1028: _MiniMaxCode(
        "billing",
        False,
        "quota used up",
        "the MiniMax account has no quota left for this request: check usage and balance in the "
        "MiniMax console, then top up or upgrade the plan",
    ),
    1030: _MiniMaxCode(
        "billing",
        False,
        "quota used up",
        "the MiniMax account has no quota left for this request: check usage and balance in the "
        "MiniMax console, then top up or upgrade the plan",
    ),
    2061: _MiniMaxCode(
        "billing",
        False,
        "model not included in the current plan",
        "your MiniMax plan does not include this model: choose one it covers with --model (the "
        "plan's page in the MiniMax console lists them), or upgrade the plan",
    ),
    2056: _MiniMaxCode("billing", False, "plan usage limit reached"),  # hint: _plan_window_hint
    # The request itself.
    2013: _MiniMaxCode(
        "bad_request",
        False,
        "invalid request parameters",
        "MiniMax rejected a parameter of the request: check the model name and the options in "
        "your config (thinking, max output tokens); if they look right, report this message as "
        "an mcode bug",
    ),
    1026: _MiniMaxCode(
        "content_filter",
        False,
        "input flagged by MiniMax's content filter",
        "MiniMax's content filter flagged something in the conversation (the request, or a file "
        "or command output the agent read): rephrase the request or keep that content out, in a "
        "new session if it is already in this one's history",
    ),
    1027: _MiniMaxCode(
        "content_filter",
        False,
        "answer blocked by MiniMax's content filter",
        "MiniMax's content filter blocked the model's answer: rephrase the request or ask for "
        "something different",
    ),
}

_CODE_FIRST = re.compile(r"MiniMax code (-?\d+)(?::\s*(.*))?", re.DOTALL)
# MiniMax's Anthropic-compatible endpoint ends error.message with the code: "... (2056)";
# _describe may have appended "[type: ...]" annotations after it.
_CODE_LAST = re.compile(r"\((\d{4})\)((?:\s*\[[^\]]*\])*)\s*$")


def minimax_code_in(text: str) -> tuple[int, str] | None:
    """``(code, message)`` when ``text`` (an error message, e.g. from
    :func:`error_message_from_body`) carries a MiniMax error code: written as ``MiniMax code N:
    message`` (our form for a ``base_resp``; any code) or ended with ``(N)`` (MiniMax's
    Anthropic-format errors; only codes in MINIMAX_API.md, since other servers may end a
    message with a number in parentheses too)."""
    m = _CODE_FIRST.match(text)
    if m:
        return int(m.group(1)), (m.group(2) or "").strip()
    m = _CODE_LAST.search(text)
    if m and int(m.group(1)) in _MINIMAX_CODES:
        return int(m.group(1)), " ".join((text[: m.start()] + m.group(2)).split())
    return None


def _minimax_base_resp(data: dict[str, Any]) -> tuple[int, str] | None:
    """``(status_code, status_msg)`` of a failed MiniMax ``base_resp`` in ``data``; None when
    there is none or it says success (0). An unreadable code counts as a failure (-1)."""
    base = data.get("base_resp")
    if not isinstance(base, dict):
        return None
    raw = base.get("status_code")
    try:
        code = int(raw or 0)
    except (TypeError, ValueError):
        code = -1
    if code == 0:
        return None
    return code, str(base.get("status_msg") or "")


def raise_for_base_resp(obj: dict[str, Any], *, secrets: Iterable[str | None] = ()) -> None:
    """Raise the classified ProviderError when ``obj`` carries a MiniMax ``base_resp`` whose
    ``status_code`` is not 0 (MiniMax reports errors that way inside an HTTP 200, on both APIs)."""
    base = obj.get("base_resp")
    if not isinstance(base, dict):
        return
    try:
        code = int(base.get("status_code") or 0)
    except (TypeError, ValueError):
        code = -1
    if code:
        raise classify_minimax_code(code, str(base.get("status_msg") or ""), secrets=secrets)


def classify_minimax_code(
    code: int,
    status_msg: str = "",
    *,
    status: int | None = None,
    retry_after: float | None = None,
    secrets: Iterable[str | None] = (),
    now: float | None = None,
) -> ProviderError:
    """The ProviderError for a MiniMax ``base_resp.status_code`` other than 0.

    The message names the code, what it means and MiniMax's own ``status_msg`` (trimmed,
    scrubbed); ``status`` is the HTTP status when the code came with one. Known codes follow
    MINIMAX_API.md: transient ones are retryable, the rest carry a hint saying what to do (for
    2056, when the plan window resets; ``now`` is for tests). A 2013 whose message says the input
    is too long is a ``context_overflow``. Unknown codes are not retried.
    """
    entry = _MINIMAX_CODES.get(code)
    if entry is None:
        entry = _MiniMaxCode(
            "bad_request" if status is not None and status < 500 else "server",
            False,
            "an error code mcode does not know",
            f"look the code up in MiniMax's error-code list ({_MINIMAX_DOCS}); if it is "
            "temporary, try again",
        )
    kind, retryable, what, hint = entry
    if code == 2013 and looks_like_context_overflow(status_msg):
        kind, what, hint = "context_overflow", "input too long for the model", ""
    elif code == 2056:
        hint = _plan_window_hint(status_msg, time.time() if now is None else now)
    where = f"HTTP {status}, " if status is not None else ""
    message = f"model API error: {where}MiniMax code {code} ({what})"
    if status_msg:
        message += f": {_trim(status_msg)}"
    return _error(
        message,
        kind,
        retryable,
        status=status,
        retry_after=retry_after if retryable else None,
        secrets=secrets,
        hint=hint,
    )


_RESET_AT = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?"
)
_RESET_IN = re.compile(r"\breset(?:s|ting)?\s+in\s+([^,;()]+)", re.IGNORECASE)


def _plan_window_hint(status_msg: str, now: float) -> str:
    """Advice for 2056 (the plan's usage window is exhausted): when it resets, if MiniMax said
    (``"..., resets at 2026-05-15T15:00:00Z"``), else that it resets on the plan's schedule."""
    after = "wait until then, or use a pay-as-you-go key (sk-api-...) meanwhile"
    when = _reset_time(status_msg, now)
    if when:
        return f"your MiniMax plan's usage limit is used up; it resets {when}: {after}"
    return (
        "your MiniMax plan's usage limit is used up; it resets on the plan's schedule (a rolling "
        "5-hour window, and a weekly limit on some plans; the MiniMax console shows when): "
        f"{after}"
    )


def _reset_time(status_msg: str, now: float) -> str:
    m = _RESET_AT.search(status_msg)
    if m:
        raw = m.group()
        iso = re.sub(r"\s*(?:Z|UTC|GMT)$", "+00:00", raw.strip())
        try:
            when = datetime.datetime.fromisoformat(iso)
        except ValueError:
            return f"at {raw}"
        if when.tzinfo is None:  # no zone given: say it the way MiniMax did
            return f"at {raw}"
        utc = when.astimezone(datetime.UTC)
        text = f"at {utc:%Y-%m-%d %H:%M} UTC"
        local = when.astimezone()
        if local.utcoffset() != datetime.timedelta(0):
            text += f" ({local:%Y-%m-%d %H:%M} your time)"
        left = when.timestamp() - now
        if left > 0:
            text += f", in {_duration(left)}"
        return text
    m = _RESET_IN.search(status_msg)
    if m:
        return f"in {m.group(1).strip()}"
    return ""


def _duration(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d" * bool(days), f"{hours} h" * bool(hours), f"{minutes} min" * bool(minutes)]
    return " ".join(p for p in parts if p) or "1 min"


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
            if err.retry_after is not None and err.retry_after > RETRY_AFTER_CAP:
                err.retryable = False
                err.message = (
                    f"{err.message} (the server asks to wait {_duration(err.retry_after)})"
                )
                err.args = (err.message,)
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
