"""How long to wait before sending a failed request again.

Exponential backoff with full jitter, unless the server said how long (``retry-after-ms`` or
``Retry-After``, in seconds or as an HTTP date), up to :data:`RETRY_AFTER_CAP`: a server asking
for longer (a daily quota) is not waited for. :func:`duration_text` says a wait in words, for the
messages that name one.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping

from mcode.providers.network import NetworkSettings

__all__ = ["RETRY_AFTER_CAP", "backoff_delay", "duration_text", "parse_retry_after"]

# The longest Retry-After waited for. A server asking for more (a daily quota) is not retried: the
# error says when to try again instead of the session hanging for hours.
RETRY_AFTER_CAP = 600.0


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


def duration_text(seconds: float) -> str:
    """A wait in words, to the minute: ``"2 h 5 min"``, ``"1 d 3 h"``; never less than a minute."""
    minutes = max(1, round(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d" * bool(days), f"{hours} h" * bool(hours), f"{minutes} min" * bool(minutes)]
    return " ".join(p for p in parts if p) or "1 min"
