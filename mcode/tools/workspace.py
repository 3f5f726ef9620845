"""The workspace: which paths tools may touch, and how files are written.

Every path a model names goes through :meth:`Workspace.resolve`, which makes it absolute,
resolves ``..`` and symlinks, and refuses a result that lies outside the workspace root and the
extra roots (``--add-dir``) unless the user allowed everything (``allow_outside``). Because
symlinks are resolved *before* the check, a link inside the workspace that points outside is
refused as well. Writes go through :func:`atomic_write`, so a crash or a full disk never leaves a
half-written file behind.

The one thing a crash inside a write (``kill -9``, power loss) can leave is the write's temp
file beside its target, ``.NAME.<pid>-<hex>.mcode-tmp``: it must sit in the same folder (a
rename is only atomic within one filesystem), so it cannot live somewhere out of sight. Its
name says which process wrote it; :func:`sweep_temp_files` removes those of processes that are
gone, and ``--resume`` calls it for the files the killed turn was writing.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Sequence
from pathlib import Path

from mcode.errors import PathEscapeError

# A fault point for crash tests (tests/test_crash.py): with this set to N, a write of more than
# N bytes kills the process (SIGKILL) once N of them are on disk, so a crash lands inside a
# write. Nothing else reads it; unset, it costs one lookup per write.
FAULT_KILL_IN_WRITE = "MCODE_FAULT_KILL_IN_WRITE"

TEMP_SUFFIX = ".mcode-tmp"


class Workspace:
    """The root a session works in, plus any extra roots the user added.

    ``root`` and ``extra_roots`` are resolved once at construction (so a symlinked checkout
    works); ``allow_outside=True`` turns confinement off entirely.
    """

    def __init__(
        self,
        root: Path,
        extra_roots: Sequence[Path] = (),
        allow_outside: bool = False,
    ) -> None:
        self.root = Path(root).expanduser().resolve(strict=False)
        self.extra_roots = [Path(p).expanduser().resolve(strict=False) for p in extra_roots]
        self.allow_outside = allow_outside

    @property
    def roots(self) -> list[Path]:
        """The root first, then the extra roots."""
        return [self.root, *self.extra_roots]

    def __repr__(self) -> str:
        return (
            f"Workspace(root={str(self.root)!r}, "
            f"extra_roots={[str(p) for p in self.extra_roots]!r}, "
            f"allow_outside={self.allow_outside!r})"
        )

    def contains(self, path: Path) -> bool:
        """Whether an already-resolved absolute path lies inside one of the allowed roots."""
        return any(path == r or path.is_relative_to(r) for r in self.roots)

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """Turn a path from the model into an absolute, symlink-free path inside the workspace.

        Relative paths are taken from the root; ``~`` is expanded; the file need not exist
        (the existing part of the parent chain is resolved, the rest is kept as written).
        Raises :class:`PathEscapeError` if the result is outside every allowed root.
        """
        text = os.fspath(path)
        if "\x00" in text:
            raise PathEscapeError(f"path {text!r} contains a NUL byte", hint="send a plain path")
        raw = Path(text).expanduser() if text.startswith("~") else Path(text)
        if not raw.is_absolute():
            raw = self.root / raw
        resolved = raw.resolve(strict=False)
        if self.allow_outside or self.contains(resolved):
            return resolved
        where = str(self.root)
        if self.extra_roots:
            where += " (or " + ", ".join(str(p) for p in self.extra_roots) + ")"
        shown = text if str(resolved) == text else f"{text} (resolves to {resolved})"
        raise PathEscapeError(
            f"path {shown} is outside the workspace {where}",
            hint="use a path inside the workspace; the user can allow more with --add-dir DIR "
            "or allow_outside = true in the config",
        )

    def relative(self, path: str | os.PathLike[str]) -> str:
        """A short form for display: relative to the root when inside it (``"."`` for the root
        itself), else the absolute path."""
        p = Path(path)
        if not p.is_absolute():
            p = self.root / p
        try:
            rel = p.relative_to(self.root)
        except ValueError:
            return str(p)
        return rel.as_posix() or "."

    def atomic_write(self, path: Path, data: bytes) -> None:
        """See :func:`atomic_write`."""
        atomic_write(path, data)


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` so that readers see either the old or the new file.

    Writes a temp file in the same directory, fsyncs it, renames it over the target and fsyncs
    the directory. The file gets the permission bits ``mode`` when given (undo restores a
    file's mode this way, with no moment of wrong permissions); otherwise an existing file's
    bits are kept and a new file gets the usual ``0o666 & ~umask``. A symlink is written
    through (its target is replaced, the link stays).
    The parent directory must exist. On any error the temp file is removed and the original is
    untouched; the OSError propagates.
    """
    target = Path(os.path.realpath(path))
    directory = target.parent
    if mode is None:
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            pass
    tmp = directory / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
    # O_EXCL: never clobber someone else's file; 0o666 lets the kernel apply the umask for us
    # (reading the umask would mean setting it, which races with other threads).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            fault = os.environ.get(FAULT_KILL_IN_WRITE)
            if fault and len(data) > int(fault):
                os.write(fd, view[: int(fault)])
                os.kill(os.getpid(), signal.SIGKILL)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


def sweep_temp_files(path: Path) -> list[Path]:
    """Remove the temp files that writes of ``path`` by processes no longer alive left beside
    it (a crash inside :func:`atomic_write`); the ones removed. A live writer's (another mcode
    writing the same file now) and names without a writer's pid are left alone. Call it when
    this process is not writing ``path``: its own pid counts as gone (in a container every run
    may get the same one)."""
    target = Path(os.path.realpath(path))
    removed: list[Path] = []
    try:
        candidates = list(target.parent.glob(f".{_glob_escape(target.name)}.*{TEMP_SUFFIX}"))
    except OSError:
        return removed
    for tmp in candidates:
        writer = tmp.name[len(target.name) + 2 : -len(TEMP_SUFFIX)].split("-", 1)[0]
        if not writer.isdigit() or not tmp.is_file():
            continue
        if int(writer) != os.getpid() and _alive(int(writer)):
            continue
        try:
            tmp.unlink()
        except OSError:
            continue
        removed.append(tmp)
    return removed


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process holds that pid: not ours to judge
    return True


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable. Some filesystems refuse to fsync a directory; the data
    # is already safe by then, so that is not worth failing the write over.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
