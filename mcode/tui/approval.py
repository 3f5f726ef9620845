"""The permission dialog, on ``permission.asked``: allow once, always allow a pattern (an
``allow`` rule for this session and the project's config), or deny with a reason that the
model reads. Keys: ``y`` / ``a`` / ``n``; Esc denies without a reason.

The dialog only returns the answer (:class:`Verdict`); the app calls ``Session.approve`` and
writes the rule, so a question the turn gave up on (cancelled, timed out) just closes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from mcode import events as ev


@dataclass(frozen=True, slots=True)
class Verdict:
    allow: bool
    reason: str = ""
    rule: str | None = None
    """set for "always allow": the rule to keep"""


def suggest_rule(name: str, subject: str) -> str:
    """The pattern "always allow" offers: a command's first word (two for git, npm and the
    like: ``git status``), a file's folder, else the tool."""
    if name == "bash":
        words = subject.split()
        if not words or re.search(r"[;&|<>`$]", subject):
            return f"bash({subject})"  # compound: only this exact command
        keep = 2 if words[0] in ("git", "npm", "cargo", "uv", "pip", "go", "make") else 1
        return f"bash({' '.join(words[:keep])}*)"
    if "/" in subject:
        return f"{name}({subject.rsplit('/', 1)[0]}/*)"
    return f"{name}({subject})" if subject else name


class ApprovalScreen(ModalScreen[Verdict]):
    DEFAULT_CSS = """
    ApprovalScreen { align: center middle; }
    ApprovalScreen > Vertical {
        width: 80%;
        max-width: 100;
        height: auto;
        padding: 1 2;
        border: thick $warning;
        background: $surface;
    }
    ApprovalScreen .title { text-style: bold; }
    ApprovalScreen .keys { margin: 1 0 0 0; color: $text-muted; }
    ApprovalScreen Input { display: none; margin: 1 0 0 0; }
    ApprovalScreen Input.-shown { display: block; }
    """
    BINDINGS: ClassVar = [
        Binding("y", "allow", "allow once"),
        Binding("a", "always", "always allow"),
        Binding("n", "deny", "deny"),
        Binding("escape", "dismiss_deny", "deny", show=False),
    ]

    def __init__(self, asked: ev.PermissionAsked, *, trusted: bool = True) -> None:
        super().__init__()
        self.asked = asked
        self.trusted = trusted
        self._mode: str | None = None  # "always" or "deny" while its field is open

    def compose(self) -> ComposeResult:
        a = self.asked
        with Vertical():
            yield Label(f"Allow {a.name} ({a.permission})?", classes="title")
            yield Static(a.subject, classes="subject", markup=False)
            yield Static(a.reason, classes="reason", markup=False)
            yield Static(
                "[b]y[/b] allow once   [b]a[/b] always allow a pattern   "
                "[b]n[/b] deny with a reason   [b]esc[/b] deny",
                classes="keys",
            )
            # Disabled until chosen: a focused field would take the y/a/n keys as text.
            yield Input(id="rule", disabled=True)
            yield Input(placeholder="why not? (the model reads this)", id="reason", disabled=True)

    def on_mount(self) -> None:
        self.set_focus(None)

    def action_allow(self) -> None:
        if self._mode is None:
            self.dismiss(Verdict(True))

    def action_always(self) -> None:
        if self._mode is None:
            self._open("rule", suggest_rule(self.asked.name, self.asked.subject))

    def action_deny(self) -> None:
        if self._mode is None:
            self._open("reason", "")

    def action_dismiss_deny(self) -> None:
        if self._mode is not None:
            self._close()  # back to the three choices
            return
        self.dismiss(Verdict(False))

    def _open(self, which: str, value: str) -> None:
        self._mode = which
        field = self.query_one(f"#{which}", Input)
        field.value = value
        field.disabled = False
        field.add_class("-shown")
        keys = self.query_one(".keys", Static)
        if which == "rule":
            where = (
                ".mcode/config.toml"
                if self.trusted
                else (
                    ".mcode/config.toml (this folder is not trusted: the rule applies to this "
                    "session, and to later ones once you run `mcode trust`)"
                )
            )
            keys.update(f"Enter keeps this rule (saved to {where}); Esc goes back")
        else:
            keys.update("Enter denies with this reason; Esc goes back")
        field.focus()

    def _close(self) -> None:
        for field in self.query(Input):
            field.remove_class("-shown")
            field.disabled = True
        self._mode = None
        self.query_one(".keys", Static).update(
            "[b]y[/b] allow once   [b]a[/b] always allow a pattern   "
            "[b]n[/b] deny with a reason   [b]esc[/b] deny"
        )
        self.set_focus(None)

    @on(Input.Submitted, "#rule")
    def _rule(self, message: Input.Submitted) -> None:
        rule = message.value.strip()
        if rule:
            self.dismiss(Verdict(True, rule=rule))

    @on(Input.Submitted, "#reason")
    def _reason(self, message: Input.Submitted) -> None:
        self.dismiss(Verdict(False, message.value.strip()))
