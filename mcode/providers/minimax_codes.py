"""What MiniMax's error codes mean, as a table: kind, whether sending again can help, what the
code says and what the user should do.

MiniMax reports errors as ``base_resp.status_code`` (in a 200 body, in the last SSE chunk or in
an HTTP error body) and, on its Anthropic-compatible endpoint, as ``"message (2056)"`` inside an
ordinary error object; :mod:`.classify` reads the code and looks it up here. The meanings follow
MINIMAX_API.md ("Errors and retries") and MiniMax's error-code list. One code's advice depends on
its message: 2056 (the plan's usage window is used up) says when the window resets, if MiniMax
said (:func:`plan_window_hint`).
"""

from __future__ import annotations

import datetime
import re
from typing import NamedTuple

from mcode.providers.backoff import duration_text

__all__ = ["MINIMAX_CODES", "MINIMAX_DOCS", "MiniMaxCode", "plan_window_hint", "unknown_code"]

MINIMAX_DOCS = "https://platform.minimax.io/docs/api-reference/errorcode"


class MiniMaxCode(NamedTuple):
    kind: str
    retryable: bool
    what: str  # what MiniMax means, in a few words
    hint: str = ""  # what the user should do; "" = the kind's general hint


_KEY_REGION = (
    "a key from platform.minimax.io works only with api.minimax.io, one from "
    "platform.minimaxi.com only with api.minimaxi.com"
)
_QUOTA_HINT = (
    "the MiniMax account has no quota left for this request: check usage and balance in the "
    "MiniMax console, then top up or upgrade the plan"
)

MINIMAX_CODES: dict[int, MiniMaxCode] = {
    # Transient: sent again with backoff.
    1000: MiniMaxCode("server", True, "unknown error on MiniMax's side"),
    1001: MiniMaxCode("timeout", True, "request timed out on MiniMax's side"),
    1002: MiniMaxCode("rate_limit", True, "requests-per-minute limit reached"),
    1024: MiniMaxCode("server", True, "internal error"),
    1033: MiniMaxCode("server", True, "system or downstream service error"),
    1039: MiniMaxCode("rate_limit", True, "tokens-per-minute limit reached"),
    2045: MiniMaxCode("rate_limit", True, "request rate rising too fast"),
    # The key: sending again cannot help.
    1004: MiniMaxCode(
        "auth",
        False,
        "not authorized",
        f"MiniMax did not accept the API key: check MINIMAX_API_KEY ({_KEY_REGION}) and that "
        "the key is still active in the MiniMax console",
    ),
    2049: MiniMaxCode(
        "auth",
        False,
        "invalid API key",
        "the API key is not valid here: copy it again from the MiniMax console into "
        f"MINIMAX_API_KEY, and check the base URL's region ({_KEY_REGION})",
    ),
    # Money and plans: the user has to act.
    1008: MiniMaxCode(
        "billing",
        False,
        "insufficient balance",
        "the MiniMax account balance is used up: top it up in the MiniMax console, or use a "
        "plan key (sk-cp-...)",
    ),
    1028: MiniMaxCode("billing", False, "quota used up", _QUOTA_HINT),
    1030: MiniMaxCode("billing", False, "quota used up", _QUOTA_HINT),
    2061: MiniMaxCode(
        "billing",
        False,
        "model not included in the current plan",
        "your MiniMax plan does not include this model: choose one it covers with --model (the "
        "plan's page in the MiniMax console lists them), or upgrade the plan",
    ),
    2056: MiniMaxCode("billing", False, "plan usage limit reached"),  # hint: plan_window_hint
    # The request itself.
    2013: MiniMaxCode(
        "bad_request",
        False,
        "invalid request parameters",
        "MiniMax rejected a parameter of the request: check the model name and the options in "
        "your config (thinking, max output tokens); if they look right, report this message as "
        "an mcode bug",
    ),
    1026: MiniMaxCode(
        "content_filter",
        False,
        "input flagged by MiniMax's content filter",
        "MiniMax's content filter flagged something in the conversation (the request, or a file "
        "or command output the agent read): rephrase the request or keep that content out, in a "
        "new session if it is already in this one's history",
    ),
    1027: MiniMaxCode(
        "content_filter",
        False,
        "answer blocked by MiniMax's content filter",
        "MiniMax's content filter blocked the model's answer: rephrase the request or ask for "
        "something different",
    ),
}


def unknown_code(status: int | None) -> MiniMaxCode:
    """The entry for a code not in :data:`MINIMAX_CODES` (``status``: the HTTP status it came
    with, if any): not retried, and the user is pointed at MiniMax's list."""
    return MiniMaxCode(
        "bad_request" if status is not None and status < 500 else "server",
        False,
        "an error code mcode does not know",
        f"look the code up in MiniMax's error-code list ({MINIMAX_DOCS}); if it is "
        "temporary, try again",
    )


_RESET_AT = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?"
)
_RESET_IN = re.compile(r"\breset(?:s|ting)?\s+in\s+([^,;()]+)", re.IGNORECASE)


def plan_window_hint(status_msg: str, now: float) -> str:
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
            text += f", in {duration_text(left)}"
        return text
    m = _RESET_IN.search(status_msg)
    if m:
        return f"in {m.group(1).strip()}"
    return ""
