"""The git a team run needs: a worktree and branch per task, commits there, merges back.

Every producer works in its own worktree (``git worktree add -b BRANCH PATH BASE``) outside
the user's tree, so two agents never share files. Accepted work is merged into the user's
branch with ``git merge --no-ff``; a merge that stops on a conflict is aborted at once, so the
user's tree is never left half-merged, and the task's branch stays for the user to look at.
A resolver (resolve.py) then gets :meth:`Git.start_resolution`: its own worktree where the
conflict is left in the files, on a branch of its own, never in the user's tree.
Merges into the user's tree run one at a time (:attr:`Git.lock`); worktrees are made,
committed in and removed concurrently, as each has its own admin folder, index and branch.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from mcode.errors import MCodeError

__all__ = ["Git", "GitError", "MergeResult", "task_place"]

# Who commits a producer's work when the repository has no identity configured.
_IDENTITY = {"GIT_AUTHOR_NAME": "mcode team", "GIT_AUTHOR_EMAIL": "mcode@localhost"}


def task_place(
    worktrees: Path, session_id: str, task_id: str, *, resolver: bool = False
) -> tuple[Path, str]:
    """Where a task's work goes: its worktree under ``worktrees`` and its branch, both named by
    the session (its first 8 characters) and the task. A producer's are
    ``<worktrees>/<session>/<task>`` on ``mcode/team/<session>/<task>``; a resolver's
    (``resolver``) ``<worktrees>/<session>/.resolve/<task>`` on ``mcode/resolve/<session>/<task>``:
    names no task can take, since task ids start with a letter or digit, and refs under
    mcode/resolve/ never meet the producers' under mcode/team/."""
    session8 = session_id[:8]
    if resolver:
        return worktrees / session8 / ".resolve" / task_id, f"mcode/resolve/{session8}/{task_id}"
    return worktrees / session8 / task_id, f"mcode/team/{session8}/{task_id}"


class GitError(MCodeError):
    """A git command the team needs failed."""


@dataclass(frozen=True, slots=True)
class MergeResult:
    ok: bool
    commit: str
    conflicts: tuple[str, ...]
    message: str


