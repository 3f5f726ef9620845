"""What ``@`` and ``/`` complete from: the workspace's files and folders, and the commands.

The file list is read once from git (``git ls-files``: tracked and untracked-but-not-ignored
files), or from ``rg --files`` outside a repository, in a thread, and cached: a key press
filters a list of strings, never walks the disk (a 100k-file repository stays quick).
Folders are derived from the files' paths.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

MAX_FILES = 200_000
SHOWN = 12


class FileIndex:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._paths: list[str] | None = None
        self._lock = threading.Lock()

    def load(self) -> list[str]:
        """The workspace's files and folders (folders end with ``/``); read on first use."""
        with self._lock:
            if self._paths is None:
                self._paths = _list(self.root)
            return self._paths

    def match(self, query: str, limit: int = SHOWN) -> list[str]:
        """Paths containing ``query`` (case-insensitive): those whose name starts with it
        first, then those whose path does, then the rest; shorter first within each."""
        q = query.lower()
        ranked: list[tuple[int, int, str]] = []
        for path in self.load():
            low = path.lower()
            at = low.find(q)
            if at < 0:
                continue
            name = low.rstrip("/").rsplit("/", 1)[-1]
            rank = 0 if name.startswith(q) else 1 if at == 0 else 2
            ranked.append((rank, len(path), path))
        ranked.sort()
        return [p for _, _, p in ranked[:limit]]


def _list(root: Path) -> list[str]:
    files = _run(["git", "ls-files", "-co", "--exclude-standard"], root)
    if files is None and shutil.which("rg"):
        files = _run(["rg", "--files"], root)
    files = (files or [])[:MAX_FILES]
    folders: set[str] = set()
    for f in files:
        parts = f.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folders.add("/".join(parts[:i]) + "/")
    return sorted(folders) + files


def _run(argv: list[str], cwd: Path) -> list[str] | None:
    try:
        out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [line for line in out.stdout.splitlines() if line]
