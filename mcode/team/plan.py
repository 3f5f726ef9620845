"""The plan: stages of tasks with dependencies and acceptance checks, and the ``plan`` tool.

The planner answers through one tool call, ``plan``, whose arguments are the plan (schema:
:data:`PLAN_SCHEMA`, documented in README.md "Agent team")::

    {"stages": [{"name": "core",
                 "tasks": [{"id": "add", "title": "add()", "instructions": "...",
                            "depends_on": [],
                            "checks": [{"command": "python -m pytest -q tests/test_add.py",
                                        "expect": {"exit_code": 0,
                                                   "output_contains": "passed"}}]}]}],
     "reopen": []}

A check holds when the command (bash, in the task's worktree, after the producer's work is
committed) exits with ``expect.exit_code`` (default 0) and, if ``expect.output_contains`` is
given, its output (stdout and stderr together) contains that text. ``reopen`` is for a re-plan
only: passed tasks that the new requirement invalidates.

A plan that does not parse, names a dependency that is not in it, repeats an id or depends in a
circle is refused with the exact problem and the schema, as the tool call's error: the planner
reads it and calls ``plan`` again in the same turn (its turn has a model-call cap, so this is
bounded).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mcode.errors import ToolError
from mcode.events import PlanCheck, PlanStage, PlanTask
from mcode.tools.base import Tool, ToolContext, ToolResult

__all__ = ["PLAN_SCHEMA", "Check", "Plan", "PlanError", "PlanTool", "TaskSpec", "parse_plan"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "stages": {
            "type": "array",
            "description": "stages in order; a stage's tasks may run at the same time",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "tasks": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {
                                    "type": "string",
                                    "description": "short, unique: letters, digits, _ . -",
                                },
                                "title": {"type": "string"},
                                "instructions": {
                                    "type": "string",
                                    "description": "everything the producer needs",
                                },
                                "depends_on": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "description": "ids of tasks whose work this one builds on",
                                },
                                "checks": {
                                    "type": "array",
                                    "description": "acceptance checks mcode runs itself",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "command": {"type": "string"},
                                            "expect": {
                                                "type": "object",
                                                "properties": {
                                                    "exit_code": {"type": "integer"},
                                                    "output_contains": {"type": "string"},
                                                },
                                                "additionalProperties": False,
                                            },
                                        },
                                        "required": ["command", "expect"],
                                        "additionalProperties": False,
                                    },
                                },
                            },
                            "required": ["id", "title", "instructions", "depends_on", "checks"],
                            "additionalProperties": False,
                        },
                    },
                },
                "required": ["tasks"],
                "additionalProperties": False,
            },
        },
        "reopen": {
            "type": "array",
            "items": {"type": "string"},
            "description": "re-plan only: ids of passed tasks the new requirement invalidates",
        },
    },
    "required": ["stages"],
    "additionalProperties": False,
}


class PlanError(ToolError):
    """A plan that cannot be used; the message says where and the hint shows the schema."""


@dataclass(frozen=True, slots=True)
class Check:
    """An acceptance check: ``command`` must exit ``exit_code`` and, when ``output_contains``
    is set, print it."""

    command: str
    exit_code: int = 0
    output_contains: str | None = None

    def to_dict(self) -> PlanCheck:
        expect: dict[str, Any] = {"exit_code": self.exit_code}
        if self.output_contains is not None:
            expect["output_contains"] = self.output_contains
        return {"command": self.command, "expect": expect}


@dataclass(frozen=True, slots=True)
class TaskSpec:
    id: str
    title: str
    instructions: str
    depends_on: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    stage: str = ""

    def to_dict(self) -> PlanTask:
        return {
            "id": self.id,
            "title": self.title,
            "instructions": self.instructions,
            "depends_on": list(self.depends_on),
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """Stages of tasks (``stages``: name and task ids, in order) and ``reopen`` (a re-plan's
    invalidated passed tasks)."""

    tasks: dict[str, TaskSpec]
    stages: tuple[tuple[str, tuple[str, ...]], ...]
    reopen: tuple[str, ...] = ()

    def stage_dicts(self) -> tuple[PlanStage, ...]:
        return tuple(
            {"name": name, "tasks": [self.tasks[i].to_dict() for i in ids]}
            for name, ids in self.stages
        )

    def order(self) -> list[str]:
        """Task ids in plan order."""
        return [i for _, ids in self.stages for i in ids]


def parse_plan(value: Any) -> Plan:
    """The plan in ``value`` (the ``plan`` tool's arguments, or a stored ``team.plan``'s
    ``{"stages": ...}``). Raises PlanError naming the first problem."""
    if not isinstance(value, dict):
        raise _bad("the plan must be a JSON object with 'stages'")
    unknown = set(value) - {"stages", "reopen"}
    if unknown:
        raise _bad(f"unknown key(s) {sorted(unknown)} at the top; allowed: stages, reopen")
    stages_in = value.get("stages")
    if not isinstance(stages_in, list) or not stages_in:
        raise _bad("'stages' must be a non-empty list")
    tasks: dict[str, TaskSpec] = {}
    stages: list[tuple[str, tuple[str, ...]]] = []
    for s, stage in enumerate(stages_in):
        where = f"stages[{s}]"
        if not isinstance(stage, dict) or not isinstance(stage.get("tasks"), list):
            raise _bad(f"{where} must be an object with a 'tasks' list")
        name = stage.get("name", f"stage {s + 1}")
        if not isinstance(name, str):
            raise _bad(f"{where}.name must be a string")
        ids: list[str] = []
        for t, raw in enumerate(stage["tasks"]):
            spec = _task(raw, f"{where}.tasks[{t}]", name)
            if spec.id in tasks:
                raise _bad(f"{where}.tasks[{t}]: the id {spec.id!r} is used twice")
            tasks[spec.id] = spec
            ids.append(spec.id)
        stages.append((name, tuple(ids)))
    if not tasks:
        raise _bad("the plan has no tasks")
    for spec in tasks.values():
        missing = [d for d in spec.depends_on if d not in tasks]
        if missing:
            raise _bad(f"task {spec.id!r} depends on {missing}, which are not in the plan")
    _check_acyclic(tasks)
    reopen = value.get("reopen", [])
    if not isinstance(reopen, list) or not all(isinstance(r, str) for r in reopen):
        raise _bad("'reopen' must be a list of task ids")
    return Plan(tasks, tuple(stages), tuple(reopen))


def _task(raw: Any, where: str, stage: str) -> TaskSpec:
    if not isinstance(raw, dict):
        raise _bad(f"{where} must be an object")
    required = ("id", "title", "instructions", "depends_on", "checks")
    missing = [k for k in required if k not in raw]
    if missing:
        raise _bad(f"{where} lacks {', '.join(missing)}")
    unknown = set(raw) - set(required)
    if unknown:
        raise _bad(f"{where}: unknown key(s) {sorted(unknown)}")
    task_id = raw["id"]
    if not isinstance(task_id, str) or not _ID.match(task_id):
        raise _bad(f"{where}.id {task_id!r}: use 1-40 letters, digits, '_', '.', '-'")
    for key in ("title", "instructions"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise _bad(f"{where}.{key} must be a non-empty string")
    deps = raw["depends_on"]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise _bad(f"{where}.depends_on must be a list of task ids")
    if not isinstance(raw["checks"], list):
        raise _bad(f"{where}.checks must be a list")
    checks = tuple(_check(c, f"{where}.checks[{i}]") for i, c in enumerate(raw["checks"]))
    return TaskSpec(task_id, raw["title"].strip(), raw["instructions"], tuple(deps), checks, stage)


def _check(raw: Any, where: str) -> Check:
    if not isinstance(raw, dict) or set(raw) - {"command", "expect"}:
        raise _bad(f"{where} must be an object with 'command' and 'expect'")
    command, expect = raw.get("command"), raw.get("expect")
    if not isinstance(command, str) or not command.strip():
        raise _bad(f"{where}.command must be a non-empty string")
    if not isinstance(expect, dict) or set(expect) - {"exit_code", "output_contains"}:
        raise _bad(f"{where}.expect must be an object of exit_code and/or output_contains")
    code = expect.get("exit_code", 0)
    if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255:
        raise _bad(f"{where}.expect.exit_code must be an integer 0-255")
    contains = expect.get("output_contains")
    if contains is not None and not isinstance(contains, str):
        raise _bad(f"{where}.expect.output_contains must be a string")
    return Check(command, code, contains)


def _check_acyclic(tasks: dict[str, TaskSpec]) -> None:
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def walk(task_id: str, path: list[str]) -> None:
        if state.get(task_id) == 2:
            return
        if state.get(task_id) == 1:
            cycle = " -> ".join([*path[path.index(task_id) :], task_id])
            raise _bad(f"the dependencies go in a circle: {cycle}")
        state[task_id] = 1
        for dep in tasks[task_id].depends_on:
            walk(dep, [*path, task_id])
        state[task_id] = 2

    for task_id in tasks:
        walk(task_id, [])


def _bad(problem: str) -> PlanError:
    return PlanError(
        f"the plan was not accepted: {problem}",
        hint="call plan again with a corrected plan; its schema is "
        + json.dumps(PLAN_SCHEMA, separators=(",", ":")),
    )


@dataclass(slots=True)
class PlanTool(Tool):
    """The planner's one way to answer: a valid plan is kept in ``plan``; a bad one is this
    call's error (the model hears the problem and the schema and calls again)."""

    name: ClassVar[str] = "plan"
    description: ClassVar[str] = (
        "Give the plan: stages of tasks, each with id, title, self-contained instructions, "
        "depends_on (task ids) and acceptance checks (a bash command and what it must do: "
        "expect.exit_code, optionally expect.output_contains). Call it once; then answer briefly."
    )
    parameters: ClassVar[dict[str, Any]] = PLAN_SCHEMA
    permission: ClassVar[Any] = "read"
    plan: Plan | None = field(default=None)

    def subject(self, args: dict[str, Any]) -> str:
        return "plan"

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        plan = parse_plan(args)
        self.plan = plan
        n = len(plan.tasks)
        return ToolResult(
            content=f"Plan accepted: {n} task{'s' * (n != 1)} in {len(plan.stages)} "
            "stage(s). Answer with one line; the team starts now.",
            summary=f"plan: {n} task(s)",
        )
