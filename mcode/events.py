"""The event stream: everything a session does, as typed, JSON-serialisable events.

Every front end consumes this one stream: ``mcode exec --output-format stream-json`` prints it
as JSON lines, the store persists it, the TUI and the language server render it. The envelope:

    {"v": 1, "seq": 7, "ts": 1764140000.123, "session_id": "…", "turn_id": "…" | null,
     "type": "tool.finished", "data": {…}}

An event of a conversation other than the session's main one (a ``task`` sub-agent, a team
member) also carries ``"agent": "<its id>"`` after ``turn_id``; the main one's events have no
``agent`` key, so their JSON is what it always was.

``v`` is :data:`SCHEMA_VERSION`; it changes only when a field is removed or changes meaning
(new event types and new fields, like ``agent``, are additive). ``seq`` counts from 1 within a
session and never repeats, also across ``--resume``.

Each type's ``data`` is a payload: one frozen dataclass per type below (:class:`TurnFinished`
for ``turn.finished``, and so on: the class name is the type in CamelCase), whose fields are
the keys of ``data`` in the order they are written. Closed sets of values are ``Literal``
types (:data:`TurnReason`, :data:`ErrorKind`, :data:`DecidedBy`, …). A field with
:data:`OPTIONAL` metadata is left out of ``data`` while it is None (one with
:func:`written_with` while the field it is written with is), which keeps the bytes of the lines
written before it was added::

    session.emit(ev.TurnFinished(reason="completed"))   # writes "data":{"reason":"completed"}

    match event.payload:                                # a subscriber: no string indexing
        case ev.ToolFinished(ok=False, summary=summary): ...

``event.data`` stays the JSON view (what was written or read, unknown keys included). An event
read back from a line this version cannot type (a newer type, or an older line that lacks a
field) has an :class:`Unknown` payload and keeps its data, so stored sessions of every version
still load. README.md's "Event schema" table is rendered from these classes
(``python tests/event_schema.py``; tests/test_event_schema.py checks it).
"""

from __future__ import annotations

import dataclasses
import json
import json.encoder
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self, TypedDict

from mcode import messages
from mcode.messages import Message, clean_text

SCHEMA_VERSION = 1

SESSION_STARTED = "session.started"
TURN_STARTED = "turn.started"
MESSAGE_USER = "message.user"
TEXT_DELTA = "text.delta"
THINKING_DELTA = "thinking.delta"
MESSAGE_ASSISTANT = "message.assistant"
TOOL_REQUESTED = "tool.requested"
PERMISSION_ASKED = "permission.asked"
PERMISSION_DECIDED = "permission.decided"
TOOL_STARTED = "tool.started"
TOOL_OUTPUT = "tool.output"
TOOL_FINISHED = "tool.finished"
FILE_CHANGED = "file.changed"
UNDO = "undo"
STEER_RECEIVED = "steer.received"
MESSAGE_QUEUED = "message.queued"
STEER_DELIVERED = "steer.delivered"
RETRY = "retry"
COMPACTION = "compaction"
USAGE = "usage"
ERROR = "error"
TURN_FINISHED = "turn.finished"
SESSION_FINISHED = "session.finished"
# spine: fork (mcode/runtime/fork.py)
SESSION_FORKED = "session.forked"
MODEL_CHANGED = "model.changed"
COMPUTER_ACTION = "computer.action"
# The agent team (mcode/team): every change of a team run, tagged with the agent it concerns.
TEAM_STARTED = "team.started"
TEAM_PLAN = "team.plan"
TEAM_PLAN_ASKED = "team.plan.asked"
TEAM_PLAN_DECIDED = "team.plan.decided"
TEAM_REPLAN = "team.replan"
TEAM_WORKTREE = "team.worktree"
TEAM_TASK_STARTED = "team.task.started"
TEAM_VERDICT = "team.verdict"
TEAM_TASK_FINISHED = "team.task.finished"
TEAM_MERGE = "team.merge"
TEAM_RESOLVE_STARTED = "team.resolve.started"
TEAM_RESOLVE_FINISHED = "team.resolve.finished"
TEAM_BUDGET = "team.budget"
TEAM_STEER = "team.steer"
TEAM_FINISHED = "team.finished"
# Plugins, hooks and MCP (mcode/plugin_host/).
PLUGINS_LOADED = "plugins.loaded"
PLUGINS_RELOADED = "plugins.reloaded"
HOOK_FINISHED = "hook.finished"
MCP_SERVER = "mcp.server"

# Events whose ``data["message"]`` is a conversation entry: replaying them in order rebuilds the
# model's history exactly (this is how --resume works). A ``compaction`` event replaces the
# history instead: its ledger message followed by the last ``data["kept"]`` messages.
HISTORY_TYPES = frozenset({MESSAGE_USER, MESSAGE_ASSISTANT, TOOL_FINISHED, STEER_DELIVERED})

# High-volume, superseded by the message that completes them; not persisted one by one.
TRANSIENT_TYPES = frozenset({TEXT_DELTA, THINKING_DELTA, TOOL_OUTPUT})

