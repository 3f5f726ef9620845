"""The supervisor: one small process per mcode that takes running commands down when mcode dies.

    mcode ──▶ bash -c COMMAND   (leads its own session and process group; mcode waits on it)
      │ │            └──▶ its children, background jobs, grandchildren …
      │ └─ lifeline (a pipe; only mcode holds the write end) ─▶ supervisor (this file, run by path)
      └─ "+PGID START [bound]" when a command starts, "-PGID" once its group is gone

A command started directly would outlive a ``kill -9`` of mcode: it runs in its own process
group (so cancelling can kill all of it), and nothing tells it that its parent is gone. The
supervisor is told: it blocks reading the lifeline, and a pipe reads end-of-file once every
holder of its write end is gone — mcode dies of anything, ``SIGKILL`` included, and the kernel
closes it. Then every group still registered gets SIGTERM, up to :data:`GRACE` seconds, and
SIGKILL. No polling, no timer, and no process per command: a bash call costs what a direct
``bash -c`` costs (tests/bench/bash_spawn.py, BENCH.md). A group registered ``bound`` (a
sandboxed command: bwrap leads it) gets SIGKILL as soon as its leader is gone, without the
grace: nothing in a sandbox outlives bwrap on purpose, and a SIGTERM that reaches bwrap while
it still sets the sandbox up kills bwrap alone (mcode.tools.bash.kill_group says why).

mcode stays the command's parent, so exit statuses and signal deaths read as bash's own. The
one gap of a watcher outside the command — the moment between starting it and registering it —
is closed by a gate: the command line is prefixed with :data:`GATE`, which reads one line from
stdin (a pipe from mcode) before anything else runs; mcode writes it only once the group is
registered, and if mcode dies first the read ends empty and bash exits having run nothing.

The supervisor leads its own session (a Ctrl-C to mcode's terminal does not reach it), and kills
a group only if it is provably the one registered: the leader's start time matches, or the
leader is gone and only members are left (a pid is not reused while a group of that id exists).

Run as ``python -I -S supervisor.py``: the standard library only, never ``import mcode``.
mcode's side is :func:`watch` and :func:`release`; it starts the supervisor on first use.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

GRACE = 2.0
# A registered group: its leader's start time (None: unknown) and whether it is bound to it.
Registered = tuple[int | None, bool]
# Prefixed to every command, on its first line so line numbers in bash's messages stay the
# user's: wait for mcode's go (end-of-file: mcode died, run nothing), then stdin is /dev/null.
GATE = "read -r _ || exit 1; exec </dev/null; "

_PROC = "/proc"


# -- process groups (shared with mcode.tools.bash and mcode.runtime.leftovers) -----------------


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (zombies included), or None."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies don't count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # killpg(0) also succeeds for zombies waiting to be reaped by their new parent; on Linux,
    # look closer so a lazy reaper does not cost us the whole grace period. That is the common
    # case, not a corner: a sandboxed command's bwrap is left a zombie of init's after every
    # call. getpgid is one system call per process, where reading each /proc/PID/stat is
    # three and a parse (~3 ms of mcode's CPU a bash call with ~120 processes on the machine);
    # only the group's own members are read.
    try:
        pids = [int(name) for name in os.listdir(_PROC) if name.isdigit()]
    except OSError:
        return True
    for pid in pids:
        try:
            if os.getpgid(pid) != pgid:
                continue
            with open(f"{_PROC}/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


# -- the supervisor process ---------------------------------------------------------------------


def _ours(pgid: int, start: int | None) -> bool:
    if start is None or not os.path.isdir(_PROC):
        return True  # nothing to compare: the registration is all we have
    now = start_time(pgid)
    return now is None or now == start  # leader gone: its id is still the group's


def _leader_gone(pgid: int) -> bool:
    """Whether the group's leader has ended (gone, or a zombie nobody has reaped yet)."""
    try:
        with open(f"{_PROC}/{pgid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 :].split()[:1] == [b"Z"]


def _take_down(groups: dict[int, Registered]) -> None:
    """mcode is gone: stop its commands the way mcode would have, then everything left."""
    targets = {pgid: bound for pgid, (start, bound) in groups.items() if _ours(pgid, start)}
    for pgid in targets:
        _signal(pgid, 15)  # SIGTERM (the C module _signal has the numbers; signal imports enum)
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline and any(group_alive(pgid) for pgid in targets):
        time.sleep(0.05)
        for pgid, bound in targets.items():
            if bound and _leader_gone(pgid):
                _signal(pgid, 9)  # SIGKILL: a sandbox without its bwrap
    for pgid in targets:
        _signal(pgid, 9)  # SIGKILL


def _signal(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


def main() -> None:
    # Registrations arrive as bash starts: on a busy machine, a woken supervisor must not take
    # the CPU from the command it is told about. Its one real job, after mcode dies, can wait.
    try:
        os.nice(19)
    except OSError:
        pass
    groups: dict[int, Registered] = {}
    pending = b""
    while True:
        chunk = os.read(0, 4096)
        if not chunk:
            break  # end of file: mcode is gone
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            op, _, rest = line.partition(b" ")
            if op.startswith(b"+"):
                start, _, flag = rest.partition(b" ")
                groups[int(op[1:])] = (int(start) if start else None, flag == b"bound")
            elif op.startswith(b"-"):
                groups.pop(int(op[1:]), None)
    if groups:
        _take_down(groups)


# -- mcode's side -------------------------------------------------------------------------------

_proc: Any = None  # the running supervisor (a subprocess.Popen), started on first use
_owner = 0  # the pid that started it: a forked child must start its own
_live: dict[int, Registered] = {}  # what it has been told is running


def watch(pgid: int, *, bound: bool = False) -> None:
    """Register a command's process group (its leader is waiting at the :data:`GATE`), so that
    it dies with mcode; ``bound``: nothing of it may outlive its leader (bwrap). Never raises:
    without a supervisor a command still dies on cancel."""
    _live[pgid] = (start_time(pgid), bound)
    _send(_registration(pgid, _live[pgid]))


def _registration(pgid: int, registered: Registered) -> bytes:
    start, bound = registered
    return f"+{pgid} {'' if start is None else start}{' bound' if bound else ''}\n".encode()


def release(pgid: int) -> None:
    """The group is gone: forget it (its id may be reused)."""
    if pgid in _live:
        del _live[pgid]
        _send(f"-{pgid}\n".encode())


def _send(line: bytes) -> None:
    global _proc, _owner
    for _ in range(2):
        if _proc is None or _owner != os.getpid() or _proc.poll() is not None:
            if not _start():
                return
            line = b"".join(_registration(pgid, registered) for pgid, registered in _live.items())
            if not line:
                return
        try:
            os.write(_proc.stdin.fileno(), line)  # a short line: one atomic write
            return
        except (OSError, ValueError):  # it died (a command killed it?): start another, tell all
            _proc = None


def _start() -> bool:
    global _proc, _owner
    import atexit
    import subprocess

    try:
        _proc = subprocess.Popen(
            [sys.executable, "-I", "-S", __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )
    except OSError:
        _proc = None
        return False
    if not _owner:
        atexit.register(_stop)
    _owner = os.getpid()
    return True


def _stop() -> None:
    """mcode exits normally: close the lifeline (nothing is registered, so it just ends)."""
    import subprocess

    if _proc is not None and _owner == os.getpid():
        _proc.stdin.close()
        try:
            _proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:  # it ends on its own
            pass


if __name__ == "__main__":
    main()
