"""The board: where each task of a team run stands, and how a revised plan is laid over it.

A task is ``pending`` (not started, or reopened), ``running`` (its producer, verifier, checks
or merge are at work), or settled: ``passed`` (verified and merged), ``failed``, ``partial``
(its last verdict was PARTIAL when the rounds ran out), ``cancelled``. :func:`revise` applies a
re-plan (mcode/team/run.py asks the planner for it when a steer comes): what has not started
follows the new plan; what runs or passed keeps its definition, unless the planner reopens a
passed task (it becomes pending again, told what changed) or one still running (it runs again
once it has passed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

from mcode import events as ev
from mcode.agent.conversation import Conversation
from mcode.team.gate import Budget
from mcode.team.plan import Plan, TaskSpec

__all__ = ["Revision", "Status", "TaskState", "final_status", "revise"]

Status = Literal["pending", "running", "passed", "failed", "partial", "cancelled"]


@dataclass(slots=True)
class TaskState:
    """Where one task of the plan stands, and what runs it."""

    spec: TaskSpec
    status: Status = "pending"
    rounds: int = 0
    reason: str = ""
    merged: bool = False
    accepted_branch: bool = False  # accepted by a killed run, not merged: merge, do not redo
    reopened_by: str | None = None
    partial: bool = False  # its last verdict was PARTIAL
    runner: asyncio.Task[None] | None = None
    agents: list[Conversation] = field(default_factory=list)  # its members now running
    budget: Budget | None = None
    runs: int = 0  # producers it had (a reopened task gets a new one)
    # A re-plan reopened it while it was still running (being verified, merged): once it
    # passes it runs again with this requirement.
    reopen_after: str | None = None


@dataclass(frozen=True, slots=True)
class Revision:
    """What a re-plan changed (the ``team.replan`` fields) and the plan that now holds."""

    plan: Plan
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    reopened: tuple[str, ...]
    kept: tuple[str, ...]


def revise(tasks: dict[str, TaskState], new: Plan, steer: str) -> Revision:
    """Lay ``new`` over ``tasks`` (changed in place: new tasks added, pending ones redefined or
    cancelled, reopened ones pending again)."""
    added: list[str] = []
    changed: list[str] = []
    removed: list[str] = []
    reopened: list[str] = []
    kept: list[str] = []
    for task_id, spec in new.tasks.items():
        task = tasks.get(task_id)
        if task is None:
            tasks[task_id] = TaskState(spec)
            added.append(task_id)
        elif task.status == "pending":
            if spec != task.spec:
                task.spec = spec
                changed.append(task_id)
        elif task_id in new.reopen and task.status == "passed":
            task.spec, task.status, task.merged = spec, "pending", False
            task.reopened_by, task.reason = steer, ""
            reopened.append(task_id)
        elif task_id in new.reopen and task.status == "running":
            task.reopen_after = steer  # it runs on; once passed, it runs again
            reopened.append(task_id)
        elif spec != task.spec:
            kept.append(task_id)
    for task_id, task in tasks.items():
        if task_id not in new.tasks:
            if task.status == "pending":
                task.status, task.reason = "cancelled", "the re-plan dropped it"
                removed.append(task_id)
            elif task.status in ("running", "passed"):
                kept.append(task_id)
    # The plan now: the new one, with the started and passed tasks it left out kept first.
    specs: dict[str, TaskSpec] = {
        i: t.spec for i, t in tasks.items() if i in new.tasks or t.status in ("running", "passed")
    }
    stages = [(name, tuple(i for i in ids if i in specs)) for name, ids in new.stages]
    rest = tuple(i for i in specs if i not in new.tasks)
    if rest:
        stages.insert(0, ("earlier", rest))
    return Revision(
        Plan(specs, tuple(stages)),
        tuple(added),
        tuple(changed),
        tuple(removed),
        tuple(reopened),
        tuple(kept),
    )


def final_status(status: Status) -> ev.TaskStatus:
    return "cancelled" if status in ("pending", "running") else status  # type: ignore[return-value]
