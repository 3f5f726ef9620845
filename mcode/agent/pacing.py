"""Tool pacing: the agent's choice of ``tool_choice`` for a model that cannot pace itself.

A 135M model (the embedded SmolLM2) almost never elects to call a tool (its first token starts
a call with ~1% probability), so left free it answers blind; once it has called one, it copies
that call forever. So the conversation paces it (``Conversation.tool_steps``, from
``[local] tool_steps``): the first step after a user message must call a tool, and after
``tool_steps`` calls it must answer. The decision is the agent's and travels on the request as
``tool_choice``; a provider only honours what it is given (the local one turns it into its
grammar, a served one into the wire's field). Remote models are never paced (``tool_steps``
0).
"""

from __future__ import annotations

from mcode.agent.ledger import LEDGER_HEADER
from mcode.messages import Message


def paced_choice(messages: list[Message], tool_steps: int) -> str:
    """The ``tool_choice`` for the next step of a conversation holding ``messages``:
    "required", "auto" or "none"."""
    calls = 0
    for m in reversed(messages):
        if m is messages[0] and m.role == "user" and m.text.startswith(LEDGER_HEADER):
            # A compacted conversation: the calls it made are in the ledger. Calling more
            # would fill the window again; it answers from what the ledger holds.
            return "none"
        if m.role == "user":
            break
        if m.role == "assistant" and m.tool_calls:
            calls += 1
    if calls == 0:
        return "required"
    return "none" if calls >= tool_steps else "auto"
