"""What went wrong with a model call: every failure as one classified ProviderError.

An HTTP error status, an ``{"error": ...}`` object inside a 200, an Anthropic ``error`` event and
a MiniMax ``base_resp`` code all become a :class:`~mcode.errors.ProviderError` with a *kind*
(rate_limit, overloaded, server, connection, timeout, truncated, protocol, auth, billing,
context_overflow, bad_request, content_filter, malformed_tool_call), whether sending the request
again can help, the server's own message (trimmed) and a hint that says what to do. A known
MiniMax code (:mod:`.minimax_codes`) says more than the HTTP status it came with: MiniMax sends
an exhausted plan window as HTTP 429, which must not be retried.

Every message that leaves this module passes through :func:`~mcode.secrets.scrub`: API keys
never reach an exception, an event or a log.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterable
from typing import Any

from mcode.errors import ProviderError
from mcode.providers.minimax_codes import MINIMAX_CODES, plan_window_hint, unknown_code
from mcode.secrets import scrub

__all__ = [
    "classify_body_error",
    "classify_minimax_code",
    "classify_status",
    "error_message_from_body",
    "hint_for",
    "looks_like_context_overflow",
    "minimax_code_in",
    "raise_for_base_resp",
    "trim",
]

_MESSAGE_LIMIT = 500


def trim(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    if found is not None and (found[0] in MINIMAX_CODES or not retryable):
        code, status_msg = found
        return classify_minimax_code(
            code, status_msg, status=status, retry_after=retry_after, secrets=secrets
        )
    if status in (400, 422) and looks_like_context_overflow(server_message):
        kind, retryable, what = "context_overflow", False, "input too long for the model"
    message = f"model API error: HTTP {status} {what}"
    if server_message:
        message += f": {trim(server_message)}"
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
        return trim(_html_title(text) or text)
    return trim(_describe(data))


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
        err.message = scrub(f"model API error inside the stream: {trim(text)}", secrets)
        return err
    message = f"model API error inside the stream: {trim(text)}"
    if looks_like_context_overflow(text):
        return _error(message, "context_overflow", False, secrets=secrets)
    low = text.lower()
    for kind, words in _RETRYABLE_WORDS.items():
        if any(w in low for w in words):
            return _error(message, kind, True, secrets=secrets)
    if any(w in low for w in ("api key", "api_key", "unauthorized", "authentication")):
        return _error(message, "auth", False, secrets=secrets)
    return _error(message, "server", False, secrets=secrets)


# MiniMax codes, read from wherever MiniMax put them; their meanings are in minimax_codes.py.
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
    if m and int(m.group(1)) in MINIMAX_CODES:
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
    entry = MINIMAX_CODES.get(code) or unknown_code(status)
    kind, retryable, what, hint = entry
    if code == 2013 and looks_like_context_overflow(status_msg):
        kind, what, hint = "context_overflow", "input too long for the model", ""
    elif code == 2056:
        hint = plan_window_hint(status_msg, time.time() if now is None else now)
    where = f"HTTP {status}, " if status is not None else ""
    message = f"model API error: {where}MiniMax code {code} ({what})"
    if status_msg:
        message += f": {trim(status_msg)}"
    return _error(
        message,
        kind,
        retryable,
        status=status,
        retry_after=retry_after if retryable else None,
        secrets=secrets,
        hint=hint,
    )
