"""The supervisor: the process between mcode and a command, which takes the command's whole
process group down when mcode dies.

    mcode ──▶ supervisor (leads a new session and process group; this file, run by path)
                 └──▶ bash -c COMMAND ──▶ its children, background jobs, grandchildren …

A command started directly would outlive a ``kill -9`` of mcode: it runs in its own process
group (so cancelling can kill all of it), and nothing tells it that its parent is gone.
``PR_SET_PDEATHSIG`` reaches only the direct child, fires when the *thread* that forked it
ends, and needs a ``preexec_fn`` (unsafe in a process with threads) or ctypes (as slow to
import as the rest of this program's start-up). So the direct child is this small program: it
waits for the command on a pidfd (Linux; elsewhere it polls), checks every :data:`POLL`
seconds whether mcode is still its parent, and once it is not, SIGTERMs its group, waits up to
:data:`GRACE` seconds for the command, and SIGKILLs the group, itself included.

Otherwise it is transparent: mcode's SIGTERM to the group reaches the command and is ignored
here, and the command's exit status becomes the supervisor's (a signal death is re-raised), so
mcode reads ``exit code 3`` or ``killed by SIGTERM`` as it would from bash itself.

Run as ``python -I -S supervisor.py PARENT_PID ARGV...``: the standard library's C modules only
(``_signal``, not ``signal``, which imports ``enum``), never ``import mcode``: its start-up is
part of every command's latency (tests/bench/bash_spawn.py).
"""

from __future__ import annotations

import _signal
import os
import select
import sys
import time

GRACE = 2.0
POLL = 0.2  # how often the parent is checked: the longest a command outlives mcode
_EXIT_POLL = 0.02  # without a pidfd, how often the command is checked


def _ignore(signum: int, frame: object) -> None:
    """SIGTERM from mcode is for the command; a caught signal (unlike an ignored one) is
    reset for the command when it execs."""


def _take_group_down(child: int) -> None:
    """mcode is gone: stop the command the way mcode would have, then everything left."""
    try:
        os.killpg(0, _signal.SIGTERM)  # our own handler ignores it
        deadline = time.monotonic() + GRACE
        while time.monotonic() < deadline:
            if os.waitpid(child, os.WNOHANG)[0]:
                break
            time.sleep(0.05)
    except OSError:
        pass
    finally:
        os.killpg(0, _signal.SIGKILL)  # background jobs too, and this process


def _wait(child: int, parent: int) -> int:
    """The command's wait status; takes the group down if mcode dies first."""
    try:
        pidfd: int | None = os.pidfd_open(child)
    except (AttributeError, OSError):
        pidfd = None
    while True:
        if pidfd is not None:
            select.select([pidfd], [], [], POLL)  # readable when the command exits
        else:
            time.sleep(_EXIT_POLL)
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            return status
        if os.getppid() != parent:
            _take_group_down(child)


def _exit_like(status: int) -> None:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        _signal.signal(sig, _signal.SIG_DFL)
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the command's crash, not ours
        except (ImportError, ValueError, OSError):
            pass
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # a signal whose default is not to end the process
    os._exit(os.waitstatus_to_exitcode(status))


def main(argv: list[str]) -> None:
    parent = int(argv[1])
    command = argv[2:]
    _signal.signal(_signal.SIGTERM, _ignore)
    if os.getppid() != parent:  # mcode died before we got here
        os._exit(1)
    child = os.fork()
    if child == 0:
        try:
            os.execvp(command[0], command)
        except OSError as e:
            os.write(2, f"mcode: cannot start {command[0]}: {e.strerror}\n".encode())
        os._exit(127)
    _exit_like(_wait(child, parent))


if __name__ == "__main__":
    main(sys.argv)
