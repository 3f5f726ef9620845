"""A side question (``/btw``): one answer from a conversation that shares the main one's prefix.

The user asks something on the side ("btw, what does this flag do?") without the question or
its answer entering the main history, also while a main turn runs. The side conversation
(:meth:`mcode.runtime.session.Session.ask_aside` makes it) starts with the main one's system
prompt, tools and history as its last request sent them (:func:`settled`), and adds the
question: the request is the main conversation's last request plus one message, so the
provider's prompt cache serves the whole prefix (what makes an aside cheap and fast).

The tools stay listed, with ``tool_choice`` "none": dropping them would change the request's
head (Anthropic caches tools first, then the system prompt, then the messages; OpenAI-style
servers match the rendered prompt, tools included) and every token of it would be paid for
again. The aside answers once and never acts: a tool call a server sends anyway is dropped from
the answer, never run (the answer is its text).

Its events are a turn like any other (``turn.started`` .. ``turn.finished``) under its own
agent id and turn id, so the store keeps it apart from the main history.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import cast

from mcode import events as ev
from mcode.agent.compaction import request_for
from mcode.agent.conversation import Conversation, TurnOutcome
from mcode.agent.host import Host
from mcode.agent.model_call import call_model
from mcode.errors import MCodeError, ProviderError
from mcode.messages import Message

# The agent ids of side conversations begin so: front ends that show the aside's answer
# themselves (the TUI's btw note) leave its events out of the main view.
ASIDE_PREFIX = "aside-"


def settled(history: list[Message]) -> list[Message]:
    """The longest head of ``history`` in which every tool call has its result: while a main
    turn's calls run, their assistant message (and the results so far) are left out, which is
    what its last request held. A request with a call and no result is refused by every API."""
    for i in range(len(history) - 1, -1, -1):
        m = history[i]
        if m.role == "assistant" and m.tool_calls:
            answered = {r.tool_call_id for r in history[i + 1 :] if r.role == "tool"}
            if all(c.id in answered for c in m.tool_calls):
                return list(history)
            return history[:i]
    return list(history)


async def answer_aside(conv: Conversation, host: Host, question: Message) -> TurnOutcome:
    """Answer ``question`` once from ``conv`` (history: the main one's settled prefix)."""
    host.emit(ev.TurnStarted())
    conv.history.append(question)
    host.emit(ev.MessageUser(message=question))
    try:
        if host.cancel_requested:
            raise asyncio.CancelledError
        request = dataclasses.replace(request_for(conv), tool_choice="none")
        completion = await call_model(conv, host, request)
    except asyncio.CancelledError:
        host.emit(ev.TurnFinished(reason="cancelled"))
        return TurnOutcome("cancelled")
    except MCodeError as e:
        kind = cast(ev.ErrorKind, e.kind if isinstance(e, ProviderError) else type(e).__name__)
        host.emit(ev.Error(kind=kind, message=e.message, hint=e.hint, recoverable=False))
        host.emit(ev.TurnFinished(reason="error"))
        return TurnOutcome("error", error=e)
    conv.totals.model_calls += 1
    conv.totals.usage.add(completion.usage)
    answer = completion.message
    finish = cast(ev.FinishReason, completion.finish_reason)
    if answer.tool_calls:  # asked for none: never run, and not part of the answer
        answer = dataclasses.replace(answer, tool_calls=())
        finish = "stop" if finish == "tool_calls" else finish
    conv.history.append(answer)
    host.emit(ev.MessageAssistant(message=answer, finish_reason=finish))
    host.emit(ev.Usage.of(completion.usage, total=conv.totals.usage))
    host.emit(ev.TurnFinished(reason="completed"))
    return TurnOutcome("completed", answer.text)
