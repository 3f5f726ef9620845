"""Built-in tools. See :mod:`mcode.tools.base` for the interface.

:func:`default_tools` returns them in a fixed order, so the tool list the model sees (part of
every request's prefix) is byte-identical across runs and prompt caches keep hitting.
"""

from __future__ import annotations

from mcode.atomic import atomic_write
from mcode.tools.base import Tool
from mcode.tools.bash import BashTool
from mcode.tools.files import EditTool, ReadTool, WriteTool
from mcode.tools.search import GlobTool, GrepTool, LsTool
from mcode.tools.task import TaskTool
from mcode.tools.todo import TodoTool
from mcode.tools.workspace import Workspace

# Tools that only look: the agent loop may run several of these calls at once.
READ_ONLY_SAFE: frozenset[str] = frozenset({"read", "grep", "glob", "ls"})


def default_tools() -> list[Tool]:
    """Fresh instances of the built-in tools, always in this order:
    read, write, edit, grep, glob, ls, bash, todo, task."""
    return [
        ReadTool(),
        WriteTool(),
        EditTool(),
        GrepTool(),
        GlobTool(),
        LsTool(),
        BashTool(),
        TodoTool(),
        TaskTool(),
    ]


__all__ = [
    "READ_ONLY_SAFE",
    "BashTool",
    "EditTool",
    "GlobTool",
    "GrepTool",
    "LsTool",
    "ReadTool",
    "TaskTool",
    "TodoTool",
    "Tool",
    "Workspace",
    "WriteTool",
    "atomic_write",
    "default_tools",
]
