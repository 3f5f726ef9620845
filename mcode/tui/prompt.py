"""The prompt: a multi-line TextArea that stays live while work runs.

Enter sends (the app steers a running turn with it, or starts one); Alt+Enter or Ctrl+T sends
it as a follow-up turn; Shift+Enter, Ctrl+J or a line ending in ``\\`` then Enter adds a line.
Up on the first line and Down on the last browse the history. ``@`` completes workspace paths
and ``/`` at the start the commands, in a list above the prompt (Tab or Enter takes one, Esc
closes it). What was typed is never cleared unless it was sent. A pasted path to an image
file (a file dropped on the terminal) is not inserted: it is posted as :class:`PastedImage`,
which the app attaches (mcode/tui/paste.py says which pastes are read so).
"""

from __future__ import annotations

from pathlib import Path

from textual import events
from textual.message import Message
from textual.widgets import OptionList, TextArea
from textual.widgets.option_list import Option

from mcode.commands import CommandRegistry
from mcode.tui.completion import STALE, FileIndex
from mcode.tui.history import PromptHistory
from mcode.tui.paste import pasted_image_path


class Completions(OptionList):
    DEFAULT_CSS = """
    Completions {
        height: auto;
        max-height: 12;
        display: none;
        border: round $secondary;
        background: $surface;
    }
    Completions.-shown { display: block; }
    """

    def __init__(self) -> None:
        super().__init__(id="completions")
        self.can_focus = False
        self.replace_from = 0  # where in the line the completed word starts

    @property
    def shown(self) -> bool:
        return self.has_class("-shown")

    def offer(self, items: list[tuple[str, str]], replace_from: int) -> None:
        self.replace_from = replace_from
        self.clear_options()
        if not items:
            self.remove_class("-shown")
            return
        self.add_options([Option(label, id=value) for value, label in items])
        self.highlighted = 0
        self.add_class("-shown")

    def hide(self) -> None:
        self.remove_class("-shown")

    def chosen(self) -> str | None:
        if not self.shown or self.highlighted is None:
            return None
        return self.get_option_at_index(self.highlighted).id


class PromptArea(TextArea):
    DEFAULT_CSS = """
    PromptArea {
        height: auto;
        min-height: 3;
        max-height: 12;
        border: round $accent;
    }
    """

    class Sent(Message):
        """The user sent the prompt's text (``follow_up``: as a turn of its own)."""

        def __init__(self, text: str, follow_up: bool) -> None:
            super().__init__()
            self.text = text
            self.follow_up = follow_up

    class Interrupt(Message):
        """Esc with nothing to close: stop the running turn."""

    class PastedImage(Message):
        """What was pasted is the path of an image file (``text``: as it was pasted)."""

        def __init__(self, path: Path, text: str) -> None:
            super().__init__()
            self.path = path
            self.text = text

    def __init__(
        self,
        history: PromptHistory,
        files: FileIndex | None,
        commands: CommandRegistry,
        completions: Completions,
        workspace: Path,
    ) -> None:
        super().__init__(id="prompt", soft_wrap=True, show_line_numbers=False)
        self.workspace = workspace  # what a pasted relative path is relative to
        self.prompt_history = history
        self.files = files
        self.commands = commands
        self.completions = completions
        # The line (row, text before the cursor) the list was made for. Keys can reach the
        # prompt before the Changed messages of the keys just before them (a paste, a fast
        # typist, a loaded machine): a key that acts on the list first brings it up to date.
        self._offered_for: tuple[int, str] | None = None

    def set_text(self, text: str) -> None:
        self.text = text
        self.move_cursor(self.document.end)

    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        handled = True
        if key in ("tab", "enter", "up", "down") and self.completions.shown:
            self._catch_up()
        if key == "enter" and self.completions.shown and self._completed():
            self.completions.hide()  # typed out in full already: Enter sends it
            self._send(follow_up=False)
        elif key in ("tab", "enter") and self.completions.shown:
            self._take_completion()
        elif key == "escape" and self.completions.shown:
            self.completions.hide()
        elif key in ("up", "down") and self.completions.shown:
            action = self.completions.action_cursor_up if key == "up" else None
            (action or self.completions.action_cursor_down)()
        elif key == "enter":
            row, col = self.cursor_location
            line = self.document.get_line(row)
            if col == len(line) and line.endswith("\\"):
                self.replace("\n", (row, col - 1), (row, col))
            else:
                self._send(follow_up=False)
        elif key in ("alt+enter", "ctrl+t"):
            self._send(follow_up=True)
        elif key in ("shift+enter", "ctrl+j"):
            self.insert("\n")
        elif key == "escape":
            self.post_message(self.Interrupt())
        elif key == "up" and self.cursor_location[0] == 0:
            entry = self.prompt_history.back(self.text)
            if entry is not None:
                self.set_text(entry)
        elif key == "down" and self.cursor_location[0] == self.document.line_count - 1:
            entry = self.prompt_history.forward()
            if entry is not None:
                self.set_text(entry)
        else:
            handled = False
        if handled:
            event.stop()
            event.prevent_default()
            return
        await super()._on_key(event)

    async def _on_paste(self, event: events.Paste) -> None:
        # TextArea's own handler (next in the MRO) inserts the text, unless stopped here.
        if self.read_only:
            return
        path = pasted_image_path(event.text, self.workspace)
        if path is not None:
            event.prevent_default()
            self.post_message(self.PastedImage(path, event.text.strip()))

    def _send(self, *, follow_up: bool) -> None:
        text = self.text
        if not text.strip():
            return
        self.completions.hide()
        self.prompt_history.add(text)
        self.clear()
        self.post_message(self.Sent(text, follow_up))

    def _completed(self) -> bool:
        value = self.completions.chosen()
        row, col = self.cursor_location
        typed = self.document.get_line(row)[self.completions.replace_from : col]
        return value is not None and typed == value.strip()

    def _take_completion(self) -> None:
        value = self.completions.chosen()
        self.completions.hide()
        if value is None:
            return
        row, col = self.cursor_location
        start = self.completions.replace_from
        self.replace(value, (row, start), (row, col))

    def on_text_area_changed(self, _: TextArea.Changed) -> None:
        self._complete()

    def _catch_up(self) -> None:
        row, col = self.cursor_location
        if self._offered_for != (row, self.document.get_line(row)[:col]):
            self._complete()

    def _complete(self) -> None:
        row, col = self.cursor_location
        line = self.document.get_line(row)[:col]
        self._offered_for = (row, line)
        if row == 0 and line.startswith("/") and " " not in line:
            items = [(f"/{c.name} ", f"/{c.name}  {c.help}") for c in self.commands.complete(line)]
            self.completions.offer(items, 0)
            return
        word_start = max(line.rfind(" "), line.rfind("\t"), line.rfind("\n")) + 1
        word = line[word_start:]
        if word.startswith("@") and self.files is not None:
            if word == "@":
                self.files.refresh(STALE)  # files made since are offered from now on
            # A folder is completed without the space, so that its files are offered next.
            paths = self.files.match(word[1:])
            items = [(f"@{p}" if p.endswith("/") else f"@{p} ", p) for p in paths]
            self.completions.offer(items, word_start)
            return
        self.completions.hide()
