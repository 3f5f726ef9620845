"""What ``@`` completes from: the workspace's files and folders.

The file list is read from git (``git ls-files``: tracked and untracked-but-not-ignored
files), or from ``rg --files`` outside a repository, in a thread, and kept: a key press
filters that list and never touches the disk, so a 100k-file repository stays quick. Folders
are derived from the files' paths. The list is read again in the background when an ``@``
word is begun and the last read is over :data:`STALE` seconds old (:meth:`FileIndex.refresh`),
so files made since are offered; until the new list is in, the old one answers.

A key press costs no Python loop over the list: the paths are kept lower-cased and sorted
shortest first, and :meth:`FileIndex.match` filters them with C-level iterators (``map``,
``itertools.compress``), stopping as soon as it has the best :data:`SHOWN`. Typing extends
the query, so each key filters what the previous key left, not the whole list, and a key
deleted goes back to what its shorter query matched.
"""

from __future__ import annotations

import operator
import shutil
import subprocess
import threading
import time
from itertools import compress, filterfalse, islice, repeat
from pathlib import Path

MAX_FILES = 200_000
SHOWN = 12
# Seconds a read of the list is good for: a read of 100k paths costs ~0.6 s of a thread that
# shares the interpreter with the app, so words begun in quick succession share one.
STALE = 10.0


class _Paths:
    """One read of the workspace's paths, shortest first, with what matching needs."""

    def __init__(self, paths: list[str]) -> None:
        paths.sort(key=lambda p: (len(p), p))
        self.paths = paths
        self.lower = [p.lower() for p in paths]
        # Where each path's last name starts (a folder's trailing / is not a name).
        self.name_at = [p.rstrip("/").rfind("/") + 1 for p in self.lower]
        self.everything = range(len(paths))
        # The queries typed since the @, each with what matched it, each one extending the
        # one before: a key typed filters the last one's hits, a key deleted finds its own.
        self.chain: list[tuple[str, list[int]]] = []

    def containing(self, q: str) -> list[int] | range:
        """The indices of the paths that contain ``q``, in order."""
        chain = self.chain
        while chain and not q.startswith(chain[-1][0]):
            chain.pop()
        if chain and chain[-1][0] == q:
            return chain[-1][1]
        base = chain[-1][1] if chain else self.everything
        if not q:
            return base
        lows = map(self.lower.__getitem__, base) if chain else self.lower
        hits = list(compress(base, map(operator.contains, lows, repeat(q))))
        chain.append((q, hits))
        return hits

    def best(self, q: str, limit: int) -> list[str]:
        """Paths containing ``q``: those whose name starts with it first, then those whose
        path does, then the rest; shorter first within each; ``q`` itself (a folder typed out)
        left out."""
        hits = self.containing(q)
        lower, name_at = self.lower, self.name_at

        def starting(in_name: bool) -> compress[int]:
            """The hits whose name (else whose path) starts with ``q``, lazily."""
            lows = map(lower.__getitem__, hits)
            at = map(name_at.__getitem__, hits) if in_name else repeat(0)
            return compress(hits, map(str.startswith, lows, repeat(q), at))

        # One more than shown each time: ``q`` itself may be among them.
        chosen = list(islice(starting(True), limit + 1))
        for rest in (lambda: starting(False), lambda: iter(hits)):
            if len(chosen) > limit:
                break
            taken = set(chosen)
            chosen += islice(filterfalse(taken.__contains__, rest()), limit + 1 - len(chosen))
        return [self.paths[i] for i in chosen if lower[i] != q][:limit]


class FileIndex:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._index: _Paths | None = None
        self._lock = threading.Lock()  # one read at a time
        self._reading: threading.Thread | None = None
        self._read_at = 0.0

    @property
    def ready(self) -> bool:
        return self._index is not None

    def load(self) -> list[str]:
        """The workspace's files and folders (folders end with ``/``), read now if they
        never were."""
        if self._index is None:
            self._read()
        assert self._index is not None
        return self._index.paths

    def refresh(self, older_than: float = 0.0) -> None:
        """Read the list again in a thread (one at a time) if the last read is more than
        ``older_than`` seconds old; the old list answers meanwhile."""
        if self._reading is not None and self._reading.is_alive():
            return
        if self._index is not None and time.monotonic() - self._read_at < older_than:
            return
        self._reading = threading.Thread(target=self._read, name="mcode-file-index", daemon=True)
        self._reading.start()

    def _read(self) -> None:
        with self._lock:
            self._index = _Paths(_list(self.root))
            self._read_at = time.monotonic()

    def match(self, query: str, limit: int = SHOWN) -> list[str]:
        """The best ``limit`` paths containing ``query`` (case-insensitive; see
        :meth:`_Paths.best`); none while the first read is still under way, so that a key
        press never waits for git."""
        index = self._index
        if index is None:
            return []
        return index.best(query.lower(), limit)


def _list(root: Path) -> list[str]:
    # NUL-separated: a name with a space, a quote or a non-ASCII letter comes as it is.
    files = _run(["git", "ls-files", "-z", "-co", "--exclude-standard"], root)
    if files is None and shutil.which("rg"):
        files = _run(["rg", "--files", "--null"], root)
    files = (files or [])[:MAX_FILES]
    folders: set[str] = set()
    for f in files:
        parts = f.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folders.add("/".join(parts[:i]) + "/")
    return [*folders, *files]


def _run(argv: list[str], cwd: Path) -> list[str] | None:
    try:
        out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [name for name in out.stdout.split("\0") if name]
