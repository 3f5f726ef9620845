"""Conversation: one agent's own state, apart from whoever hosts it.

Everything a turn reads and changes lives here: the history the model sees, the model it calls
(``provider``, ``system_prompt``, ``thinking``, ``tools`` and their ``tool_context``), how full
the context is (``budget``) and what compaction kept of the work (``ledger``), the loop breaker,
the limits, the counts (``totals``), and what the user added while the turn runs (steers,
compaction requests, a note for the next message). A Session owns one or more of them: its main
conversation (``agent_id`` None) and, for sub-agents and a team, others, each with its own id,
which tags its events. It is driven by :func:`mcode.agent.loop.run_turn` through a
:class:`~mcode.agent.host.Host`.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mcode import events as ev
from mcode.agent.hooks import TurnHooks
from mcode.agent.images import ImagePruner
from mcode.agent.ledger import Ledger
from mcode.agent.loop_guard import LoopGuard
from mcode.agent.run_limits import RunLimits
from mcode.agent.tokens import TokenBudget
from mcode.errors import MCodeError
from mcode.messages import Message, Usage
from mcode.permissions import Permissions
from mcode.providers.base import Provider
from mcode.tools.base import Tool, ToolContext

CompactRequest = tuple[str | None, "asyncio.Future[bool]"]


@dataclass(slots=True)
class TurnOutcome:
    """How a turn ended. ``reason``: completed, max_turns, cancelled, error, loop (the model
    kept sending one failing tool call, see mcode/agent/loop_guard.py), output_limit (the
    answer was cut at the model's output cap; ``text`` holds what it wrote). ``denials``: the
    calls this turn was not allowed to make (exit code 4 for ``mcode exec``)."""

    reason: ev.TurnReason
    text: str = ""
    error: MCodeError | None = None
    denials: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Totals:
    """What a conversation has used so far (a sub-agent adds to its parent's)."""

    usage: Usage = field(default_factory=Usage)
    model_calls: int = 0
    tool_calls: int = 0
    compactions: int = 0
    denials: list[dict[str, Any]] = field(default_factory=list)


class Conversation:
    def __init__(
        self,
        *,
        provider: Provider,
        tools: list[Tool],
        tool_context: ToolContext,
        permissions: Permissions,
        system_prompt: str,
        max_turns: int | None = None,
        thinking: bool | None = None,
        history: list[Message] | None = None,
        agent_id: str | None = None,
        totals: Totals | None = None,
        tool_steps: int = 0,
        run_limits: RunLimits | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.provider = provider
        self.tools = tools
        self.tool_context = tool_context
        self.permissions = permissions
        self.system_prompt = system_prompt
        self.max_turns = max_turns
        # Wall time, tokens and cost of the whole run (mcode/agent/run_limits.py), shared with
        # the sub-agents it starts; None: none.
        self.run_limits = run_limits
        self.thinking = thinking
        # Tool pacing for a small model (mcode/agent/pacing.py); 0: the model decides.
        self.tool_steps = tool_steps
        self.history: list[Message] = list(history or [])
        self.totals = totals if totals is not None else Totals()
        # The running turn's id (events and checkpoints carry it); None between turns.
        self.turn_id: str | None = None
        # Counts identical failing tool calls; run_turn resets it per turn and per steer.
        self.loop_guard = LoopGuard()
        # When each tool call of the running step started (monotonic), until its result: a call
        # a cancel cuts short is answered with how long it ran (mcode/agent/loop.py).
        self.tool_started: dict[str, float] = {}
        # How full the context is and when it must be compacted (mcode/agent/tokens.py).
        self.budget = _budget(provider)
        # What compaction keeps of the work (mcode/agent/ledger.py); a resumed one gets its own.
        self.ledger: Ledger | None = None
        # Prepended to the next user message, then cleared (on resume, when the user ran
        # `mcode undo` since the last message, so the model knows its edits are gone).
        self.pending_note: str | None = None
        # Which tool screenshots a request carries (mcode/agent/images.py); None: all of them.
        self.image_pruner: ImagePruner | None = None
        self._steers: list[str] = []
        self._compact_requests: list[CompactRequest] = []
        # The user's hooks (mcode/agent/hooks.py; None: there are none), shared with children.
        self.hooks: TurnHooks | None = None
        # Awaited at the start of the next turn, before its first model call, until it returns
        # once: what the tool list still waits for (MCP servers listing theirs while the
        # session opened, mcode/plugin_host/host.py). None: nothing.
        self.prepare: Callable[[], Awaitable[None]] | None = None

    def use_provider(self, provider: Provider, thinking: bool | None) -> None:
        """Talk to ``provider`` from the next model call on, thinking as given (another model
        between turns: an editor's model picker). The history stays; the budget is the new
        model's, counted afresh."""
        self.provider = provider
        self.thinking = thinking
        self.budget = _budget(provider)

    def child(
        self,
        agent_id: str,
        *,
        system_prompt: str,
        tools: list[Tool] | None = None,
        max_turns: int | None = None,
        shared_totals: bool = False,
        workspace: Any = None,
        provider: Provider | None = None,
        thinking: bool | None = None,
    ) -> Conversation:
        """A new conversation with a fresh context on this one's model, workspace and
        permissions: its own ``system_prompt``, ``tools`` (default: the same) and model-call cap
        (``max_turns``, None: none).
        ``shared_totals``: what it uses counts into this one's totals (a sub-agent's does).

        ``workspace`` (a :class:`mcode.tools.workspace.Workspace`) gives the child a place of
        its own (a team producer's git worktree): its own ToolContext rooted there (bash runs
        there, paths resolve there, its own file stamps and todos, so an edit's staleness check
        never mixes two trees) and permissions whose path rules resolve there; None shares
        this one's (the ``task`` tool's sub-agent works in its parent's tree).
        ``provider`` / ``thinking``: another model or thinking setting (a team role's)."""
        tool_context, permissions = self.tool_context, self.permissions
        if workspace is not None:
            sandbox = tool_context.sandbox
            if sandbox is not None:  # its commands may write in its own tree, not the parent's
                sandbox = sandbox.moved_to(workspace.root, tool_context.workspace.root)
            tool_context = dataclasses.replace(
                tool_context,
                workspace=workspace,
                cancel=asyncio.Event(),
                file_stamps={},
                todos=[],
                sandbox=sandbox,
            )
            permissions = copy.copy(permissions)
            permissions.workspace = workspace
        child = Conversation(
            provider=self.provider if provider is None else provider,
            tools=list(self.tools if tools is None else tools),
            tool_context=tool_context,
            permissions=permissions,
            system_prompt=system_prompt,
            max_turns=max_turns,
            thinking=self.thinking if thinking is None else thinking,
            agent_id=agent_id,
            totals=self.totals if shared_totals else None,
            run_limits=self.run_limits,
        )
        if self.image_pruner is not None:
            child.image_pruner = ImagePruner(self.image_pruner.keep, self.image_pruner.step)
        child.hooks = self.hooks
        return child

    # -- what the user adds while a turn runs ------------------------------------------------
    def add_steer(self, text: str) -> None:
        """Queue ``text`` for the running turn's next step (the host records steer.received)."""
        self._steers.append(text)

    @property
    def has_pending_steers(self) -> bool:
        return bool(self._steers)

    def take_steers(self) -> list[str]:
        pending, self._steers = self._steers, []
        return pending

    def request_compaction(self, instructions: str | None) -> asyncio.Future[bool]:
        """Compact at the running turn's next step boundary; the future says whether it did."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._compact_requests.append((instructions, future))
        return future

    def take_compact_requests(self) -> list[CompactRequest]:
        pending, self._compact_requests = self._compact_requests, []
        return pending


def _budget(provider: Provider) -> TokenBudget:
    info = provider.info
    return TokenBudget.for_model(
        info.model,
        info.context_window,
        info.max_output_tokens,
        counter=getattr(provider, "count_request", None),
    )
