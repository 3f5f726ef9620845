"""One model call as the session sees it: the provider's stream turned into events.

Shared by the agent loop (answers, shown as they stream) and compaction (a summary, not an
answer to the user, so not shown). Retries are always events: a front end must know why it
waits.
"""

from __future__ import annotations

from typing import cast

from mcode import events as ev
from mcode.agent.conversation import Conversation
from mcode.agent.host import Host
from mcode.errors import ProviderError
from mcode.messages import user_message
from mcode.providers.base import Completion, ModelRequest, Retrying, TextDelta, ThinkingDelta


async def call_model(
    conv: Conversation,
    host: Host,
    request: ModelRequest,
    *,
    show: bool = True,
    streamed: list[bool] | None = None,
) -> Completion:
    """Stream one call to its Completion. ``show``: emit text and thinking deltas;
    ``streamed`` gets an entry once any output came (an overflow after output is not a
    request that was too long)."""
    completion: Completion | None = None
    async for item in conv.provider.stream(request):
        if isinstance(item, TextDelta | ThinkingDelta):
            if streamed is not None:
                streamed.append(True)
            if show:
                delta = ev.TextDelta if isinstance(item, TextDelta) else ev.ThinkingDelta
                host.emit(delta(text=item.text))
        elif isinstance(item, Retrying):
            # A retryable ProviderError's kind: one of ev.RetryKind (mcode/providers/retry.py).
            kind = cast(ev.RetryKind, item.kind)
            host.emit(ev.Retry(attempt=item.attempt, reason=item.reason, wait=item.wait, kind=kind))
        elif isinstance(item, Completion):
            completion = item
        # ToolCallStarted: the complete call is announced by tool.requested once it is final.
    if completion is None:
        raise ProviderError(
            "the model stream ended without a final message",
            kind="truncated",
            retryable=False,
            hint="try again; if it persists, the server is misbehaving",
        )
    return completion


async def complete_once(
    conv: Conversation, prompt: str, *, system: str, max_output_tokens: int = 256
) -> str:
    """One model call beside the conversation, not in it: ``prompt`` the only message, no
    tools, thinking off, ``system`` instead of the agent's prompt. The history is untouched and
    no event is emitted (an editor's inline completion is not a turn; it is asked for many
    times a minute). Its usage counts into the conversation's totals. Raises ProviderError as
    a turn's model call would; CancelledError stops the request."""
    request = ModelRequest(
        model=conv.provider.info.model,
        system=system,
        messages=[user_message(prompt)],
        thinking=False if conv.provider.info.thinking_switchable else None,
        max_output_tokens=max_output_tokens,
    )
    completion: Completion | None = None
    async for item in conv.provider.stream(request):
        if isinstance(item, Completion):
            completion = item
    if completion is None:
        raise ProviderError(
            "the model stream ended without a final message",
            kind="truncated",
            retryable=False,
            hint="try again; if it persists, the server is misbehaving",
        )
    conv.totals.usage.add(completion.usage)
    conv.totals.model_calls += 1
    return completion.message.text
