"""What mcode checks after a resolver, before a conflicted task's work may merge.

When a task's accepted branch conflicts with the user's branch, the user's merge is aborted
(git.py) and a resolver agent gets its own worktree, like a producer's::

    user's branch ----------------- X (target) ------------------- M (clean merge, --no-ff)
                                     \\                            /
    task's branch ---- T              \\                          /
                        \\              \\                        /
    resolver's branch    R = T + merge of X, conflict left in the files -> resolver edits -> C

The resolver's word counts for nothing by itself: :func:`settle` decides, from the worktree.
No conflict marker may be left in the files that conflicted; mcode commits the resolution
(``git add -A``, a merge commit); the commit must hold the target (a resolver that aborted the
merge, or switched branches, resolved nothing) and sit on the resolver's branch; and the
acceptance checks of the task and of the tasks already merged run there, sandboxed as
checks.py runs them, and pass. Only then is the resolver's branch merged into the user's; on
any failure the conflict is reported as before, the user's branch untouched.
"""

from __future__ import annotations

from pathlib import Path

from mcode.events import CheckRun
from mcode.team.checks import run_checks
from mcode.team.git import Git
from mcode.team.plan import Check
from mcode.tools.sandbox import SandboxPolicy

__all__ = ["markers_left", "settle"]

# The lines git writes around a conflict ("=======" alone also starts reST headings: it is
# the opening and closing markers that say a conflict is still there).
_MARKERS = ("<<<<<<<", ">>>>>>>")


def markers_left(root: Path, paths: tuple[str, ...]) -> list[str]:
    """The paths among ``paths`` under ``root`` that still hold a conflict marker (a path the
    resolver deleted holds none)."""
    left = []
    for name in paths:
        try:
            text = (root / name).read_text("utf-8", errors="replace")
        except (FileNotFoundError, IsADirectoryError):
            continue
        for line in text.splitlines():
            if line.startswith(_MARKERS) and (len(line) == 7 or line[7] == " "):
                left.append(name)
                break
    return left


async def settle(
    git: Git,
    worktree: Path,
    branch: str,
    target: str,
    conflicts: tuple[str, ...],
    checks: tuple[Check, ...],
    env: dict[str, str],
    sandbox: SandboxPolicy | None,
    message: str,
) -> tuple[str, list[CheckRun]]:
    """Why the resolution in ``worktree`` may not merge ("" when it may), and the checks as
    they ran (none when it failed before them). Commits the resolution on ``branch``."""
    left = markers_left(worktree, conflicts)
    if left:
        return f"conflict markers are left in {', '.join(left)}", []
    if await git.current_branch(worktree) != branch:
        return f"the resolver's worktree is no longer on its branch {branch}", []
    await git.commit_resolution(worktree, message)
    if not await git.contains(worktree, target):
        return "the resolution does not hold the user's branch (the merge was undone)", []
    runs = await run_checks(checks, worktree, env, sandbox)
    failed = [r for r in runs if not r["passed"]]
    if failed:
        first = failed[0]
        return f"acceptance check `{first['command']}` failed: {first['why']}", runs
    return "", runs
