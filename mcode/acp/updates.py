"""From mcode events to ACP ``session/update`` payloads.

One :class:`Updates` per ACP session reads that session's events, in order, and says what the
client should be told about each::

    text.delta          -> agent_message_chunk
    thinking.delta      -> agent_thought_chunk
    tool.requested      -> tool_call          (pending; kind, title, locations, a diff for
                                               write and edit, raw input)
    tool.started        -> tool_call_update   (in_progress)
    tool.output         -> tool_call_update   (the command's output so far)
    tool.finished       -> tool_call_update   (completed / failed, the result; the diff kept)
                           plan               (when the call was the todo tool's list)
    error               -> agent_message_chunk (what went wrong and what to do)
    usage               -> usage_update       (context used / window; live only)
    team.*              -> plan, agent_message_chunk (a /team run: mcode/acp/team.py)

Replaying a stored session (``session/load``) reads the same events back, where deltas were
never stored: there the completed messages speak instead (``message.user`` ->
user_message_chunk, ``message.assistant`` -> thought and message chunks), so a loaded session
shows what a live one showed. Only the main conversation's text is shown; a sub-agent's
(``task``) words are its parent's tool result, but its tool calls are listed.

Nothing here does I/O: the session bridge sends what this returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acp import schema as s

from mcode import events as ev
from mcode.acp.team import TeamView
from mcode.events import Event

Update = (
    s.UserMessageChunk
    | s.AgentMessageChunk
    | s.AgentThoughtChunk
    | s.ToolCallStart
    | s.ToolCallProgress
    | s.AgentPlanUpdate
    | s.UsageUpdate
)

# The tool kinds ACP clients draw icons for; any other tool (plugins, MCP) is "other".
KINDS: dict[str, Any] = {
    "read": "read",
    "ls": "read",
    "grep": "search",
    "glob": "search",
    "write": "edit",
    "edit": "edit",
    "bash": "execute",
    "todo": "think",
    "task": "think",
}
# How much of a tool's result a client is shown (the model gets it all).
RESULT_CHARS = 8000


def arguments(raw: str) -> dict[str, Any]:
    """A call's arguments as the model sent them, or {} when they are not a JSON object (the
    tool refuses those itself; the client is still told of the call)."""
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def title(name: str, args: dict[str, Any]) -> str:
    """One line naming what the call does, as a client's tool card heading."""
    path, pattern = args.get("path"), args.get("pattern")
    if name == "bash" and isinstance(args.get("command"), str):
        return f"Run `{args['command'].strip().splitlines()[0][:200]}`"
    if name in ("read", "write", "edit") and isinstance(path, str):
        return f"{name.capitalize()} {path}"
    if name in ("grep", "glob") and isinstance(pattern, str):
        where = f" in {path}" if isinstance(path, str) else ""
        return f"{'Search' if name == 'grep' else 'Find'} {pattern}{where}"
    if name == "ls":
        return f"List {path if isinstance(path, str) else '.'}"
    if name == "todo":
        return "Update the plan"
    if name == "task" and isinstance(args.get("description"), str):
        return f"Sub-agent: {args['description']}"
    return name


def locations(name: str, args: dict[str, Any], workspace: Path) -> list[s.ToolCallLocation]:
    """The file a call is about, absolute (ACP paths are), with its first line when known."""
    path = args.get("path")
    if not isinstance(path, str) or not path or name == "bash":
        return []
    full = Path(path) if Path(path).is_absolute() else workspace / path
    line = args.get("offset") if name == "read" else None
    return [s.ToolCallLocation(path=str(full), line=line if isinstance(line, int) else None)]


def diff(name: str, args: dict[str, Any], workspace: Path) -> list[Any]:
    """The change a write or edit makes, as ACP diff content: an edit's old and new text, a
    write's new content (``old_text`` None: the client compares it with the file)."""
    path = args.get("path")
    if not isinstance(path, str):
        return []
    full = str(Path(path) if Path(path).is_absolute() else workspace / path)
    if name == "edit" and isinstance(args.get("new_string"), str):
        old = args.get("old_string")
        return [
            s.FileEditToolCallContent(
                type="diff",
                path=full,
                old_text=old if isinstance(old, str) else None,
                new_text=args["new_string"],
            )
        ]
    if name == "write" and isinstance(args.get("content"), str):
        return [s.FileEditToolCallContent(type="diff", path=full, new_text=args["content"])]
    return []


def text_content(text: str) -> s.ContentToolCallContent:
    if len(text) > RESULT_CHARS:
        text = text[:RESULT_CHARS] + f"\n… [{len(text) - RESULT_CHARS} more characters]"
    return s.ContentToolCallContent(
        type="content", content=s.TextContentBlock(type="text", text=text)
    )


def plan(todos: Any) -> s.AgentPlanUpdate | None:
    """The todo tool's list as an ACP plan, or None if the list is not one the tool took."""
    if not isinstance(todos, list):
        return None
    entries = []
    for item in todos:
        if not isinstance(item, dict) or item.get("status") not in (
            "pending",
            "in_progress",
            "completed",
        ):
            return None
        content = item.get("content")
        if not isinstance(content, str):
            return None
        entries.append(
            s.PlanEntry(content=content.strip(), priority="medium", status=item["status"])
        )
    return s.AgentPlanUpdate(session_update="plan", entries=entries)


