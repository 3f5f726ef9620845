"""Slash commands: a registry of names, one-line help and handlers, shared by the front ends.

A front end owns a :class:`CommandRegistry`, registers its built-in commands (the TUI's are
in ``mcode/tui/commands.py``) and may take more from elsewhere: plugins add theirs with
:meth:`CommandRegistry.add`. Typing ``/name args`` runs ``handler(context, "args")``; the
context is the front end's own object (the TUI's app), which is why the handler's first
argument is typed loosely here: a plugin command that only needs to submit a prompt uses
:class:`CommandContext`, which every front end implements.

    registry.add(Command("cost", "tokens and cost so far", show_cost))
    registry.complete("/co")      # -> [Command("compact", ...), Command("cost", ...)]
    registry.parse("/mode auto-edit")   # -> (Command("mode", ...), "auto-edit")
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mcode.errors import UsageError

__all__ = ["Command", "CommandContext", "CommandRegistry", "Handler"]

Handler = Callable[[Any, str], Awaitable[None] | None]


class CommandContext(Protocol):
    """What every front end gives a command: say something to the user, send a prompt."""

    def say(self, text: str) -> None: ...

    def send_prompt(self, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    handler: Handler
    args: str = ""
    """how its arguments are written in the help (``[on|off]``); empty: it takes none"""
    source: str = "built-in"
    """who added it: built-in, or the plugin's name"""


class CommandRegistry:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(self, command: Command, *, replace: bool = False) -> None:
        """Register ``command``; a name taken already is an error unless ``replace``."""
        name = command.name
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise UsageError(
                f"a command name is letters, digits, - and _, not {name!r}",
                hint="rename the command",
            )
        if name in self._commands and not replace:
            taken = self._commands[name].source
            raise UsageError(
                f"the command /{name} exists already ({taken})",
                hint="give the new one another name",
            )
        self._commands[name] = command

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def all(self) -> list[Command]:
        return sorted(self._commands.values(), key=lambda c: c.name)

    def complete(self, text: str) -> list[Command]:
        """The commands whose name starts with what follows the ``/`` of ``text``."""
        prefix = text[1:] if text.startswith("/") else text
        return [c for c in self.all() if c.name.startswith(prefix)]

    def parse(self, text: str) -> tuple[Command, str] | None:
        """The command ``text`` (``/name args``) names and its arguments; None when ``text``
        is not a command line. An unknown name raises UsageError naming the closest ones."""
        if not text.startswith("/") or text.startswith("//"):
            return None
        name, _, rest = text[1:].partition(" ")
        name = name.strip()
        command = self._commands.get(name)
        if command is None:
            close = [c.name for c in self.complete("/" + name[:2])] if name else []
            hint = ("did you mean /" + ", /".join(close[:3]) + "? ") if close else ""
            raise UsageError(
                f"unknown command /{name}",
                hint=f"{hint}/help lists the commands; start with // to send a line that "
                "begins with /",
            )
        return command, rest.strip()

    async def run(self, context: Any, text: str) -> bool:
        """Run the command line ``text``; False when it is not one."""
        parsed = self.parse(text)
        if parsed is None:
            return False
        command, args = parsed
        result = command.handler(context, args)
        if inspect.isawaitable(result):
            await result
        return True
