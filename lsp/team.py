"""``mcode.teamTask``: an agent team from the editor, and what it asks of the editor's buffers.

A team (mcode/team) works in git worktrees of its own and merges what its verifiers accepted
into the user's branch, on disk: the editor sees files change under it, as after a ``git
pull``, and reloads its buffers. A buffer with unsaved changes to a tracked file would then be
out of step with the merge (the team never saw those changes; the editor would offer to
overwrite the merged file with them), so the team does not start while one is open: the error
names the files. Untracked files are not the team's concern (a merge does not touch them).

Its progress is the team's steps, in the words ``mcode exec``'s text output uses
(:func:`mcode.progress.team_line`): the plan, each round started, each verdict, each merge.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcode import events as ev
from mcode.errors import UsageError
from mcode.progress import team_line

if TYPE_CHECKING:
    from mcode.events import Event

__all__ = ["check_buffers", "progress_line", "unsaved_tracked"]


def unsaved_tracked(server: Any) -> list[str]:
    """The open buffers whose text differs from their tracked file on disk (paths relative to
    the workspace), in the order the editor opened them."""
    root: Path = server.root
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=root, capture_output=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []  # not a repository: start_team says so, with its own hint
    tracked = {(root / p).resolve() for p in listed.decode("utf-8", "replace").split("\0") if p}
    unsaved: list[str] = []
    for uri in list(server.workspace.text_documents):
        try:
            path = server.path_of(uri).resolve()
        except UsageError:
            continue  # not a file (an untitled buffer): nothing a merge touches
        if path not in tracked:
            continue
        buffer = server.files.text(path)
        try:
            disk = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            disk = None  # deleted on disk while open: the buffer is what the user has
        if buffer is not None and buffer != disk:
            unsaved.append(server.rel(path))
    return unsaved


def check_buffers(server: Any) -> None:
    """Refuse to start while a tracked file has unsaved changes in the editor."""
    unsaved = unsaved_tracked(server)
    if unsaved:
        more = f" and {len(unsaved) - 5} more" if len(unsaved) > 5 else ""
        names = ", ".join(unsaved[:5]) + more
        raise UsageError(
            f"{names} {'has' if len(unsaved) == 1 else 'have'} unsaved changes in the editor, "
            "and the team merges its work into the files on disk",
            hint="save and commit them (the team starts from a clean branch), or revert them",
        )


def progress_line(event: Event) -> str | None:
    """The editor's progress line for a team run's event (its steps and its end only: the
    members' own tool calls are in the session's events, not in the progress)."""
    p = event.payload
    if isinstance(p, ev.TeamFinished):
        return f"team: {p.reason}"
    return team_line(p)
