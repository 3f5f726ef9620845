"""The app: the conversation above, the prompt below, the status bar at the bottom.

Keys map to Session verbs and nothing else: Enter ``send`` (a steer while a turn runs, else a
turn), Alt+Enter / Ctrl+T ``send(steer=False)`` (a follow-up turn, queued), Esc ``cancel``,
the approval dialog ``approve``, ``/compact`` ``compact``. The queue is the Session's; the app
only shows what waits in it, and puts back into the prompt what a cancel dropped, so nothing
typed is lost.

The first frame comes before the session: ``McodeApp(launcher, opening={...})`` draws the
prompt (focused) and a status bar saying the session is opening, then opens it in a thread
(the runtime's imports, the store, tools, provider: ~300 ms here) and binds it when it is
ready. What is typed meanwhile waits in the queue bar and is sent, in order, once it is; an
open that fails is an error card, and the app still quits. So this module imports nothing of
the runtime at its top: what a session needs is imported where it is used.
"""

from __future__ import annotations

import asyncio
import gc
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from mcode import __version__
from mcode.commands import CommandRegistry
from mcode.errors import MCodeError
from mcode.tui.commands import builtin_commands
from mcode.tui.completion import FileIndex
from mcode.tui.history import PromptHistory
from mcode.tui.launch import Launcher
from mcode.tui.prompt import Completions, PromptArea
from mcode.tui.status import StatusBar
from mcode.tui.transcript import Transcript

if TYPE_CHECKING:
    from mcode import events as ev
    from mcode.messages import ImagePart
    from mcode.runtime.session import Session, TurnOutcome
    from mcode.tui.adapter import SessionEvent
    from mcode.tui.approval import ApprovalScreen, Verdict
    from mcode.tui.lanes import Lane

_IMAGE_PATH = re.compile(r"(?:^|\s)(\S+\.(?:png|jpe?g|gif|webp))(?=\s|$)", re.IGNORECASE)


# A resumed session's newest blocks are mounted at once, older ones this many at a time as
# the view reaches its top: a layout costs per mounted widget, however cheap each one is, and
# the first layout of a newly mounted chunk is one frame (150 at a time: ~50 ms here).
HISTORY_WINDOW = 60


def _settle_heap() -> None:
    """Move what is alive now (the app, a history's blocks) out of the garbage collector's
    sight. They live as long as the view does, and a full collection walking a thousand
    messages' objects took 70-125 ms: a stalled frame now and then while scrolling. A view
    whose blocks are dropped (another session) unfreezes first, so they can be collected."""
    gc.freeze()


class Welcome(Static):
    """What a new session opens on: where mcode works and how to start. (Here, not with the
    other blocks: their module is imported after the first frame.)"""

    DEFAULT_CSS = """
    Welcome {
        margin: 1 0 0 0;
        padding: 0 1;
        color: $text-muted;
    }
    """

    def __init__(self, version: str, workspace: str) -> None:
        text = Text()
        text.append(f"mcode {version}", style="bold")
        text.append(f"  {workspace}\n")
        text.append("Describe a task, or /help. @ names a file, / a command, Esc interrupts.")
        super().__init__(text)


class ConversationView(VerticalScroll):
    DEFAULT_CSS = """
    ConversationView { height: 1fr; padding: 0 1; }
    """

    def __init__(self, *children: Widget, **kw: Any) -> None:
        super().__init__(*children, **kw)
        self.earlier: list[Widget] = []  # history blocks not mounted yet, oldest first
        self._loading = False

    def focus_on_click(self) -> bool:
        return False  # a click or a drag in the conversation leaves the keyboard to the prompt

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new <= 0 and self.earlier and not self._loading:
            self._loading = True
            self.call_after_refresh(self.load_earlier)

    async def load_earlier(self) -> None:
        """Mount the next older history blocks above, keeping what was on screen in place."""
        chunk, self.earlier = self.earlier[-HISTORY_WINDOW:], self.earlier[:-HISTORY_WINDOW]
        anchor = self.children[0] if self.children else None
        if chunk:
            await self.mount_all(chunk, before=0)
            _settle_heap()
        if anchor is not None:
            self.call_after_refresh(self._keep_in_view, anchor)
        else:
            self._loading = False

    def _keep_in_view(self, anchor: Widget, tries: int = 20) -> None:
        y = anchor.virtual_region.y
        if (y == 0 or self.max_scroll_y < y) and tries:  # the blocks above are not laid out
            self.set_timer(0.01, lambda: self._keep_in_view(anchor, tries - 1))
            return
        self.scroll_to(y=y, animate=False, immediate=True)
        self._loading = False


