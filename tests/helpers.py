"""Shared helpers for tests that run mcode as a user would: a subprocess in a real git repo."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY_VARS = (
    "MINIMAX_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "MINIMAX_BASE_URL",
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment with no API keys and private XDG folders under ``home``."""
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS and not k.startswith("MCODE_")}
    env.update(
        XDG_DATA_HOME=str(home / "data"),
        XDG_CONFIG_HOME=str(home / "config"),
        HOME=str(home),
        PYTHONUNBUFFERED="1",
        # Fast retries for tests; Retry-After from the server is still honoured.
        MCODE_NETWORK_BACKOFF_BASE="0.05",
        MCODE_NETWORK_BACKOFF_MAX="0.2",
    )
    env.update(extra)
    return env


def exec_args(server: Any, *extra: str, wire: str = "openai") -> list[str]:
    """``mcode exec`` pointed at a scripted model server (tests/model_server.py) speaking
    ``wire`` (``openai``: Chat Completions, ``anthropic``: Messages)."""
    base = server.base_url if wire == "openai" else server.anthropic_base_url
    return ["exec", "--provider", wire, "--base-url", base, "--model", "test-model", *extra]


def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True)
    return root


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def mcode(
    *args: str, cwd: Path, env: dict[str, str], stdin: str | None = None, timeout: float = 120
) -> Run:
    p = subprocess.run(
        [sys.executable, "-m", "mcode", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(p.returncode, p.stdout, p.stderr)


def trust(folder: Path, env: dict[str, str]) -> None:
    """``mcode trust FOLDER``, as the user would: its project config and AGENTS.md apply."""
    run = mcode("trust", str(folder), cwd=folder, env=env)
    assert run.code == 0, run.stderr


def start_until(
    *args: str, cwd: Path, env: dict[str, str], event_type: str
) -> tuple[subprocess.Popen[str], list[dict[str, Any]]]:
    """Start ``mcode ARGS`` (stream-json) and read its events until one of ``event_type``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcode", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == event_type:
            break
    return proc, events


def stored_events(home: Path, session_id: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(home / "data" / "mcode" / "sessions.db")
    try:
        rows = db.execute(
            "SELECT body FROM events WHERE session_id=? ORDER BY seq", (session_id,)
        ).fetchall()
    finally:
        db.close()
    return [json.loads(r[0]) for r in rows]


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m.get("role") == "tool"]


class Live:
    """A running ``mcode exec`` (stream-json in and out): ``send`` lines, ``until`` an event."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcode", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stderr = ""
        # Both pipes are drained by threads, so a full pipe never blocks mcode.
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def send(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        for line in lines:
            self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def until(self, type_: str, n: int = 1, timeout: float = 30) -> dict[str, Any]:
        """Read events until the ``n``-th of ``type_`` (counting those already read)."""
        deadline = time.monotonic() + timeout
        while sum(e["type"] == type_ for e in self.events) < n:
            line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"mcode ended before {type_} #{n}: {self.stderr}")
            self.events.append(json.loads(line))
        return [e for e in self.events if e["type"] == type_][n - 1]

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout=timeout)
        while (line := self._lines.get(timeout=5)) is not None:
            self.events.append(json.loads(line))
        return code

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def sleeper(pid_file: Path, then: str = "") -> str:
    """A bash command that sleeps 300 s in the background, writes the sleep's pid to
    ``pid_file``, waits for it, then runs ``then``: a cancel that kills the command's process
    group leaves :func:`gone` true at once; one that waits for it would take five minutes.
    The sleep's argument is unique to ``pid_file`` (``300.NNNNNN`` seconds), so that
    :func:`gone` finds it from outside the sandbox's PID namespace, where ``$!`` means nothing."""
    return f"sleep {_sleep_arg(pid_file)} & echo $! > {pid_file}; wait{'; ' + then if then else ''}"


def _sleep_arg(pid_file: Path) -> str:
    return f"300.{zlib.crc32(str(pid_file).encode()) % 1_000_000:06d}"


def _sleepers(pid_file: Path) -> list[int]:
    """The pids (as this process sees them) of the sleeps :func:`sleeper` started for it."""
    want = f"sleep\0{_sleep_arg(pid_file)}\0".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if Path(f"/proc/{name}/cmdline").read_bytes() == want:
                found.append(int(name))
        except OSError:
            continue
    return found


def gone(pid_file: Path, seconds: float = 5.0) -> bool:
    """Whether the sleep of :func:`sleeper` whose pid ``pid_file`` holds has ended (a zombie
    counts as ended), waiting up to ``seconds`` for its reaper."""
    int(pid_file.read_text())  # it was started
    deadline = time.monotonic() + seconds
    while True:
        alive = False
        for pid in _sleepers(pid_file):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except FileNotFoundError:
                continue
            alive = alive or stat.rsplit(")", 1)[1].split()[0] != "Z"
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_on(argv: list[str], port: int, timeout: float = 30) -> subprocess.Popen[bytes]:
    """Start the server ``argv`` (which listens on ``port``) and return once it accepts
    connections; the caller stops it."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError(f"{argv[0]} never listened on port {port}")


def pane_exit_status(tmux: Any, target: str) -> str | None:
    """The exit status of the program in tmux pane ``target`` once it has ended, else None
    (``tmux(*args)`` runs a tmux command of the test's server and returns its output).

    Asked of tmux, and nudged: tmux 3.3a now and then misses the SIGCHLD of a pane's program
    that has exited (seen here: the program a zombie for 30 s and more, the pane dead for its
    closed tty but with no status, and no "Pane is dead" drawn), and reaps it at once when the
    server gets another SIGCHLD. A death by a signal has no status: None until the caller's
    deadline, whose message should show the screen (tmux writes the signal there)."""
    dead, status, server = tmux(
        "display-message", "-p", "-t", target, "#{pane_dead} #{pane_dead_status}. #{pid}"
    ).split(" ")
    if dead != "1":
        return None
    if status == ".":
        os.kill(int(server), signal.SIGCHLD)
        return None
    return status.rstrip(".")
