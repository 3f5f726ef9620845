"""One ACP session: an mcode :class:`~mcode.runtime.session.Session` and its client.

The bridge drives the Session only through its verbs and hears it only through its events::

    session/prompt   -> Session.send(text, images, steer=False); the reply waits for the turn's
                        outcome and for every update before it to be written
    "/team request"  -> an agent team as the Session's work (mcode/acp/team.py): its plan
                        and each task's status as plan updates, its summary as a message
    session/cancel   -> Session.cancel            (the prompt then returns "cancelled")
    _mcode/steer     -> Session.send(text)        (while a prompt runs: a steer)
    permission.asked -> session/request_permission -> Session.approve
                        ("always" also allows the same calls for the rest of the session)
    every event      -> Updates (mcode/acp/updates.py) -> session/update, in event order

The store's claim on the session (``Store.claim``: one writer per session) is held only while
something writes to it, a prompt above all (``claimed``): between prompts ``mcode exec --resume``
or the TUI may continue the session. The next prompt claims it again and, if another run moved
it on meanwhile, reads the newer history first (``catch_up``) and shows that run's turns to
the client as replayed updates; while the other run still holds it, the prompt is refused with
an error saying so. Event numbers never collide.

Updates go out through one queue and one sender task, so they reach the client in the order
the events happened even though an event is heard synchronously (inside ``emit``) and sending
is asynchronous. The client's file system, where it offers one, is the tools' through
``ToolContext.read_override`` / ``apply_edit`` (mcode/acp/files.py): what the agent reads is the
editor's buffer, unsaved changes included, and what it writes lands in the editor (and its
undo) as well as on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Final

from acp import RequestError
from acp import schema as s

from mcode import events as ev
from mcode.acp.files import ClientFiles
from mcode.acp.prompt import user_content
from mcode.acp.team import stop_reason
from mcode.acp.updates import Update, Updates
from mcode.config import Settings
from mcode.errors import MCodeError
from mcode.events import Event
from mcode.runtime.build import catch_up
from mcode.runtime.session import Session
from mcode.store import StoreError

log = logging.getLogger(__name__)

# turn.finished reasons as ACP stop reasons ("error" is a JSON-RPC error, or a refusal).
STOP_REASONS: dict[str, Any] = {
    "completed": "end_turn",
    "cancelled": "cancelled",
    "max_turns": "max_turn_requests",
    "output_limit": "max_tokens",
    "loop": "end_turn",  # the loop breaker ended it; an error chunk said why
}
# Each option's id is its ACP kind.
# session.finished's exit code for the last turn's reason, as `mcode exec` gives it.
EXIT_CODES = {
    "completed": 0,
    "max_turns": 3,
    "loop": 3,
    "output_limit": 3,
    "cancelled": 130,
    "error": 1,
    "no_input": 2,
}
ALLOW_ONCE: Final = "allow_once"
ALLOW_ALWAYS: Final = "allow_always"
REJECT_ONCE: Final = "reject_once"
PERMISSION_OPTIONS = [
    s.PermissionOption(option_id=ALLOW_ONCE, name="Allow", kind=ALLOW_ONCE),
    s.PermissionOption(
        option_id=ALLOW_ALWAYS, name="Always allow (this session)", kind=ALLOW_ALWAYS
    ),
    s.PermissionOption(option_id=REJECT_ONCE, name="Reject", kind=REJECT_ONCE),
]
COMMANDS = [
    s.AvailableCommand(
        name="compact",
        description="Summarise older turns into the task ledger to free context",
        input=s.AvailableCommandInput(root=s.UnstructuredCommandInput(hint="what to keep")),
    ),
    s.AvailableCommand(
        name="team",
        description="An agent team: a planner, producers in their own git worktrees, "
        "verifiers; accepted work is merged into your branch",
        input=s.AvailableCommandInput(root=s.UnstructuredCommandInput(hint="what to build")),
    ),
]


class Bridge:
    def __init__(
        self,
        conn: Any,  # acp AgentSideConnection: the client's methods
        session: Session,
        settings: Settings,
        *,
        resumed: bool,
        client_fs: s.FileSystemCapabilities | None,
    ) -> None:
        self.conn = conn
        self.session = session
        self.settings = settings
        self.resumed = resumed
        self.started = False
        # How the main conversation's last turn ended and its last words, as heard in the
        # events (so also for a turn whose prompt the client stopped waiting for).
        self.last_reason: ev.TurnReason | None = None
        self.last_text = ""
        self.updates = Updates(settings.workspace)
        self._outbox: asyncio.Queue[Update | s.AvailableCommandsUpdate] = asyncio.Queue()
        self._sender = asyncio.ensure_future(self._send_updates())
        self._asks: dict[str, asyncio.Task[None]] = {}
        self._holds = 0  # the prompts (and other writers) now inside ``claimed``
        context = session.main.tool_context
        files = ClientFiles(conn, session.id, asyncio.get_running_loop())
        if client_fs is not None and client_fs.read_text_file:
            context.read_override = files.read
        if client_fs is not None and client_fs.write_text_file:
            context.apply_edit = files.write
        session.subscribe(self._heard)

    @property
    def id(self) -> str:
        return self.session.id

    # -- events out ---------------------------------------------------------------------------
    def _heard(self, event: Event, line: str) -> None:
        for update in self.updates.of(event):
            self._outbox.put_nowait(update)
        match event.payload:
            case ev.PermissionAsked() as asked:
                self._asks[asked.id] = asyncio.ensure_future(self._ask(asked))
            case ev.MessageAssistant(message=message) if event.agent is None:
                self.last_text = message.text
            case ev.TurnFinished(reason=reason) if event.agent is None:
                self.last_reason = reason
            case ev.PermissionDecided(id=call_id, by="cancel"):
                # The turn was cancelled while the question was open: it is void.
                task = self._asks.pop(call_id, None)
                if task is not None:
                    task.cancel()

    async def _send_updates(self) -> None:
        while True:
            update = await self._outbox.get()
            try:
                await self.conn.session_update(session_id=self.id, update=update)
            except Exception as e:  # the client has gone, or refused one: the turn goes on
                log.warning("session/update not delivered: %s", e)
            finally:
                self._outbox.task_done()

    async def flush(self) -> None:
        """Return once every update queued so far has been written."""
        await self._outbox.join()

    def send_commands(self) -> None:
        """Tell the client the slash commands (after the session/new reply: see wire.py)."""
        self._outbox.put_nowait(
            s.AvailableCommandsUpdate(
                session_update="available_commands_update", available_commands=COMMANDS
            )
        )

    async def replay(self, events: list[dict[str, Any]]) -> None:
        """Send the stored history as updates (session/load), before the load's reply."""
        self._queue_replay(events)
        await self.flush()

    def _queue_replay(self, events: list[dict[str, Any]]) -> None:
        replay = Updates(self.settings.workspace, replay=True)
        for d in events:
            event = Event(
                d["type"], d["data"], d["seq"], d["session_id"], d.get("turn_id"), d["ts"],
                d.get("agent"),
            )  # fmt: skip
            for update in replay.of(event):
                self._outbox.put_nowait(update)

    # -- the store's claim --------------------------------------------------------------------
    @contextlib.contextmanager
    def claimed(self, *, show: bool = True) -> Iterator[None]:
        """Hold the session's claim for what runs inside (a prompt, a model switch), caught up
        with what another process stored of it meanwhile (``show``: its turns go to the client
        as replayed updates). RequestError while another process holds it. Released when the
        last holder leaves and nothing runs, so an idle session can be resumed elsewhere."""
        store = self.session.store
        if store is not None and self._holds == 0:
            try:
                store.claim(self.id)
            except StoreError as e:
                raise RequestError.internal_error(
                    {
                        "message": f"{e.message} (mcode exec or the TUI is running it now)",
                        "hint": "prompt again once that run has finished, or stop it",
                    }
                ) from None
            moved_on = catch_up(self.session, store)
            if moved_on:
                # Another run (with its own session.started and session.finished) came in
                # between: what this process writes next is a run of its own again.
                self.started, self.resumed = False, True
                self.last_reason, self.last_text = None, ""
                if show:
                    self._queue_replay(moved_on)
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            self._release()

    def _release(self) -> None:
        store = self.session.store
        if store is not None and self._holds == 0 and self.session.idle:
            store.release(self.id)

    # -- permissions --------------------------------------------------------------------------
    async def _ask(self, asked: ev.PermissionAsked) -> None:
        await self.flush()  # the client knows the call before it is asked about it
        try:
            reply = await self.conn.request_permission(
                session_id=self.id,
                tool_call=self.updates.tool_call(asked.id),
                options=PERMISSION_OPTIONS,
            )
        except asyncio.CancelledError:
            return
        except Exception as e:
            self.session.approve(asked.request_id, False, f"the editor could not ask ({e})")
            return
        finally:
            self._asks.pop(asked.id, None)
        outcome = reply.outcome
        if isinstance(outcome, s.AllowedOutcome) and outcome.option_id in (
            ALLOW_ONCE,
            ALLOW_ALWAYS,
        ):
            if outcome.option_id == ALLOW_ALWAYS:
                self.session.allow_for_session(asked.name, asked.subject)
            self.session.approve(asked.request_id, True, "the user allowed it in the editor")
        elif isinstance(outcome, s.AllowedOutcome):
            self.session.approve(asked.request_id, False)
        else:  # the client withdrew the question (its prompt was cancelled)
            self.session.approve(asked.request_id, False, "the question was cancelled")

    # -- prompts ------------------------------------------------------------------------------
    def start(self) -> None:
        """Emit session.started once, at the first prompt (an unused session leaves nothing)."""
        if not self.started:
            self.started = True
            self.session.start(
                cwd=str(self.settings.workspace),
                provider_reason=self.settings.provider_reason,
                permission_mode=str(self.session.main.permissions.mode),
                resumed=self.resumed,
            )

    async def prompt(self, blocks: list[Any]) -> s.PromptResponse:
        info = self.session.model_info
        text, images = user_content(
            blocks, self.settings.workspace, model=info.model, takes_images=info.supports_images
        )
        with self.claimed():
            return await self._prompt(text, images)

    async def _prompt(self, text: str, images: tuple[Any, ...]) -> s.PromptResponse:
        self.start()
        if text.startswith("/compact") and not images:
            with contextlib.suppress(asyncio.CancelledError):
                await self.session.compact(text.removeprefix("/compact").strip() or None)
            await self.flush()
            return s.PromptResponse(stop_reason="end_turn")
        if (text == "/team" or text.startswith(("/team ", "/team\n"))) and not images:
            return await self.team(text.removeprefix("/team").strip())
        turn = self.session.send(text, images, steer=False)
        assert turn is not None  # steer=False always queues a turn
        try:
            outcome = await turn
        except MCodeError as e:
            raise RequestError.internal_error({"message": e.message, "hint": e.hint}) from None
        await self.flush()
        if outcome is None:  # a cancel dropped it before it ran
            return s.PromptResponse(stop_reason="cancelled")
        if outcome.reason == "error":
            error = outcome.error
            if error is not None and getattr(error, "kind", None) == "content_filter":
                return s.PromptResponse(stop_reason="refusal")
            raise RequestError.internal_error(
                {
                    "message": error.message if error else "the turn failed",
                    "hint": error.hint if error else "",
                }
            )
        return s.PromptResponse(stop_reason=STOP_REASONS.get(outcome.reason, "end_turn"))

    async def team(self, request: str) -> s.PromptResponse:
        """Run an agent team for ``request`` as this session's work, to its end."""
        from mcode.team.setup import start_team

        if not request:
            raise RequestError.invalid_params(
                {"message": "/team needs a request", "hint": "/team what the team should build"}
            )
        if self.session.busy:
            raise RequestError.invalid_params(
                {
                    "message": "a prompt is already running in this session",
                    "hint": "wait for it, or cancel it, then start the team",
                }
            )
        try:
            job = await start_team(self.settings, self.session, request)
        except MCodeError as e:  # not a clean git branch: nothing started
            raise RequestError.invalid_params({"message": e.message, "hint": e.hint}) from None
        work = self.session.start_work(job.team, job.run())
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:  # the connection is closing: the team winds up first
            self.session.cancel()
            await self.session.wait_idle()
            raise
        await self.flush()
        outcome = job.outcome()
        self.last_reason, self.last_text = outcome.reason, outcome.text
        if job.error is not None:  # git failed under the run
            raise RequestError.internal_error(
                {"message": job.error.message, "hint": job.error.hint}
            )
        return s.PromptResponse(
            stop_reason=stop_reason(job.result.reason if job.result is not None else None)
        )

    def steer(self, text: str) -> None:
        if not text.strip():
            raise RequestError.invalid_params(
                {"message": "the steer is empty", "hint": "send the text to add"}
            )
        if not self.session.running:
            raise RequestError.invalid_params(
                {
                    "message": "no prompt is running in this session, so there is nothing to steer",
                    "hint": "send it as a prompt (session/prompt)",
                }
            )
        self.session.send(text)  # running: a steer, delivered at the turn's next step

    async def close(self) -> None:
        """The client has gone: stop what runs, say how the session ended, close it."""
        self.session.cancel()
        await self.session.wait_idle()
        for task in list(self._asks.values()):
            task.cancel()
        if self.started and self._still_ours():
            reason: ev.SessionReason = self.last_reason or "no_input"
            self.session.finish(
                result=self.last_text if reason == "completed" else None,
                exit_code=EXIT_CODES.get(reason, 1),
                reason=reason,
            )
        self._release()
        self._sender.cancel()
        await self.session.close()

    def _still_ours(self) -> bool:
        """Whether this process may end the session's run: it holds the claim (or can take
        it) and no other run has stored anything since this one's last event. When another
        has, its own session.finished says how the session ended; a second would be stale."""
        store = self.session.store
        if store is None:
            return True
        try:
            store.claim(self.id)
        except StoreError:
            return False
        return store.last_seq(self.id) <= self.session.last_seq
