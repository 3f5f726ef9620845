"""One line per step on stderr for ``mcode exec`` in text mode, so a person sees the agent work
(which model, each tool call and its outcome, retries, denials) while stdout keeps only the
answer for scripts. Built on the event stream like every other front end.

Quiet (``-q``, and the ``json`` format, whose stdout is one object at the end) still says why
a run is waiting once the wait gets long: retries of one model call from the second on, or
once they have waited :data:`QUIET_RETRY_AFTER` seconds, so a dead server is never a silent
hang; and, on resume, what the killed run left running."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from mcode import events as ev
from mcode.events import Event

MAX_ARGS = 120
QUIET_RETRY_AFTER = 3.0  # seconds of backoff, within one model call, before -q says so


class Progress:
    def __init__(self, out: TextIO | None = None, *, quiet: bool = False) -> None:
        self.out = out or sys.stderr
        self.quiet = quiet
        self._waited = 0.0  # backoff so far in the current model call's retries

    def __call__(self, event: Event, line: str) -> None:
        if event.type in ev.TRANSIENT_TYPES:
            return  # none is shown, and they are the many
        # The session hands subscribers events already scrubbed.
        text = self._quiet(event) if self.quiet else describe(event)
        if text is None or self.out is None:  # stderr closed at start: nowhere to show it
            return
        try:
            print(text, file=self.out, flush=True)
        except (BrokenPipeError, ValueError):
            pass  # stderr closed: progress is a courtesy, never a reason to fail the run

    def _quiet(self, event: Event) -> str | None:
        match event.payload:
            case ev.Error(kind="leftover", message=message):
                return f"mcode: {message}"  # something was killed on your behalf: always said
            case ev.HookFinished(outcome="failed" | "timeout") as p:
                return f"mcode: {_hook_line(p)}"  # a hook that did not work: never silent
            case ev.PluginsLoaded(problems=problems) if problems:
                return "\n".join(f"mcode: plugin problem: {x}" for x in problems)
            case ev.Retry() as retry:
                if retry.attempt == 1:
                    self._waited = 0.0  # a new model call's first retry
                long_wait = retry.attempt >= 2 or self._waited + retry.wait >= QUIET_RETRY_AFTER
                self._waited += retry.wait
                return f"mcode: {_retry_line(retry)}" if long_wait else None
        return None


def describe(event: Event) -> str | None:
    """One line (or two) for a person about ``event``, or None for one they need not see: what
    the text progress of ``mcode exec`` and the plain REPL print."""
    match event.payload:
        case ev.SessionStarted() as p:
            how = "resumed session" if p.resumed else "session"
            text = (
                f"mcode: {how} {event.session_id[:12]}, {p.provider}/{p.model} "
                f"({p.provider_reason}), permission mode {p.permission_mode}"
            )
            # What the mode denies, said before any denial.
            return f"{text}\nmcode: {p.permission_note}" if p.permission_note else text
        case ev.TurnStarted(resumed=True):
            return "mcode: continuing the interrupted turn"
        case ev.SteerDelivered(text=text):
            return f"→ steer: {_short(text)}"
        case ev.ToolRequested(name=name, arguments=arguments):
            return f"→ {name} {_short_args(arguments)}"
        case ev.ToolFinished() as p:
            mark = "✓" if p.ok else "✗"
            return f"  {mark} {p.summary or p.name} ({p.duration:.1f} s)"
        case ev.PermissionDecided(allowed=False, reason=reason):
            return f"  denied: {reason}"
        case ev.Compaction() as p:
            return (
                f"mcode: compacted the conversation ({p.reason}): "
                f"~{p.tokens_before:,} → ~{p.tokens_after:,} tokens of {p.window:,}, "
                f"{p.kept} recent messages kept"
            )
        case ev.Retry() as retry:
            return f"  {_retry_line(retry)}"
        case ev.Error(kind=kind, message=message):
            return f"  {kind}: {message}"
        case ev.HookFinished(outcome="failed" | "timeout" | "blocked") as p:
            return f"  {_hook_line(p)}"
        case ev.PluginsLoaded(problems=problems) if problems:
            return "\n".join(f"mcode: plugin problem: {x}" for x in problems)
        case ev.McpServer(state="failed" | "restarting") as p:
            return f"  MCP server {p.server} {p.state}: {p.message}"
        case ev.PluginsReloaded(what=what):
            return f"mcode: reloaded {', '.join(what)}"
    return team_line(event.payload)


def team_line(payload: ev.Payload) -> str | None:
    """A team run's steps (mcode/team), one line each."""
    match payload:
        case ev.TeamPlan(revision=revision, stages=stages):
            ids = [t["id"] for stage in stages for t in stage["tasks"]]
            what = "plan" if revision == 1 else f"plan revision {revision}"
            return f"team: {what}: {len(ids)} task(s): {', '.join(ids)}"
        case ev.TeamPlanAsked(request_id=request_id, steer=steer):
            what = "the plan" if steer is None else f"the re-plan for {_short(steer)!r}"
            return f"team: waiting for {what} to be approved, rejected or edited ({request_id})"
        case ev.TeamPlanDecided(decision=decision, by=by, reason=reason):
            said = f": {_short(reason)}" if reason and reason != decision else ""
            return f"team: plan {decision} (by {by}){said}"
        case ev.TeamWorktree(confined=False, task_id=task_id, reason=reason):
            return f"team: {task_id}: refused: {reason}"
        case ev.TeamTaskStarted(task_id=task_id, round=round_, agent=agent):
            return f"team: {task_id}: round {round_} ({agent})"
        case ev.TeamVerdict(task_id=task_id, verdict=verdict, accepted=accepted, refused=why):
            said = verdict or "no verdict"
            outcome = "accepted" if accepted else (f"refused: {why}" if why else "not accepted")
            return f"team: {task_id}: {said}, {outcome}"
        case ev.TeamMerge(task_id=task_id, ok=ok, branch=branch, conflicts=conflicts):
            if ok:
                return f"team: {task_id}: merged"
            return (
                f"team: {task_id}: merge conflict in {', '.join(conflicts) or '?'}; {branch} kept"
            )
        case ev.TeamResolveStarted(task_id=task_id, agent=agent, conflicts=conflicts):
            return f"team: {task_id}: resolving the conflict in {', '.join(conflicts)} ({agent})"
        case ev.TeamResolveFinished(task_id=task_id, outcome=outcome, reason=reason):
            if outcome == "resolved":
                return f"team: {task_id}: conflict resolved, checked and merged"
            return f"team: {task_id}: the resolver failed: {reason}"
        case ev.TeamTaskFinished(task_id=task_id, status=status, reason=reason):
            return f"team: {task_id}: {status} ({reason})"
        case ev.TeamBudget(scope=scope, task_id=task_id, limit=limit, allowed=allowed):
            who = "the team" if scope == "team" else task_id
            return f"team: budget: {who} spent its {allowed:g} {limit}"
        case ev.TeamSteer(text=text, to=to):
            return f"team: steer {_short(text)!r} to {', '.join(to) or 'nobody running'}"
    return None


def _hook_line(p: ev.HookFinished) -> str:
    on = f" ({p.tool})" if p.tool else ""
    return f"{p.hook_event} hook{on} {p.outcome}: {_short(p.message)} [{_short(p.command)}]"


def _retry_line(retry: ev.Retry) -> str:
    return f"retrying in {retry.wait:.1f} s (attempt {retry.attempt}): {retry.reason}"


def _short_args(raw: str) -> str:
    try:
        text = json.dumps(json.loads(raw), ensure_ascii=False) if raw.strip() else "{}"
    except json.JSONDecodeError:
        text = raw
    return _short(text)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ARGS else text[: MAX_ARGS - 1] + "…"
