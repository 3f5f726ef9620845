"""Session: the conversations of one run, their settings, their event stream.

Front ends never call the model or the tools. They call ``send`` (a message: it steers the
running turn, or queues a turn), ``submit`` (run a turn and wait for it), ``steer`` (add a
requirement while a turn runs; delivered at the next step boundary, nothing in flight is thrown
away), ``cancel`` (stop now, leave history and files consistent, drop what is queued),
``compact`` and ``approve`` (answer a ``permission.asked`` event), and they subscribe to the
events.

The agent's state is not here: each conversation (:mod:`mcode.agent.conversation`) holds its
own. A Session owns its ``main`` one and, in ``conversations``, any others (sub-agents, a team),
and hosts each through a :class:`_Seat` (the :class:`~mcode.agent.host.Host` a turn talks to),
which tags the conversation's events with its ``agent`` id.

Every event is serialised once, scrubbed of secrets, persisted to the store and handed to the
subscribers as ``(event, json_line)``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, cast

from mcode import events as ev
from mcode.agent.aside import ASIDE_PREFIX, answer_aside, settled
from mcode.agent.compaction import compact
from mcode.agent.conversation import Conversation, Totals, TurnOutcome
from mcode.agent.loop import run_turn
from mcode.agent.model_call import complete_once
from mcode.errors import MCodeError, ToolError
from mcode.events import Event
from mcode.messages import ImagePart, Message, user_message
from mcode.permissions import Answer, PermissionMode, Rule, split_command
from mcode.providers.base import ModelInfo, Provider, Warms
from mcode.runtime.turns import Queued, TurnQueue
from mcode.secrets import StreamRedactor, redact
from mcode.store import Store, StoreError
from mcode.tools.base import AgentJob, AgentReport, Checkpointer, SpawnAgent

__all__ = ["Session", "TurnOutcome"]

Listener = Callable[[Event, str], None]
# A model named by an agent role -> its provider (None: the session's own); MCodeError when it
# cannot be had (another provider whose key is not set).
ModelResolver = Callable[[str], Provider | None]


def _thinking_name(info: ModelInfo, thinking: bool | None) -> ev.Thinking:
    """How ``session.started`` and ``model.changed`` say what thinking is."""
    if not info.thinking_switchable:
        return "unavailable"  # no switch is sent, whatever was asked (MiniMax-M2.x)
    if thinking is None:
        return "default"
    return "on" if thinking else "off"


def _literal(text: str) -> str:
    """An fnmatch pattern matching exactly ``text``."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


class Work(Protocol):
    """Work the session runs in place of the main conversation's turns (a team run,
    mcode/team): while it runs, ``send``/``steer`` reach it and ``cancel`` stops it."""

    def steer(self, text: str) -> None: ...

    def cancel(self) -> None: ...


def _every_tool(job: AgentJob, name: str) -> bool:
    """A job whose tools are ``("*",)`` gets every tool of its parent but ``task``."""
    return job.tools == ("*",) and name != "task"


def _cancel_if_running(task: asyncio.Task[Any]) -> None:
    if not task.done():
        task.cancel()


