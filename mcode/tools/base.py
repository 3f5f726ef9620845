"""The tool interface.

A tool has a name, a description, a JSON schema for its arguments, a permission class and an
async ``run``. ``run`` raises :class:`mcode.errors.ToolError` for anything the model should hear
about as a failed call (bad path, ambiguous edit, missing file); the agent loop turns it into an
error tool result. Tools never print: streaming output goes through ``ctx.emit_output``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from mcode.errors import MCodeError, ToolError
from mcode.events import Payload
from mcode.messages import ImagePart, ToolSpec
from mcode.tools.child_env import child_environment

if TYPE_CHECKING:
    from mcode.tools.sandbox import SandboxPolicy

PermissionClass = Literal["read", "edit", "execute", "computer"]


@dataclass(slots=True)
class ToolResult:
    """What a tool returns. ``content`` goes to the model; ``summary`` is one line for humans;
    ``changed_files`` are workspace-relative paths the tool wrote; ``checkpoints`` maps each of
    them to the id of its checkpoint (absent when the session keeps none); ``exit_code`` is a
    command's exit status."""

    content: str
    summary: str = ""
    is_error: bool = False
    images: list[ImagePart] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    checkpoints: dict[str, int] = field(default_factory=dict)
    # A command's exit status (bash), None for other tools and for a command that timed out,
    # was cancelled or died by a signal: what a team verifier's cited evidence is checked by.
    exit_code: int | None = None
    # An error that ends the turn once this result is recorded (the sandbox could not start).
    fatal: MCodeError | None = None


@dataclass(slots=True)
class FileStamp:
    """What a file looked like when the model last read or wrote it (for edit's staleness check)."""

    mtime_ns: int
    size: int
    sha256: str
    # When the stamp was taken (time.time_ns()). A file rewritten within the filesystem's
    # timestamp granularity of being stamped can keep its mtime and size, so a stamp taken
    # that soon after the mtime is checked by hash, never by stat alone; 0 means unknown.
    taken_ns: int = 0


# Called by a tool that started a process group: (its id, the command line). Returns the
# function to call once the group is gone. Keeps a note outside the process, so that a run
# resumed after mcode was killed can tell what the killed run left running.
CommandRecorder = Callable[[int, str], Callable[[], None]]

# Called by a tool right before it changes a file: (absolute path, the file's bytes now or None
# if it does not exist, its permission bits or None, the bytes about to be written or None for a
# deletion). Returns the checkpoint's id. It raises (any MCodeError) when the checkpoint cannot
# be saved, and the tool must then leave the file alone: a change undo cannot restore is not made.
Checkpointer = Callable[[Path, bytes | None, int | None, bytes | None], int]


@dataclass(frozen=True, slots=True)
class AgentJob:
    """A self-contained job for a sub-agent (the ``task`` tool): a fresh conversation whose
    first user message is ``prompt``, with its own ``system_prompt``, only the parent's tools
    named in ``tools`` (``("*",)``: all of them but ``task``), and at most ``max_turns`` model
    calls; on ``model`` (an agent role's: ``MODEL`` or ``PRESET:MODEL``, None: the parent's)
    with ``thinking`` (None: the parent's setting)."""

    prompt: str
    system_prompt: str
    tools: tuple[str, ...]
    max_turns: int
    model: str | None = None
    thinking: bool | None = None


@dataclass(frozen=True, slots=True)
class AgentReport:
    """How a sub-agent's job ended: its turn's ``reason`` (completed, error, max_turns, ...),
    its final answer, the files it changed, and for a failure what went wrong (message, hint)."""

    agent_id: str
    reason: str
    text: str
    changed_files: tuple[str, ...] = ()
    error: str | None = None


# The editor's view of the files, for a session an editor drives (mcode lsp). EditorRead: the
# text of the editor's buffer for an absolute path, as bytes, or None when the editor has no
# buffer for it (read the disk). EditorWrite: called right before write or edit puts new bytes
# on disk, to make the same change in the editor (its undo, its unsaved buffer); it raises any
# MCodeError when the editor refused, and the tool then writes nothing.
EditorRead = Callable[[Path], bytes | None]
EditorWrite = Callable[[Path, bytes | None, bytes], None]


# Runs a sub-agent's job to its end (the runtime implements it). A cancel of the parent turn
# cancels it too (CancelledError), and a sub-agent never gets one of its own.
SpawnAgent = Callable[[AgentJob], Awaitable[AgentReport]]


