"""The team's plan dialog, on ``team.plan.asked``: carry the plan out (``y``), reject it
(``n``, Esc), or edit it (``e``).

Editing opens the plan as pretty JSON in a text area; Ctrl+S hands the text to ``on_edit``
(which answers the gate with it, as stream-json's ``"decision": "edit"`` does) and the dialog
stays open until the team has checked it. The team checks it with the planner's own schema
check and, for an invalid plan, says why and asks again: :meth:`PlanScreen.refused` shows that
error here with the text kept, for another try; :meth:`PlanScreen.reasked` moves the dialog to
the new question. Only the JSON syntax is checked here (text that is no JSON value cannot be
sent at all). Esc in the editor goes back to the choice, the text kept.

The dialog only returns y/n (True/False) and calls ``on_edit``; the caller answers the gate,
so a question decided without it (timed out, cancelled) just closes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static, TextArea

if TYPE_CHECKING:
    from mcode.team.plan import Plan

CHOICE_KEYS = "[b]y[/b] yes   [b]n[/b] no   [b]e[/b] edit the plan"
EDIT_KEYS = "[b]ctrl+s[/b] submit the edited plan   [b]esc[/b] back to yes / no"


def plan_json(plan: Plan | None) -> str:
    """``plan`` as the gate's edit takes it (the planner's ``plan`` arguments), indented."""
    if plan is None:
        return "{}"
    value: dict[str, Any] = {"stages": list(plan.stage_dicts())}
    if plan.reopen:
        value["reopen"] = list(plan.reopen)
    return json.dumps(value, indent=2)


class PlanScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    PlanScreen { align: center middle; }
    PlanScreen > Vertical {
        width: 90%; max-width: 110; height: auto; max-height: 95%; padding: 1 2;
        border: thick $accent; background: $surface;
    }
    /* Editing: the editor takes the room the plan's outline had (it shows the plan itself). */
    PlanScreen.-editing > Vertical { height: 95%; }
    PlanScreen.-editing .question { display: none; }
    PlanScreen .title { display: none; text-style: bold; }
    PlanScreen.-editing .title { display: block; }
    PlanScreen .keys { margin: 1 0 0 0; color: $text-muted; }
    PlanScreen TextArea { display: none; height: 1fr; }
    PlanScreen.-editing TextArea { display: block; }
    PlanScreen .error { display: none; color: $error; margin: 1 0 0 0; }
    PlanScreen .error.-shown { display: block; }
    """
    BINDINGS: ClassVar = [
        Binding("y", "answer(True)", "yes"),
        Binding("n", "answer(False)", "no"),
        Binding("e", "edit", "edit"),
        Binding("ctrl+s", "submit", "submit the edit", show=False),
        Binding("escape", "back", "no", show=False),
    ]

    def __init__(
        self, request_id: str, question: str, plan: Plan | None, on_edit: Callable[[Any], None]
    ) -> None:
        super().__init__()
        self.request_id = request_id  # the question it answers: moves on an invalid edit
        self.question = question
        self.plan_text = plan_json(plan)
        self.on_edit = on_edit
        self.editing = False
        self.checking = False  # an edit was sent; the team's verdict has not come yet
        self.error = ""  # why the last edit was not taken, as shown ("" when none is)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, classes="question")
            yield Label("The plan, as JSON (the planner's schema):", classes="title")
            # Disabled until chosen: a focused editor would take the y/n/e keys as text.
            yield TextArea(self.plan_text, id="plan", disabled=True, show_line_numbers=True)
            yield Static("", classes="error", markup=False)
            yield Static(CHOICE_KEYS, classes="keys")

    def on_mount(self) -> None:
        self.set_focus(None)

    @property
    def text(self) -> str:
        """What the editor holds now (the plan as shown until it is changed)."""
        return self.query_one("#plan", TextArea).text

    def action_answer(self, yes: bool) -> None:
        if not self.editing and not self.checking:
            self.dismiss(yes)

    def action_edit(self) -> None:
        if self.editing or self.checking:
            return
        self.editing = True
        editor = self.query_one("#plan", TextArea)
        editor.disabled = False
        self.add_class("-editing")
        self.query_one(".keys", Static).update(EDIT_KEYS)
        editor.focus()

    def action_back(self) -> None:
        if self.checking:
            return
        if not self.editing:
            self.dismiss(False)
            return
        self.editing = False
        editor = self.query_one("#plan", TextArea)
        self.remove_class("-editing")
        editor.disabled = True  # the text stays in it for the next e
        self.query_one(".keys", Static).update(CHOICE_KEYS)
        self.set_focus(None)

    def action_submit(self) -> None:
        if not self.editing or self.checking:
            return
        try:
            value = json.loads(self.text)
        except json.JSONDecodeError as e:
            self._show_error(
                f"the edited plan is not JSON: {e.msg} at line {e.lineno}, column {e.colno}"
            )
            return
        self.checking = True
        self.query_one("#plan", TextArea).read_only = True
        self.query_one(".keys", Static).update("checking the edited plan...")
        self.on_edit(value)

    def refused(self, message: str) -> None:
        """The team did not accept the edit: ``message`` says why."""
        self._show_error(message)

    def reasked(self, request_id: str) -> None:
        """The gate asks again (after a refused edit): this dialog answers ``request_id``
        now, with the editor open on the text as it was."""
        self.request_id = request_id
        if not self.checking:
            return
        self.checking = False
        self.query_one("#plan", TextArea).read_only = False
        self.query_one(".keys", Static).update(EDIT_KEYS)
        if not self.error:
            self._show_error("the team did not accept the edited plan")

    def _show_error(self, message: str) -> None:
        self.error = message
        shown = self.query_one(".error", Static)
        shown.update(message + "\ncorrect it and submit again, or esc to go back to yes / no")
        shown.add_class("-shown")
