"""What each team role is told: the planner, a producer, a verifier, a resolver.

Each role's system prompt names the role in its first line (``You are the PLANNER`` ...), so
a log, a test's scripted model or a proxy can tell the requests apart. A role file
(mcode/roles.py: ``planner.md``, ``producer.md``, ``verifier.md``, ``resolver.md``) replaces
the instructions that follow that line. Producers get their own task's id, title and
instructions; the whole plan comes after, as context only. A resolver gets the conflicting
task's, the files in conflict and the merged tasks it conflicts with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mcode.team.plan import Plan, TaskSpec

__all__ = [
    "PLANNER",
    "PRODUCER",
    "RESOLVER",
    "VERIFIER",
    "planner_request",
    "producer_request",
    "replan_request",
    "resolver_request",
    "revision_request",
    "verifier_request",
]

PLANNER = """\
You are the PLANNER of an mcode agent team working in the user's git repository.

Turn the user's request into a plan and give it with the plan tool: stages of tasks, each \
with a short id, a title, instructions complete enough for a developer who sees only them, \
depends_on (ids of tasks whose work it builds on; tasks without dependencies between them run \
at the same time, each in its own git worktree), and acceptance checks: bash commands mcode \
will run in the task's worktree, with the exit code (and optionally a text in the output) that \
shows the task is done. Prefer small independent tasks. Read the repository first if you need \
to; do not change files. Call plan once, then answer in one line."""

PRODUCER = """\
You are a PRODUCER of an mcode agent team. You work on one task in your own git worktree \
(the current directory; use paths relative to it); other agents work on other tasks \
elsewhere. Do your task and only it: change the files, run the checks yourself, fix what \
fails. mcode commits your work when you answer, and a verifier then tries to break it. \
Answer briefly: what you changed and how you checked it."""

VERIFIER = """\
You are the VERIFIER of an mcode agent team. A producer says it finished a task in this \
git worktree (the current directory). Your job is to break the result: read the change \
(git show, git diff HEAD~1), run the task's checks and the tests, try the cases the producer \
may have missed. Do not fix anything: in the sandbox your bash is read-only (a write fails with \
"Read-only file system"; only a private /tmp is writable, so point caches and build output \
there). Then call verdict once: PASS only if you could not \
break it, citing as evidence the commands you ran with bash exactly as you ran them, with \
their exit codes and output as bash returned them (mcode compares them with what it \
recorded); FAIL or PARTIAL with findings the producer can act on."""


RESOLVER = """\
You are the RESOLVER of an mcode agent team. A task's accepted work conflicts with the \
user's branch, which other tasks' work reached first. In this git worktree (the current \
directory; use paths relative to it) the user's branch is merged into the task's branch and \
the conflicts are left in the files, between <<<<<<< and >>>>>>> markers. Edit each \
conflicting file so that it keeps what every task was for, and remove every marker. Do not \
commit, abort the merge or switch branches: mcode commits your result, then runs the \
acceptance checks of the task and of the merged tasks, and merges only if they pass. \
Answer briefly: how you resolved each file."""


def _task_text(spec: TaskSpec) -> str:
    checks = "\n".join(
        f"- `{c.command}` must exit {c.exit_code}"
        + (f" and print {c.output_contains!r}" if c.output_contains is not None else "")
        for c in spec.checks
    )
    return (
        f"Task id: {spec.id}\nTitle: {spec.title}\n\nInstructions:\n{spec.instructions}\n\n"
        f"Acceptance checks (mcode runs them):\n{checks or '- (none)'}"
    )


def planner_request(request: str) -> str:
    return f"The user's request:\n\n{request}"


def replan_request(steer: str, plan: Plan, status: Mapping[str, str], request: str) -> str:
    state = "\n".join(f"- {task_id}: {status.get(task_id, 'pending')}" for task_id in plan.order())
    context = json.dumps({"stages": list(plan.stage_dicts())}, ensure_ascii=False)
    return (
        f"The user added a requirement while the team works:\n\n{steer}\n\n"
        f"The user's request was:\n{request}\n\nThe plan so far:\n{context}\n\n"
        f"The tasks and where they stand:\n{state}\n\n"
        "Call plan again with the whole revised plan. Tasks not yet started (pending) may be "
        "changed, added or dropped; keep the ids and definitions of started and passed tasks. "
        "If the new requirement invalidates a passed task, keep it and list its id in reopen: "
        "it runs again with the new requirement."
    )


def producer_request(spec: TaskSpec, plan: Plan, *, reopened_by: str | None = None) -> str:
    context = json.dumps({"stages": list(plan.stage_dicts())}, ensure_ascii=False)
    again = (
        f"\n\nThis task was accepted before; then the user added: {reopened_by}\n"
        "Change the work (already in your worktree) to meet it."
        if reopened_by
        else ""
    )
    return (
        f"Your task:\n\n{_task_text(spec)}{again}\n\n"
        f"The whole plan, for context only (other tasks are other agents' work):\n{context}"
    )


def revision_request(findings: list[str]) -> str:
    listed = "\n".join(f"- {f}" for f in findings) or "- (no findings given)"
    return (
        "The verifier did not accept your work. Its findings, and mcode's own:\n"
        f"{listed}\n\nFix them, run the checks again, then answer."
    )


def verifier_request(spec: TaskSpec, producer_answer: str) -> str:
    return (
        f"The task:\n\n{_task_text(spec)}\n\nThe producer's answer:\n{producer_answer or '(none)'}"
        "\n\nTry to break it, then call verdict."
    )


def resolver_request(spec: TaskSpec, conflicts: list[str], merged: list[TaskSpec]) -> str:
    files = "\n".join(f"- {path}" for path in conflicts) or "- (git named none; check git status)"
    others = "\n".join(f"- {t.id}: {t.title}: {t.instructions}" for t in merged)
    return (
        f"The task whose work conflicts:\n\n{_task_text(spec)}\n\n"
        f"The files in conflict:\n{files}\n\n"
        f"The tasks already merged into the user's branch (their work is the other side):\n"
        f"{others or '- (none from this run: the user changed the branch)'}\n\n"
        "Resolve the conflicts, then answer."
    )