# -- closed sets ---------------------------------------------------------------------------------
Thinking = Literal["on", "off", "default", "unavailable"]
Approvals = Literal["stdin", "denied", "editor"]
PermissionModeName = Literal["read-only", "ask", "auto-edit", "full-auto"]
Permission = Literal["read", "edit", "execute", "computer"]  # = mcode.tools.base.PermissionClass
FinishReason = Literal["stop", "tool_calls", "length", "content_filter"]
DecidedBy = Literal["user", "rule", "mode", "headless", "timeout", "cancel", "hook"]
CompactionReason = Literal["auto", "overflow", "manual"]
UsagePurpose = Literal["compaction"]
TurnReason = Literal[
    "completed", "max_turns", "cancelled", "error", "output_limit", "loop", "budget"
]
SessionReason = Literal[TurnReason, "no_input"]
# ProviderError.kind (mcode/errors.py); the retryable ones are also a retry's kind.
ProviderErrorKind = Literal[
    "rate_limit",
    "overloaded",
    "server",
    "connection",
    "timeout",
    "truncated",
    "auth",
    "bad_request",
    "context_overflow",
    "billing",
    "content_filter",
    "protocol",
    "malformed_tool_call",
    "engine_crash",
]
RetryKind = Literal[
    "rate_limit",
    "overloaded",
    "server",
    "connection",
    "timeout",
    "truncated",
    "protocol",
    "malformed_tool_call",
]
ErrorKind = Literal[
    ProviderErrorKind,
    "input",
    "steer",
    "subscriber",
    "compaction",
    "loop",
    "limit",
    "output_limit",
    "leftover",
    "plugin",
    # sandbox: the bubblewrap sandbox cannot start, so commands are refused (mcode/tools/sandbox.py)
    "sandbox",
    # budget: a --max-time / --max-tokens / --max-cost limit of the run was hit
    "budget",
    # Any other mcode error that ends a turn is named by its class.
    "MCodeError",
    "UsageError",
    "ConfigError",
    "ToolError",
    "PathEscapeError",
    "SandboxError",  # named "sandbox" when it ends a turn; listed as every class is
    "BudgetReached",  # named "budget" when it ends a turn
    "StoreError",
    "ComputerUnavailable",
    "GitError",
    "PlanError",
    "RoleError",
    "FrontMatterError",
    "HookBlocked",
]


class SkippedPath(TypedDict):
    path: str
    reason: str


# Field metadata: the field is left out of ``data`` while it is None (its default is None) ...
OPTIONAL: dict[str, Any] = {"written_with": None}


