"""The supervisor: the process between mcode and a command, which takes the command's whole
process group down when mcode dies.

    mcode ──▶ supervisor (leads a new session and process group; this file, run by path)
                 └──▶ bash -c COMMAND ──▶ its children, background jobs, grandchildren …

A command started directly would outlive a ``kill -9`` of mcode: it runs in its own process
group (so cancelling can kill all of it), and nothing tells it that its parent is gone.
``PR_SET_PDEATHSIG`` would, but only to the direct child, and set from a ``preexec_fn``, which
is unsafe in a process with threads. So the direct child is this small program: it asks the
kernel for SIGHUP when mcode's thread that started it ends (Linux; elsewhere it polls its
parent id), then SIGTERMs its group, waits up to :data:`GRACE` seconds for the command, and
SIGKILLs the group, itself included.

Otherwise it is transparent: mcode's SIGTERM to the group reaches the command and is ignored
here, and the command's exit status becomes the supervisor's (a signal death is re-raised), so
mcode reads ``exit code 3`` or ``killed by SIGTERM`` as it would from bash itself.

Run as ``python -I -S supervisor.py PARENT_PID ARGV...``: the standard library only, never
``import mcode`` (startup is part of every command's latency).
"""

from __future__ import annotations

import os
import signal
import sys
import time

GRACE = 2.0
_POLL = 0.2  # where there is no parent-death signal: how often the parent is checked


def _set_parent_death_signal(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        return int(libc.prctl(pr_set_pdeathsig, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _take_group_down(child: int) -> None:
    """mcode is gone: stop the command the way mcode would have, then everything left."""
    try:
        os.killpg(0, signal.SIGTERM)  # our own handler ignores it
        deadline = time.monotonic() + GRACE
        while time.monotonic() < deadline:
            if os.waitpid(child, os.WNOHANG)[0]:
                break
            time.sleep(0.05)
    except OSError:
        pass
    finally:
        os.killpg(0, signal.SIGKILL)  # background jobs too, and this process


def _exit_like(status: int) -> None:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
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
    child = 0
    # Handlers before the death signal is armed: a SIGHUP arriving in between must not find
    # the default action (which would end this process and orphan the command).
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGHUP, lambda *_: _take_group_down(child))
    armed = _set_parent_death_signal(signal.SIGHUP)
    if os.getppid() != parent:  # mcode died before the signal was armed
        os._exit(1)
    child = os.fork()
    if child == 0:
        # exec resets caught signals to their defaults; nothing here is ignored (SIG_IGN
        # would be inherited by the command).
        try:
            os.execvp(command[0], command)
        except OSError as e:
            os.write(2, f"mcode: cannot start {command[0]}: {e.strerror}\n".encode())
        os._exit(127)
    if armed:
        _, status = os.waitpid(child, 0)
    else:
        while True:
            done, status = os.waitpid(child, os.WNOHANG)
            if done:
                break
            if os.getppid() != parent:
                _take_group_down(child)
            time.sleep(_POLL)
    _exit_like(status)


if __name__ == "__main__":
    main(sys.argv)
