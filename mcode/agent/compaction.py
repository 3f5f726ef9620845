"""Compaction: replace older turns with the task ledger so the conversation fits the window.

When: before a model call whose request would not fit (``TokenBudget``), once after an API said
the context overflowed before it answered (then the request is sent once more), and when a front
end asks (``Session.compact``). Never otherwise: a conversation that fits is left alone, so its
requests stay prefix-stable and cached.

How: the history is cut at a message boundary (never between a tool call and its results); the
newest messages, up to a tail budget, stay verbatim. Everything before the cut goes to the model
once more with a request to summarise it into the ledger's sections: the same tools, system and
messages as the last request, so the provider's prompt cache serves all of it. The ledger
(:mod:`mcode.agent.ledger`) merges that summary with what mcode recorded itself, and the new
history is ``[ledger message] + tail``. If the summary call fails (or the model cannot write
one), the recorded sections alone make the ledger: the task is kept either way. A compaction
that would not make the request smaller (a short conversation: the ledger has a header and
sections of its own) is not made: the history stays, and an ``error`` event says why.

The ``compaction`` event carries the ledger message and how many messages were kept, so the store
rebuilds the same history on ``--resume`` (:func:`mcode.store.history_of`).
"""

from __future__ import annotations

import dataclasses

from mcode import events as ev
from mcode.agent.conversation import Conversation
from mcode.agent.host import Host
from mcode.agent.ledger import Ledger, summary_instruction
from mcode.agent.model_call import call_model
from mcode.agent.pacing import paced_choice
from mcode.agent.tokens import estimate_message
from mcode.errors import MCodeError, ProviderError
from mcode.messages import Message, user_message
from mcode.providers.base import ModelRequest

# The verbatim tail: at most this share of the window, and at most TAIL_MAX tokens.
TAIL_SHARE = 0.15
TAIL_MAX = 40_000
# The ledger's share of the window, at most.
LEDGER_SHARE = 0.25
# The summary answer's cap (also bounded by the window's output reserve).
SUMMARY_MAX_TOKENS = 8_000
# Fallback transcript (when even the summary request overflows): per-message clip.
TRANSCRIPT_CLIP = 1_500


def request_for(conv: Conversation, messages: list[Message] | None = None) -> ModelRequest:
    """The request the next model call sends (``messages`` defaults to the history). Its
    ``tool_choice`` is the conversation's pacing (mcode/agent/pacing.py), if it is paced."""
    messages = conv.history if messages is None else messages
    paced = conv.tool_steps > 0 and bool(conv.tools) and bool(messages)
    sent = messages
    if conv.image_pruner is not None:  # the newest screenshots only (mcode/agent/images.py)
        sent = conv.image_pruner.prune(messages)
    return ModelRequest(
        model=conv.provider.info.model,
        system=conv.system_prompt,
        messages=sent,
        tools=[t.spec() for t in conv.tools],
        thinking=conv.thinking,
        tool_choice=paced_choice(messages, conv.tool_steps) if paced else None,
    )