class Git:
    """git in the user's repository ``root`` (its top level)."""

    def __init__(self, root: Path, commit_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.lock = asyncio.Lock()
        # The environment commits run in: None keeps the user's identity; mcode's when git
        # has none (a fresh CI machine), else every commit would fail.
        self.commit_env = commit_env

    @classmethod
    async def open(cls, folder: Path) -> Git:
        code, out = await run_git(folder, "rev-parse", "--show-toplevel")
        if code != 0:
            raise GitError(
                f"{folder} is not in a git repository, and a team needs one",
                hint="run `git init` and commit, or run without --team",
            )
        root = Path(out.strip()).resolve()
        code, _ = await run_git(root, "config", "user.email")
        return cls(root, None if code == 0 else _identity())

    async def head(self, where: Path | None = None) -> str:
        return (await self._ok(where or self.root, "rev-parse", "HEAD")).strip()

    async def branch(self) -> str:
        code, out = await run_git(self.root, "symbolic-ref", "--short", "-q", "HEAD")
        if code != 0:
            raise GitError(
                "HEAD is detached, so there is no branch to merge the team's work into",
                hint="check out a branch first: git switch -c NAME",
            )
        return out.strip()

    async def tracked_changes(self, where: Path | None = None) -> list[str]:
        out = await self._ok(where or self.root, "status", "--porcelain", "--untracked-files=no")
        return [line[3:] for line in out.splitlines() if line.strip()]

    async def add_worktree(self, path: Path, branch: str, base: str) -> None:
        """A fresh worktree at ``path`` on ``branch`` made from ``base``; one an earlier
        (killed) run left there is removed first, and its branch is reset."""
        if path.exists():
            await run_git(self.root, "worktree", "remove", "--force", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        # -B: a branch of that name (a killed run's) is reset to base, not an error.
        add = ("worktree", "add", "-q", "-B", branch, str(path), base)
        code, _ = await run_git(self.root, *add)
        if code != 0:  # registered still, its folder gone: forget it and try again
            async with self.lock:  # prune looks at every worktree: not while one is made
                await run_git(self.root, "worktree", "prune")
                await self._ok(self.root, *add)

    async def remove_worktree(self, path: Path, branch: str | None = None) -> None:
        await run_git(self.root, "worktree", "remove", "--force", str(path))
        if branch is not None:
            await run_git(self.root, "branch", "-D", branch)

    async def commit_all(self, worktree: Path, message: str) -> bool:
        """Commit everything in ``worktree`` (untracked files too); False when nothing changed.
        Not under the lock: a worktree has its own index and HEAD, its branch is its own."""
        await self._ok(worktree, "add", "-A")
        code, _ = await run_git(worktree, "diff", "--cached", "--quiet")
        if code == 0:
            return False
        await self._ok(worktree, "commit", "-q", "--no-verify", "-m", message, env=self.commit_env)
        return True

    async def reset(self, worktree: Path) -> None:
        """Put ``worktree`` back at its last commit (what a verifier left behind goes)."""
        await run_git(worktree, "reset", "-q", "--hard")
        await run_git(worktree, "clean", "-fdq")

    async def merge(self, branch: str, message: str) -> MergeResult:
        async with self.lock:
            code, out = await run_git(
                self.root,
                "merge",
                "--no-ff",
                "--no-edit",
                "-m",
                message,
                branch,
                env=self.commit_env,
            )
            if code == 0:
                return MergeResult(True, await self.head(), (), f"merged {branch}")
            _, unmerged = await run_git(self.root, "diff", "--name-only", "--diff-filter=U")
            conflicts = tuple(unmerged.split())
            await self.abort_merge()
            left = await self.tracked_changes()
            why = out.strip().splitlines()[-1] if out.strip() else f"git merge exited {code}"
            if left:
                why += f"; the tree still shows changes to {', '.join(left)}"
            return MergeResult(False, "", conflicts, why)

    async def start_resolution(self, path: Path, branch: str, base: str, target: str) -> bool:
        """A worktree at ``path`` on ``branch`` (new, from ``base``: the task's branch) with
        ``target`` merged into it and not committed, so a conflict stays in the files for a
        resolver; False when git could not even begin that merge."""
        await self.add_worktree(path, branch, base)
        merge = ("merge", "--no-ff", "--no-commit", target)
        code, _ = await run_git(path, *merge, env=self.commit_env)  # git asks who, even so
        if code == 0:
            return True
        # 1 with a conflict; anything else that left no merge in progress is a failure.
        merging, _ = await run_git(path, "rev-parse", "-q", "--verify", "MERGE_HEAD")
        return merging == 0

    async def commit_resolution(self, worktree: Path, message: str) -> None:
        """Commit what a resolver left in ``worktree``: the merge it was given (a merge commit
        even when the result is the task's side alone), or its edits if it ended that merge."""
        await self._ok(worktree, "add", "-A")
        code, _ = await run_git(worktree, "rev-parse", "-q", "--verify", "MERGE_HEAD")
        if code != 0:
            await self.commit_all(worktree, message)
            return
        commit = ("commit", "-q", "--no-verify", "-m", message)
        await self._ok(worktree, *commit, env=self.commit_env)

    async def unmerged(self, where: Path) -> list[str]:
        """The paths git still holds in conflict in ``where``'s index."""
        _, out = await run_git(where, "diff", "--name-only", "--diff-filter=U")
        return out.split()

    async def contains(self, where: Path, commit: str) -> bool:
        """Whether ``where``'s HEAD has ``commit`` in its history."""
        code, _ = await run_git(where, "merge-base", "--is-ancestor", commit, "HEAD")
        return code == 0

    async def current_branch(self, where: Path) -> str:
        code, out = await run_git(where, "symbolic-ref", "--short", "-q", "HEAD")
        return out.strip() if code == 0 else ""

    async def abort_merge(self) -> bool:
        """Abort a merge in progress (a killed run's, or a conflict's); True if there was one."""
        code, out = await run_git(self.root, "rev-parse", "--git-path", "MERGE_HEAD")
        merge_head = Path(out.strip())
        if not merge_head.is_absolute():
            merge_head = self.root / merge_head
        if code != 0 or not merge_head.exists():
            return False
        await run_git(self.root, "merge", "--abort")
        return True

    async def _ok(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
        code, out = await run_git(cwd, *args, env=env)
        if code != 0:
            raise GitError(
                f"git {' '.join(args[:2])} failed in {cwd}: {out.strip()[-400:]}",
                hint="check the repository with git status",
            )
        return out


def _identity() -> dict[str, str]:
    """The environment for a commit when git knows no identity: mcode's."""
    env = dict(os.environ)
    for key, value in _IDENTITY.items():
        env[key] = value
        env[key.replace("AUTHOR", "COMMITTER")] = value
    return env


async def run_git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode("utf-8", errors="replace")
