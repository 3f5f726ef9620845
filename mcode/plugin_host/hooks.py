"""Hooks: the user's commands run at fixed points of a session, with Claude Code's names and I/O.

A hook is a shell command bound to an event, and for tool events to a matcher on the tool's
name. It gets one JSON object on stdin and answers with its exit code, stderr and stdout::

    {"session_id": "…", "transcript_path": "", "cwd": "/repo", "permission_mode": "ask",
     "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "rm -rf /"},
     "tool_use_id": "call_1"}

    exit 0   success; stdout may be JSON (``hookSpecificOutput.permissionDecision`` allow / deny /
             ask with ``permissionDecisionReason`` and ``updatedInput``; ``decision: "block"``
             with ``reason``; ``additionalContext``), or for UserPromptSubmit and SessionStart
             plain text added to what the model reads
    exit 2   blocks: PreToolUse refuses the call, and stderr is the reason the model reads;
             UserPromptSubmit drops the message; Stop keeps the turn going with stderr as the
             next instruction; PostToolUse hands stderr to the model with the result
    other    a failed hook: said as a ``hook.finished`` event (outcome failed), and the session
             goes on as if it had not run; so does one that runs past its ``timeout`` (killed,
             outcome timeout)

Matchers are Claude Code's: a regular expression matched against the whole tool name, ``*`` or
empty for every tool. mcode's tools answer to their own names and to Claude Code's (``bash``
and ``Bash``, ``edit`` and ``Edit``, ``mcp__server__tool`` alike), and ``tool_input`` carries
``file_path`` (absolute) beside mcode's ``path``, so a Claude Code hook works unchanged.
Matching hooks of one event run in parallel; the same command twice runs once. Every hook
starts in the workspace with the scrubbed child environment (``mcode/tools/child_env.py``)
plus ``CLAUDE_PROJECT_DIR`` and, for a plugin's hooks, ``CLAUDE_PLUGIN_ROOT``, inside the OS
sandbox (``mcode/tools/sandbox.py``) at least ``workspace-write``: a hook may format the
workspace's files but not write outside it, whatever a plugin's hook command says. A sandbox
that cannot start fails that hook (a ``hook.finished`` event with the reason); it never runs
unsandboxed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcode import events as ev
from mcode.agent.hooks import PromptGate, ToolGate
from mcode.errors import SandboxError
from mcode.tools.base import ToolResult
from mcode.tools.sandbox import SandboxPolicy, sandboxed_argv

HookEvent = ev.HookEventName
HOOK_EVENTS: tuple[str, ...] = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "Stop",
    "SubagentStop",
    "PreCompact",
    "Notification",
)
# Events whose matcher is matched against a tool name (the others' against their source).
TOOL_EVENTS = ("PreToolUse", "PostToolUse")
DEFAULT_TIMEOUT = 60.0  # seconds, as Claude Code's
OUTPUT_CAP = 20_000  # characters of a hook's stdout and stderr kept
MESSAGE_CAP = 2_000  # characters of stderr in the event

# mcode's tools under Claude Code's names, for matchers and tool_name.
CLAUDE_NAMES = {
    "bash": "Bash",
    "read": "Read",
    "write": "Write",
    "edit": "Edit",
    "grep": "Grep",
    "glob": "Glob",
    "ls": "LS",
    "todo": "TodoWrite",
    "task": "Task",
    "web_fetch": "WebFetch",
    "web_search": "WebSearch",
}


@dataclass(frozen=True, slots=True)
class HookCommand:
    """One configured hook: run ``command`` on ``event`` when ``matcher`` matches."""

    event: str
    command: str
    matcher: str = ""
    timeout: float = DEFAULT_TIMEOUT
    source: str = ""  # the file it was configured in
    plugin_root: Path | None = None

    def matches(self, subject: str | None) -> bool:
        if self.matcher in ("", "*") or subject is None:
            return True
        names = {subject, CLAUDE_NAMES.get(subject, subject)}
        try:
            pattern = re.compile(self.matcher)
        except re.error:
            return self.matcher in names
        return any(pattern.fullmatch(n) for n in names)


def parse_hooks(
    table: Any, source: str, plugin_root: Path | None = None
) -> tuple[list[HookCommand], list[str]]:
    """The hooks of one ``hooks`` table (Claude Code's shape: event -> list of ``{matcher,
    hooks: [{type: "command", command, timeout}]}``; ``command`` right in the group is taken
    too, which reads better in TOML), and a problem (naming ``source`` and the field) for each
    part that could not be used. The rest is kept."""
    hooks: list[HookCommand] = []
    problems: list[str] = []
    if not isinstance(table, dict):
        return [], [f"{source}: hooks: expected a table of events, not {type(table).__name__}"]
    for event, groups in table.items():
        where = f"{source}: hooks.{event}"
        if event not in HOOK_EVENTS:
            problems.append(f"{where}: unknown hook event (known: {', '.join(HOOK_EVENTS)})")
            continue
        if isinstance(groups, dict):
            groups = [groups]
        if not isinstance(groups, list):
            problems.append(f"{where}: expected a list of matcher groups")
            continue
        for i, group in enumerate(groups):
            at = f"{where}[{i}]"
            if not isinstance(group, dict):
                problems.append(f"{at}: expected a table with matcher and hooks")
                continue
            matcher = group.get("matcher", "")
            if not isinstance(matcher, str):
                problems.append(f"{at}.matcher: expected a string")
                continue
            entries = group.get("hooks")
            if entries is None and "command" in group:
                entries = [group]
            if not isinstance(entries, list) or not entries:
                problems.append(f"{at}.hooks: expected a list of commands")
                continue
            for j, entry in enumerate(entries):
                hook, problem = _command(entry, f"{at}.hooks[{j}]", event, matcher, plugin_root)
                if problem:
                    problems.append(problem)
                elif hook is not None:
                    hooks.append(dataclasses.replace(hook, source=source))
    return hooks, problems


def _command(
    entry: Any, at: str, event: str, matcher: str, plugin_root: Path | None
) -> tuple[HookCommand | None, str]:
    if not isinstance(entry, dict):
        return None, f"{at}: expected a table with type and command"
    kind = entry.get("type", "command")
    if kind != "command":
        return None, f"{at}.type: {kind!r} hooks are not supported (only command)"
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        return None, f"{at}.command: expected a non-empty string"
    timeout = entry.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        return None, f"{at}.timeout: expected a number of seconds above 0, not {timeout!r}"
    if plugin_root is not None:
        # Claude Code expands it in the command line too, not only in the environment.
        command = command.replace("${CLAUDE_PLUGIN_ROOT}", str(plugin_root))
    return HookCommand(event, command, matcher, float(timeout), "", plugin_root), ""


@dataclass(slots=True)
class HookRun:
    """How one hook command ended."""

    hook: HookCommand
    outcome: ev.HookOutcome
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    reply: dict[str, Any] = field(default_factory=dict)  # its JSON stdout, if it wrote one
    message: str = ""


Emit = Callable[[ev.Payload], Any]


class HookRunner:
    """Runs the configured hooks for a session; the :class:`~mcode.agent.hooks.TurnHooks` the
    agent loop calls. ``emit`` records a ``hook.finished`` event per command run (set by
    ``open_session`` once the session exists); ``session_id`` and ``permission_mode`` go into
    every hook's input."""

    def __init__(
        self,
        hooks: list[HookCommand],
        *,
        workspace: Path,
        env: dict[str, str],
        permission_mode: str = "ask",
        resumed: bool = False,
        sandbox: SandboxPolicy | None = None,
    ) -> None:
        self.hooks = list(hooks)
        self.workspace = workspace
        self.env = env
        self.sandbox = sandbox
        self.permission_mode = permission_mode
        self.session_id = ""
        self.emit: Emit = lambda payload: None
        self._source: Literal["startup", "resume"] = "resume" if resumed else "startup"
        self._started = False

    def __len__(self) -> int:
        return len(self.hooks)

    def has(self, event: str) -> bool:
        return any(h.event == event for h in self.hooks)

    # -- TurnHooks ------------------------------------------------------------------------
    async def before_prompt(self, text: str, *, agent: str | None) -> PromptGate:
        if agent is not None:
            return PromptGate()  # a sub-agent's job is not a user prompt
        context: list[str] = []
        if not self._started:
            self._started = True
            for run in await self.run("SessionStart", {"source": self._source}, self._source):
                context += _context(run)
        runs = await self.run("UserPromptSubmit", {"prompt": text}, None)
        for run in runs:
            if run.outcome == "blocked":
                return PromptGate(block=True, reason=run.message)
            context += _context(run)
        return PromptGate(context="\n\n".join(c for c in context if c))

    async def before_tool(
        self, name: str, args: dict[str, Any], call_id: str, *, agent: str | None
    ) -> ToolGate:
        if not self.has("PreToolUse"):
            return ToolGate()
        payload = {
            "tool_name": CLAUDE_NAMES.get(name, name),
            "tool_input": self._tool_input(args),
            "tool_use_id": call_id,
        }
        runs = await self.run("PreToolUse", payload, name)
        denied = [r.message for r in runs if r.outcome == "blocked"]
        if denied:
            return ToolGate("deny", "; ".join(m for m in denied if m))
        decisions = [_permission_decision(r.reply) for r in runs]
        updated = next(
            (r.reply.get("_updated") for r in reversed(runs) if "_updated" in r.reply), None
        )
        arguments = None if updated is None else self._from_tool_input(updated, args)
        reasons = "; ".join(reason for _, reason in decisions if reason)
        if any(d == "ask" for d, _ in decisions):
            return ToolGate("ask", reasons, arguments)
        if any(d == "allow" for d, _ in decisions):
            return ToolGate("allow", reasons, arguments)
        return ToolGate("ask", "", arguments)

    async def after_tool(
        self, name: str, args: dict[str, Any], result: ToolResult, call_id: str
    ) -> str:
        if not self.has("PostToolUse"):
            return ""
        payload = {
            "tool_name": CLAUDE_NAMES.get(name, name),
            "tool_input": self._tool_input(args),
            "tool_response": {"content": result.content, "is_error": result.is_error},
            "tool_use_id": call_id,
        }
        feedback: list[str] = []
        for run in await self.run("PostToolUse", payload, name):
            if run.outcome == "blocked":
                feedback.append(run.message)
            feedback += _context(run, plain=False)
        said = "\n".join(f for f in feedback if f)
        return f"[PostToolUse hook] {said}" if said else ""

    async def on_stop(self, text: str, *, agent: str | None, again: bool) -> str:
        event = "Stop" if agent is None else "SubagentStop"
        if not self.has(event):
            return ""
        payload = {"stop_hook_active": again, "last_assistant_message": text}
        reasons = [
            r.message for r in await self.run(event, payload, None) if r.outcome == "blocked"
        ]
        return "\n".join(r for r in reasons if r)

    async def before_compact(self, reason: str, instructions: str | None) -> None:
        trigger = "manual" if reason == "manual" else "auto"
        payload = {"trigger": trigger, "custom_instructions": instructions or ""}
        await self.run("PreCompact", payload, trigger)

    async def notify(self, message: str) -> None:
        """Notification: mcode needs the user (a permission question waits)."""
        await self.run("Notification", {"message": message}, None)

    # -- running ----------------------------------------------------------------------------
    async def run(self, event: str, payload: dict[str, Any], subject: str | None) -> list[HookRun]:
        """Run every hook of ``event`` whose matcher takes ``subject``, in parallel; each
        recorded as a ``hook.finished`` event, in the order they were configured."""
        chosen: dict[str, HookCommand] = {}
        for hook in self.hooks:
            if hook.event == event and hook.matches(subject) and hook.command not in chosen:
                chosen[hook.command] = hook
        if not chosen:
            return []
        stdin = json.dumps(
            {
                "session_id": self.session_id,
                "transcript_path": "",
                "cwd": str(self.workspace),
                "permission_mode": self.permission_mode,
                "hook_event_name": event,
                **payload,
            },
            ensure_ascii=False,
        )
        runs = await asyncio.gather(*(self._run_one(h, stdin) for h in chosen.values()))
        tool = subject if event in TOOL_EVENTS else None
        for run in runs:
            self.emit(
                ev.HookFinished(
                    hook_event=event,  # type: ignore[arg-type]
                    command=run.hook.command,
                    outcome=run.outcome,
                    exit_code=run.exit_code,
                    duration=round(run.duration, 3),
                    message=run.message[:MESSAGE_CAP],
                    tool=tool,
                )
            )
        return list(runs)

    async def _run_one(self, hook: HookCommand, stdin: str) -> HookRun:
        env = dict(self.env)
        env["CLAUDE_PROJECT_DIR"] = str(self.workspace)
        if hook.plugin_root is not None:
            env["CLAUDE_PLUGIN_ROOT"] = str(hook.plugin_root)
        started = time.monotonic()
        argv = ["/bin/sh", "-c", hook.command]
        try:
            if self.sandbox is not None:
                argv = sandboxed_argv(argv, self.sandbox)
        except SandboxError as e:
            said = f"not run: {e.message}" + (f" (hint: {e.hint})" if e.hint else "")
            return HookRun(hook, "failed", None, "", "", 0.0, message=said)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.workspace,
                env=env,
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        except OSError as e:
            return HookRun(hook, "failed", None, "", "", 0.0, message=f"could not start: {e}")
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), hook.timeout)
        except TimeoutError:
            _kill_group(proc.pid)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            return HookRun(
                hook,
                "timeout",
                None,
                "",
                "",
                time.monotonic() - started,
                message=f"killed after its timeout of {hook.timeout:g} s",
            )
        except asyncio.CancelledError:
            _kill_group(proc.pid)
            raise
        duration = time.monotonic() - started
        stdout = out.decode("utf-8", "replace")[:OUTPUT_CAP]
        stderr = err.decode("utf-8", "replace")[:OUTPUT_CAP].strip()
        return _judge(hook, proc.returncode, stdout, stderr, duration)

    def _tool_input(self, args: dict[str, Any]) -> dict[str, Any]:
        shown = dict(args)
        path = args.get("path")
        if isinstance(path, str) and "file_path" not in shown:
            shown["file_path"] = str((self.workspace / path).resolve())
        return shown

    def _from_tool_input(self, updated: Any, args: dict[str, Any]) -> dict[str, Any] | None:
        if not isinstance(updated, dict):
            return None
        # The file_path shown beside path is Claude Code's name for it: map it back.
        new = dict(updated)
        file_path = new.pop("file_path", None)
        if "path" in args and "path" not in new and isinstance(file_path, str):
            new["path"] = file_path
        return new


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _judge(
    hook: HookCommand, code: int | None, stdout: str, stderr: str, duration: float
) -> HookRun:
    """Claude Code's reading of a hook's answer: exit 2 blocks (stderr is the reason), another
    non-zero code failed, 0 may carry a JSON decision on stdout."""
    if code == 2:
        reason = stderr or "(the hook gave no reason on stderr)"
        return HookRun(hook, "blocked", code, stdout, stderr, duration, message=reason)
    if code != 0:
        why = stderr or f"exited with code {code}"
        return HookRun(hook, "failed", code, stdout, stderr, duration, message=why)
    reply: dict[str, Any] = {}
    text = stdout.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            reply = parsed
    specific = reply.get("hookSpecificOutput")
    specific = specific if isinstance(specific, dict) else {}
    if "updatedInput" in specific:
        reply["_updated"] = specific["updatedInput"]
    decision, reason = _permission_decision(reply)
    blocked = (
        reply.get("decision") == "block" or decision == "deny" or reply.get("continue") is False
    )
    if blocked:
        reason = (
            reason
            or str(reply.get("reason") or "")
            or str(reply.get("stopReason") or "")
            or "(no reason given)"
        )
        return HookRun(hook, "blocked", code, stdout, stderr, duration, reply, reason)
    return HookRun(hook, "ok", code, stdout, stderr, duration, reply, reason)


def _permission_decision(reply: dict[str, Any]) -> tuple[str, str]:
    """PreToolUse's decision in a JSON reply: allow / deny / ask (or "" for none), and why."""
    specific = reply.get("hookSpecificOutput")
    if isinstance(specific, dict) and specific.get("permissionDecision") in (
        "allow",
        "deny",
        "ask",
    ):
        return specific["permissionDecision"], str(specific.get("permissionDecisionReason") or "")
    legacy = {"approve": "allow", "block": "deny"}.get(str(reply.get("decision")), "")
    return legacy, str(reply.get("reason") or "") if legacy else ""


def _context(run: HookRun, *, plain: bool = True) -> list[str]:
    """What a successful hook adds for the model: ``additionalContext``, or (``plain``, as for
    UserPromptSubmit and SessionStart) stdout that is not JSON."""
    if run.outcome != "ok":
        return []
    specific = run.reply.get("hookSpecificOutput")
    if isinstance(specific, dict) and isinstance(specific.get("additionalContext"), str):
        return [specific["additionalContext"]]
    if plain and not run.reply and run.stdout.strip():
        return [run.stdout.strip()]
    return []
