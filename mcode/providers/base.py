"""The provider interface: a request in, a stream of model events out.

A provider turns a :class:`ModelRequest` into wire format, streams the answer and yields
:data:`ModelEvent` values: any number of ``TextDelta`` / ``ThinkingDelta`` / ``ToolCallStarted`` /
``Retrying``, then exactly one ``Completion`` as the last event. It retries by itself (429, 5xx,
connection loss, a stream cut before its finish) and reports each retry as a ``Retrying`` event so
front ends can discard the partial text they showed. A failure it cannot recover from is raised as
:class:`mcode.errors.ProviderError`; a stream that ends without a finish reason is never returned
as a ``Completion``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mcode.messages import Message, ToolSpec, Usage


@dataclass(slots=True)
class ModelRequest:
    model: str
    system: str
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    thinking: bool | None = None  # None: the provider's default
    max_output_tokens: int | None = None
    temperature: float | None = None
    # None or "auto": the model decides; "none": no tool call; "required": some tool call;
    # a tool's name: a call to that tool.
    tool_choice: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """The model began a tool call (for live display; the call is final only in Completion)."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Retrying:
    """The provider will send the request again after ``wait`` seconds. Anything streamed since
    the request started is void and will be streamed again."""

    attempt: int
    reason: str
    wait: float
    kind: str


@dataclass(frozen=True, slots=True)
class Completion:
    """The final, complete assistant message of one model call.

    ``finish_reason`` is normalised: ``stop``, ``tool_calls``, ``length`` or ``content_filter``.
    """

    message: Message
    usage: Usage
    finish_reason: str
    raw_usage: dict[str, Any] | None = None


ModelEvent = TextDelta | ThinkingDelta | ToolCallStarted | Retrying | Completion


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the runtime needs to know about the model behind a provider."""

    provider: str
    model: str
    context_window: int
    supports_images: bool = False
    thinking_switchable: bool = False
    # The most tokens one answer may take: the context budget keeps that much free.
    max_output_tokens: int = 32_000


class Provider(Protocol):
    info: ModelInfo

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream one model call. The last event is a Completion; errors raise ProviderError."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Warms(Protocol):
    """A provider that can make ahead of its first call what that call would make (its HTTP
    client): ``Session.warm_up``, for a front end that opens a session before its first prompt."""

    async def warm(self) -> None: ...
