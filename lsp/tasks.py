"""A task from the editor: one Session, its progress in the editor, its answer.

Every task (``mcode.task``, a code action, ``mcode.review``, ``mcode.resume``) runs in a Session
opened by :func:`mcode.runtime.build.open_session` and stored like any other, so ``mcode exec
--resume ID`` continues it. The server is a front end of that Session and nothing more: it calls
``submit``, ``send`` (steer), ``cancel`` and ``approve``, and maps the events it subscribes to:

    turn.started, tool.started, tool.finished, file.changed, retry
                             -> $/progress report (begin and end around the task), on the
                                workDoneToken the command came with, else on one the server
                                creates (window/workDoneProgress/create)
    tool.finished, error     -> window/logMessage
    permission.asked         -> window/showMessageRequest (Allow / Deny) -> Session.approve
    the turn's answer        -> window/showMessage, and the command's result

A task holds the store's claim on its session (``Store.claim``) from its start to its end and
gives it up then, so ``mcode exec --resume`` or the TUI can continue the session while the server
runs; ``mcode.resume`` opens it again from the store, with whatever was added elsewhere.

A client without ``window.showMessage`` in its capabilities cannot answer a question: its
sessions are headless (what would ask is denied, as in ``mcode exec``). One that does not answer
is denied after ``approval_timeout`` seconds by the Session's own timer, so a task never hangs
on a question.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from mcode import events as ev
from mcode.errors import MCodeError, UsageError
from mcode.permissions import mode_note

if TYPE_CHECKING:
    from mcode.config import Settings
    from mcode.events import Event
    from mcode.runtime.session import Session, TurnOutcome
    from mcode.store import Store

    from .editor import EditorFiles

# How `mcode exec` would exit after each turn reason (the summary carries it).
_EXIT = {"completed": 0, "max_turns": 3, "loop": 3, "output_limit": 3, "cancelled": 130, "error": 1}
# The longest answer shown in a message; a longer one is opened as a document.
MESSAGE_MAX = 2000


@dataclass(slots=True)
class Task:
    """One running task: its session and where the editor sees it."""

    session: Session
    title: str
    token: int | str
    request_id: Any = None
    # The token is the client's (sent with the command): it exists already and is reported on
    # even by a client that did not say window.workDoneProgress.
    client_token: bool = False
    answer_path: Path | None = None
    changed: list[str] = field(default_factory=list)
    # A team run (mcode.teamTask): its progress is the team's steps.
    team: bool = False


class Tasks:
    """The tasks of one server, by session id; starts them and answers for them."""

    def __init__(
        self, server: Any, files: EditorFiles, store: Store, flags: dict[str, Any]
    ) -> None:
        self.server = server
        self.files = files
        self.store = store
        self.flags = flags
        self.running: dict[str, Task] = {}
        self._asking: set[asyncio.Future[None]] = set()

    # -- what the client can do ----------------------------------------------------------------
    def _window(self) -> Any:
        caps = self.server.client_capabilities
        return None if caps is None else caps.window

    @property
    def can_ask(self) -> bool:
        window = self._window()
        return window is not None and window.show_message is not None

    @property
    def has_progress(self) -> bool:
        window = self._window()
        return bool(window is not None and window.work_done_progress)

    # -- settings ------------------------------------------------------------------------------
    def settings(self, thinking: bool | None = None) -> Settings:
        from mcode.config import load_settings

        flags = dict(self.flags)
        if thinking is not None:
            flags["thinking"] = "on" if thinking else "off"
        return load_settings(self.server.root, flags)

    # -- running -------------------------------------------------------------------------------
    async def run(
        self,
        prompt: str | None,
        *,
        title: str,
        thinking: bool | None = None,
        resume_id: str | None = None,
        request_id: Any = None,
        show: bool = True,
    ) -> dict[str, Any]:
        """Run ``prompt`` (None: continue the resumed session's interrupted turn) to its end;
        the summary the command answers with. ``show``: the answer is shown to the user (not
        when the caller turns it into something else, as review does into diagnostics)."""
        from mcode.runtime.build import open_session

        if resume_id is not None and any(sid.startswith(resume_id) for sid in self.running):
            # This process holds its claim already, so the store would not stop a second
            # Session of it here, and the two would number their events alike.
            raise UsageError(
                f"session {resume_id[:12]} is running a task in this editor",
                hint="steer it (mcode.steer), or wait for it to finish and resume it then",
            )
        settings = self.settings(thinking)
        try:
            session = open_session(
                settings, self.store, interactive=self.can_ask, resume_id=resume_id
            )
        except MCodeError:
            if resume_id is not None:  # it may have claimed the session before it failed
                with contextlib.suppress(MCodeError):
                    self.store.release(self.store.find(resume_id).id)
            raise
        if prompt is None and session.interrupted is None:
            await self._close(session)
            raise UsageError(
                f"session {session.id[:12]} has nothing to continue: its last turn finished",
                hint='give a prompt: [{"session": "ID", "prompt": "what to do next"}]',
            )
        self.files.attach(session.main.tool_context)
        task = self._task(session, title, request_id)
        self.running[session.id] = task
        session.subscribe(lambda event, _line: self._on_event(task, event))
        outcome: TurnOutcome | None = None
        try:
            self._start(session, settings, resumed=resume_id is not None)
            info = session.model_info
            self._log(
                types.MessageType.Info,
                f"session {session.id} started: {task.title} ({info.provider}/{info.model})",
            )
            await self._begin(task)
            # A cancel of this coroutine (the server shutting down) cancels the turn, which
            # winds up first (submit waits for it).
            outcome = await session.submit(prompt)
        finally:
            self.running.pop(session.id, None)
            reason = outcome.reason if outcome is not None else "cancelled"
            answer = (
                session.scrub(outcome.text)  # a key the answer quotes never reaches the editor
                if outcome is not None and reason == "completed"
                else None
            )
            session.finish(result=answer, exit_code=_EXIT.get(reason, 1), reason=reason)
            await self._close(session)
            self._end(task, reason)
        assert outcome is not None
        error = None if outcome.error is None else session.scrub(_said(outcome.error))
        if error is not None:
            self._log(types.MessageType.Error, error)
        if answer and show:
            await self._show_answer(task, answer)
        return {
            "session": session.id,
            "reason": reason,
            "answer": answer,
            "error": error,
            "changed_files": list(task.changed),
            "resume": f"mcode exec --resume {session.id[:12]}",
        }

    def _task(self, session: Session, title: str, request_id: Any, *, team: bool = False) -> Task:
        """A task of ``session``, its progress on the command's workDoneToken if it sent one."""
        token = self.server.protocol.work_done_token(request_id)
        if token is not None:
            return Task(session, title, token, request_id, team=team, client_token=True)
        return Task(session, title, f"mcode-{uuid.uuid4().hex[:12]}", request_id, team=team)

    async def _close(self, session: Session) -> None:
        """Close a task's session and give up its claim: it can be resumed elsewhere now."""
        try:
            await session.close()
        finally:
            self.store.release(session.id)

    def _start(self, session: Session, settings: Settings, *, resumed: bool) -> None:
        """``session.started`` for a task of this server (approvals by the editor, if it can)."""
        session.start(
            cwd=str(settings.workspace),
            provider_reason=settings.provider_reason,
            permission_mode=settings.permission_mode,
            resumed=resumed,
            approvals="editor" if self.can_ask else "denied",
            permission_note=mode_note(
                settings.permission_mode, can_ask=self.can_ask, timeout=settings.approval_timeout
            ),
            trusted=settings.trusted,
            project_ignored=tuple(settings.project_ignored),
        )

    async def run_team(self, prompt: str, *, title: str, request_id: Any = None) -> dict[str, Any]:
        """Run an agent team for ``prompt`` in a stored Session to its end (lsp/team.py); the
        summary: the team's reason and each task's status. Steers and cancels reach it through
        the Session as for any task."""
        from mcode.runtime.build import open_session
        from mcode.team.setup import start_team

        from .team import check_buffers

        check_buffers(self.server)  # before anything is opened: a refusal leaves nothing
        settings = self.settings()
        session = open_session(settings, self.store, interactive=self.can_ask)
        try:
            job = await start_team(settings, session, prompt)
        except BaseException:
            await self._close(session)
            raise
        task = self._task(session, title, request_id, team=True)
        self.running[session.id] = task
        session.subscribe(lambda event, _line: self._on_event(task, event))
        try:
            self._start(session, settings, resumed=False)
            info = session.model_info
            self._log(
                types.MessageType.Info,
                f"session {session.id} started a team: {task.title} ({info.provider}/{info.model})",
            )
            await self._begin(task)
            work = session.start_work(job.team, job.run())
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:  # the server shuts down: the team winds up first
                session.cancel()
                await session.wait_idle()
                raise
        finally:
            self.running.pop(session.id, None)
            outcome = job.outcome()
            reason = job.result.reason if job.result is not None else outcome.reason
            session.finish(
                result=outcome.text if outcome.reason == "completed" else None,
                exit_code=_EXIT.get(outcome.reason, 1),
                reason=outcome.reason,
            )
            await self._close(session)
            self._end(task, reason)
        error = None if outcome.error is None else session.scrub(_said(outcome.error))
        if error is not None:
            self._log(types.MessageType.Error, error)
        tasks = [dict(t) for t in job.result.tasks] if job.result is not None else []
        self.say(f"mcode team ({task.title}): {reason}\n{outcome.text}".rstrip())
        return {
            "session": session.id,
            "reason": reason,
            "tasks": tasks,
            "summary": outcome.text,
            "error": error,
            "resume": f"mcode exec --resume {session.id[:12]}",
        }

    def find(self, session_id: str | None) -> Task:
        """The running task of ``session_id`` (a prefix will do), or the latest one."""
        if not self.running:
            raise UsageError("no mcode task is running", hint="start one with mcode.task")
        if session_id is None:
            return list(self.running.values())[-1]
        found = [t for sid, t in self.running.items() if sid.startswith(session_id)]
        if len(found) != 1:
            raise UsageError(
                f"no running task has the session id {session_id!r}"
                if not found
                else f"{session_id!r} names {len(found)} running tasks",
                hint="give the session id from the task's progress title or log",
            )
        return found[0]

    def cancel(self, session_id: str | None = None, *, every: bool = False) -> list[str]:
        """Cancel one task (or ``every`` one); the ids cancelled."""
        tasks = list(self.running.values()) if every else [self.find(session_id)]
        for task in tasks:
            task.session.cancel()
        return [t.session.id for t in tasks]

    def cancel_token(self, token: Any) -> None:
        for task in list(self.running.values()):
            if task.token == token:
                task.session.cancel()

    def cancel_request(self, request_id: Any) -> None:
        for task in list(self.running.values()):
            if task.request_id is not None and str(task.request_id) == str(request_id):
                task.session.cancel()

    # -- events to the editor ------------------------------------------------------------------
    def _on_event(self, task: Task, event: Event) -> None:
        p = event.payload
        if isinstance(p, ev.PermissionAsked):
            asking = asyncio.ensure_future(self._ask(task, p))
            self._asking.add(asking)  # held until done: the loop keeps only weak references
            asking.add_done_callback(self._asking.discard)
            return
        if isinstance(p, ev.FileChanged) and p.path not in task.changed:
            task.changed.append(p.path)
        if isinstance(p, ev.ToolFinished):
            level = types.MessageType.Info if p.ok else types.MessageType.Warning
            self._log(level, f"{p.name}: {p.summary}")
        elif isinstance(p, ev.Error):
            self._log(types.MessageType.Error, f"{p.message} ({p.hint})" if p.hint else p.message)
        if task.team:
            from .team import progress_line as team_line

            line = team_line(event)
        else:
            line = progress_line(event)
        if line is not None and self._reports(task):
            self.server.work_done_progress.report(
                task.token, types.WorkDoneProgressReport(message=line)
            )

    async def _ask(self, task: Task, asked: ev.PermissionAsked) -> None:
        """Ask the user in the editor; the Session's timer denies what is not answered."""
        params = types.ShowMessageRequestParams(
            type=types.MessageType.Warning,
            message=f"mcode ({task.title}) wants to {asked.name}: {asked.subject}",
            actions=[types.MessageActionItem(title="Allow"), types.MessageActionItem(title="Deny")],
        )
        try:
            choice = await self.server.window_show_message_request_async(params)
        except Exception as e:  # the client failed the request: no answer is a denial
            task.session.approve(asked.request_id, False, f"the editor could not ask: {e}")
            return
        allowed = choice is not None and choice.title == "Allow"
        task.session.approve(asked.request_id, allowed, "" if allowed else "denied in the editor")

    def _reports(self, task: Task) -> bool:
        """Whether ``task``'s progress goes to the client."""
        return task.client_token or self.has_progress

    async def _begin(self, task: Task) -> None:
        if not self._reports(task):
            return
        if not task.client_token:
            with contextlib.suppress(Exception):  # a client that refuses still gets the reports
                await self.server.work_done_progress.create_async(task.token)
        self.server.work_done_progress.begin(
            task.token,
            types.WorkDoneProgressBegin(
                title=f"mcode: {task.title}",
                message=f"session {task.session.id[:12]}",
                cancellable=True,
            ),
        )

    def _end(self, task: Task, reason: str) -> None:
        if self._reports(task):
            self.server.work_done_progress.end(
                task.token, types.WorkDoneProgressEnd(message=reason)
            )
            # pygls keeps a future per token it has seen: ended, the token may be used again.
            self.server.work_done_progress.tokens.pop(task.token, None)

    async def _show_answer(self, task: Task, answer: str) -> None:
        if len(answer) <= MESSAGE_MAX or not self._can_show_document():
            self.server.window_show_message(
                types.ShowMessageParams(type=types.MessageType.Info, message=answer)
            )
            return
        from mcode.config import data_home

        folder = data_home() / "answers"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{task.session.id[:12]}.md"
        path.write_text(f"# {task.title}\n\n{answer}\n", encoding="utf-8")
        task.answer_path = path
        with contextlib.suppress(Exception):
            await self.server.window_show_document_async(
                types.ShowDocumentParams(uri=path.as_uri(), take_focus=True)
            )

    def _can_show_document(self) -> bool:
        window = self._window()
        return bool(window is not None and window.show_document is not None)

    def say(self, message: str) -> None:
        """A short message to the user (window/showMessage)."""
        self.server.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Info, message=message)
        )

    def _log(self, level: types.MessageType, message: str) -> None:
        self.server.window_log_message(types.LogMessageParams(type=level, message=message))


def progress_line(event: Event) -> str | None:
    """What the editor's progress shows for ``event``; None for events it does not show."""
    p = event.payload
    if isinstance(p, ev.TurnStarted):
        return "working"
    if isinstance(p, ev.ToolStarted):
        return f"{p.name}…"
    if isinstance(p, ev.ToolFinished):
        return p.summary or p.name
    if isinstance(p, ev.FileChanged):
        return f"changed {p.path}"
    if isinstance(p, ev.Retry):
        return f"retrying: {p.reason}"
    if isinstance(p, ev.SteerReceived):
        return "steered"
    return None


def _said(error: MCodeError) -> str:
    return f"{error.message} ({error.hint})" if error.hint else error.message
