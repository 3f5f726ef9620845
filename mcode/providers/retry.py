"""The retry loop shared by every remote provider.

A provider raises :class:`~mcode.errors.ProviderError` for each failed attempt (classified by
:mod:`.classify`); :func:`retrying` decides whether to send the request again, reports the
decision as a ``Retrying`` event, waits (:mod:`.backoff`: exponential backoff with full jitter, or
the server's ``Retry-After``) and tries again, up to ``NetworkSettings.max_retries`` times.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from typing import Any

from mcode.errors import ProviderError
from mcode.providers.backoff import RETRY_AFTER_CAP, backoff_delay, duration_text
from mcode.providers.base import ModelEvent, Retrying
from mcode.providers.classify import trim
from mcode.providers.network import NetworkSettings
from mcode.secrets import scrub

__all__ = ["retrying"]


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
                    f"{err.message} (the server asks to wait {duration_text(err.retry_after)})"
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
            yield Retrying(retries, scrub(trim(err.message, 300), secrets), wait, err.kind)
            await sleep(wait)
