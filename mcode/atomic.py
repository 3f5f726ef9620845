"""Writing a file so that a crash or a full disk never leaves it half-written: the one helper
every part of mcode that replaces a file uses (the write and edit tools, ``mcode undo``, fork's
``--undo-files``, the trust list, the notes of running commands).

:func:`atomic_write` writes a temp file in the target's folder, fsyncs it, renames it over the
target (keeping its permission bits) and fsyncs the folder. The one thing a crash inside a write
(``kill -9``, power loss) can leave is that temp file, ``.NAME.<pid>-<hex>.mcode-tmp``: it must
sit in the same folder (a rename is only atomic within one filesystem), so it cannot live
somewhere out of sight. Its name says which process wrote it; :func:`sweep_temp_files` removes
those of processes that are gone, and ``--resume`` calls it for the files the killed turn was
writing.

This module is on the ground floor: it imports nothing from mcode.
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
from pathlib import Path

# A fault point for crash tests (tests/test_crash.py): with this set to N, a write of more than
# N bytes kills the process (SIGKILL) once N of them are on disk, so a crash lands inside a
# write. Nothing else reads it; unset, it costs one lookup per write.
FAULT_KILL_IN_WRITE = "MCODE_FAULT_KILL_IN_WRITE"

# Another, for the fault matrix (tests/test_faults.py): with this set to ``files``, every write
# puts half its bytes on disk and then fails as a full disk does (ENOSPC). The store reads the
# same variable for its own fault (``store:N``, mcode/store.py).
FAULT_DISK_FULL = "MCODE_FAULT_DISK_FULL"

TEMP_SUFFIX = ".mcode-tmp"


def atomic_write(path: Path, data: bytes, mode: int | None = None, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see either the old or the new file.

    Writes a temp file in the same directory, fsyncs it, renames it over the target and fsyncs
    the directory. The file gets the permission bits ``mode`` when given (undo restores a
    file's mode this way, with no moment of wrong permissions); otherwise an existing file's
    bits are kept and a new file gets the usual ``0o666 & ~umask``. A symlink is written
    through (its target is replaced, the link stays).
    The parent directory must exist. On any error the temp file is removed and the original is
    untouched; the OSError propagates. ``sync`` False skips both fsyncs: the file is still never
    seen half-written after a process crash, only a power loss may take it back (for notes
    that cost one write per command and matter only after a crash).
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
            if os.environ.get(FAULT_DISK_FULL) == "files":
                os.write(fd, view[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if sync:
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
    if sync:
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