def written_with(other: str) -> dict[str, Any]:
    """... or, with this, written exactly when the optional field ``other`` is, null or not."""
    return {"written_with": other}


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Payload:
    """The ``data`` of one event type; ``TYPE`` is the type's name.

    ``==``, ``hash`` and ``repr`` are a dataclass's, written once here for every payload
    (``eq=False, repr=False`` on each): generated for each of the classes, they made importing
    this module, on the way to ``mcode exec``'s first request, several times slower."""

    TYPE: ClassVar[str]
    # How each field is written and read, in field order (set below, from the annotations).
    _WIRE: ClassVar[tuple[_Wire, ...]] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Payload)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((self.__class__, self._values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{self.__class__.__name__}({shown})"

    def to_data(self) -> dict[str, Any]:
        """The event's ``data``: each field under its name, in field order."""
        data: dict[str, Any] = {}
        for name, write, _, when in self._WIRE:
            if when is not None and getattr(self, when) is None:
                continue
            value = getattr(self, name)
            data[name] = value if write is None or value is None else write(value)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Self:
        """The payload ``data`` holds; keys it does not know are ignored (``Event.data`` keeps
        them). Raises when a field without a default is missing or cannot be read."""
        kwargs = {
            name: value if read is None or value is None else read(value)
            for name, _, read, _ in cls._WIRE
            if (value := data.get(name, _MISSING)) is not _MISSING
        }
        return cls(**kwargs)


# name, how to write it (None: as it is), how to read it back, the field it is written with.
_Wire = tuple[str, Callable[[Any], Any] | None, Callable[[Any], Any] | None, str | None]
_MISSING: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class SessionStarted(Payload):
    """The first event of a run, also of a resumed one."""

    TYPE: ClassVar[str] = SESSION_STARTED
    cwd: str
    provider: str
    model: str
    provider_reason: str
    """why this provider: a flag, the config, an API key in the environment, none of them"""
    context_window: int
    permission_mode: PermissionModeName
    """read-only, ask, auto-edit or full-auto"""
    thinking: Thinking
    """on / off: as asked; default: the model's own default; unavailable: the model has no
    switch, so none is sent"""
    resumed: bool
    schema_version: int = SCHEMA_VERSION
    approvals: Approvals | None = field(default=None, metadata=OPTIONAL)
    """written by `mcode exec` and `mcode lsp`, as are the next three: stdin: questions wait for
    approve lines; editor: they are asked in the editor (`mcode lsp`); denied: what would ask
    is denied"""
    permission_note: str | None = field(default=None, metadata=written_with("approvals"))
    """what the mode denies or asks about, one sentence; null in full-auto"""
    trusted: bool | None = field(default=None, metadata=written_with("approvals"))
    """the folder is trusted"""
    project_ignored: tuple[str, ...] | None = field(
        default=None, metadata=written_with("approvals")
    )
    """what an untrusted folder's config asked for and did not get: keys, `AGENTS.md`"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TurnStarted(Payload):
    TYPE: ClassVar[str] = TURN_STARTED
    resumed: bool = False
    """true when the turn continues an interrupted one without a new user message"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class MessageUser(Payload):
    TYPE: ClassVar[str] = MESSAGE_USER
    message: Message
    """role, parts: text / image"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TextDelta(Payload):
    TYPE: ClassVar[str] = TEXT_DELTA
    text: str
    """a piece of the answer as it streams"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ThinkingDelta(Payload):
    TYPE: ClassVar[str] = THINKING_DELTA
    text: str
    """a piece of the model's reasoning"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class MessageAssistant(Payload):
    TYPE: ClassVar[str] = MESSAGE_ASSISTANT
    message: Message
    """parts: thinking, text; `tool_calls`: id, name, arguments as JSON text"""
    finish_reason: FinishReason
    """stop, tool_calls, length: cut off at the output limit, or content_filter"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Usage(Payload):
    """The tokens of one model call and of the session so far."""

    TYPE: ClassVar[str] = USAGE
    input_tokens: int
    """of this call, as are the next three; cached ones included"""
    output_tokens: int
    cached_tokens: int
    """served from the provider's prompt cache"""
    cache_write_tokens: int
    total: messages.Usage
    """the session's, the same four fields"""
    context_tokens: int | None = field(default=None, metadata=written_with("context_window"))
    """the conversation's size after this answer, as the API counted it; null when it reports
    no usage"""
    context_window: int | None = field(default=None, metadata=OPTIONAL)
    purpose: UsagePurpose | None = field(default=None, metadata=OPTIONAL)
    """compaction: the summary call of a compaction, which has no `context_*` fields"""

    def __post_init__(self) -> None:
        # Totals are counted up in place: keep them as they were when this was said.
        object.__setattr__(self, "total", dataclasses.replace(self.total))

    @classmethod
    def of(cls, call: messages.Usage, *, total: messages.Usage, **more: Any) -> Usage:
        """The event for one call's ``call`` usage; ``more``: context_tokens, context_window,
        purpose."""
        return cls(
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cached_tokens=call.cached_tokens,
            cache_write_tokens=call.cache_write_tokens,
            total=total,
            **more,
        )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Compaction(Payload):
    TYPE: ClassVar[str] = COMPACTION
    reason: CompactionReason
    """auto: the next request would not fit; overflow: the API refused one as too long; manual:
    `Session.compact` / a `compact` line"""
    tokens_before: int
    tokens_after: int
    """of the next request"""
    window: int
    messages_before: int
    messages_after: int
    kept: int
    """recent messages kept verbatim"""
    summarised: bool
    """false: the model's summary failed and the ledger holds only what mcode recorded"""
    message: Message
    """the ledger message that now heads the history"""
    ledger: dict[str, Any]
    """its fields"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Retry(Payload):
    """Text streamed since the call began is void."""

    TYPE: ClassVar[str] = RETRY
    attempt: int
    reason: str
    wait: float
    """seconds"""
    kind: RetryKind
    """rate_limit, overloaded, server, connection, timeout, truncated, protocol: a malformed
    stream event, malformed_tool_call: unusable tool-call markup in the text"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ToolRequested(Payload):
    TYPE: ClassVar[str] = TOOL_REQUESTED
    id: str
    name: str
    arguments: str
    """JSON text as the model sent it"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class PermissionAsked(Payload):
    """Answer with `Session.approve` or an `approve` line."""

    TYPE: ClassVar[str] = PERMISSION_ASKED
    request_id: str
    id: str
    name: str
    subject: str
    permission: Permission
    """read, edit, execute or computer"""
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class PermissionDecided(Payload):
    TYPE: ClassVar[str] = PERMISSION_DECIDED
    id: str
    name: str
    subject: str
    allowed: bool
    by: DecidedBy
    """user, rule, mode, headless, timeout: no answer within `approval_timeout`; cancel: the
    turn was cancelled while asking; hook: a PreToolUse hook allowed or blocked it"""
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ToolStarted(Payload):
    TYPE: ClassVar[str] = TOOL_STARTED
    id: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ToolOutput(Payload):
    TYPE: ClassVar[str] = TOOL_OUTPUT
    id: str
    text: str
    """output as it arrives, from bash"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ToolFinished(Payload):
    TYPE: ClassVar[str] = TOOL_FINISHED
    message: Message
    """the result the model gets"""
    id: str
    name: str
    ok: bool
    summary: str
    duration: float
    """seconds"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class FileChanged(Payload):
    TYPE: ClassVar[str] = FILE_CHANGED
    path: str
    """workspace-relative"""
    tool_call_id: str
    checkpoint: int | None = None
    """id of the file's saved before-image for `mcode undo`; null when the session keeps no
    store"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Undo(Payload):
    """Written by `mcode undo` into the session; its `turn_id` is the undone turn."""

    TYPE: ClassVar[str] = UNDO
    restored: tuple[str, ...]
    """paths put back as they were before the turn"""
    deleted: tuple[str, ...]
    """paths the turn created, removed"""
    unchanged: tuple[str, ...]
    """paths that were already as before the turn"""
    skipped: tuple[SkippedPath, ...]
    """`path`, `reason`"""
    forced: bool


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class SteerReceived(Payload):
    """A steer arrived; the turn gets it at its next step boundary."""

    TYPE: ClassVar[str] = STEER_RECEIVED
    text: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class MessageQueued(Payload):
    """A user message given with ``mcode exec --resume ID "..."``, recorded the moment the run
    has it, before its turn (and that turn's UserPromptSubmit hooks) records it as
    ``message.user``: a run killed in between leaves it here, and the next ``--resume`` runs it,
    once."""

    TYPE: ClassVar[str] = MESSAGE_QUEUED
    text: str
    images: tuple[messages.ImagePart, ...] | None = field(default=None, metadata=OPTIONAL)
    """the images given with it (``--image``, ``--screenshot``); None (left out) when none"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class SteerDelivered(Payload):
    TYPE: ClassVar[str] = STEER_DELIVERED
    message: Message
    """the user message the model now has"""
    text: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Error(Payload):
    TYPE: ClassVar[str] = ERROR
    kind: ErrorKind
    """input: a bad stdin line was skipped; steer: a steer came too late for its turn;
    subscriber: an in-process event subscriber raised, said once per subscriber, and the turn
    goes on; compaction: the summary for a compaction could not be written, or there was nothing
    to compact; loop: the model repeated a failing tool call — recoverable at the 3rd identical
    failure, when a note telling it to change course is appended to the result it gets, not
    recoverable at the 5th, which ends the turn with reason `loop`; limit: the turn hit
    `--max-turns`; output_limit: the answer was cut at the model's output cap (recoverable when
    the text so far stands, else the turn ends with reason `output_limit`); leftover: on resume,
    a command of the killed run, with `pid`, `command` and `killed`; plugin: a plugin, hook or
    MCP server problem that does not stop the session (a Stop hook that kept the turn going too
    often); sandbox: the sandbox cannot start (at session start; every command is then
    refused); budget: a run limit (`--max-time`, `--max-tokens`, `--max-cost`) was reached and the
    turn ends with reason `budget`; a model API error that ended
    the turn by its kind: rate_limit, overloaded, server, connection, timeout, truncated, auth,
    bad_request, context_overflow (a request did not fit even after one compaction), billing,
    content_filter, protocol, malformed_tool_call, engine_crash (llama.cpp crashed loading or
    running the local model in the check's child process); any other mcode error by its class:
    MCodeError, UsageError, ConfigError, ToolError, PathEscapeError, StoreError,
    ComputerUnavailable, GitError, PlanError, RoleError, FrontMatterError (a Markdown file's
    front matter could not be read), HookBlocked (a UserPromptSubmit hook refused the message),
    SandboxError, BudgetReached"""
    message: str
    hint: str
    """what to do"""
    recoverable: bool
    pid: int | None = field(default=None, metadata=OPTIONAL)
    """leftover only, as are the next two: the command's process group"""
    command: str | None = field(default=None, metadata=written_with("pid"))
    killed: bool | None = field(default=None, metadata=written_with("pid"))
    """whether mcode killed it now (false: it had already exited, or could not be checked)"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TurnFinished(Payload):
    TYPE: ClassVar[str] = TURN_FINISHED
    reason: TurnReason
    """completed, max_turns, cancelled, error, output_limit: the answer was cut at the model's
    output cap (an `error` of kind `output_limit` before it), loop: the model sent the same
    failing tool call (same tool, same arguments in any key order) 5 times in the turn, and an
    `error` event of kind `loop` before this one names the call, budget: a run limit was hit
    (an `error` of kind `budget` before it says which)"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class SessionFinished(Payload):
    TYPE: ClassVar[str] = SESSION_FINISHED
    result: str | None
    """the answer; null when the last turn did not complete (an answer cut at the output cap
    keeps what was written)"""
    reason: SessionReason
    """the last turn's: completed, max_turns, cancelled, error, output_limit, loop, budget; no_input
    when stdin ended before any message"""
    exit_code: int
    usage: messages.Usage
    model_calls: int
    tool_calls: int
    compactions: int = 0
    denials: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "usage", dataclasses.replace(self.usage))


# -- spine: fork (mcode/runtime/fork.py) --------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class SessionForked(Payload):
    """Written by a fork (`mcode exec --resume ID --fork-at N`) after the events it copied:
    the events before it are the source session's, up to its user turn N."""

    TYPE: ClassVar[str] = SESSION_FORKED
    source: str
    """the session forked, which is left as it was"""
    at_turn: int
    """N: this session's history is the source's before its N-th user message"""
    turn_id: str
    """that turn's id in the source"""
    undone: tuple[str, ...]
    """the source's turns whose file changes were undone (`--undo-files`; recorded as `undo`
    events there), newest first; empty without it"""


# -- mcode acp (issue 14) --------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ModelChanged(Payload):
    """The main conversation talks to another model from its next call (an editor's model
    picker, `mcode acp`); only between turns. The history stays."""

    TYPE: ClassVar[str] = MODEL_CHANGED
    provider: str
    model: str
    context_window: int
    thinking: Thinking
    """on / off / default / unavailable, as in `session.started`"""


# -- computer use (mcode/computer) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ComputerAction(Payload):
    """One action of a `computer` tool call, done (between its `tool.started` and
    `tool.finished`), and the screenshot each call ends with."""

    TYPE: ClassVar[str] = COMPUTER_ACTION
    id: str
    """the tool call's"""
    action: str
    """screenshot, left_click, right_click, middle_click, double_click, triple_click, mouse_move,
    left_click_drag, left_mouse_down, left_mouse_up, scroll, type, key, hold_key, wait,
    cursor_position"""
    size: str
    """the screenshot's size as the model is shown it, `WIDTHxHEIGHT`: the space of
    `coordinate`"""
    coordinate: tuple[int, int] | None = field(default=None, metadata=OPTIONAL)
    """`[x, y]` as the model gave it, in the screenshot's pixels"""
    screen: tuple[int, int] | None = field(default=None, metadata=OPTIONAL)
    """`[x, y]` on the screen, where it acted"""
    text: str | None = field(default=None, metadata=OPTIONAL)
    """type: the text; key, hold_key: the keys; a click: modifier keys"""
    screenshot: str | None = field(default=None, metadata=OPTIONAL)
    """screenshot: the file it is stored in (under the data folder), null when none is kept"""


# -- the agent team (mcode/team) ---------------------------------------------------------------
TaskStatus = Literal["passed", "failed", "partial", "cancelled"]
VerdictName = Literal["PASS", "FAIL", "PARTIAL"]
BudgetScope = Literal["task", "team"]
BudgetLimit = Literal["turns", "tokens", "seconds"]
PlanReason = Literal["initial", "steer", "edit"]
PlanDecision = Literal["approved", "rejected", "edited"]
PlanDecidedBy = Literal["user", "timeout", "headless", "cancel"]
ResolveOutcome = Literal["resolved", "failed"]


class PlanCheck(TypedDict):
    command: str
    expect: dict[str, Any]


class PlanTask(TypedDict):
    id: str
    title: str
    instructions: str
    depends_on: list[str]
    checks: list[PlanCheck]


class PlanStage(TypedDict):
    name: str
    tasks: list[PlanTask]


class Evidence(TypedDict):
    command: str
    exit_code: int
    output: str


class CheckRun(TypedDict):
    command: str
    exit_code: int
    passed: bool
    why: str


class TaskSummary(TypedDict):
    id: str
    status: TaskStatus
    rounds: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamStarted(Payload):
    """`mcode exec --team`: the planner gets the task next (a resumed run: where it stopped)."""

    TYPE: ClassVar[str] = TEAM_STARTED
    task: str
    """the user's request"""
    parallel: int
    """producers that may run at once"""
    rounds: int
    """verifications a task gets before it is failed"""
    base_branch: str
    """the user's branch, where accepted work is merged"""
    base_commit: str
    resumed: bool


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamPlan(Payload):
    """The plan, as the planner's `plan` tool call gave it (the README's plan schema), shown
    before work starts; again after each re-plan (with the plan gate, reason steer: shown to be
    asked about, in force once its `team.replan` follows)."""

    TYPE: ClassVar[str] = TEAM_PLAN
    revision: int
    """1 for the first plan, +1 per re-plan"""
    reason: PlanReason
    """initial, steer: a requirement added mid-run, edit: the user's edit at the plan gate"""
    stages: tuple[PlanStage, ...]
    """`name`, `tasks[]` of `id`, `title`, `instructions`, `depends_on`, `checks[]`"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamPlanAsked(Payload):
    """The plan gate: no task starts until the plan just shown is answered, with an `approve`
    line (`allow`, `deny` with a reason, or `edit` with a whole `plan`) or the TUI's dialog.
    Asked only where someone can answer (stream-json in and out, the TUI); an invalid edit is
    an `input` error and the gate asks again."""

    TYPE: ClassVar[str] = TEAM_PLAN_ASKED
    request_id: str
    revision: int
    """the `team.plan` revision asked about"""
    timeout: float | None
    """seconds until no answer rejects it (`approval_timeout`); null: it waits"""
    steer: str | None
    """the requirement a re-plan is for (a steer's: the running tasks go on while it is asked,
    none starts); null: the plan before any task started"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamPlanDecided(Payload):
    """How the plan gate was answered; the first plan rejected: no task started, the run ends
    (exit 1); a re-plan rejected: the plan stays as it was."""

    TYPE: ClassVar[str] = TEAM_PLAN_DECIDED
    request_id: str
    decision: PlanDecision
    """approved, rejected, edited (a `team.plan` with reason edit follows: the plan that runs)"""
    by: PlanDecidedBy
    """user, timeout: no answer within `approval_timeout`, headless: the input ended first,
    cancel: the run was cancelled while it asked"""
    reason: str
    steer: str | None
    """the requirement a re-plan was for (rejected: the plan in force stays, the run goes on;
    approved or edited: a `team.replan` follows); null: the first plan"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamReplan(Payload):
    """What a re-plan changed (a `team.plan` with the whole new plan comes right before)."""

    TYPE: ClassVar[str] = TEAM_REPLAN
    revision: int
    steer: str
    """the requirement that caused it"""
    added: tuple[str, ...]
    """task ids new in this plan"""
    changed: tuple[str, ...]
    """tasks not yet started whose definition changed"""
    removed: tuple[str, ...]
    """tasks not yet started that the plan dropped (cancelled)"""
    reopened: tuple[str, ...]
    """passed tasks the change invalidates: they run again"""
    kept: tuple[str, ...]
    """started or passed tasks the planner changed or dropped, kept as they were (work that
    runs or was accepted is only redone when reopened)"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamWorktree(Payload):
    """A producer's git worktree was made; `confined` false: its tools reach outside it, so
    the task is refused and nothing runs there."""

    TYPE: ClassVar[str] = TEAM_WORKTREE
    task_id: str
    path: str
    branch: str
    confined: bool
    reason: str
    """why it is not confined; empty when it is"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamTaskStarted(Payload):
    """A producer round began (round 1: the task; later rounds: the verifier's findings)."""

    TYPE: ClassVar[str] = TEAM_TASK_STARTED
    task_id: str
    round: int
    agent: str
    """the producer's agent id (its events carry it)"""
    branch: str
    worktree: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamVerdict(Payload):
    """A verifier's answer and whether mcode accepted it."""

    TYPE: ClassVar[str] = TEAM_VERDICT
    task_id: str
    round: int
    agent: str
    """the verifier's agent id"""
    verdict: VerdictName | None
    """PASS, FAIL, PARTIAL; null: the verifier gave none"""
    evidence: tuple[Evidence, ...]
    """as the verifier cited it: `command`, `exit_code`, `output`"""
    findings: tuple[str, ...]
    checks: tuple[CheckRun, ...]
    """the task's acceptance checks as mcode ran them in the worktree: `command`, `exit_code`,
    `passed`, `why`"""
    accepted: bool
    """true only for a PASS that cites at least one command, every citation matching a bash
    call mcode recorded in this verification (same command, same exit code, output contained
    in the recorded output), with every acceptance check passed"""
    refused: str
    """why a PASS was refused; empty otherwise"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamTaskFinished(Payload):
    TYPE: ClassVar[str] = TEAM_TASK_FINISHED
    task_id: str
    status: TaskStatus
    """passed (verified and merged), failed, partial (the last verdict was PARTIAL), cancelled
    (a cancel, a budget, a failed dependency or a re-plan stopped it)"""
    rounds: int
    """verifications it had"""
    reason: str
    """one sentence: why it ended so"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamMerge(Payload):
    """Accepted work merged into the user's branch, in dependency order; a conflict is
    aborted (the user's tree as it was) and the task's branch is left for the user; a resolver
    then tries (`team.resolve.*`), and a second one says whether its resolution merged."""

    TYPE: ClassVar[str] = TEAM_MERGE
    task_id: str
    branch: str
    ok: bool
    commit: str
    """the merge commit; empty when it failed"""
    conflicts: tuple[str, ...]
    """paths git could not merge"""
    message: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamResolveStarted(Payload):
    """A task's merge conflicted (the `team.merge` before says where): a resolver agent works
    in its own worktree, on a branch from the task's with the user's branch merged into it and
    the conflict left in the files."""

    TYPE: ClassVar[str] = TEAM_RESOLVE_STARTED
    task_id: str
    agent: str
    """the resolver's agent id (its events carry it)"""
    branch: str
    """the resolver's branch"""
    worktree: str
    conflicts: tuple[str, ...]
    """the paths in conflict, as the resolver is told"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamResolveFinished(Payload):
    """The resolver's result as mcode judged it: resolved only when no conflict marker is
    left, the resolution is committed with the user's branch in it, the acceptance checks
    passed in its worktree and it merged cleanly (a `team.merge` before this one); otherwise
    failed, the user's branch as it was and the task's branch kept."""

    TYPE: ClassVar[str] = TEAM_RESOLVE_FINISHED
    task_id: str
    agent: str
    outcome: ResolveOutcome
    """resolved, failed"""
    reason: str
    """why it failed; empty when resolved"""
    checks: tuple[CheckRun, ...]
    """the acceptance checks (the task's and the merged tasks') as mcode ran them in the
    resolver's worktree; empty when it failed before them"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamBudget(Payload):
    """A budget ran out: the task (scope task) or the whole run (scope team) stops cleanly."""

    TYPE: ClassVar[str] = TEAM_BUDGET
    scope: BudgetScope
    """task: one task's budget (that task fails); team: the run's (everything stops)"""
    task_id: str | None
    """null for the team's budget"""
    limit: BudgetLimit
    """turns (model calls), tokens (input + output), seconds (wall time)"""
    allowed: float
    used: float


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamSteer(Payload):
    """The receipt of a steer during a team run: where it went."""

    TYPE: ClassVar[str] = TEAM_STEER
    text: str
    to: tuple[str, ...]
    """agent ids it was given to: the planner, then each running agent (at its next step)"""
    replan: bool
    """the planner was asked to re-plan the tasks not yet started"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TeamFinished(Payload):
    TYPE: ClassVar[str] = TEAM_FINISHED
    tasks: tuple[TaskSummary, ...]
    """`id`, `status`, `rounds`, in plan order"""
    reason: str
    """completed, failed, budget, cancelled, no_plan, rejected (at the plan gate)"""


# -- plugins, hooks and MCP (mcode/plugin_host/) ---------------------------------------------
HookEventName = Literal[
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "Stop",
    "SubagentStop",
    "PreCompact",
    "Notification",
]
HookOutcome = Literal["ok", "blocked", "failed", "timeout"]
McpState = Literal["started", "failed", "restarting", "stopped"]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class PluginsLoaded(Payload):
    """Said once after `session.started`: what the plugins, hooks and MCP servers of this
    session contribute, and every problem found loading them (a broken manifest, an unknown
    front-matter key); the rest still loads."""

    TYPE: ClassVar[str] = PLUGINS_LOADED
    plugins: tuple[str, ...]
    """the enabled plugins, by name"""
    commands: tuple[str, ...]
    """slash commands, without the slash"""
    skills: tuple[str, ...]
    roles: tuple[str, ...]
    tools: tuple[str, ...]
    """plugin and MCP tools offered after the built-in ones (a server still listing its
    tools is not in it yet: its mcp.server started says how many)"""
    mcp_servers: tuple[str, ...]
    hooks: int
    """how many hook commands are configured"""
    problems: tuple[str, ...]
    """each: the file, the field, what is wrong"""
    ignored: tuple[str, ...] = ()
    """what an untrusted folder brought and did not get to run: its plugins, hooks, MCP servers"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class PluginsReloaded(Payload):
    """A watched file changed on disk during the session and what it holds was read again."""

    TYPE: ClassVar[str] = PLUGINS_RELOADED
    paths: tuple[str, ...]
    """the files that changed"""
    what: tuple[str, ...]
    """what was reloaded: commands, skills, roles, hooks, agents_md, config"""
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class HookFinished(Payload):
    """One hook command ran (Claude Code's hook events and I/O)."""

    TYPE: ClassVar[str] = HOOK_FINISHED
    hook_event: HookEventName
    """SessionStart, UserPromptSubmit, PreToolUse, PostToolUse, Stop, SubagentStop, PreCompact,
    Notification (Claude Code's names)"""
    command: str
    outcome: HookOutcome
    """ok; blocked: it blocked what it was asked about (exit 2 or a JSON decision); failed: it
    exited with another code or could not start, and the run went on; timeout: it ran past its
    timeout and was killed, and the run went on"""
    exit_code: int | None
    duration: float
    """seconds"""
    message: str
    """the reason it gave, or what went wrong (stderr, trimmed)"""
    tool: str | None = field(default=None, metadata=OPTIONAL)
    """PreToolUse and PostToolUse: the tool call's name"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class McpServer(Payload):
    """An MCP server changed state: started (its tools listed), failed (it could not start or
    it died; a call to its tools is answered as an error the model can read), restarting (after
    a crash, with backoff), stopped (the session ended)."""

    TYPE: ClassVar[str] = MCP_SERVER
    server: str
    state: McpState
    """started, failed, restarting, stopped"""
    message: str
    tools: int = 0
    """how many tools it offers"""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Unknown(Payload):
    """The payload of an event read back that this version cannot type: a type it does not
    know, or data lacking a field (``data`` is what was read)."""

    TYPE: ClassVar[str] = ""
    type: str
    data: dict[str, Any]

    def to_data(self) -> dict[str, Any]:
        return self.data


# Every event type of this schema version, by name.
PAYLOADS: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (
        SessionStarted,
        TurnStarted,
        MessageUser,
        TextDelta,
        ThinkingDelta,
        MessageAssistant,
        Usage,
        Compaction,
        Retry,
        ToolRequested,
        PermissionAsked,
        PermissionDecided,
        ToolStarted,
        ToolOutput,
        ToolFinished,
        FileChanged,
        Undo,
        SteerReceived,
        SteerDelivered,
        MessageQueued,
        Error,
        TurnFinished,
        SessionFinished,
        SessionForked,
        ModelChanged,
        ComputerAction,
        TeamStarted,
        TeamPlan,
        TeamPlanAsked,
        TeamPlanDecided,
        TeamReplan,
        TeamWorktree,
        TeamTaskStarted,
        TeamVerdict,
        TeamTaskFinished,
        TeamMerge,
        TeamResolveStarted,
        TeamResolveFinished,
        TeamBudget,
        TeamSteer,
        TeamFinished,
        PluginsLoaded,
        PluginsReloaded,
        HookFinished,
        McpServer,
    )
}
ALL_TYPES = frozenset(PAYLOADS)


def _usage_from(d: dict[str, Any]) -> messages.Usage:
    return messages.Usage(**{k: d[k] for k in messages.Usage.__dataclass_fields__ if k in d})


def _images_to_data(images: tuple[messages.ImagePart, ...]) -> list[dict[str, Any]]:
    return [messages.part_to_dict(image) for image in images]


def _images_from_data(data: list[dict[str, Any]]) -> tuple[messages.Part, ...]:
    return tuple(messages.part_from_dict(d) for d in data)


def _codec(annotation: str) -> tuple[Callable[[Any], Any] | None, Callable[[Any], Any] | None]:
    """How a field annotated ``annotation`` is written to JSON data and read back (None: as it
    is). The annotation as written: this module's are strings (``from __future__ import
    annotations``), and reading them is much cheaper at import than ``typing.get_type_hints``."""
    first = next(part for part in annotation.split(" | ") if part != "None")
    if first == "Message":
        return Message.to_dict, Message.from_dict
    if first == "messages.Usage":
        return messages.Usage.to_dict, _usage_from
    if first == "tuple[messages.ImagePart, ...]":
        return _images_to_data, _images_from_data
    if first.startswith("tuple["):
        return list, tuple
    return None, None


def _wire(cls: type[Payload]) -> tuple[_Wire, ...]:
    wire: list[_Wire] = []
    for f in dataclasses.fields(cls):
        write, read = _codec(str(f.type))
        when = (f.metadata["written_with"] or f.name) if "written_with" in f.metadata else None
        wire.append((f.name, write, read, when))
    return tuple(wire)


for _cls in PAYLOADS.values():
    _cls._WIRE = _wire(_cls)


def payload_of(type: str, data: dict[str, Any]) -> Payload:
    """The typed payload of an event of ``type`` with ``data``, or :class:`Unknown`."""
    cls = PAYLOADS.get(type)
    if cls is not None:
        try:
            return cls.from_data(data)
        except Exception:  # an older or foreign line: it is kept, only not typed
            pass
    return Unknown(type=type, data=data)


# What Event.to_json writes: json.dumps(to_dict(), ensure_ascii=False, separators=(",", ":")).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_quote = json.encoder.encode_basestring  # what that encoder writes for a str (C when available)
_ENVELOPE = (
    '{"v":' + str(SCHEMA_VERSION) + ',"seq":%d,"ts":%s,"session_id":%s,"turn_id":%s%s,"type":%s,'
    '"data":%s}'
)


@dataclass(frozen=True, slots=True)
class Event:
    """One event: the envelope, ``data`` (the JSON view) and :attr:`payload` (the typed view).
    Build one from a payload with :meth:`of`; one built from a type and data (or read with
    :meth:`from_json`) types its payload when it is first asked for."""

    type: str
    data: dict[str, Any]
    seq: int
    session_id: str
    turn_id: str | None
    ts: float
    # The conversation that emitted it (Conversation.agent_id); None for the main one.
    agent: str | None = None
    _payload: Payload | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(
        cls,
        payload: Payload,
        seq: int,
        session_id: str,
        turn_id: str | None,
        ts: float,
        agent: str | None = None,
    ) -> Event:
        return cls(payload.TYPE, payload.to_data(), seq, session_id, turn_id, ts, agent, payload)

    @property
    def payload(self) -> Payload:
        """The typed data: one of the classes in :data:`PAYLOADS`, or :class:`Unknown`."""
        payload = self._payload
        if payload is None:
            payload = payload_of(self.type, self.data)
            object.__setattr__(self, "_payload", payload)
        return payload

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "seq": self.seq,
            "ts": self.ts,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
        }
        if self.agent is not None:
            d["agent"] = self.agent
        d["type"] = self.type
        d["data"] = self.data
        return d

    def to_json(self) -> str:
        """One line of JSON, always encodable as UTF-8 (see :func:`mcode.messages.clean_text`):
        ``json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))``, written with
        the envelope spelled out (every event goes through here, text deltas included)."""
        ts = self.ts
        return clean_text(
            _ENVELOPE
            % (
                self.seq,
                # time.time(): a finite float, whose JSON is its repr (no encoder call).
                float.__repr__(ts) if type(ts) is float and math.isfinite(ts) else _encode(ts),
                _quote(self.session_id),
                "null" if self.turn_id is None else _quote(self.turn_id),
                "" if self.agent is None else ',"agent":' + _quote(self.agent),
                _quote(self.type),
                _encode(self.data),
            )
        )

    @classmethod
    def from_json(cls, line: str) -> Event:
        d = json.loads(line)
        return cls(
            d["type"],
            d["data"],
            d["seq"],
            d["session_id"],
            d.get("turn_id"),
            d["ts"],
            d.get("agent"),
        )
