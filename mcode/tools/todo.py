"""todo: the model's task list for this session, kept in ``ctx.todos``."""

from __future__ import annotations

from typing import Any, ClassVar

from mcode.errors import ToolError
from mcode.tools.base import Tool, ToolContext, ToolResult

STATUSES = ("pending", "in_progress", "completed")
_MARKS = {"pending": "[ ]", "in_progress": "[>]", "completed": "[x]"}


def render_todos(todos: list[dict[str, Any]]) -> str:
    """The list as the model and the plain front ends show it, one item a line."""
    if not todos:
        return "(no todos)"
    return "\n".join(f"{_MARKS[t['status']]} {t['content']}" for t in todos)


class TodoTool(Tool):
    name = "todo"
    description = (
        "Replace your task list (send the whole list each time). Use it for multi-step work; "
        "keep one item in_progress."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "todos": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "content": {"type": "string"},
                        "status": {"type": "string", "enum": list(STATUSES)},
                    },
                    "required": ["content", "status"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["todos"],
        "additionalProperties": False,
    }
    permission = "read"  # it touches session state only

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        todos: list[dict[str, Any]] = []
        for i, item in enumerate(args["todos"], 1):
            if not isinstance(item, dict):
                raise ToolError(f"todo {i} must be an object with content and status")
            content = item.get("content")
            status = item.get("status")
            if not isinstance(content, str) or not content.strip():
                raise ToolError(f"todo {i} needs a non-empty content string")
            if status not in STATUSES:
                raise ToolError(f"todo {i} has status {status!r}; use one of {', '.join(STATUSES)}")
            todos.append({"content": content.strip(), "status": status})
        # In place, so every holder of ctx.todos (the front ends) sees the new list.
        ctx.todos[:] = todos
        done = sum(1 for t in todos if t["status"] == "completed")
        return ToolResult(render_todos(todos), summary=f"todos: {done}/{len(todos)} completed")