@dataclass(slots=True)
class ToolContext:
    """Everything a tool may touch. One per session; shared by the tools of that session.
    ``checkpoint`` and ``record_command`` are None when there is nowhere to keep their notes
    (no store: tests, in-memory).
    ``env`` is the environment of every process a tool starts: mcode's without credentials
    (:mod:`mcode.tools.child_env`; ``open_session`` also drops the keys it resolved)."""

    workspace: Any  # mcode.tools.workspace.Workspace
    emit_output: Callable[[str], None] = lambda chunk: None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    file_stamps: dict[str, FileStamp] = field(default_factory=dict)
    todos: list[dict[str, Any]] = field(default_factory=list)
    bash_timeout: float = 120.0
    output_cap: int = 30_000
    checkpoint: Checkpointer | None = None
    env: dict[str, str] = field(default_factory=lambda: child_environment(os.environ))
    record_command: CommandRecorder | None = None
    # Set per call by the agent loop from its host: None where no sub-agent may start.
    spawn_agent: SpawnAgent | None = None
    # Set by a front end that holds the files in an editor (mcode lsp); None: the disk alone.
    # read, write and edit consult them: the agent reads what the editor shows, and its
    # changes reach the editor as well as the disk (write-through, so commands see them).
    read_override: EditorRead | None = None
    apply_edit: EditorWrite | None = None
    # Set per call by the agent loop: the call's id, and how the tool records an event of its
    # own (the computer tool's computer.action) in the session's stream.
    call_id: str = ""
    emit_event: Callable[[Payload], None] = lambda payload: None
    # What the processes tools start may touch (mcode/tools/sandbox.py); set by open_session
    # from the user's settings, never from a tool call. None: unsandboxed (in-process tests).
    sandbox: SandboxPolicy | None = None


class Tool:
    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]
    permission: ClassVar[PermissionClass]

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    def subject(self, args: dict[str, Any]) -> str:
        """The string permission rules match against, e.g. ``bash(git status*)`` matches the
        command, ``edit(src/*)`` the path."""
        for key in ("command", "path", "pattern"):
            if isinstance(args.get(key), str):
                return str(args[key])
        return ""

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        raise NotImplementedError


def parse_arguments(raw: str) -> dict[str, Any]:
    """Parse a model's tool-call arguments. ``""`` means ``{}``; a trailing-garbage or
    single-quoted object gets one repair attempt; anything else raises ToolError naming the
    problem so the model can try again."""
    text = raw.strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        value = _repair(text)
        if value is None and e.msg.startswith("Unterminated string"):
            # Cut off mid-value (the output limit, a dropped stream). Closing the string would
            # "repair" it into a call that writes half a file and reports success.
            raise ToolError(
                f"the arguments end inside a string at character {e.pos}: they look cut off",
                hint="send the whole call again; split a long file into several smaller edits",
            ) from None
        if value is None:
            raise ToolError(
                f"the arguments are not valid JSON ({e.msg} at character {e.pos})",
                hint="send the arguments as one JSON object",
            ) from None
    if not isinstance(value, dict):
        raise ToolError(
            f"the arguments must be a JSON object, not {type(value).__name__}",
            hint="send the arguments as one JSON object",
        )
    return value


def _repair(text: str) -> Any:
    # Common model slips: an extra closing brace or prose after the object, or a missing
    # final brace. raw_decode takes the first complete value and ignores the rest. A string
    # left open is never closed here: that is a cut-off value, not a slip (parse_arguments).
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
        return value
    except json.JSONDecodeError:
        pass
    for suffix in ("}", "}}"):
        try:
            return json.loads(text + suffix)
        except json.JSONDecodeError:
            continue
    return None


def validate_arguments(tool: Tool, args: dict[str, Any]) -> None:
    """Check required keys and basic JSON types against the tool's schema (enough to give the
    model a precise error; full JSON Schema validation is not needed for our own tools)."""
    schema = tool.parameters
    props: dict[str, Any] = schema.get("properties", {})
    missing = [k for k in schema.get("required", []) if k not in args]
    if missing:
        raise ToolError(f"missing required argument(s): {', '.join(missing)}")
    unknown = [k for k in args if k not in props]
    if unknown and schema.get("additionalProperties") is False:
        raise ToolError(
            f"unknown argument(s): {', '.join(unknown)}; allowed: {', '.join(props) or 'none'}"
        )
    for key, value in args.items():
        expected = props.get(key, {}).get("type")
        if expected and not _is_type(value, expected):
            raise ToolError(
                f"argument {key!r} must be of type {expected}, got {type(value).__name__}"
            )


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _is_type(value: Any, expected: str | list[str]) -> bool:
    names = [expected] if isinstance(expected, str) else expected
    for name in names:
        if name == "null" and value is None:
            return True
        types = _JSON_TYPES.get(name)
        if types is None:
            return True
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, types):
            return True
    return False
