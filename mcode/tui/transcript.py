"""The session as plain text, printed to the normal screen when the TUI exits, so the
terminal's scrollback keeps what the alternate screen showed.

Built from the main conversation's completed events (user messages, answers, tool calls with
how they ended, errors, steers): the same for a live run and a resumed one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcode.tui.cards import describe_call

if TYPE_CHECKING:
    from mcode import events as ev


class Transcript:
    def __init__(self) -> None:
        self.blocks: list[str] = []
        self._calls: dict[str, str] = {}

    def take(self, event: ev.Event) -> None:
        from mcode import events as ev  # here, not above: the first frame is drawn without it

        if event.agent is not None:
            return  # a sub-agent's work is summed up by its task call's result
        match event.payload:
            case ev.MessageUser(message=message):
                self.blocks.append("\n".join("> " + line for line in message.text.splitlines()))
            case ev.MessageAssistant(message=message) if message.text.strip():
                self.blocks.append(message.text.strip())
            case ev.ToolRequested(id=call_id, name=name, arguments=arguments):
                self._calls[call_id] = f"{name} {describe_call(name, arguments)}"
            case ev.ToolFinished(id=call_id, ok=ok, summary=summary, duration=duration):
                call = self._calls.pop(call_id, call_id)
                mark = "✓" if ok else "✗"
                self.blocks.append(f"  {mark} {call} ({duration:.1f}s) {summary}".rstrip())
            case ev.SteerReceived(text=text):
                self.blocks.append(f"> (steer) {text}")
            case ev.Error(message=message, hint=hint):
                self.blocks.append(f"! {message}" + (f"\n  {hint}" if hint else ""))
            case ev.TurnFinished(reason=reason) if reason != "completed":
                self.blocks.append(f"(turn {reason})")
            case _:
                pass

    def text(self) -> str:
        return "\n\n".join(self.blocks)
