"""TurnHooks: where a turn calls out to the user's hooks, without knowing what they are.

The agent loop asks a conversation's ``hooks`` (None: there are none) at five points, and the
plugin host (``mcode/plugin_host/hooks.py``) answers by running Claude Code-style hook
commands. The loop imports only this protocol::

    run_turn
      before_prompt(text)        UserPromptSubmit (and SessionStart, once): block it, add context,
                                 or expand a slash command
      _run_one
        before_tool(call, args)  PreToolUse: deny it (the reason is its result), change its
                                 arguments, or allow it without asking
        after_tool(call, result) PostToolUse: feedback appended to the result the model gets
      (the model stops)
        on_stop(text, again)     Stop / SubagentStop: a reason to keep going (a user message)
    compact
      before_compact(reason)     PreCompact

A hook that fails or times out is the host's to report (an event); the loop only ever sees an
answer, so a broken hook never ends a turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mcode.tools.base import ToolResult


@dataclass(frozen=True, slots=True)
class ToolGate:
    """What the PreToolUse hooks decided about one call. ``decision``: ``allow`` runs it without
    asking the permission rules, ``deny`` refuses it with ``reason`` (what the model reads),
    ``ask`` (the default) leaves it to the rules. ``arguments``: the input to run it with
    instead of the model's, or None."""

    decision: Literal["allow", "deny", "ask"] = "ask"
    reason: str = ""
    arguments: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PromptGate:
    """What the UserPromptSubmit (and SessionStart) hooks said about a user message: ``block``
    it (with ``reason``), or ``context`` to add to it for the model; ``text``: the message's
    text to use instead (a slash command expanded), or None."""

    block: bool = False
    reason: str = ""
    context: str = ""
    text: str | None = None


class TurnHooks(Protocol):
    async def before_prompt(self, text: str, *, agent: str | None) -> PromptGate: ...

    async def before_tool(
        self, name: str, args: dict[str, Any], call_id: str, *, agent: str | None
    ) -> ToolGate: ...

    async def after_tool(
        self, name: str, args: dict[str, Any], result: ToolResult, call_id: str
    ) -> str:
        """Feedback for the model about the result ("" for none)."""
        ...

    async def on_stop(self, text: str, *, agent: str | None, again: bool) -> str:
        """A reason to keep working instead of stopping ("" to stop). ``again``: this turn
        was already kept going by a stop hook (Claude Code's ``stop_hook_active``)."""
        ...

    async def before_compact(self, reason: str, instructions: str | None) -> None: ...
