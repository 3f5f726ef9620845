"""task: delegate a self-contained job to a sub-agent, which answers with its findings.

The sub-agent is a child conversation (``ctx.spawn_agent``, run by the runtime): a fresh
context whose first user message is the job's prompt, its own system prompt, the tools of its
role and a cap on its model calls. Its answer (and the files it changed) is this call's
result; its events are tagged with its agent id. It works within the parent's permission mode
and never gets ``task`` itself: sub-agents go one level deep.

Two roles are built in (explore, edit); agent roles (mcode/roles.py: a plugin's, the user's, a
trusted project's) join them, each bringing its instructions as the system prompt, its tools
and its model. A role cannot take a built-in role's name.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, ClassVar

from mcode.errors import ToolError
from mcode.tools.base import AgentJob, Tool, ToolContext, ToolResult

if TYPE_CHECKING:
    from mcode.roles import Role

# What each role may use. explore (the default) only looks; edit may also change files and
# run commands, still within the session's permission mode.
ROLES: dict[str, tuple[str, ...]] = {
    "explore": ("read", "grep", "glob", "ls"),
    "edit": ("read", "write", "edit", "grep", "glob", "ls", "bash"),
}
# An agent role that names no tools gets every tool its parent has but task.
ALL_TOOLS = ("*",)
# Model calls a sub-agent may make before it must answer.
MAX_TURNS = 25

SUBAGENT_PROMPT = """\
You are a sub-agent of mcode, a coding agent working in the user's repository. The main agent \
gave you one self-contained task; you cannot ask it questions. The current directory is the \
repository root; use paths relative to it.

Work on the task with your tools, then answer with what the main agent needs: your findings, \
with file paths and line numbers where they help. Your final answer is all it sees, so make it \
complete and short."""


class TaskTool(Tool):
    name = "task"
    description = (
        "Delegate a self-contained job (a search, an investigation, a focused change) to a "
        "sub-agent with a fresh context; it returns its final answer. Give it everything it "
        "needs in the prompt. role explore (default) only reads; edit may also change files."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "description": {"type": "string", "description": "a few words on the job"},
            "prompt": {"type": "string", "description": "the whole job, self-contained"},
            "role": {"type": "string", "enum": list(ROLES)},
        },
        "required": ["description", "prompt"],
        "additionalProperties": False,
    }
    permission = "read"  # the sub-agent's own calls are checked one by one

    def __init__(self, roles: list[Role] | None = None) -> None:
        # Agent roles join explore and edit; without any, the schema is the class's own, byte
        # for byte (the request prefix of a session without roles stays as it was).
        self.roles = {r.name: r for r in roles or [] if r.name not in ROLES}
        if self.roles:
            listed = "; ".join(f"{r.name}: {r.description}" for r in self.roles.values())
            self.description = f"{TaskTool.description} Other roles: {listed}"  # type: ignore[misc]
            schema = copy.deepcopy(TaskTool.parameters)
            schema["properties"]["role"]["enum"] = [*ROLES, *self.roles]
            self.parameters = schema  # type: ignore[misc]

    def subject(self, args: dict[str, Any]) -> str:
        return str(args.get("description", ""))

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        if ctx.spawn_agent is None:
            raise ToolError("a sub-agent cannot start sub-agents of its own; do the work yourself")
        prompt = args["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ToolError("task needs a non-empty prompt saying the whole job")
        role = args.get("role", "explore")
        extra = self.roles.get(role) if isinstance(role, str) else None
        if extra is not None:
            tools = (
                ALL_TOOLS if extra.tools is None else tuple(t for t in extra.tools if t != "task")
            )
            job = AgentJob(
                prompt.strip(),
                extra.instructions or SUBAGENT_PROMPT,  # a role that only picks a model
                tools,
                MAX_TURNS,
                model=extra.model,
                thinking=extra.thinking,
            )
        elif role in ROLES:
            job = AgentJob(prompt.strip(), SUBAGENT_PROMPT, ROLES[role], MAX_TURNS)
        else:
            raise ToolError(
                f"there is no role {role!r}; the roles are: {', '.join([*ROLES, *self.roles])}"
            )
        report = await ctx.spawn_agent(job)
        changed = list(report.changed_files)
        if report.reason != "completed":
            on = f" (on {job.model})" if job.model else ""
            raise ToolError(
                f"the sub-agent {report.agent_id}{on} stopped ({report.reason}): "
                f"{report.error or 'no answer'}"
                + (f"; it had changed {', '.join(changed)}" if changed else ""),
                hint="do the job yourself, or delegate a smaller one",
            )
        content = report.text or "(the sub-agent gave no answer)"
        if changed:
            content += "\n\nFiles the sub-agent changed: " + ", ".join(changed)
        return ToolResult(
            content=content,
            summary=f"{report.agent_id}: {args.get('description', '')}".strip(),
            changed_files=[],  # already reported as file.changed by the sub-agent's own calls
        )
