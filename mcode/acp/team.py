"""``/team`` in an ACP session: an agent team's steps as ACP updates.

A prompt ``/team <request>`` runs a team (mcode/team, started by
:func:`mcode.team.setup.start_team`) as the session's work, and its events are told to the
client so::

    team.plan            -> plan  (an entry per task, in plan order: "id: title", pending)
    team.task.started    -> plan  (that entry in_progress, "round N")
    team.verdict         -> plan  (the entry says the verdict: "PASS, accepted", ...)
    team.merge           -> plan  (merged, or the conflict)
    team.task.finished   -> plan  (the entry completed, saying how: passed, failed, ...)
    team.finished        -> agent_message_chunk (the summary: each task's status and rounds)

ACP's plan entries know pending, in_progress and completed only: a task that ended is
completed, and its text says whether it passed. Each plan update carries the whole plan, as ACP
wants (the client replaces what it showed). The members' tool calls are listed as a sub-agent's
are, titled with the member (``producer:a: Write a.txt``) and without a diff or a location:
they are files of the member's worktree, not the user's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from acp import schema as s

from mcode import events as ev
from mcode.progress import team_line

__all__ = ["TeamView", "stop_reason"]

# A team run's end (TeamResult.reason) as an ACP stop reason. A failed task, or no plan, is an
# ordinary end: the plan and the summary say what failed.
STOP_REASONS: dict[str, Any] = {
    "completed": "end_turn",
    "failed": "end_turn",
    "no_plan": "end_turn",
    "budget": "max_turn_requests",
    "cancelled": "cancelled",
}


def stop_reason(team_reason: str | None) -> Any:
    """The stop reason of a ``/team`` prompt whose run ended ``team_reason`` (None: it was
    cancelled before it began)."""
    return STOP_REASONS.get(team_reason or "cancelled", "end_turn")


@dataclass(slots=True)
class _Entry:
    title: str
    status: str = "pending"  # the ACP status
    note: str = ""  # where the task stands, in exec's words


@dataclass(slots=True)
class TeamView:
    """The plan as the client sees it, kept across one session's team events."""

    running: bool = False
    _entries: dict[str, _Entry] = field(default_factory=dict)

    def of(self, payload: ev.Payload) -> list[Any]:
        """The updates for one team event (none for the others)."""
        match payload:
            case ev.TeamStarted():
                self.running = True
                self._entries.clear()
                return []
            case ev.TeamPlan(stages=stages):
                entries: dict[str, _Entry] = {}
                for stage in stages:
                    for t in stage["tasks"]:
                        old = self._entries.get(t["id"])
                        entry = old or _Entry(f"{t['id']}: {t['title']}")
                        entry.title = f"{t['id']}: {t['title']}"
                        entries[t["id"]] = entry
                self._entries = entries
                return [self._plan()]
            case ev.TeamTaskStarted(task_id=task_id, round=round_):
                return self._set(task_id, "in_progress", f"round {round_}")
            case (
                ev.TeamVerdict(task_id=task_id)
                | ev.TeamMerge(task_id=task_id)
                | ev.TeamResolveStarted(task_id=task_id)
                | ev.TeamResolveFinished(task_id=task_id)
            ):
                line = team_line(payload) or ""
                return self._set(task_id, None, line.removeprefix(f"team: {task_id}: "))
            case ev.TeamTaskFinished(task_id=task_id, status=status, reason=reason):
                return self._set(task_id, "completed", f"{status}: {reason}")
            case ev.TeamFinished(tasks=tasks, reason=reason):
                self.running = False
                lines = [f"- {t['id']}: {t['status']} ({t['rounds']} round(s))" for t in tasks]
                text = f"Team run {reason}." + ("\n\n" + "\n".join(lines) if lines else "")
                return [
                    s.AgentMessageChunk(
                        session_update="agent_message_chunk",
                        content=s.TextContentBlock(type="text", text=text + "\n"),
                    )
                ]
        return []

    def _set(self, task_id: str, status: str | None, note: str) -> list[Any]:
        entry = self._entries.get(task_id)
        if entry is None:
            return []
        if status is not None:
            entry.status = status
        entry.note = note
        return [self._plan()]

    def _plan(self) -> s.AgentPlanUpdate:
        return s.AgentPlanUpdate(
            session_update="plan",
            entries=[
                s.PlanEntry(
                    content=f"{e.title} — {e.note}" if e.note else e.title,
                    priority="medium",
                    status=e.status,  # type: ignore[arg-type]
                )
                for e in self._entries.values()
            ],
        )
