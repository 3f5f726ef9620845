"""The supervisor takes a registered process group down once its lifeline reads end-of-file
(mcode died), leaves released and reused ids alone, and the gate runs nothing without a go."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcode.tools import supervisor

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def group(command: str) -> subprocess.Popen[bytes]:
    """A process group like a command's: bash leading its own session, with a background job."""
    return subprocess.Popen(["bash", "-c", command], start_new_session=True)


def test_end_of_file_takes_registered_groups_down_and_no_others() -> None:
    lifeline = subprocess.Popen(
        [sys.executable, "-I", "-S", supervisor.__file__], stdin=subprocess.PIPE
    )
    assert lifeline.stdin is not None
    doomed, released, reused = group("sleep 300 & wait"), group("sleep 300"), group("sleep 300")
    try:
        start = supervisor.start_time(doomed.pid)
        lines = [
            f"+{doomed.pid} {start}",
            f"+{released.pid} {supervisor.start_time(released.pid)}",
            f"-{released.pid}",
            f"+{reused.pid} {supervisor.start_time(reused.pid) - 1}",  # another process's id
        ]
        lifeline.stdin.write(("\n".join(lines) + "\n").encode())
        lifeline.stdin.flush()
        time.sleep(0.2)
        assert alive(doomed.pid) and alive(released.pid) and alive(reused.pid)
        background = [
            int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == doomed.pid
        ]
        assert len(background) == 2  # bash and its background sleep
        lifeline.stdin.close()  # what mcode's death does to the pipe
        doomed.wait(timeout=10)
        assert doomed.returncode == -signal.SIGTERM
        assert all(wait_gone(pid) for pid in background)
        assert lifeline.wait(timeout=10) == 0
        assert alive(released.pid) and alive(reused.pid)
    finally:
        for proc in (doomed, released, reused):
            proc.kill()
            proc.wait()


def test_a_group_that_ignores_sigterm_gets_sigkill() -> None:
    lifeline = subprocess.Popen(
        [sys.executable, "-I", "-S", supervisor.__file__], stdin=subprocess.PIPE
    )
    assert lifeline.stdin is not None
    stubborn = group("trap '' TERM; sleep 300 & wait")
    try:
        time.sleep(0.2)  # bash has set its trap
        lifeline.stdin.write(f"+{stubborn.pid} {supervisor.start_time(stubborn.pid)}\n".encode())
        lifeline.stdin.close()
        stubborn.wait(timeout=10)
        assert stubborn.returncode == -signal.SIGKILL
    finally:
        stubborn.kill()
        stubborn.wait()


@pytest.mark.parametrize("bound", [True, False])
def test_a_bound_group_dies_with_its_leader_without_the_grace(tmp_path: Path, bound: bool) -> None:
    """A sandboxed command's group is registered bound: once its leader (bwrap) is gone, the
    rest gets SIGKILL at once. What it guards against: a SIGTERM that reaches bwrap while it
    still sets the sandbox up kills bwrap alone, and the command inside, not yet started when
    the signal went out, would run on through the grace. Here the leader dies of the SIGTERM
    and a member that ignores it would leave its mark 1.5 s later, inside the 2 s grace:
    bound, it never does; unbound, the grace lets it (so the test can tell them apart)."""
    lifeline = subprocess.Popen(
        [sys.executable, "-I", "-S", supervisor.__file__], stdin=subprocess.PIPE
    )
    assert lifeline.stdin is not None
    marker = tmp_path / "ran"
    command = group(f"(trap '' TERM; sleep 1.5; touch {marker}) & wait")
    try:
        time.sleep(0.2)  # the member has set its trap
        start = supervisor.start_time(command.pid)
        line = f"+{command.pid} {start}{' bound' if bound else ''}\n"
        lifeline.stdin.write(line.encode())
        lifeline.stdin.close()  # mcode died
        assert command.wait(timeout=10) == -signal.SIGTERM  # the leader
        assert lifeline.wait(timeout=10) == 0  # after the group is gone, grace or not
        assert marker.exists() == (not bound)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(command.pid, signal.SIGKILL)
        command.wait()


def test_the_gate_runs_nothing_when_mcode_dies_before_the_go(tmp_path: Path) -> None:
    gate, go = os.pipe()
    marker = tmp_path / "ran"
    proc = subprocess.Popen(
        ["bash", "-c", supervisor.GATE + f"touch {marker}"], stdin=gate, start_new_session=True
    )
    os.close(gate)
    os.close(go)  # mcode died: no go
    assert proc.wait(timeout=10) == 1
    assert not marker.exists()


def test_a_killed_supervisor_is_replaced_and_told_what_runs() -> None:
    first = group("sleep 300")
    second = group("sleep 300")
    try:
        supervisor.watch(first.pid)
        old = supervisor._proc
        old.kill()
        old.wait()
        supervisor.watch(second.pid)  # starts another supervisor, which learns of both
        new = supervisor._proc
        assert new is not old and new.poll() is None
        new.stdin.close()  # mcode's death, as the new supervisor sees it
        assert first.wait(timeout=10) == -signal.SIGTERM
        assert second.wait(timeout=10) == -signal.SIGTERM
        new.wait(timeout=10)
    finally:
        for proc in (first, second):
            supervisor._live.pop(proc.pid, None)
            proc.kill()
            proc.wait()
        supervisor._proc = None  # the next command starts a fresh one


def _pgid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[2])


def test_group_alive_sees_a_live_member_and_not_a_zombie_or_an_empty_group() -> None:
    """The group check after every bash call: a background job left running keeps the group
    alive after its leader exits; a leader not yet reaped (a zombie, as a sandboxed command's
    bwrap is left after every call) does not; a group with nobody left is gone."""
    zombie = subprocess.Popen(["true"], start_new_session=True)
    deadline = time.monotonic() + 10
    while alive(zombie.pid):  # exited, and not reaped: only its zombie holds the group
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(zombie.pid, 0)  # the kernel still counts the group, so the check must look closer
    assert not supervisor.group_alive(zombie.pid)
    zombie.wait()
    assert not supervisor.group_alive(zombie.pid)

    leader = group("sleep 30 & echo $! ; exit 0")
    leader.wait()  # the leader is reaped; its background job is the group
    try:
        assert supervisor.group_alive(leader.pid)
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while supervisor.group_alive(leader.pid):
        assert time.monotonic() < deadline
        time.sleep(0.01)
