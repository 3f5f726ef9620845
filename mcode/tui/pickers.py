"""The session picker (``/sessions``): this folder's stored sessions, newest first."""

from __future__ import annotations

import time
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from mcode.store import SessionInfo


class SessionPicker(ModalScreen[str | None]):
    DEFAULT_CSS = """
    SessionPicker { align: center middle; }
    SessionPicker > Vertical {
        width: 90%; max-width: 120; height: 70%; padding: 1 2;
        border: thick $accent; background: $surface;
    }
    SessionPicker OptionList { height: 1fr; }
    """
    BINDINGS: ClassVar = [Binding("escape", "dismiss_none", "close", show=False)]

    def __init__(self, sessions: list[SessionInfo]) -> None:
        super().__init__()
        self.sessions = sessions

    def compose(self) -> ComposeResult:
        options = []
        for s in self.sessions:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.updated_at))
            title = (s.title or "(no prompt)").replace("\n", " ")[:70]
            options.append(Option(f"{s.id[:12]}  {when}  {s.model}  {title}", id=s.id))
        with Vertical():
            yield Label("Resume which session? (Enter picks, Esc closes)")
            yield OptionList(*options)

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        self.dismiss(message.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class TurnPicker(ModalScreen[int | None]):
    """``/rewind``: the session's user turns, newest first; the one picked is forked before."""

    DEFAULT_CSS = SessionPicker.DEFAULT_CSS.replace("SessionPicker", "TurnPicker")
    BINDINGS: ClassVar = [Binding("escape", "dismiss_none", "close", show=False)]

    def __init__(self, turns: list[tuple[int, str]]) -> None:
        super().__init__()
        self.turns = turns

    def compose(self) -> ComposeResult:
        options = [
            Option(
                f"{n:>3}  {text.strip().splitlines()[0][:90] if text.strip() else ''}", id=str(n)
            )
            for n, text in reversed(self.turns)
        ]
        with Vertical():
            yield Label("Rewind to before which turn? (Enter picks, Esc closes)")
            yield OptionList(*options)

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        self.dismiss(int(message.option.id or 0) or None)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
