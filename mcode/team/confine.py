"""Whether a producer's tools stay inside its worktree.

The bug users hit most in other agents is a team sharing one working tree by accident. So
before a producer runs, mcode checks the conversation it built, as its tools will use it: the
workspace must be rooted at the worktree (bash runs in the root), a probe path must resolve
inside it, nothing may reach the user's tree (``allow_outside``, an extra root over it, a
worktree that is a link into it), and the permissions must judge paths by the same workspace.
"""

from __future__ import annotations

from pathlib import Path

from mcode.agent.conversation import Conversation
from mcode.errors import PathEscapeError

__all__ = ["confinement"]


def confinement(conv: Conversation, worktree: Path, user_root: Path) -> str:
    """Why ``conv``'s tools are not confined to ``worktree`` ("" when they are): its workspace
    must be rooted there (bash runs in the root), a probe path must resolve inside it, the
    user's tree must be out of reach, and the permissions must judge paths by the same
    workspace."""
    ws = conv.tool_context.workspace
    root = worktree.resolve()
    if ws.root != root:
        return f"the tools' root is {ws.root}, not the worktree {root}"
    try:
        probe = ws.resolve("mcode-probe/../mcode-probe.txt")
    except PathEscapeError as e:
        return f"a path inside the worktree does not resolve: {e.message}"
    if not probe.is_relative_to(root):
        return f"a relative path resolves to {probe}, outside the worktree"
    if ws.allow_outside:
        return "the workspace allows paths outside it (permissions.allow_outside)"
    user_root = user_root.resolve()
    for extra in ws.extra_roots:
        if user_root == extra or user_root.is_relative_to(extra) or extra.is_relative_to(user_root):
            return f"an extra root ({extra}) reaches the user's tree {user_root}"
    try:
        ws.resolve(user_root / "mcode-probe.txt")
        return f"the user's tree {user_root} is reachable from the worktree's tools"
    except PathEscapeError:
        pass
    if conv.permissions.workspace is not ws:
        return "the permissions judge paths by another workspace"
    return ""
