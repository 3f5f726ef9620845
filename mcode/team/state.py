"""A team run's state rebuilt from its stored events, for ``mcode exec --resume``.

The events are the record (nothing else is written): the request and generation from
``team.started``, the plan from the last ``team.plan`` in force (and whether the plan gate
was still waiting for its answer: it asks again; a re-plan's plan is in force only once its
``team.replan`` says so: one the gate asked about and had no answer for, or rejected, is not),
and per task what was settled —
merged (``team.merge`` ok; a task is accepted only once its work is in the user's branch),
accepted but not yet merged (a ``team.verdict`` accepted, the run killed before the merge:
resumed by merging its branch, not by redoing it), and the rounds it had. A ``team.replan``
that reopened a task unsettles it again, and a ``team.steer`` the planner had not yet answered
with a ``team.replan`` is re-planned first. Everything else is redone from a fresh worktree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcode import events as ev
from mcode.team.plan import Plan, parse_plan

__all__ = ["TeamRecord", "team_record"]


@dataclass(slots=True)
class TeamRecord:
    request: str
    generation: int
    finished: bool
    plan: Plan | None
    revision: int = 0  # the last revision shown (the next plan's is above it)
    in_force: int = 0  # the revision of ``plan``
    merged: set[str] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)
    rounds: dict[str, int] = field(default_factory=dict)
    # Steers the planner was asked to re-plan for and had not answered (no team.replan yet).
    steers: list[str] = field(default_factory=list)
    # The plan gate asked and had no answer (a team.plan.asked without its team.plan.decided).
    plan_asked: bool = False
    # A steer's re-plan shown and not (yet) in force: its plan and revision.
    proposed: tuple[Plan, int] | None = None


def team_record(events: list[dict[str, Any]]) -> TeamRecord | None:
    """The team run in ``events`` (a session's, as stored), or None if it had none."""
    record: TeamRecord | None = None
    for e in events:
        kind, data = e["type"], e["data"]
        if kind == ev.TEAM_STARTED:
            if record is None:
                record = TeamRecord(data["task"], 1, False, None)
            else:
                record.generation += 1
                record.finished = False
        if record is None:
            continue
        if kind == ev.TEAM_PLAN:
            plan = parse_plan({"stages": data["stages"]})
            record.revision = max(record.revision, data["revision"])
            if data["reason"] == "steer":
                record.proposed = (plan, data["revision"])
            else:
                record.plan, record.in_force, record.proposed = plan, data["revision"], None
        elif kind in (ev.TEAM_PLAN_ASKED, ev.TEAM_PLAN_DECIDED):
            if data.get("steer") is None:  # the first plan's gate (a re-plan's is redone)
                record.plan_asked = kind == ev.TEAM_PLAN_ASKED
            elif kind == ev.TEAM_PLAN_DECIDED and data["decision"] == "rejected":
                record.proposed = None
                if data["steer"] in record.steers:  # answered: not re-planned on resume
                    record.steers.remove(data["steer"])
        elif kind == ev.TEAM_STEER and data["replan"]:
            record.steers.append(data["text"])
        elif kind == ev.TEAM_REPLAN:
            if record.proposed is not None:
                record.plan, record.in_force = record.proposed
                record.proposed = None
            if data["steer"] in record.steers:
                record.steers.remove(data["steer"])
            for task_id in data["reopened"]:
                record.merged.discard(task_id)
                record.accepted.discard(task_id)
        elif kind == ev.TEAM_VERDICT:
            record.rounds[data["task_id"]] = data["round"]
            if data["accepted"]:
                record.accepted.add(data["task_id"])
        elif kind == ev.TEAM_MERGE and data["ok"]:
            record.merged.add(data["task_id"])
        elif kind == ev.TEAM_TASK_FINISHED and data["status"] != "passed":
            record.accepted.discard(data["task_id"])
        elif kind == ev.TEAM_FINISHED:
            record.finished = True
    return record