async def compact(
    conv: Conversation, host: Host, reason: ev.CompactionReason, instructions: str | None = None
) -> bool:
    """Compact the session's history now. ``reason``: auto, overflow or manual. False when
    there is nothing to compact (an empty or one-message history; said in an event when asked
    for) or the ledger would be no smaller than what it replaces (said in an event). Raises
    CancelledError (history untouched) if cancelled meanwhile."""
    history = conv.history
    if len(history) < 2:
        if reason == "manual":
            _not_compacted(host, reason, "there is nothing to compact yet")
        return False
    budget = conv.budget
    before = budget.estimate(request_for(conv))
    tail_budget = min(TAIL_MAX, int(budget.window * TAIL_SHARE))
    if reason != "auto":
        # overflow: the API's real limit is below the declared window and below this request;
        # manual: the user wants the conversation small now, whatever the window. Either way
        # keep a tail that is small next to what there is.
        tail_budget = min(tail_budget, before // 10)
    cut = _cut(history, budget.ratio, tail_budget)
    older, tail = history[:cut], history[cut:]
    if conv.hooks is not None:  # PreCompact: the hook sees it before anything is summarised
        await conv.hooks.before_compact(reason, instructions)

    ledger = Ledger.from_dict(conv.ledger.to_dict()) if conv.ledger else Ledger()
    # After a compaction the history starts with its ledger message: not a user request.
    ledger.record(older[1:] if conv.ledger else older)
    # At most a quarter of the window: the ledger must leave room for the work it describes.
    max_chars = int(budget.window * LEDGER_SHARE * budget.ratio)
    # The model's summary only adds to what mcode recorded: if that alone is no smaller than
    # the messages it replaces, the summary call would be paid for nothing.
    if not _smaller(user_message(ledger.render(max_chars=max_chars)), older, conv, host, reason):
        return False
    summary = await _summarise(conv, host, older, instructions)
    summarised = ledger.take_summary(summary) if summary is not None else False

    message = user_message(ledger.render(max_chars=max_chars))
    if not _smaller(message, older, conv, host, reason):
        return False
    conv.history = [message, *tail]
    conv.ledger = ledger
    budget.reset()
    conv.totals.compactions += 1
    after = budget.estimate(request_for(conv))
    host.emit(
        ev.Compaction(
            reason=reason,
            tokens_before=before,
            tokens_after=after,
            window=budget.window,
            messages_before=len(history),
            messages_after=len(conv.history),
            kept=len(tail),
            summarised=summarised,
            message=message,
            ledger=ledger.to_dict(),
        )
    )
    return True


def _smaller(
    message: Message,
    older: list[Message],
    conv: Conversation,
    host: Host,
    reason: ev.CompactionReason,
) -> bool:
    """Whether the ledger ``message`` is smaller than the ``older`` messages it would replace
    (the rest of the request is the same either way); if not, says so in an event."""
    ratio = conv.budget.ratio
    now = round(sum(estimate_message(m, ratio) for m in older))
    then = round(estimate_message(message, ratio))
    if then < now:
        return True
    n = len(older)
    _not_compacted(
        host,
        reason,
        f"compacting would not make the request smaller: the ledger (~{then:,} tokens) is no "
        f"smaller than the {n} older message{'s' * (n != 1)} it would replace (~{now:,} tokens)",
    )
    return False


def _not_compacted(host: Host, reason: ev.CompactionReason, why: str) -> None:
    hint = {
        "manual": "nothing was changed; compact once the conversation is longer",
        "auto": "the conversation is left as it is and the request is sent anyway; if the "
        "model refuses it as too long, raise --context-window or start a new session",
        "overflow": "the conversation is left as it is",
    }[reason]
    host.emit(
        ev.Error(
            kind="compaction",
            message=f"not compacted ({reason}): {why}",
            hint=hint,
            recoverable=True,
        )
    )


def _cut(history: list[Message], ratio: float, tail_budget: int) -> int:
    """Where the verbatim tail starts: the earliest index whose messages fit ``tail_budget``
    and that is not a tool result (a result without its call is invalid on every API). At
    least one message is summarised; an empty tail is fine."""
    cut = len(history)
    used = 0.0
    for i in range(len(history) - 1, 0, -1):
        used += estimate_message(history[i], ratio)
        if used > tail_budget:
            break
        if history[i].role != "tool":
            cut = i
    return cut


async def _summarise(
    conv: Conversation, host: Host, older: list[Message], instructions: str | None
) -> str | None:
    """The model's summary of ``older``, or None (said in an event) if it could not write one."""
    budget = conv.budget
    cap = max(256, min(SUMMARY_MAX_TOKENS, budget.reserve))
    ask = user_message(summary_instruction(instructions))
    request = dataclasses.replace(
        request_for(conv, [*older, ask]), tool_choice="none", max_output_tokens=cap
    )
    try:
        if not budget.fits(budget.estimate(request)):
            request = _transcript_request(conv, older, ask, cap)
        try:
            return await _call(conv, host, request)
        except ProviderError as e:
            if e.kind != "context_overflow":
                raise
            return await _call(conv, host, _transcript_request(conv, older, ask, cap))
    except MCodeError as e:
        host.emit(
            ev.Error(
                kind="compaction",
                message=f"the model could not summarise the conversation: {e.message}",
                hint="the ledger keeps the user's requests, files, commands and failures that "
                "mcode recorded itself; the work goes on",
                recoverable=True,
            )
        )
        return None


def _transcript_request(
    conv: Conversation, older: list[Message], ask: Message, cap: int
) -> ModelRequest:
    """A summary request that fits however long ``older`` is: the messages as one clipped text
    transcript, newest kept when it must be shortened, and no tools."""
    budget = conv.budget
    room = int((budget.limit - budget.estimate(request_for(conv, [ask]))) * budget.ratio * 0.8)
    lines: list[str] = []
    size = 0
    for m in reversed(older):
        line = _transcript_line(m)
        if size + len(line) > room:
            lines.append("[… earlier messages left out …]")
            break
        lines.append(line)
        size += len(line)
    transcript = "\n\n".join(reversed(lines))
    text = f"The conversation so far, as a transcript:\n\n{transcript}\n\n{ask.text}"
    return ModelRequest(
        model=conv.provider.info.model,
        system=conv.system_prompt,
        messages=[user_message(text)],
        thinking=conv.thinking,
        max_output_tokens=cap,
    )


def _transcript_line(m: Message) -> str:
    text = m.text
    if len(text) > TRANSCRIPT_CLIP:
        text = text[: TRANSCRIPT_CLIP // 2] + " […] " + text[-TRANSCRIPT_CLIP // 2 :]
    if m.role == "tool":
        return f"[{m.name} result{' (error)' if m.is_error else ''}] {text}"
    calls = "".join(f"\n[calls {c.name} {c.arguments[:300]}]" for c in m.tool_calls)
    return f"[{m.role}] {text}{calls}"


async def _call(conv: Conversation, host: Host, request: ModelRequest) -> str:
    """One model call for the summary: not streamed (it is not an answer to the user), its
    usage counts."""
    completion = await call_model(conv, host, request, show=False)
    conv.totals.model_calls += 1
    conv.totals.usage.add(completion.usage)
    host.emit(ev.Usage.of(completion.usage, total=conv.totals.usage, purpose="compaction"))
    return completion.message.text
