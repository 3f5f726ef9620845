"""A command mcode runs dies with mcode, background jobs and grandchildren included, even on
``kill -9``; ``--resume`` reports what the killed run left, and kills what survived."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import clean_env, exec_args, make_repo, mcode, stored_events

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

WAIT = 30.0  # generous: a loaded machine is slow, and only the outcome is asserted


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# r\n"})


@pytest.fixture
def markers() -> Iterator[list[str]]:
    """Three sleep durations no other process on this machine uses (a background job, the
    foreground command, a grandchild), and whatever still runs them is killed at the end."""
    uid = random.randrange(10**6, 10**7)
    names = [f"300.{uid}{n}" for n in (1, 2, 3)]
    yield names
    for pid in running(names):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def running(names: list[str]) -> dict[int, int]:
    """pid -> process group of each live (not zombie) process running one of ``names``."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] != b"Z" and any(n.encode() in argv for n in names):
            found[int(entry)] = int(fields[2])
    return found


def children_running(parent: int, word: str) -> list[int]:
    """The children of ``parent`` with ``word`` in their command line."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rfind(b")") + 2 :].split()[1]) == parent and word.encode() in argv:
            found.append(int(entry))
    return found


def wait_for(check, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.1)


def start_command(server, repo: Path, env: dict[str, str], names: list[str]):
    """``mcode exec`` (stream-json) running a command with a background job, a foreground
    sleep and a grandchild; returns once all three run: (the process, session id, pgid).
    Unsandboxed: inside the sandbox bwrap's --die-with-parent takes the command down with mcode
    even when the supervisor is gone, so no crash could leave work for resume to find."""
    first, second, third = names
    command = f"sleep {first} & bash -c 'sleep {third}; true' & echo started; sleep {second}"
    server.push(
        {"tool_calls": [{"id": "b1", "name": "bash", "arguments": {"command": command}}]},
        {"text": "carried on"},
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcode",
            *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
            "--sandbox",
            "danger-full-access",
            "run it",
        ],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    session_id = None
    for line in proc.stdout:
        if session_id is None:
            session_id = line.split('"session_id":"', 1)[1].split('"', 1)[0]
        if '"tool.started"' in line:
            break
    wait_for(lambda: len(running(names)) == 3, "the command's three sleeps to start")
    (pgid,) = set(running(names).values())  # one process group: the command's
    assert session_id is not None
    return proc, session_id, pgid


def test_kill_9_takes_the_command_and_its_children_down(model_server, repo, tmp_path, markers):
    home = tmp_path / "home"
    env = clean_env(home)
    server = model_server([])
    proc, session_id, pgid = start_command(server, repo, env, markers)

    proc.kill()  # SIGKILL: no handler in mcode runs
    proc.wait(timeout=WAIT)
    wait_for(lambda: not running(markers), "the command's processes to die with mcode")

    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "--resume",
        session_id,
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    (report,) = [e["data"] for e in run.events() if e["data"].get("kind") == "leftover"]
    assert report["pid"] == pgid and report["killed"] is False
    assert f"sleep {markers[0]}" in report["command"]
    assert "had already exited" in report["message"] and f"pid {pgid}" in report["message"]
    assert run.events()[-1]["data"]["result"] == "carried on"
    assert list((home / "data" / "mcode" / "running").iterdir()) == []  # the note is gone


def test_resume_kills_what_survived_the_killed_run(model_server, repo, tmp_path, markers):
    home = tmp_path / "home"
    env = clean_env(home)
    server = model_server([])
    proc, session_id, pgid = start_command(server, repo, env, markers)

    # The supervisor takes the command down with mcode, so nothing survives a plain kill -9.
    # Freeze mcode, kill its supervisor, then kill mcode: a crash that left work.
    os.kill(proc.pid, signal.SIGSTOP)
    (supervisor,) = children_running(proc.pid, "supervisor.py")
    os.kill(supervisor, signal.SIGKILL)
    proc.kill()
    proc.wait(timeout=WAIT)
    assert len(running(markers)) == 3

    run = mcode(
        *exec_args(server, "-q", "--permission-mode", "full-auto"),
        "--resume",
        session_id,
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    wait_for(lambda: not running(markers), "resume to kill the orphaned processes")
    line = f"mcode: a command from the killed run (pid {pgid}, `sleep {markers[0]} & bash"
    assert line in run.stderr and "was still running: killed" in run.stderr
    reports = [e["data"] for e in stored_events(home, session_id) if e["type"] == "error"]
    assert [(r["kind"], r["pid"], r["killed"]) for r in reports] == [("leftover", pgid, True)]
