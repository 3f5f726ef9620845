"""One exception hierarchy for mcode; every message says what went wrong and what to do.

    MCodeError                      (base; .hint tells the user what to do)
     +-- UsageError                 bad command-line use                 -> exit 2
     +-- ConfigError                a bad config file, key or value      -> exit 2
     +-- ProviderError              the model API failed (.kind, .retryable, .retry_after)
     +-- ToolError                  a tool refused or failed; goes back to the model as a tool error
     |    +-- PathEscapeError       a path leaves the workspace
     |    +-- SandboxError          the OS sandbox cannot start: the command was not run, and
     |                              the turn ends (exit 1) once the model has its result
     +-- LimitReached               max turns or budget hit              -> exit 3
 +-- HookBlocked                a UserPromptSubmit hook refused the message

Messages never contain secrets: providers scrub API keys before raising.
"""

from __future__ import annotations


class MCodeError(Exception):
    """Base class. ``hint`` is one sentence telling the user what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(MCodeError):
    exit_code = 2


class ConfigError(MCodeError):
    """A configuration problem; the message names the file, the key and the line where known."""

    exit_code = 2


class ProviderError(MCodeError):
    """A model API failure.

    ``kind`` is one of: rate_limit, overloaded, server, connection, timeout, truncated, auth,
    bad_request, context_overflow, billing, content_filter, protocol, malformed_tool_call (the
    model wrote a tool call as text that could not be used; retryable, so it is asked again),
    engine_crash (llama.cpp killed the local engine's check process: see local_backend/probe.py).
    ``retryable`` says whether the same request may be sent again; ``retry_after`` is the
    server's wish in seconds, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class ToolError(MCodeError):
    """A tool could not do what was asked. The agent loop returns it to the model as an error
    tool result; it never ends the run."""


class PathEscapeError(ToolError):
    pass


class SandboxError(ToolError):
    """The sandbox (mcode/tools/sandbox.py) cannot start, so the command was not run. Unlike
    other tool errors it ends the turn: the model cannot fix it, and a run whose commands did
    not run must not look like one that worked."""


class LimitReached(MCodeError):
    exit_code = 3


class HookBlocked(MCodeError):
    """A hook (``UserPromptSubmit``) refused the user's message; it never reached the model."""
