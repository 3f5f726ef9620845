"""Commands a killed run left behind: noted while they run, reported (and killed) on resume.

While a bash command runs, a small JSON note in ``<data dir>/running/`` names its process
group, the command and how to recognise the group's leader again (its start time since boot,
and the boot's id): ``<session id>.<pgid>.json``, written before the command can do anything
that matters and removed once its group is gone. A note that survives means mcode died first.
The supervisor (:mod:`mcode.tools.supervisor`) normally takes the group down when mcode dies,
so on ``--resume`` the note usually says "had already exited". Something survives when the
supervisor was killed too; then the group is SIGTERMed, then SIGKILLed, and reported as killed.

A group is only killed when it is provably the one noted: same boot, and a leader with the
noted start time, or, with the leader gone, members in that session started no earlier than
it. Without ``/proc`` nothing can be proved, so nothing is killed: the report says how to look.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mcode.atomic import atomic_write
from mcode.tools.bash import KILL_GRACE, group_alive

__all__ = ["CommandNotes", "Leftover", "reap"]

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Leftover:
    """A command of a killed run, and what became of it: ``killed`` now, or ``unknown``
    (no way to check) or not (it had already exited)."""

    pid: int
    command: str
    killed: bool
    unknown: bool = False

    def message(self) -> str:
        shown = self.command if len(self.command) <= 80 else self.command[:77] + "..."
        what = f"a command from the killed run (pid {self.pid}, `{shown}`)"
        if self.unknown:
            return f"{what} may still be running: this system cannot tell"
        if self.killed:
            return f"{what} was still running: killed"
        return f"{what} had already exited"

    def hint(self) -> str:
        if self.unknown:
            return f"check with `ps -g {self.pid}`, and stop it with `kill -- -{self.pid}`"
        return "its effects may be partial: check what it was doing before running it again"


class CommandNotes:
    """The notes of one session's running commands (a :data:`~mcode.tools.base.CommandRecorder`)."""

    def __init__(self, folder: Path, session_id: str) -> None:
        self.folder = folder
        self.session_id = session_id

    def __call__(self, pgid: int, command: str) -> Callable[[], None]:
        note = {
            "pgid": pgid,
            "command": command,
            "start": _start_time(pgid),
            "boot": _boot_id(),
            "mcode_pid": os.getpid(),
        }
        path = self.folder / f"{self.session_id}.{pgid}.json"
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # A crash leaves a whole note or none; not fsynced (one note per command, and a
            # note only matters after a process crash, which the rename alone survives).
            atomic_write(path, json.dumps(note).encode("utf-8"), sync=False)
        except OSError:
            pass  # a note is for reporting after a crash; its absence must not stop the command
        return lambda: path.unlink(missing_ok=True)


def reap(folder: Path, session_id: str) -> list[Leftover]:
    """What the notes of ``session_id``'s killed run say, killing the groups still alive; the
    notes are removed. Call only while holding the session's claim (no other process runs it)."""
    found: list[Leftover] = []
    for path in sorted(folder.glob(f"{session_id}.*.json")):
        try:
            note = json.loads(path.read_text(encoding="utf-8"))
            pgid, command = int(note["pgid"]), str(note["command"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if not _PROC.is_dir():
            found.append(Leftover(pgid, command, killed=False, unknown=True))
        elif _ours(pgid, note.get("start"), note.get("boot")) and group_alive(pgid):
            _kill(pgid)
            found.append(Leftover(pgid, command, killed=True))
        else:
            found.append(Leftover(pgid, command, killed=False))
        path.unlink(missing_ok=True)
    return found


def _ours(pgid: int, start: int | None, boot: str | None) -> bool:
    if start is None or boot is None or boot != _boot_id():
        return False
    leader = _stat(pgid)
    if leader is not None:
        return leader[2] == start
    # The leader is gone, its group may live on. A pid is not reused while a group of that
    # id exists, so members of session pgid that started after the note's leader are its own.
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None and stat[0] == pgid and stat[1] == pgid and stat[2] >= start:
            return True
    return False


def _kill(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + KILL_GRACE
        while sig == signal.SIGTERM and time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.05)
        if not group_alive(pgid):
            return


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(_PROC) if name.isdigit()]
    except OSError:
        return []


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(process group, session, start time in clock ticks since boot) of a live process."""
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    # After the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime
    if len(fields) < 20 or fields[0] == b"Z":
        return None
    return int(fields[2]), int(fields[3]), int(fields[19])


def _start_time(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat[2]


def _boot_id() -> str | None:
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None
