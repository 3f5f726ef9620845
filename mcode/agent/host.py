"""Host: what a turn needs from whoever runs it, and nothing more.

A :class:`~mcode.agent.conversation.Conversation` is the agent's own state; the turn
(:func:`mcode.agent.loop.run_turn`) drives it and talks to the outside only through a host:

    run_turn(conversation, host, message)
        host.emit(payload)             every event (an mcode.events payload), tagged by
                                       the host with its conversation
        host.expect_approval(id)       a future the user's answer resolves (permission.asked)
        host.interactive               whether anyone can answer at all (else: denied)
        host.cancel_requested          a cancel that came before the turn's task first ran
        host.checkpoint                saves a file's before-image (None: nowhere to keep one)
        host.spawn_agent               runs a sub-agent's job (the task tool; None inside one)

The runtime's Session hosts its conversations (``mcode/runtime/session.py``); a test or another
runtime can host one the same way. The agent package imports nothing from ``mcode.runtime``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from mcode import events as ev
from mcode.permissions import Answer
from mcode.tools.base import Checkpointer, SpawnAgent


class Host(Protocol):
    @property
    def interactive(self) -> bool:
        """Whether a ``permission.asked`` can be answered; if not, a call that asks is denied."""
        ...

    @property
    def cancel_requested(self) -> bool:
        """A cancel that came before the turn's task first ran (it cannot be cancelled yet)."""
        ...

    @property
    def checkpoint(self) -> Checkpointer | None:
        """Saves a file's before-image under the running turn, for ``mcode undo``."""
        ...

    @property
    def spawn_agent(self) -> SpawnAgent | None:
        """Runs a sub-agent in a child conversation; None where none may start."""
        ...

    def emit(self, payload: ev.Payload, /) -> Any:
        """Record and publish one event of this conversation: ``emit(ev.TurnStarted())``."""
        ...

    def expect_approval(self, request_id: str) -> asyncio.Future[Answer]:
        """A future that the answer to ``permission.asked`` ``request_id`` resolves; register
        it before emitting the question (a front end may answer from inside the callback)."""
        ...
