"""Driving a provider in-process against the scripted model server: shared by the provider tests
(each test file keeps its own ``provider(server, ...)`` factory for its wire format)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mcode.errors import ProviderError
from mcode.messages import Message, ToolSpec, user_message
from mcode.providers.base import Completion, ModelEvent, ModelRequest, Provider, Retrying
from mcode.providers.network import NetworkSettings

# Short timeouts and near-zero backoff: a retry costs milliseconds, two retries at most.
# A tool for requests that offer one.
READ = ToolSpec(
    "read", "Read a file.", {"type": "object", "properties": {"path": {"type": "string"}}}
)

FAST = NetworkSettings(
    connect_timeout=2,
    first_event_timeout=5,
    idle_timeout=5,
    max_retries=2,
    backoff_base=0.01,
    backoff_max=0.02,
)


def request(*messages: Message, model: str = "mock-model", **kw: Any) -> ModelRequest:
    msgs = list(messages) or [user_message("hi")]
    return ModelRequest(model=model, system="You are terse.", messages=msgs, **kw)


def stream_all(provider: Provider, req: ModelRequest) -> list[ModelEvent]:
    """Every event of one model call (the provider is closed afterwards); errors propagate."""

    async def go() -> list[ModelEvent]:
        try:
            return [e async for e in provider.stream(req)]
        finally:
            await provider.aclose()

    return asyncio.run(go())


def completed(events: list[ModelEvent]) -> list[ModelEvent]:
    """``events``, checked to end with exactly one Completion."""
    assert isinstance(events[-1], Completion)
    assert not any(isinstance(e, Completion) for e in events[:-1])
    return events


def failure(provider: Provider, req: ModelRequest) -> tuple[ProviderError, list[ModelEvent]]:
    """The ProviderError one model call ends with, and the events seen before it."""
    seen: list[ModelEvent] = []

    async def go() -> None:
        try:
            async for e in provider.stream(req):
                seen.append(e)
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError) as info:
        asyncio.run(go())
    return info.value, seen


def of(events: list[ModelEvent], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def after_last_retry(events: list[ModelEvent]) -> list[ModelEvent]:
    marks = [i for i, e in enumerate(events) if isinstance(e, Retrying)]
    return events[marks[-1] + 1 :] if marks else events