@dataclass(slots=True)
class _Call:
    name: str
    args: dict[str, Any]
    content: list[Any]
    output: str = ""


@dataclass(slots=True)
class Updates:
    """The updates for one session's events (see the module docstring). ``replay``: the events
    come from the store (no deltas; the completed messages are shown instead)."""

    workspace: Path
    replay: bool = False
    _calls: dict[str, _Call] = field(default_factory=dict)
    team: TeamView = field(default_factory=TeamView)

    def of(self, event: Event) -> list[Update]:
        payload = event.payload
        main = event.agent is None
        if main and event.type.startswith("team."):
            return self.team.of(payload)
        match payload:
            case ev.TextDelta(text=text) if main and text:
                return [_message(text)]
            case ev.ThinkingDelta(text=text) if main and text:
                return [_thought(text)]
            case ev.MessageUser(message=message) if main and self.replay:
                return [
                    s.UserMessageChunk(session_update="user_message_chunk", content=_text(text))
                    for text in (message.text,)
                    if text
                ]
            case ev.SteerDelivered(text=text) if main and self.replay:
                return [
                    s.UserMessageChunk(session_update="user_message_chunk", content=_text(text))
                ]
            case ev.MessageAssistant(message=message) if main and self.replay:
                out: list[Update] = []
                if message.thinking:
                    out.append(_thought(message.thinking))
                if message.text:
                    out.append(_message(message.text))
                return out
            case ev.ToolRequested(id=call_id, name=name, arguments=raw):
                if not main and self.team.running:  # a member, in its own worktree
                    return [self._requested(call_id, name, raw, member=event.agent)]
                return [self._requested(call_id, name, raw)]
            case ev.ToolStarted(id=call_id) if not self.replay:
                return [_progress(call_id, status="in_progress")]
            case ev.ToolOutput(id=call_id, text=text):
                call = self._calls.get(call_id)
                if call is None:
                    return []
                call.output += text
                return [_progress(call_id, content=[*call.content, text_content(call.output)])]
            case ev.ToolFinished(id=call_id, ok=ok, message=message):
                return self._finished(call_id, ok, message.text)
            case ev.Error(message=message, hint=hint, kind=kind) if main and kind != "leftover":
                return [
                    _message(f"\n\n**mcode: {message}**" + (f" ({hint})" if hint else "") + "\n")
                ]
            case ev.Usage(context_tokens=used, context_window=size) if (
                main and used and size and not self.replay
            ):
                return [s.UsageUpdate(session_update="usage_update", used=used, size=size)]
        return []

    def _requested(
        self, call_id: str, name: str, raw: str, *, member: str | None = None
    ) -> s.ToolCallStart:
        args = arguments(raw)
        # A team member's paths are its worktree's: no diff or location against the user's.
        content = diff(name, args, self.workspace) if member is None else []
        self._calls[call_id] = _Call(name, args, content)
        return s.ToolCallStart(
            session_update="tool_call",
            tool_call_id=call_id,
            title=title(name, args) if member is None else f"{member}: {title(name, args)}",
            kind=KINDS.get(name, "other"),
            status="pending",
            content=content or None,
            locations=(locations(name, args, self.workspace) if member is None else None) or None,
            raw_input=args,
        )

    def _finished(self, call_id: str, ok: bool, result: str) -> list[Update]:
        call = self._calls.pop(call_id, None)
        content = [] if call is None else list(call.content)
        if call is None or call.name not in ("edit", "write") or not ok:
            content.append(text_content(result))
        out: list[Update] = [
            _progress(call_id, status="completed" if ok else "failed", content=content)
        ]
        if ok and call is not None and call.name == "todo":
            entries = plan(call.args.get("todos"))
            if entries is not None:
                out.append(entries)
        return out

    def tool_call(self, call_id: str) -> s.ToolCallUpdate:
        """What a permission question shows of the call it asks about."""
        call = self._calls.get(call_id)
        if call is None:
            return s.ToolCallUpdate(tool_call_id=call_id)
        return s.ToolCallUpdate(
            tool_call_id=call_id,
            title=title(call.name, call.args),
            kind=KINDS.get(call.name, "other"),
            status="pending",
            content=call.content or None,
            locations=locations(call.name, call.args, self.workspace) or None,
            raw_input=call.args,
        )


def _text(text: str) -> s.TextContentBlock:
    return s.TextContentBlock(type="text", text=text)


def _message(text: str) -> s.AgentMessageChunk:
    return s.AgentMessageChunk(session_update="agent_message_chunk", content=_text(text))


def _thought(text: str) -> s.AgentThoughtChunk:
    return s.AgentThoughtChunk(session_update="agent_thought_chunk", content=_text(text))


def _progress(call_id: str, **fields: Any) -> s.ToolCallProgress:
    return s.ToolCallProgress(session_update="tool_call_update", tool_call_id=call_id, **fields)
