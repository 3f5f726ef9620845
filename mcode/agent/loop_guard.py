"""The loop breaker: a model that keeps sending the same failing tool call is told, then stopped.

A stuck model repeats itself: it reads a file that is not there, sends an ``edit`` whose
``old_string`` is not in the file, retries a call the permission mode denies. Each round costs
a model call, and a headless run would go on (``--max-turns`` is an opt-in cap, unset by
default), paying for every one. :class:`LoopGuard` watches the finished tool calls of one turn
and counts the *identical failing* ones:

- Identical means the same tool name and the same arguments after canonicalisation (the JSON
  parsed and written back with sorted keys and no whitespace, so key order and spacing do not
  matter; arguments that do not parse are compared as sent, stripped). Only a digest is kept,
  so a big ``write`` that keeps failing costs 32 bytes, not its content.
- Failing means an error result (``is_error``): a tool error, an unknown tool, malformed
  arguments, a bash command that exits non-zero, and a denied call too. Denials matter most: a
  headless run cannot ask anyone, so a model that keeps retrying a denied call must end.
- The count is per call over the whole turn, not only consecutive repeats: A, B, A, B with
  both failing is a loop too.

What starts a count afresh, because the same call may then rightly be sent again:

- that same call succeeding (it clears its own count);
- any call that can change the world succeeding (a tool whose permission is not ``read``:
  ``edit``, ``write``, ``bash``), which clears every count. Without this, the commonest honest
  cycle would be stopped: run the tests (they fail, so bash reports an error), fix one thing,
  run the identical test command again. A successful read, grep or todo changes nothing the
  failing call depends on, so it clears nothing: "read the file, retry the same broken edit"
  is still caught;
- a delivered steer (the user said something new) and a new turn (a new user message, or a
  resumed turn).

At :data:`WARN_AT` identical failures the result the model gets keeps its error text first and
gains a note telling it to stop sending that call, and the front end gets a recoverable
``error`` event (``kind="loop"``). At :data:`STOP_AT` the turn ends: the loop appends the
results of the batch of calls that were running (every call gets its result; calls of the
same answer not yet started are answered "not run"), then :class:`LoopStopped` ends the turn
with reason ``loop`` (``mcode exec`` exits 3, like a limit). The 5th result says that mcode
stopped the turn, so the model knows why when the conversation goes on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

from mcode import events as ev
from mcode.errors import MCodeError
from mcode.messages import ToolCall
from mcode.tools.base import ToolResult

# The 3rd identical failure gets a note (twice may be bad luck, or one fix that did not take);
# the 5th ends the turn: two more chances after a clear warning.
WARN_AT = 3
STOP_AT = 5

# What the loop answers for calls of the stopping answer that had not run yet.
NOT_RUN_RESULT = (
    "This tool call was not run: mcode stopped the turn because the model kept sending the "
    "same failing call."
)

# ToolResult.summary of a denied call (mcode/agent/loop.py, _denied_result).
_DENIED = "permission denied"
_SHORT = 120


class LoopStopped(MCodeError):
    """The turn was stopped because the model kept sending one failing call. Ends the turn with
    reason ``loop`` (exit code 3 in ``mcode exec``); ``tool`` and ``arguments`` (short form)
    name the call."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str, tool: str, arguments: str) -> None:
        super().__init__(message, hint=hint)
        self.tool = tool
        self.arguments = arguments


@dataclass(frozen=True, slots=True)
class Seen:
    """What :meth:`LoopGuard.observe` made of one finished call. ``result``: what the model
    gets (the original, or with the note appended); ``count``: identical failures of this call
    in the turn so far (0 after a success); ``warning``: the recoverable ``error``
    event to emit after the result, when this failure crossed :data:`WARN_AT`; ``stop``: raise
    it once the batch's results are appended."""

    result: ToolResult
    count: int = 0
    warning: ev.Error | None = None
    stop: LoopStopped | None = None


