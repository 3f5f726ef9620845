"""What the plain REPL prints for the session's events: the answer as it streams, one line per
tool call and its outcome, errors with what to do.

The renderer writes through a ``write(text)`` callable and keeps no terminal state of its own,
so the same code serves a terminal (where prompt-toolkit keeps the input line at the bottom and
prints finished lines above it) and a pipe or dumb terminal (where every delta is written as it
comes). ``line_mode`` says which: on a terminal whose input line is live, a half-written line
would be drawn over by the prompt, so text is handed out a whole line at a time.

Thinking is collapsed to one ``thinking…`` line per stretch of it: in a line-mode terminal
there is no way to fold it back, and its length is the model's business, not the reader's.
A sub-agent's events (``agent`` set) are indented under the ``task`` call that started it.
"""

from __future__ import annotations

from collections.abc import Callable

from mcode import events as ev
from mcode.events import Event
from mcode.messages import Message
from mcode.progress import describe

Write = Callable[[str], None]

_REASONS = {
    "cancelled": "interrupted: the turn stopped; say what to do next, or /quit",
    "max_turns": "stopped: the turn reached its model-call limit",
    "loop": "stopped: the model kept repeating a failing tool call",
    "output_limit": "the answer was cut at the model's output cap",
}


class Renderer:
    def __init__(self, write: Write, *, line_mode: bool) -> None:
        self._write = write
        self.line_mode = line_mode
        self._pending = ""  # line mode: text of the line being streamed, not yet printed
        self._at_line_start = True  # stream mode: whether the last thing written ended a line
        self._thinking = False  # a "thinking…" line is out for the current stretch

    def __call__(self, event: Event, line: str) -> None:
        payload = event.payload
        indent = "  " if event.agent is not None else ""
        match payload:
            case ev.TextDelta(text=text):
                self._thinking = False
                self._text(text)
            case ev.ThinkingDelta():
                if not self._thinking:
                    self._thinking = True
                    self._line(f"{indent}(thinking…)")
            case ev.MessageAssistant():
                self._thinking = False
                self.end_text()
            case ev.PermissionAsked() | ev.MessageUser() | ev.SessionStarted():
                pass  # the question is the prompt's (app.py); the user's words are on screen
            case ev.Error(message=message, hint=hint):
                self._line(f"{indent}error: {message}" + (f"\n{indent}  {hint}" if hint else ""))
            case ev.TurnFinished(reason=reason):
                self.end_text()
                if reason in _REASONS and event.agent is None:
                    self._line(_REASONS[reason])
            case ev.Usage() | ev.ToolOutput() | ev.ToolStarted():
                pass
            case _:
                said = describe(event)
                if said is not None:
                    self._line("\n".join(indent + t for t in said.splitlines()))

    def _text(self, text: str) -> None:
        if not self.line_mode:
            self._write(text)
            self._at_line_start = text.endswith("\n")
            return
        self._pending += text
        if "\n" in self._pending:
            done, self._pending = self._pending.rsplit("\n", 1)
            self._write(done + "\n")

    def end_text(self) -> None:
        """Finish the streamed line, if one is open (the answer ended, or something else is
        about to be said)."""
        if self._pending:
            self._write(self._pending + "\n")
            self._pending = ""
        elif not self._at_line_start:
            self._write("\n")
        self._at_line_start = True

    def _line(self, text: str) -> None:
        self.end_text()
        self._write(text + "\n")

    def say(self, text: str) -> None:
        """A line of the REPL's own (a command's answer), after whatever is streaming."""
        self._line(text)


def history_lines(history: list[Message]) -> list[str]:
    """A stored conversation as the REPL shows it on resume: what the user said and what the
    model answered, tool calls as one line each."""
    lines: list[str] = []
    for message in history:
        if message.role == "user" and message.text.strip():
            lines.append(f"> {message.text.strip()}")
        elif message.role == "assistant":
            if message.text.strip():
                lines.append(message.text.strip())
            lines.extend(f"→ {call.name}" for call in message.tool_calls)
    return lines