class _Seat:
    """Where one conversation sits in the session: the Host its turns talk to (its events carry
    its agent id and turn id) and its running turn."""

    def __init__(self, session: Session, conversation: Conversation, depth: int = 0) -> None:
        self.session = session
        self.conversation = conversation
        self.task: asyncio.Task[TurnOutcome] | None = None
        self.cancel_requested = False
        # 0 for a conversation the session runs, 1 for a sub-agent (which starts none).
        self.depth = depth
        self.changed_files: list[str] = []

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def interactive(self) -> bool:
        return self.session.interactive

    @property
    def checkpoint(self) -> Checkpointer | None:
        # Without a store from the start there is nowhere to keep a before-image: none is saved.
        return self._save if self.session.keeps_checkpoints else None

    @property
    def spawn_agent(self) -> SpawnAgent | None:
        return self._spawn if self.depth == 0 else None

    def emit(self, payload: ev.Payload, /) -> Event:
        if isinstance(payload, ev.FileChanged) and payload.path not in self.changed_files:
            self.changed_files.append(payload.path)
        return self.session.emit(payload, of=self.conversation)

    async def _spawn(self, job: AgentJob) -> AgentReport:
        """Run ``job`` in a child conversation to its end, inside this one's running turn: a
        cancel of the turn reaches it (and is raised again here, so the turn stops too); its
        usage counts into this conversation's totals; its events carry its agent id and this
        turn's id (``mcode undo`` undoes its edits with the turn)."""
        parent = self.conversation
        agent_id = f"task-{uuid.uuid4().hex[:8]}"
        child = parent.child(
            agent_id,
            system_prompt=job.system_prompt,
            tools=[t for t in parent.tools if t.name in job.tools or _every_tool(job, t.name)],
            max_turns=job.max_turns,
            shared_totals=True,
            provider=self._provider_for(job.model),
            thinking=job.thinking,
        )
        self.session.add(child, depth=self.depth + 1)
        seat = self.session.host(child)
        child.turn_id = parent.turn_id
        outcome = await run_turn(child, seat, user_message(job.prompt))
        if outcome.reason == "cancelled":
            raise asyncio.CancelledError  # only the parent's cancel reaches a sub-agent
        error = None
        if outcome.error is not None:
            hint = outcome.error.hint
            error = outcome.error.message + (f" ({hint})" if hint else "")
        return AgentReport(agent_id, outcome.reason, outcome.text, tuple(seat.changed_files), error)

    def _provider_for(self, model: str | None) -> Provider | None:
        """The provider of a job's ``model`` (None: the parent's). One that cannot be had is an
        error event and this call's ToolError: the parent goes on without the sub-agent."""
        if model is None or model == self.conversation.provider.info.model:
            return None
        try:
            if self.session.models is None:
                raise MCodeError(
                    f"this session cannot start another model ({model!r})",
                    hint="leave model out of the role to run it on the session's model",
                )
            return self.session.models(model)
        except MCodeError as e:
            message = f"the sub-agent's model {model!r} cannot be used: {e.message}"
            self.emit(ev.Error(kind="RoleError", message=message, hint=e.hint, recoverable=True))
            raise ToolError(message, hint=e.hint) from None

    def expect_approval(self, request_id: str) -> asyncio.Future[Answer]:
        return self.session.expect_approval(request_id)

    def _save(self, path: Path, before: bytes | None, mode: int | None, after: bytes | None) -> int:
        """Save ``path``'s before-image under the running turn, for ``mcode undo``. Raises
        StoreError when it cannot be saved; the tool then leaves the file alone."""
        session = self.session
        if session.store is None:
            raise StoreError(
                "the session store failed earlier in this run",
                hint="check free disk space, then resume the session",
            )
        turn_id = self.conversation.turn_id
        if turn_id is None:
            raise StoreError("a file can only be changed during a turn")
        return session.store.checkpoint(
            session.id,
            turn_id,
            self.conversation.tool_context.workspace.relative(path),
            str(path),
            before,
            mode,
            None if after is None else hashlib.sha256(after).hexdigest(),
        )


_STREAMED = (ev.TextDelta, ev.ThinkingDelta, ev.ToolOutput)