class QueueBar(Static):
    DEFAULT_CSS = """
    QueueBar { height: auto; display: none; padding: 0 1; color: $text-muted; }
    QueueBar.-shown { display: block; }
    """


class _Asked:
    """What an allow rule looks at of a tool, for a question the app answers itself."""

    def __init__(self, asked: ev.PermissionAsked) -> None:
        self.name = asked.name
        self.permission = asked.permission
        self._subject = asked.subject

    def subject(self, args: dict[str, Any]) -> str:
        return self._subject


class McodeApp(App[int]):
    TITLE = "mcode"
    CSS = """
    Screen { layout: vertical; }
    """
    BINDINGS: ClassVar = [
        Binding("ctrl+c", "interrupt_or_quit", "interrupt / quit", priority=True),
        Binding("ctrl+d", "quit", "quit", show=False),
        # Priority: the prompt (a TextArea) has focus nearly always and binds Ctrl+Y to redo.
        Binding("ctrl+y", "copy_answer", "copy the last answer", show=False, priority=True),
        # The conversation scrolls by page whatever has focus (the prompt, most of the time).
        Binding("pageup", "page(-1)", "page up", show=False, priority=True),
        Binding("pagedown", "page(1)", "page down", show=False, priority=True),
    ]

    def __init__(
        self,
        launcher: Launcher,
        *,
        first: tuple[Session, Any] | None = None,
        opening: dict[str, Any] | None = None,
        prompt: str | None = None,
        images: tuple[ImagePart, ...] = (),
        resumed: bool = False,
    ) -> None:
        """``first``: a session already open; else one is opened behind the first frame,
        ``launcher.open(**opening)``."""
        super().__init__()
        self.launcher = launcher
        self._first = first
        self._opening_args = opening or {}
        self._opening: asyncio.Future[None] | None = None
        self.session: Session  # bound once opened: until then ``ready`` is False
        self.settings: Any = None
        self.ready = False
        self.open_failed = False
        # What was typed before the session was open: (text, follow-up), sent once it is.
        self.waiting: list[tuple[str, bool]] = []
        self._first_prompt = prompt
        self._first_images = images
        self._resumed = resumed
        self.started = False
        self.transcript = Transcript()
        self.commands: CommandRegistry = builtin_commands()
        data = launcher.data_dir
        self.history = PromptHistory(data / "prompt_history.jsonl" if data else None)
        self.files = FileIndex(launcher.workspace)
        self.lanes: dict[str | None, Lane] = {}
        # Follow-ups waiting in the Session's queue: (text, its future).
        self.queued: list[tuple[str, asyncio.Future[TurnOutcome | None]]] = []
        # "Always allow" rules given in this run: they answer later questions at once.
        self.always: list[str] = []
        self.asking: dict[str, ApprovalScreen] = {}
        # Images /image, /screenshot or a pasted path attached, sent with the next message.
        self.pending_images: list[ImagePart] = []
        self.last_outcome: TurnOutcome | None = None
        self.session_id_shown: str | None = None

    # -- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        # Kept, not queried: a query looks at the active screen, which may be a dialog.
        completions = Completions()
        # A new session opens on a welcome; a resumed one on its history.
        where = _home_short(self.launcher.workspace)
        welcome = [] if self._resumed else [Welcome(__version__, where)]
        self.view = ConversationView(*welcome, id="conversation")
        self.queue_bar = QueueBar(id="queue")
        self.prompt = PromptArea(
            self.history, self.files, self.commands, completions, self.launcher.workspace
        )
        self.status = StatusBar()
        yield self.view
        yield self.queue_bar
        yield completions
        yield self.prompt
        yield self.status

    async def on_mount(self) -> None:
        self.view.anchor()
        self.files.refresh()  # read in a thread: @ offers nothing until it is in
        self.prompt.focus()
        if self._first is not None:
            self.call_after_refresh(self._warm_imports)
            await self._opened(*self._first)
            return
        self.status.state.opening = "opening the session…"
        self.status.refresh_state()
        # After the first frame is painted: a thread importing the runtime meanwhile would
        # hold the interpreter's lock the frame is drawn with.
        self.call_after_refresh(self._open_behind)

    def _open_behind(self) -> None:
        self._opening = asyncio.ensure_future(self._open_first())
        self._warm_imports()

    async def _open_first(self) -> None:
        """The first session, opened in a thread (its work is blocking: imports, SQLite,
        building the tools), then bound in the app's loop."""
        try:
            session, settings = await asyncio.to_thread(self.launcher.open, **self._opening_args)
        except MCodeError as e:
            self._open_failed(e)
            return
        except Exception as e:  # a bug, not the user's: said, and the app still quits
            self._open_failed(
                MCodeError(
                    f"the session could not be opened: {type(e).__name__}: {e}",
                    hint="quit with Ctrl+C; `mcode exec` shows the same error with its trace",
                )
            )
            return
        if not self.is_running or not self.view.is_attached:
            await session.close()  # the app was quit while it opened
            return
        await self._opened(session, settings)

    def _open_failed(self, error: MCodeError) -> None:
        self.open_failed = True
        self.show_error(error)
        self.status.state.opening = "no session: Ctrl+C quits"
        self.status.refresh_state()
        # Nothing typed is lost: it goes back into the prompt (``mcode "prompt"``'s first).
        typed = [self._first_prompt] if self._first_prompt else []
        typed += [text for text, _ in self.waiting]
        self.waiting.clear()
        self._show_queue()
        if typed:
            current = self.prompt.text
            self.prompt.set_text("\n".join([current, *typed] if current.strip() else typed))

    async def _opened(self, session: Session, settings: Any) -> None:
        """The first session is here: bind it, then send what waited for it."""
        self.status.state.opening = None
        await self._adopt(session, settings, history=self._resumed)
        self.ready = True
        if self._first_prompt:
            self._send(self._first_prompt, self._first_images, follow_up=False)
        waiting, self.waiting = self.waiting, []
        self._show_queue()
        for text, follow_up in waiting:
            await self._take(text, follow_up=follow_up)

    @work(thread=True, exclusive=True, group="warm")
    def _warm_imports(self) -> None:
        """What the first frame is drawn without, imported once it is up: Rich's Markdown (for
        the first answer: ~50 ms, else it lands on a keystroke while the answer streams) and
        httpx (for the first request)."""
        import httpx  # noqa: F401
        import rich.markdown  # noqa: F401

    # -- sessions ---------------------------------------------------------------------------
    async def _adopt(self, session: Session, settings: Any, *, history: bool) -> None:
        """Make ``session`` the app's: its events come here, its history is drawn."""
        from mcode.tui.adapter import attach
        from mcode.tui.lanes import Lane

        self.session, self.settings = session, settings
        self.started = False
        self.lanes = {None: Lane(self.view, on_mount=self._mounted)}
        attach(session, self)
        self.session_id_shown = session.id[:12] if history else None
        if history and self.launcher.store is not None:
            await self._draw_history(session.id)
        # After the history: its session.started events say how it ran then, not now.
        info = session.model_info
        state = self.status.state
        state.model, state.provider = info.model, info.provider
        state.context_window = info.context_window
        state.mode = settings.permission_mode
        if not info.thinking_switchable:
            state.thinking = "unavailable"
        else:
            state.thinking = {None: "default", True: "on", False: "off"}[settings.thinking]
        self.status.refresh_state()

    async def _draw_history(self, session_id: str) -> None:
        """A resumed session's stored events, drawn as finished blocks in one mount."""
        from mcode import events as ev
        from mcode.tui.lanes import Lane

        assert self.launcher.store is not None
        batch: list[Widget] = []
        lanes: dict[str | None, Lane] = {None: Lane(self.view, batch=batch)}
        for raw in self.launcher.store.events(session_id):
            event = ev.Event(
                raw["type"],
                raw["data"],
                raw["seq"],
                raw["session_id"],
                raw.get("turn_id"),
                raw["ts"],
                raw.get("agent"),
            )
            self.transcript.take(event)
            self.status.take(event.payload)
            if _is_aside(event.agent):
                continue
            lane = self._lane(lanes, event.agent, batch)
            await lane.show(event.payload)
        await self._finish_open_cards(lanes)
        self.view.earlier = batch[:-HISTORY_WINDOW]
        if batch:
            await self.view.mount_all(batch[-HISTORY_WINDOW:])
        _settle_heap()
        self.view.scroll_end(animate=False, immediate=True)

    async def _finish_open_cards(self, lanes: dict[str | None, Lane]) -> None:
        """A killed run's calls never finished: their cards say so, not "running"."""
        from mcode import events as ev

        for lane in lanes.values():
            for card in lane.cards.values():
                if card.status in ("requested", "asking", "running"):
                    card.finished(False, "did not finish (the run stopped)", 0.0, "")
            lane.cards.clear()
            await lane.show(ev.TurnFinished(reason="completed"))

    def _lane(
        self, lanes: dict[str | None, Lane], agent: str | None, batch: list[Widget] | None = None
    ) -> Lane:
        lane = lanes.get(agent)
        if lane is None:
            from mcode.tui.lanes import Lane

            card = lanes[None].running_task_card()
            if card is not None:
                card.lane.add_class("-used")
                lane = Lane(card.lane, agent=agent, batch=None)
            else:  # no task call to nest under: drawn in the main view
                lane = Lane(self.view, agent=agent, batch=batch)
            lanes[agent] = lane
        return lane

    def _mounted(self, widget: Widget) -> None:
        pass

    def start_session(self) -> None:
        """``session.started``, once there is something to run (an opened and closed app
        leaves no empty session behind)."""
        if self.started:
            return
        self.started = True
        s = self.settings
        self.session.start(
            cwd=str(self.launcher.workspace),
            provider_reason=s.provider_reason,
            permission_mode=s.permission_mode,
            resumed=self._resumed or bool(self.session.history),
        )
        self.session_id_shown = self.session.id[:12]

    async def switch(self, *, resume_id: str | None = None, **changes: Any) -> bool:
        """Open another session (``resume_id``; None: a new one), or this one again with
        changed settings (``permission_mode=...``); False, said in the view, when it cannot
        be done now."""
        if not self.session.idle:
            self.say("that can be done between turns: wait for this one, or Esc to stop it")
            return False
        try:
            session, settings = self.launcher.open(resume_id=resume_id, **changes)
        except MCodeError as e:
            self.show_error(e)
            return False
        old = self.session
        await old.close()
        other = session.id != old.id
        if other:
            gc.unfreeze()  # the old session's blocks are garbage from here on
            await self.view.remove_children()
            self.transcript = Transcript()
            self.queued.clear()
            self._show_queue()
            self.status.state.new_session()
        await self._adopt(session, settings, history=other and resume_id is not None)
        self._resumed = resume_id is not None
        return True

    async def adopt_quietly(self, session: Session, settings: Any) -> None:
        """Carry on with ``session``, this one reopened (after ``/undo``): nothing redrawn."""
        await self._adopt(session, settings, history=False)
        self._resumed = True

    # -- events -----------------------------------------------------------------------------
    async def on_session_event(self, message: SessionEvent) -> None:
        from mcode import events as ev

        event = message.event
        if event.session_id != self.session.id or not self.view.is_attached:
            return  # a session this app has left, or the app is closing
        payload = event.payload
        self.transcript.take(event)
        self.status.take(payload)
        if isinstance(payload, ev.PermissionAsked):
            self._ask(payload)
        elif isinstance(payload, ev.PermissionDecided):
            self._close_question(payload)
        elif isinstance(payload, ev.TurnStarted) and event.agent is None and self.queued:
            self._drop_queued(self.queued[0][0])
        if _is_aside(event.agent):
            return  # /btw says its answer as a note; the aside is not a turn of this view
        await self._lane(self.lanes, event.agent).show(payload)

    def _ask(self, asked: ev.PermissionAsked) -> None:
        from mcode.permissions import Permissions
        from mcode.tui.approval import ApprovalScreen

        if self.always:
            check = Permissions("ask", allow=self.always).check(_Asked(asked), {})  # type: ignore[arg-type]
            if check.action == "allow":
                self.session.approve(asked.request_id, True, f"always allowed: {check.reason}")
                return
        screen = ApprovalScreen(asked, trusted=bool(self.settings.trusted))
        self.asking[asked.request_id] = screen

        def answered(verdict: Verdict | None) -> None:
            self.asking.pop(asked.request_id, None)
            if verdict is None:
                return
            if verdict.rule is not None:
                self._keep_rule(verdict.rule)
            self.session.approve(asked.request_id, verdict.allow, verdict.reason)
            self.prompt.focus()

        self.push_screen(screen, answered)

    def _keep_rule(self, rule: str) -> None:
        from mcode.config_write import add_allow_rule
        from mcode.permissions import Permissions

        try:
            Permissions("ask", allow=[rule])
            path = add_allow_rule(self.launcher.workspace, rule)
        except MCodeError as e:
            self.show_error(e)
            return
        self.always.append(rule)
        self.say(f"always allowed: {rule} (saved to {path})")

    def _close_question(self, decided: ev.PermissionDecided) -> None:
        """A question the turn stopped waiting for (cancelled, timed out) closes its dialog."""
        for request_id, screen in list(self.asking.items()):
            if screen.asked.id == decided.id:
                self.asking.pop(request_id)
                if screen.is_active or screen in self.screen_stack:
                    screen.dismiss(None)

    # -- input ------------------------------------------------------------------------------
    @on(PromptArea.Sent)
    async def _sent(self, message: PromptArea.Sent) -> None:
        if not self.ready:
            if message.text.strip() in ("/quit", "/exit"):
                self.exit(0)
                return
            if self.open_failed:  # nothing to send it to: it stays where it was typed
                self.prompt.set_text(message.text)
                return
            self.waiting.append((message.text, message.follow_up))
            self._show_queue()
            return
        await self._take(message.text, follow_up=message.follow_up)

    async def _take(self, typed: str, *, follow_up: bool) -> None:
        """What was typed: a command run, or a message sent (with the images it names)."""
        text = typed
        if text.startswith("/") and not text.startswith("//"):
            try:
                await self.commands.run(self, text.strip())
            except MCodeError as e:
                self.show_error(e)
            return
        if text.startswith("//"):
            text = text[1:]
        images: list[ImagePart] = []
        for path in _IMAGE_PATH.findall(text):
            file = (self.launcher.workspace / path).expanduser()
            if file.is_file():
                from mcode.exec_input import load_image

                try:
                    images.append(load_image(str(file)))
                except MCodeError as e:
                    self.show_error(e)
                    self.prompt.set_text(typed)
                    return
        images = [*self.pending_images, *images]
        self.pending_images.clear()
        self._send(text, tuple(images), follow_up=follow_up)

    def _send(self, text: str, images: tuple[ImagePart, ...], *, follow_up: bool) -> None:
        if images and not self.session.model_info.supports_images:
            # Nothing lost: the text back in the prompt, the images kept for when it does.
            self.pending_images[:0] = images
            self.say(
                f"the model {self.session.model_info.model} does not take images: not sent; "
                f"the {len(images)} attached stay for the next message (/model NAME to switch)"
            )
            self.prompt.set_text(text)
            return
        self.start_session()
        waits = self.session.busy or bool(self.queued)
        future = self.session.send(text, images, steer=not follow_up)
        if future is None:
            return  # a steer: the steer.received event draws it
        if waits:
            self.queued.append((text, future))
            self._show_queue()
        future.add_done_callback(lambda f: self._turn_done(text, f))

    def _turn_done(self, text: str, future: asyncio.Future[TurnOutcome | None]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            if isinstance(error, MCodeError):
                self.show_error(error)
            return
        outcome = future.result()
        if outcome is None:
            # Dropped from the queue by a cancel: back into the prompt, nothing lost.
            self._drop_queued(text)
            current = self.prompt.text
            self.prompt.set_text(text if not current.strip() else f"{current}\n{text}")
            return
        self.last_outcome = outcome

    def _drop_queued(self, text: str) -> None:
        for i, (queued, _) in enumerate(self.queued):
            if queued == text:
                del self.queued[i]
                break
        self._show_queue()

    def _show_queue(self) -> None:
        bar = self.queue_bar
        if self.queued or self.waiting:
            lines = Text()
            for text, _ in self.queued:
                lines.append(f"⏳ queued: {text.splitlines()[0][:100]}\n")
            for text, _ in self.waiting:
                first_line = (text.splitlines() or [""])[0][:100]
                lines.append(f"⏳ sent once the session is open: {first_line}\n")
            lines.rstrip()
            bar.update(lines)
            bar.add_class("-shown")
        else:
            bar.remove_class("-shown")

    @on(PromptArea.PastedImage)
    def _pasted_image(self, message: PromptArea.PastedImage) -> None:
        """A file dropped on the terminal (its path pasted): attached as ``/image`` would."""
        from mcode.exec_input import load_image

        if self.ready and not self.session.model_info.supports_images:
            # The path is then what the user can use: the model may read the file by it.
            self.prompt.insert(message.text)
            self.say(
                f"the model {self.session.model_info.model} does not take images: pasted "
                "the path as text"
            )
            return
        try:
            part = load_image(str(message.path), "pasted")
        except MCodeError as e:
            # Said, and nothing inserted: a path with an image's name was meant as an image,
            # and as text it would not become one (sent, a bare one is loaded again and
            # refused again). The user sees why and can type the path if it was wanted.
            self.show_error(e)
            return
        self.pending_images.append(part)
        self.say(f"attached {part.source}: it goes with your next message")

    @on(PromptArea.Interrupt)
    def _interrupt(self) -> None:
        if self.ready and not self.session.idle:
            self.session.cancel()

    def action_interrupt_or_quit(self) -> None:
        # Text marked in the conversation or the prompt: Ctrl+C copies it, as in a terminal
        # (Esc interrupts).
        selected = self.screen.get_selected_text() or (
            self.prompt.selected_text if self.focused is self.prompt else ""
        )
        if selected:
            self.copy_to_clipboard(selected)  # OSC 52
            self.screen.clear_selection()
            self.notify(f"copied {len(selected)} characters")
            return
        if self.ready and not self.session.idle:
            self.session.cancel()
        else:
            self.exit(0)

    def action_page(self, direction: int) -> None:
        if direction < 0:
            self.view.scroll_page_up(animate=False)
        else:
            self.view.scroll_page_down(animate=False)

    async def action_quit(self) -> None:
        self.exit(0)

    def action_copy_answer(self) -> None:
        from mcode.tui.blocks import AnswerBlock

        answers = list(self.view.query(AnswerBlock))
        if answers:
            self.copy_to_clipboard(answers[-1].text)
            self.notify("copied the last answer")

    async def on_unmount(self) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._opening is not None and not self._opening.done():
            await self._opening  # its thread cannot be stopped: the session it opens is closed
        if not self.ready:
            return
        session = self.session
        if not session.idle:
            session.cancel()
            try:
                await asyncio.wait_for(session.wait_idle(), 10)
            except TimeoutError:
                pass
        if self.started:
            outcome = self.last_outcome
            reason = outcome.reason if outcome is not None else "no_input"
            answered = outcome is not None and outcome.reason == "completed"
            session.finish(
                result=outcome.text if answered and outcome else None,
                exit_code=0,
                reason=reason,
            )
        await session.close()

    # -- what commands use ------------------------------------------------------------------
    def say(self, text: str) -> None:
        from mcode.tui.blocks import Note

        self.view.mount(Note(text))

    def show_error(self, error: MCodeError) -> None:
        from mcode.tui.cards import ErrorCard

        self.view.mount(ErrorCard(error.message, error.hint or "", recoverable=True))

    def send_prompt(self, text: str) -> None:
        self._send(text, (), follow_up=False)

    @property
    def workspace(self) -> Path:
        return self.launcher.workspace


def _home_short(path: Path) -> str:
    """``path`` as a user writes it: under their home, from ``~``."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def _is_aside(agent: str | None) -> bool:
    from mcode.agent.aside import ASIDE_PREFIX

    return agent is not None and agent.startswith(ASIDE_PREFIX)
