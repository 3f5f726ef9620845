"""Session: one conversation, its settings, its event stream.

Front ends never call the model or the tools. They call ``submit`` (run a turn), ``steer`` (add a
requirement while a turn runs; delivered at the next step boundary, nothing in flight is thrown
away), ``cancel`` (stop now, leave history and files consistent) and ``approve`` (answer a
``permission.asked`` event), and they subscribe to the events.

Every event is serialised once, scrubbed of secrets, persisted to the store and handed to the
subscribers as ``(event, json_line)``.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import inspect
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcode import events as ev
from mcode.agent.ledger import Ledger
from mcode.agent.loop_guard import LoopGuard
from mcode.agent.tokens import TokenBudget
from mcode.errors import MCodeError
from mcode.events import Event
from mcode.messages import ImagePart, Message, Usage, user_message
from mcode.permissions import Answer, Permissions
from mcode.providers.base import Provider
from mcode.secrets import redact
from mcode.store import Store, StoreError
from mcode.tools.base import Tool, ToolContext

Listener = Callable[[Event, str], None]


@dataclass(slots=True)
class TurnOutcome:
    """How a ``submit`` ended. ``reason``: completed, max_turns, cancelled, error, loop (the
    model kept sending one failing tool call, see mcode/agent/loop_guard.py), output_limit (the
    answer was cut at the model's output cap; ``text`` holds what it wrote)."""

    reason: str
    text: str = ""
    error: MCodeError | None = None


@dataclass(slots=True)
class SessionTotals:
    usage: Usage = field(default_factory=Usage)
    model_calls: int = 0
    tool_calls: int = 0
    compactions: int = 0
    denials: list[dict[str, Any]] = field(default_factory=list)


def _cancel_if_running(task: asyncio.Task[Any]) -> None:
    if not task.done():
        task.cancel()


class Session:
    def __init__(
        self,
        *,
        provider: Provider,
        tools: list[Tool],
        permissions: Permissions,
        tool_context: ToolContext,
        system_prompt: str,
        store: Store | None = None,
        interactive: bool = False,
        max_turns: int | None = None,
        thinking: bool | None = None,
        secrets: list[str] | None = None,
        session_id: str | None = None,
        history: list[Message] | None = None,
        last_seq: int = 0,
        approval_timeout: float | None = None,
    ) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.provider = provider
        self.tools = tools
        self.permissions = permissions
        self.tool_context = tool_context
        self.system_prompt = system_prompt
        self.store = store
        self.interactive = interactive
        # Seconds a permission.asked waits for approve before it is denied (None: forever).
        self.approval_timeout = approval_timeout
        self.max_turns = max_turns
        self.thinking = thinking
        self.history: list[Message] = list(history or [])
        self.totals = SessionTotals()
        self.turn_id: str | None = None
        self._seq = last_seq
        self._secrets = [s for s in (secrets or []) if s]
        self._listeners: list[Listener] = []
        # Events waiting for the subscribers: an event emitted from inside a subscriber (a
        # steer) is handed out after the one being handed out, so every subscriber sees seq order.
        self._outbox: collections.deque[tuple[Event, str]] = collections.deque()
        self._dispatching = False
        self._failed_listeners: list[Listener] = []
        self._steers: list[str] = []
        self._approvals: dict[str, asyncio.Future[Answer]] = {}
        self._task: asyncio.Task[TurnOutcome] | None = None
        self._cancel_requested = False
        # Prepended to the next user message, then cleared (open_session sets it when the user
        # ran `mcode undo` since the last message, so the model knows its edits are gone).
        self.pending_note: str | None = None
        # Set by open_session on resume: why the last turn should be continued (killed,
        # cancelled, an error, max turns), or None when it finished.
        self.interrupted: str | None = None
        # Error events (their data) said right after session.started: on resume, what the
        # killed run left running (mcode/runtime/leftovers.py).
        self.start_notes: list[dict[str, Any]] = []
        # Counts identical failing tool calls; run_turn resets it per turn and per steer.
        self.loop_guard = LoopGuard()
        info = provider.info
        # How full the context is and when it must be compacted (mcode/agent/tokens.py).
        self.budget = TokenBudget.for_model(
            info.model,
            info.context_window,
            info.max_output_tokens,
            counter=getattr(provider, "count_request", None),
        )
        # What compaction keeps of the work (mcode/agent/ledger.py); open_session restores it.
        self.ledger: Ledger | None = None
        self._compact_requests: list[tuple[str | None, asyncio.Future[bool]]] = []
        self._compacting: asyncio.Task[bool] | None = None

    # -- events -------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, payload: ev.Payload | str, /, **data: Any) -> Event:
        """Emit one event: ``emit(ev.TurnFinished(reason="completed"))``. (``emit(type,
        **data)`` is the older spelling, kept until every caller passes a payload.)"""
        self._seq += 1
        if isinstance(payload, str):
            event = Event(payload, data, self._seq, self.id, self.turn_id, time.time())
        else:
            event = Event.of(payload, self._seq, self.id, self.turn_id, time.time())
        raw = event.to_json()
        line = self.scrub(raw)
        if line != raw:
            # A key was in the payload: subscribers get the scrubbed event too, not only the
            # scrubbed line (a front end rendering event.data must never show the key).
            event = Event.from_json(line)
        failure: StoreError | None = None
        if self.store is not None:
            try:
                self.store.write(event, line)
            except StoreError as e:
                # Stop persisting (every later write would fail too), still show this event and
                # the error that follows, then end the turn: work must not go unrecorded.
                self.store, failure = None, e
        self._outbox.append((event, line))
        if not self._dispatching:
            self._dispatching = True
            try:
                while self._outbox:
                    queued, queued_line = self._outbox.popleft()
                    for listener in list(self._listeners):
                        self._deliver(listener, queued, queued_line)
            finally:
                self._dispatching = False
        if failure is not None:
            raise failure
        return event

    def _deliver(self, listener: Listener, event: Event, line: str) -> None:
        try:
            listener(event, line)
        except StoreError:
            raise  # an emit inside the subscriber could not be stored: end the turn, as above
        except Exception as e:
            # A front end's bug must not end the turn (its tool calls would go unanswered) nor
            # keep the events from the other subscribers. Said once per subscriber, as an event.
            if any(failed is listener for failed in self._failed_listeners):
                return
            self._failed_listeners.append(listener)
            self.emit(
                ev.ERROR,
                kind="subscriber",
                message=f"an event subscriber failed on {event.type}: {type(e).__name__}: {e}",
                hint="the session goes on; this is a bug in the front end, please report it",
                recoverable=True,
            )

    def scrub(self, text: str) -> str:
        """``text`` with every key this session holds replaced by ``[REDACTED]``."""
        return redact(text, self._secrets)

    def start(
        self, *, cwd: str, provider_reason: str, permission_mode: str, resumed: bool, **more: Any
    ) -> None:
        """Emit ``session.started``; ``more`` are the front end's own fields for it (exec: how
        permissions are answered, what an untrusted project asked for)."""
        info = self.provider.info
        if not info.thinking_switchable:
            thinking = "unavailable"  # no switch is sent, whatever was asked (MiniMax-M2.x)
        elif self.thinking is None:
            thinking = "default"
        else:
            thinking = "on" if self.thinking else "off"
        self.emit(
            ev.SESSION_STARTED,
            cwd=cwd,
            provider=info.provider,
            model=info.model,
            provider_reason=provider_reason,
            context_window=info.context_window,
            permission_mode=permission_mode,
            thinking=thinking,
            resumed=resumed,
            schema_version=ev.SCHEMA_VERSION,
            **more,
        )
        notes, self.start_notes = self.start_notes, []
        for note in notes:
            self.emit(ev.ERROR, **note)

    # -- driving ------------------------------------------------------------------------------
    async def submit(self, text: str | None, images: tuple[ImagePart, ...] = ()) -> TurnOutcome:
        """Run one user turn to its end. Only one turn runs at a time: while one runs this
        raises MCodeError, unless it was cancelled, and then it waits for it to end first.
        ``text`` None continues the conversation without a new user message (an interrupted
        turn, resumed)."""
        from mcode.agent.loop import run_turn

        while self._task is not None and not self._task.done():
            if not self._cancel_requested:
                raise MCodeError("a turn is already running", hint="steer it, or cancel it first")
            # A cancelled turn is still winding up (answering its calls, killing a command):
            # wait for it, so that its last events come first and keep its own turn_id.
            await asyncio.wait({self._task})
        if self._compacting is not None and not self._compacting.done():
            await asyncio.wait({self._compacting})  # a compaction between turns ends first
        if text is None and not self.history:
            raise MCodeError("there is no conversation to continue", hint="send a message")
        self._cancel_requested = False
        self.tool_context.cancel.clear()
        self.turn_id = uuid.uuid4().hex[:12]
        if self.store is not None and not self.history and text is not None:
            title = text.strip().splitlines()[0] if text.strip() else ""
            self.store.set_title(self.id, self.scrub(title))
        if self.pending_note:
            if text is not None:
                text = f"{self.pending_note}\n\n{text}"
            else:  # continuing a turn: the note reaches the model at its first step
                self._steers.append(self.pending_note)
            self.pending_note = None
        message = None if text is None else user_message(text, images)
        self._task = asyncio.ensure_future(run_turn(self, message))
        try:
            return await asyncio.shield(self._task)
        except asyncio.CancelledError:
            # The caller was cancelled (e.g. Ctrl-C): cancel the turn and let it clean up.
            self.cancel()
            return await self._task
        finally:
            if self._task.done():
                self.turn_id = None  # events between and after turns carry a null turn_id
                for _, future in self.take_compact_requests():
                    future.set_result(False)  # the turn ended early (cancel, error)
                    self.emit(
                        ev.ERROR,
                        kind="compaction",
                        message="not compacted: the turn ended before its next step",
                        hint="ask again between turns",
                        recoverable=True,
                    )

    @property
    def running(self) -> bool:
        """Whether a turn is running: a steer now reaches it (at its next step boundary)."""
        return self._task is not None and not self._task.done()

    def steer(self, text: str) -> None:
        """Add a requirement to the running work; delivered at the next step boundary."""
        self._steers.append(text)
        self.emit(ev.STEER_RECEIVED, text=text)

    def requeue_steers(self, texts: list[str]) -> None:
        """Steers already received (and recorded) that a killed run never delivered: a resumed
        session delivers them at its next step, without a second ``steer.received``."""
        self._steers.extend(texts)

    @property
    def has_pending_steers(self) -> bool:
        return bool(self._steers)

    def take_steers(self) -> list[str]:
        pending, self._steers = self._steers, []
        return pending

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def cancel(self) -> None:
        """Stop the running turn now. The turn finishes with reason ``cancelled``; every tool
        call in history gets a result, and no file is left half-written (writes are atomic)."""
        self._cancel_requested = True
        self.tool_context.cancel.set()
        if self._compacting is not None and not self._compacting.done():
            self._compacting.cancel()  # between turns: the history stays as it was
        task = self._task
        if task is None or task.done():
            return
        coro = task.get_coro()
        if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            # The turn's task has not run yet: cancelling it now would stop it before run_turn
            # began (no turn.finished, and submit would raise CancelledError). run_turn checks
            # cancel_requested first thing instead.
            return
        inside = asyncio.current_task() is task
        if inside:
            # Called from inside the turn (a subscriber). Task.cancel now would also cancel a
            # turn that returns before its next await: its outcome would be lost and submit
            # would raise CancelledError. Cancel it at its next await instead, if it has one.
            task.get_loop().call_soon(_cancel_if_running, task)
        else:
            task.cancel()

    async def compact(self, instructions: str | None = None) -> bool:
        """Compact the conversation: older turns become the task ledger (``/compact``).
        Between turns it runs now; while a turn runs it happens at the turn's next step
        boundary (or as the turn finishes). ``instructions`` tell the summary what to focus on.
        True once compacted, False if there was nothing to compact or the turn ended first."""
        from mcode.agent.compaction import compact

        if self.running:
            future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._compact_requests.append((instructions, future))
            return await future
        if self._compacting is not None and not self._compacting.done():
            raise MCodeError("a compaction is already running", hint="wait for it to finish")
        self._compacting = asyncio.ensure_future(compact(self, "manual", instructions))
        return await self._compacting

    def take_compact_requests(self) -> list[tuple[str | None, asyncio.Future[bool]]]:
        pending, self._compact_requests = self._compact_requests, []
        return pending

    def approve(self, request_id: str, allow: bool, reason: str = "") -> bool:
        """Answer ``permission.asked`` ``request_id`` (``reason`` reaches the model with a
        denial). False when no such question waits: answered, timed out, or never asked."""
        return self._answer(request_id, Answer(allow, reason, "user"))

    def end_approvals(self, reason: str) -> None:
        """Nobody can answer any more (the front end's input ended): deny what waits, and
        from now on deny what would ask, as a headless run does."""
        self.interactive = False
        for request_id in list(self._approvals):
            self._answer(request_id, Answer(False, reason, "headless"))

    def _answer(self, request_id: str, answer: Answer) -> bool:
        future = self._approvals.pop(request_id, None)
        if future is None or future.done():
            return False
        future.set_result(answer)
        return True

    def expect_approval(self, request_id: str) -> asyncio.Future[Answer]:
        """A future that ``approve(request_id, ...)`` resolves. Register it before emitting
        ``permission.asked``: a front end may answer from inside the event callback. After
        ``approval_timeout`` seconds it resolves to a denial by ``timeout``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._approvals[request_id] = future
        timer = None
        if self.approval_timeout is not None:
            why = f"no answer came within {self.approval_timeout:g} s"
            timer = loop.call_later(
                self.approval_timeout, self._answer, request_id, Answer(False, why, "timeout")
            )

        def forget(_: object) -> None:
            # Also when the turn is cancelled while it waits: a late approve then finds nothing.
            self._approvals.pop(request_id, None)
            if timer is not None:
                timer.cancel()

        future.add_done_callback(forget)
        return future

    def checkpoint(
        self, path: Path, before: bytes | None, mode: int | None, after: bytes | None
    ) -> int:
        """Save ``path``'s before-image under the running turn, for ``mcode undo`` (the
        :data:`~mcode.tools.base.Checkpointer` of this session's tools). Raises StoreError
        when it cannot be saved; the tool then leaves the file alone."""
        if self.store is None:
            raise StoreError(
                "the session store failed earlier in this run",
                hint="check free disk space, then resume the session",
            )
        if self.turn_id is None:
            raise StoreError("a file can only be changed during a turn")
        return self.store.checkpoint(
            self.id,
            self.turn_id,
            self.tool_context.workspace.relative(path),
            str(path),
            before,
            mode,
            None if after is None else hashlib.sha256(after).hexdigest(),
        )

    def finish(self, *, result: str | None, exit_code: int, reason: str) -> None:
        """Emit ``session.finished``; ``result`` is the answer, None when the last turn did not
        complete (its last words are not one)."""
        self.emit(
            ev.SESSION_FINISHED,
            result=result,
            reason=reason,
            exit_code=exit_code,
            usage=self.totals.usage.to_dict(),
            model_calls=self.totals.model_calls,
            tool_calls=self.totals.tool_calls,
            compactions=self.totals.compactions,
            denials=len(self.totals.denials),
        )