class Session:
    def __init__(
        self,
        main: Conversation,
        *,
        store: Store | None = None,
        interactive: bool = False,
        secrets: list[str] | None = None,
        session_id: str | None = None,
        last_seq: int = 0,
        approval_timeout: float | None = None,
    ) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.main = main
        # The other conversations, by agent id: sub-agents and a team's members.
        self.conversations: dict[str, Conversation] = {}
        self._seats: dict[str | None, _Seat] = {None: _Seat(self, main)}
        self.store = store
        # Whether file changes are checkpointed (there is a store to keep them in).
        self.keeps_checkpoints = store is not None
        self.interactive = interactive
        # Seconds a permission.asked waits for approve before it is denied (None: forever).
        self.approval_timeout = approval_timeout
        self._seq = last_seq
        self._secrets = [s for s in (secrets or []) if s]
        # Streamed pieces (deltas, command output) per conversation and stream, each redacted
        # as one text: a key split across two deltas is held back until it is whole.
        self._streams: dict[tuple[str | None, str, str], StreamRedactor] = {}
        self._releasing = False
        self._listeners: list[Listener] = []
        # Events waiting for the subscribers: an event emitted from inside a subscriber (a
        # steer) is handed out after the one being handed out, so every subscriber sees seq order.
        self._outbox: collections.deque[tuple[Event, str]] = collections.deque()
        self._dispatching = False
        self._failed_listeners: list[Listener] = []
        self._approvals: dict[str, asyncio.Future[Answer]] = {}
        self._editable: set[str] = set()  # the waiting questions that take an edit
        # Set by open_session on resume: why the last turn should be continued (killed,
        # cancelled, an error, max turns), or None when it finished.
        self.interrupted: str | None = None
        # Set by open_session on resume: the messages a killed run was given with --resume and
        # never began (``message.queued`` without its ``message.user``), to run first, in order.
        self.queued: list[tuple[str, tuple[ImagePart, ...]]] = []  # text, images
        # Error events said right after session.started: on resume, what the
        # killed run left running (mcode/runtime/leftovers.py).
        self.start_notes: list[ev.Error] = []
        self._queue = TurnQueue()
        self._compacting: asyncio.Task[bool] | None = None
        self._work: tuple[Work, asyncio.Task[Any]] | None = None
        # Called by close(), after the providers: what else the session started (MCP servers).
        self.on_close: list[Callable[[], None]] = []
        # Another model for a sub-agent whose role names one (set by open_session).
        self.models: ModelResolver | None = None
        self._warming: asyncio.Task[None] | None = None

    # -- what front ends read -----------------------------------------------------------------
    @property
    def history(self) -> list[Message]:
        """The main conversation's history, as the model sees it."""
        return self.main.history

    @property
    def totals(self) -> Totals:
        """What the main conversation (and the sub-agents it ran) used so far."""
        return self.main.totals

    @property
    def model_info(self) -> ModelInfo:
        """The main conversation's provider and model (name, window, image input, ...)."""
        return self.main.provider.info

    @property
    def last_seq(self) -> int:
        """The number of the last event of this session: written here, or read on resume."""
        return self._seq

    def continue_from(self, last_seq: int) -> None:
        """Number the next event after ``last_seq``: another process ran this session while this
        one held no claim on it (:func:`mcode.runtime.build.catch_up`). Only between turns."""
        if self.busy:
            raise MCodeError("a session cannot be renumbered while it runs")
        self._seq = last_seq

    def add(self, conversation: Conversation, *, depth: int = 0) -> None:
        """Host another conversation (a team member; ``depth`` 1: a sub-agent) in this session."""
        agent = conversation.agent_id
        if agent is None or agent in self._seats:
            raise MCodeError(f"a conversation needs a new agent id, not {agent!r}")
        self.conversations[agent] = conversation
        self._seats[agent] = _Seat(self, conversation, depth)

    def host(self, conversation: Conversation) -> _Seat:
        """The Host that ``conversation`` (added before) runs under."""
        return self._seats[conversation.agent_id]

    # -- events -------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, payload: ev.Payload, /, *, of: Conversation | None = None) -> Event:
        """Record and publish an event of conversation ``of`` (None: the main one):
        ``emit(ev.TurnFinished(reason="completed"))``."""
        conv = self.main if of is None else of
        if self._secrets and not self._releasing:
            if isinstance(payload, _STREAMED):
                key = (conv.agent_id, payload.TYPE, getattr(payload, "id", ""))
                stream = self._streams.get(key) or self._streams.setdefault(
                    key, StreamRedactor(self._secrets)
                )
                payload = dataclasses.replace(payload, text=stream.feed(payload.text))
            elif self._streams:
                self._flush_streams(conv)
        self._seq += 1
        event = Event.of(payload, self._seq, self.id, conv.turn_id, time.time(), conv.agent_id)
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

    def _flush_streams(self, conv: Conversation) -> None:
        """A conversation's stream ended (its next event is not a piece of it): what its
        redactors held back was no key after all and goes out as a last piece."""
        for key in [k for k in self._streams if k[0] == conv.agent_id]:
            held = self._streams.pop(key).flush()
            if held:
                piece: ev.Payload = (
                    ev.ToolOutput(id=key[2], text=held)
                    if key[1] == ev.TOOL_OUTPUT
                    else ev.TextDelta(text=held)
                    if key[1] == ev.TEXT_DELTA
                    else ev.ThinkingDelta(text=held)
                )
                self._releasing = True  # already redacted: emit it as it is
                try:
                    self.emit(piece, of=conv)
                finally:
                    self._releasing = False

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
                ev.Error(
                    kind="subscriber",
                    message=f"an event subscriber failed on {event.type}: {type(e).__name__}: {e}",
                    hint="the session goes on; this is a bug in the front end, please report it",
                    recoverable=True,
                )
            )

    def add_secret(self, value: str) -> None:
        """Redact ``value`` too from here on (the key of another provider, which a sub-agent's
        role brought in). Streams already under way keep what they had."""
        if value and value not in self._secrets:
            self._secrets.append(value)

    def scrub(self, text: str) -> str:
        """``text`` with every key this session holds replaced by ``[REDACTED]``."""
        return redact(text, self._secrets)

    def start(
        self,
        *,
        cwd: str,
        provider_reason: str,
        permission_mode: str,
        resumed: bool,
        approvals: ev.Approvals | None = None,
        permission_note: str | None = None,
        trusted: bool | None = None,
        project_ignored: tuple[str, ...] | None = None,
    ) -> None:
        """Emit ``session.started``. ``approvals`` and the three after it are a front end's
        own fields for it (exec: how permissions are answered, what an untrusted project asked
        for); they are written exactly when ``approvals`` is given."""
        info = self.model_info
        thinking = _thinking_name(info, self.main.thinking)
        self.emit(
            ev.SessionStarted(
                cwd=cwd,
                provider=info.provider,
                model=info.model,
                provider_reason=provider_reason,
                context_window=info.context_window,
                # One of them: the config checks the name (mcode/config.py).
                permission_mode=cast(ev.PermissionModeName, permission_mode),
                thinking=thinking,
                resumed=resumed,
                approvals=approvals,
                permission_note=permission_note,
                trusted=trusted,
                project_ignored=project_ignored,
            )
        )
        notes, self.start_notes = self.start_notes, []
        for note in notes:
            self.emit(note)

    # -- driving ------------------------------------------------------------------------------
    def send(
        self, text: str | None, images: tuple[ImagePart, ...] = (), *, steer: bool = True
    ) -> asyncio.Future[TurnOutcome | None] | None:
        """What the user said, as it comes: while a turn runs it steers it (None is returned);
        otherwise it is queued as a turn of its own, run once what is queued before it has
        run, and the future returned gets its outcome (None if a cancel dropped it first).
        ``steer`` False always queues (a message meant as the next task); so do ``images`` (a
        steer is text) and ``text`` None (continue an interrupted turn)."""
        if steer and text is not None and not images and self.running:
            self.steer(text)
            return None
        future: asyncio.Future[TurnOutcome | None] = self._queue.put(Queued(text, images))
        self._advance()
        return future

    async def submit(
        self, text: str | None, images: tuple[ImagePart, ...] = (), *, agent: str | None = None
    ) -> TurnOutcome:
        """Run one user turn of conversation ``agent`` (None: the main one) to its end. Only one
        turn of a conversation runs at a time: while one runs this raises MCodeError, unless it
        was cancelled, and then it waits for it to end first. ``text`` None continues the
        conversation without a new user message (an interrupted turn, resumed)."""
        seat = self._seats[agent]
        while seat.task is not None and not seat.task.done():
            if not seat.cancel_requested:
                raise MCodeError("a turn is already running", hint="steer it, or cancel it first")
            # A cancelled turn is still winding up (answering its calls, killing a command):
            # wait for it, so that its last events come first and keep its own turn_id.
            await asyncio.wait({seat.task})
        if agent is None and self._compacting is not None and not self._compacting.done():
            await asyncio.wait({self._compacting})  # a compaction between turns ends first
        task = self._begin(seat, text, images)
        if agent is None:
            task.add_done_callback(self._advance_after)  # what was queued meanwhile runs next
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller was cancelled (e.g. Ctrl-C): cancel the turn and let it clean up.
            self.cancel()
            return await task

    def _begin(
        self, seat: _Seat, text: str | None, images: tuple[ImagePart, ...]
    ) -> asyncio.Task[TurnOutcome]:
        """Start a turn of ``seat``'s conversation now; its task."""
        conv = seat.conversation
        if text is None and not conv.history:
            raise MCodeError("there is no conversation to continue", hint="send a message")
        seat.cancel_requested = False
        conv.tool_context.cancel.clear()
        conv.turn_id = uuid.uuid4().hex[:12]
        if self.store is not None and conv is self.main and not conv.history and text is not None:
            title = text.strip().splitlines()[0] if text.strip() else ""
            self.store.set_title(self.id, self.scrub(title))
        if conv.pending_note:
            if text is not None:
                text = f"{conv.pending_note}\n\n{text}"
            else:  # continuing a turn: the note reaches the model at its first step
                conv.add_steer(conv.pending_note)
            conv.pending_note = None
        message = None if text is None else user_message(text, images)
        seat.task = asyncio.ensure_future(self._turn(seat, message))
        return seat.task

    async def _turn(self, seat: _Seat, message: Message | None) -> TurnOutcome:
        conv = seat.conversation
        try:
            return await run_turn(conv, seat, message)
        finally:
            conv.turn_id = None  # events between and after turns carry a null turn_id
            for _, future in conv.take_compact_requests():
                future.set_result(False)  # the turn ended early (cancel, error)
                self.report_error(
                    "compaction",
                    "not compacted: the turn ended before its next step",
                    "ask again between turns",
                )

    def _advance(self) -> None:
        """Start what is queued next, if nothing runs (called again as each thing ends)."""
        while self._queue and not self.busy:
            item = self._queue.take()
            if item.compact:
                self._compacting = asyncio.ensure_future(self._compact_now(item.text))
                running: asyncio.Future[Any] = self._compacting
            else:
                try:
                    running = self._begin(self._seats[None], item.text, item.images)
                except MCodeError as e:
                    item.done.set_exception(e)
                    continue
            running.add_done_callback(functools.partial(self._ended, item))

    def _advance_after(self, _: object) -> None:
        self._advance()

    def _ended(self, item: Queued, task: asyncio.Future[Any]) -> None:
        if not item.done.done():
            if task.cancelled():
                # A cancel that lands as a turn returns cancels its task after the fact.
                item.done.set_result(TurnOutcome("cancelled") if not item.compact else False)
            elif task.exception() is not None:
                item.done.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                item.done.set_result(task.result())
        self._advance()

    @property
    def running(self) -> bool:
        """Whether a turn of the main conversation (or a team run) runs: a steer now reaches
        it (at its next step boundary)."""
        return self._seats[None].running or self._work_running

    @property
    def _work_running(self) -> bool:
        return self._work is not None and not self._work[1].done()

    def start_work(self, work: Work, run: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``run`` (``work``'s coroutine: a team run) as the session's work: steers go to
        ``work.steer``, a cancel to ``work.cancel`` (and to every conversation's turn), and
        queued messages wait for it to end."""
        if self.busy:
            raise MCodeError("a turn is already running", hint="wait for it, or cancel it")
        task = asyncio.ensure_future(run)
        self._work = (work, task)
        task.add_done_callback(self._advance_after)
        return task

    @property
    def busy(self) -> bool:
        """Whether a turn or a compaction between turns runs (what is queued waits for it)."""
        return self.running or (self._compacting is not None and not self._compacting.done())

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing is queued."""
        return not self.busy and not self._queue

    async def wait_idle(self) -> None:
        """Return once nothing runs and nothing is queued."""
        while not self.idle:
            work = None if self._work is None else self._work[1]
            running = {t for t in (self._seats[None].task, self._compacting, work) if t}
            running = {t for t in running if not t.done()}
            if running:
                await asyncio.wait(running)
            else:  # one ended and the next starts from its done callback: let it
                await asyncio.sleep(0)

    def steer(self, text: str) -> None:
        """Add a requirement to the running work; delivered at the next step boundary."""
        if self._work is not None and self._work_running:
            self._work[0].steer(text)  # the work says where it went (a team.steer receipt)
            return
        self.main.add_steer(text)
        self.emit(ev.SteerReceived(text=text))

    def cancel(self) -> None:
        """Stop the running turns now and drop what is queued. A turn finishes with reason
        ``cancelled``; every tool call in history gets a result, and no file is left
        half-written (writes are atomic)."""
        self._queue.clear()
        if self._work is not None and self._work_running:
            self._work[0].cancel()
        if self._compacting is not None and not self._compacting.done():
            self._compacting.cancel()  # between turns: the history stays as it was
        for seat in list(self._seats.values()):
            self._cancel_seat(seat)

    def _cancel_seat(self, seat: _Seat) -> None:
        seat.cancel_requested = True
        seat.conversation.tool_context.cancel.set()
        task = seat.task
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
        """Compact the main conversation: older turns become the task ledger (``/compact``).
        Between turns it runs now, or after what is queued; while a turn runs it happens at
        the turn's next step boundary (or as the turn finishes). ``instructions`` tell the
        summary what to focus on. True once compacted; False (and said in an ``error`` event)
        if there was nothing to compact or the turn ended first. A cancel meanwhile raises
        CancelledError, the history as it was."""
        if self.running:
            # A compaction that is not made says why itself (mcode/agent/compaction.py), as
            # does a turn that ends before its next step (_turn).
            return await self.main.request_compaction(instructions)
        if not self._queue and not self.busy:
            self._compacting = asyncio.ensure_future(self._compact_now(instructions))
            self._compacting.add_done_callback(self._advance_after)
            return await self._compacting
        future: asyncio.Future[bool] = self._queue.put(Queued(instructions, compact=True))
        self._advance()
        return await future

    async def _compact_now(self, instructions: str | None) -> bool:
        return await compact(self.main, self._seats[None], "manual", instructions)

    async def ask_aside(self, text: str) -> str:
        """Answer a side question (``/btw``) without touching the main history, also while a
        main turn runs: a side conversation starting from the main one's request prefix (so
        the provider's prompt cache serves it; see :mod:`mcode.agent.aside`) answers it once,
        with no tool call. Its events carry its own agent id (``aside-…``) and turn id. Raises
        MCodeError when it fails or is cancelled (Session.cancel stops it too); cancelling the
        caller stops only the aside."""
        main = self.main
        agent = f"{ASIDE_PREFIX}{uuid.uuid4().hex[:8]}"
        aside = main.child(
            agent,
            system_prompt=main.system_prompt,
            tools=main.tools,
            shared_totals=True,  # paid for like any call: it counts into the session's usage
        )
        aside.history = settled(main.history)
        self.add(aside)
        seat = self.host(aside)
        aside.turn_id = uuid.uuid4().hex[:12]
        seat.task = asyncio.ensure_future(answer_aside(aside, seat, user_message(text)))
        try:
            outcome = await asyncio.shield(seat.task)
        except asyncio.CancelledError:
            # The caller was cancelled: stop the aside, not the main turn (whose tool context
            # the aside shares, so its cancel flag is left alone).
            seat.cancel_requested = True
            seat.task.cancel()
            await asyncio.wait({seat.task})
            raise
        finally:
            if seat.task.done():
                aside.turn_id = None
                del self._seats[agent], self.conversations[agent]
        if outcome.error is not None:
            raise outcome.error
        if outcome.reason != "completed":
            raise MCodeError(
                "the side question was cancelled before it was answered", hint="ask it again"
            )
        return outcome.text

    async def complete(self, prompt: str, *, system: str, max_output_tokens: int = 256) -> str:
        """The model's answer to ``prompt`` alone, in one call on the main conversation's
        model: no tools, thinking off, nothing added to the history and no event (an editor's
        inline completion, mcode/agent/model_call.py). It may run while a turn runs. Raises
        ProviderError when the call fails."""
        return await complete_once(
            self.main, prompt, system=system, max_output_tokens=max_output_tokens
        )

    def report_error(self, kind: ev.ErrorKind, message: str, hint: str) -> None:
        """Say a front end's error as an event (a skipped input line): recoverable, the
        session goes on."""
        self.emit(ev.Error(kind=kind, message=message, hint=hint, recoverable=True))

    def warm_up(self) -> None:
        """Make now, in the background, what the main conversation's first model call would
        make (the provider's HTTP client and TLS context: 100-400 ms on a process's first), so
        the first prompt does not wait for it. For a front end that opens a session before its
        first prompt arrives (an editor's ``session/new``); the call itself returns at once."""
        provider = self.main.provider
        if isinstance(provider, Warms) and self._warming is None:
            self._warming = asyncio.ensure_future(provider.warm())
            # A failure is the first call's to report (it makes the client again and fails
            # with a clear error); retrieved here so that it is not logged as unhandled.
            self._warming.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def close(self) -> None:
        """Close the providers of every conversation (their connections), then what else the
        session started (``on_close``: MCP servers, the file watcher)."""
        if self._warming is not None:
            # Its client would be made after the close, and never closed.
            with contextlib.suppress(Exception):
                await self._warming
        closed: list[object] = []
        for conv in (self.main, *self.conversations.values()):
            if not any(p is conv.provider for p in closed):
                closed.append(conv.provider)
                await conv.provider.aclose()
        closers, self.on_close = self.on_close, []
        for closer in closers:
            closer()

    def approve(self, request_id: str, allow: bool, reason: str = "", edit: Any = None) -> bool:
        """Answer ``permission.asked`` (or ``team.plan.asked``) ``request_id`` (``reason``
        reaches the model with a denial). ``edit``: a plan gate's answer with a whole new plan
        (its JSON value), which the team checks. False when no such question waits: answered,
        timed out, or never asked. MCodeError for an edit of a question that takes none."""
        if edit is not None and request_id in self._approvals and request_id not in self._editable:
            raise MCodeError(
                f"{request_id!r} is a permission question, which takes allow or deny",
                hint='only a team.plan.asked takes "decision": "edit" with a "plan"',
            )
        return self._answer(request_id, Answer(allow or edit is not None, reason, "user", edit))

    @property
    def permission_mode(self) -> str:
        """The main conversation's permission mode (its name)."""
        return self.main.permissions.mode.value

    def set_permission_mode(self, mode: str) -> None:
        """What tools may do without asking, from the next call on (an editor's mode picker).
        ConfigError for a name that is no mode."""
        self.main.permissions.mode = PermissionMode.parse(mode)

    async def use_provider(self, provider: Provider, thinking: bool | None) -> None:
        """The main conversation talks to ``provider`` (another model) from its next call,
        thinking as given; said as ``model.changed``. Only between turns: MCodeError while
        one runs. The old provider is closed."""
        if self.busy:
            raise MCodeError(
                "the model can only be changed between prompts",
                hint="wait for the prompt to finish, or cancel it, then change the model",
            )
        old = self.main.provider
        self.main.use_provider(provider, thinking)
        info = provider.info
        self.emit(
            ev.ModelChanged(
                provider=info.provider,
                model=info.model,
                context_window=info.context_window,
                thinking=_thinking_name(info, thinking),
            )
        )
        if old is not provider:
            await old.aclose()

    def set_thinking(self, on: bool | None) -> None:
        """Model thinking on, off, or (None) the model's default, from the next model call."""
        self.main.thinking = on

    def allow_for_session(self, name: str, subject: str) -> list[str]:
        """Allow calls like tool ``name`` on ``subject`` without asking for the rest of this
        session (an editor's "always allow"): a bash command by its exact pieces (``a && b``
        allows ``a`` and ``b``), any other tool whole. The rules added; none for a command
        too unsure to split (it keeps being asked about)."""
        if name == "bash":
            pieces = split_command(subject)
            rules = [f"bash({_literal(piece)})" for piece in pieces or []]
        else:
            rules = [name]
        for rule in rules:
            self.main.permissions.allow.append(Rule.parse(rule))
        return rules

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

    def expect_approval(self, request_id: str, *, edits: bool = False) -> asyncio.Future[Answer]:
        """A future that ``approve(request_id, ...)`` resolves. Register it before emitting
        ``permission.asked``: a front end may answer from inside the event callback. After
        ``approval_timeout`` seconds it resolves to a denial by ``timeout``. ``edits``: the
        answer may carry an edit (a team's plan gate)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._approvals[request_id] = future
        if edits:
            self._editable.add(request_id)
        timer = None
        if self.approval_timeout is not None:
            why = f"no answer came within {self.approval_timeout:g} s"
            timer = loop.call_later(
                self.approval_timeout, self._answer, request_id, Answer(False, why, "timeout")
            )

        def forget(_: object) -> None:
            # Also when the turn is cancelled while it waits: a late approve then finds nothing.
            self._approvals.pop(request_id, None)
            self._editable.discard(request_id)
            if timer is not None:
                timer.cancel()

        future.add_done_callback(forget)
        return future

    def finish(self, *, result: str | None, exit_code: int, reason: ev.SessionReason) -> None:
        """Emit ``session.finished``; ``result`` is the answer, None when the last turn did not
        complete (its last words are not one)."""
        totals = self.totals
        self.emit(
            ev.SessionFinished(
                result=result,
                reason=reason,
                exit_code=exit_code,
                usage=totals.usage,
                model_calls=totals.model_calls,
                tool_calls=totals.tool_calls,
                compactions=totals.compactions,
                denials=len(totals.denials),
            )
        )