def canonical_arguments(arguments: str) -> str:
    """``arguments`` in one spelling for every equivalent JSON text: parsed and re-serialised
    with sorted keys and no insignificant whitespace. Empty text means ``{}`` (as
    ``parse_arguments`` reads it); text that does not parse is returned stripped, as sent."""
    text = arguments.strip()
    if not text:
        return "{}"
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def call_key(name: str, arguments: str) -> str:
    """The identity of a call for the guard: a digest of the tool name and the canonical
    arguments (two calls that differ only in key order or spacing have the same key)."""
    canonical = canonical_arguments(arguments)
    return hashlib.sha256(f"{name}\0{canonical}".encode("utf-8", "surrogatepass")).hexdigest()


def short_arguments(arguments: str) -> str:
    """The canonical arguments on one line, cut to a readable length, for messages."""
    text = " ".join(canonical_arguments(arguments).split())
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


def _first_line(content: str) -> str:
    line = next((ln.strip() for ln in content.splitlines() if ln.strip()), "")
    return line if len(line) <= 200 else line[:199] + "…"


class LoopGuard:
    """Counts identical failing tool calls within one turn; see the module docstring.

    The loop calls :meth:`reset` when a turn starts and when a steer is delivered, and
    :meth:`observe` for each call's result before appending it."""

    def __init__(self, warn_at: int = WARN_AT, stop_at: int = STOP_AT) -> None:
        self.warn_at = warn_at
        self.stop_at = stop_at
        self._failures: dict[str, int] = {}

    def reset(self) -> None:
        self._failures.clear()

    def observe(self, call: ToolCall, result: ToolResult, *, acted: bool = False) -> Seen:
        """Record ``call``'s ``result``. ``acted``: the call's tool can change the workspace or
        run commands (its permission is not ``read``); its success clears every count."""
        key = call_key(call.name, call.arguments)
        if not result.is_error:
            if acted:
                self._failures.clear()
            else:
                self._failures.pop(key, None)
            return Seen(result)
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        if count < self.warn_at:
            return Seen(result, count)
        args = short_arguments(call.arguments)
        if count >= self.stop_at:
            note = (
                f"mcode: this exact call has failed {count} times in this turn with the same "
                "arguments, so mcode stopped the turn. Do not send it again: take another "
                "approach, or tell the user what is blocking you."
            )
            stop = LoopStopped(
                f"stopped the turn: the model sent the same failing call {count} times: "
                f"{call.name} {args} (last error: {_first_line(result.content)})",
                hint=self._stop_hint(result),
                tool=call.name,
                arguments=args,
            )
            return Seen(self._with_note(result, note), count, stop=stop)
        note = (
            f"mcode: this exact call has failed {count} times in this turn with the same "
            "arguments. Do not send it again: read the error, change the arguments, or take "
            f"another approach. At {self.stop_at} identical failures mcode stops the turn."
        )
        warning = None
        if count == self.warn_at:
            warning = ev.Error(
                kind="loop",
                message=f"{call.name} failed {count} times in this turn with the same "
                f"arguments ({args}); the model was told to change course",
                hint=f"mcode stops the turn at {self.stop_at} identical failures; steer the "
                "model if you know what it is missing",
                recoverable=True,
            )
        return Seen(self._with_note(result, note), count, warning=warning)

    @staticmethod
    def _with_note(result: ToolResult, note: str) -> ToolResult:
        # The error stays first and whole: the note only adds to what the model was told.
        return replace(result, content=f"{result.content}\n\n{note}")

    @staticmethod
    def _stop_hint(result: ToolResult) -> str:
        if result.summary == _DENIED:
            return (
                "the call is denied: allow it (--permission-mode, or an allow rule in the "
                "config) and continue the session (mcode exec --continue), or tell the model to "
                "do without it"
            )
        return (
            "read the error, then continue the session with an instruction that gets the "
            "model past it (mcode exec --continue 'what to do')"
        )
