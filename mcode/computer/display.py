"""Which X display the computer tool acts on, and a private one mcode starts itself.

    DISPLAY=:0 mcode exec --allow-computer ...      the user's own X session (their desktop)
    mcode exec --virtual-display 1280x800 ...       an Xvfb of mcode's own: nothing the agent
                                                    does reaches the user's screen; an app named
                                                    by --virtual-display-app runs inside it

Everything below takes the display name as an argument and never reads or changes
``os.environ["DISPLAY"]``, so a virtual display is the tool's alone and mcode's own process (and
the bash tool's commands) keep the environment they had.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from mcode.errors import ToolError
from mcode.tools import supervisor

__all__ = ["ComputerUnavailable", "VirtualDisplay", "find_display", "need_program", "parse_size"]

# Xvfb prints its display number on this descriptor once it accepts clients (-displayfd).
_READY_TIMEOUT = 10.0


class ComputerUnavailable(ToolError):
    """The computer cannot be used here: no X display, or a program it needs is missing. The
    message names what is missing; the hint says how to get it."""


def find_display(env: Mapping[str, str] | None = None) -> str:
    """The X display named by ``DISPLAY``, or ComputerUnavailable saying there is none."""
    env = os.environ if env is None else env
    display = env.get("DISPLAY", "")
    if not display:
        raise ComputerUnavailable(
            "there is no X display for the computer tool: DISPLAY is not set",
            hint="run inside an X session, or give --virtual-display to let mcode start its own "
            "Xvfb (apt-get install xvfb)",
        )
    return display


def need_program(name: str, package: str, path: str | None = None) -> str:
    """The full path of ``name``, or ComputerUnavailable naming the package to install."""
    found = shutil.which(name, path=path)
    if found is None:
        raise ComputerUnavailable(
            f"the computer tool needs {name}, which is not installed",
            hint=f"install it (Debian/Ubuntu: apt-get install {package})",
        )
    return found


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x800"`` as ``(1280, 800)``; ValueError for anything else."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ValueError(f"{text!r} is not a size like 1280x800")
    w, h = int(width), int(height)
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise ValueError(f"{text!r}: each side must be between 16 and 16384 pixels")
    return w, h


@dataclass(slots=True)
class VirtualDisplay:
    """An Xvfb server of mcode's own, with an optional app running inside it.

    ``start`` waits until the server accepts clients (Xvfb picks a free display number and
    reports it on a pipe), then starts ``app`` with ``DISPLAY`` pointing at it. ``stop`` ends
    the app's process group and the server; it is idempotent. Both run in their own process
    groups so a terminal's Ctrl+C reaches mcode, which then stops them in order; both are
    registered with the supervisor, so they die with mcode however it dies.
    """

    size: tuple[int, int] = (1280, 800)
    app: str | None = None
    env: Mapping[str, str] | None = None
    name: str = ""
    _server: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _app: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> VirtualDisplay:
        xvfb = need_program("Xvfb", "xvfb")
        read_end, write_end = os.pipe()
        w, h = self.size
        try:
            self._server = subprocess.Popen(
                [
                    xvfb,
                    "-displayfd",
                    str(write_end),
                    "-screen",
                    "0",
                    f"{w}x{h}x24",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ],
                pass_fds=(write_end,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        finally:
            os.close(write_end)
        try:
            number = _read_display_number(read_end, self._server)
        finally:
            os.close(read_end)
        self.name = f":{number}"
        _dies_with_mcode(self._server)
        if self.app:
            env = dict(os.environ if self.env is None else self.env)
            env["DISPLAY"] = self.name
            self._app = subprocess.Popen(
                self.app,
                shell=True,
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            _dies_with_mcode(self._app)
        return self

    def stop(self) -> None:
        for proc in (self._app, self._server):
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            supervisor.release(proc.pid)
        if self._server is not None and self._server.stderr is not None:
            self._server.stderr.close()
        self._app = self._server = None

    def __enter__(self) -> VirtualDisplay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _dies_with_mcode(proc: subprocess.Popen[bytes]) -> None:
    """Register ``proc``'s group (it leads its own) with the supervisor that bash's commands
    die with (mcode/tools/supervisor.py): a ``kill -9`` of mcode takes the display and its app
    down too. (Unlike a bash command there is no gate: if mcode dies in the microseconds
    between the start and this line, the process outlives it.)"""
    supervisor.watch(proc.pid)


def _read_display_number(fd: int, server: subprocess.Popen[bytes]) -> int:
    """The number Xvfb writes on ``fd`` when ready; ComputerUnavailable if it dies first."""
    deadline = time.monotonic() + _READY_TIMEOUT
    text = b""
    os.set_blocking(fd, False)
    while not text.endswith(b"\n"):
        try:
            chunk = os.read(fd, 32)
        except BlockingIOError:
            chunk = None
        if chunk:
            text += chunk
            continue
        if server.poll() is not None or chunk == b"" or time.monotonic() > deadline:
            if server.poll() is None:  # hung: it will not say more
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                err = "it did not report a display within 10 s"
            else:
                err = server.stderr.read().decode(errors="replace") if server.stderr else ""
            last = err.strip().splitlines()[-1] if err.strip() else "no output"
            raise ComputerUnavailable(
                f"the virtual display (Xvfb) did not start: {last}",
                hint="check that Xvfb runs on this machine (Xvfb -help)",
            )
        time.sleep(0.01)
    return int(text.strip())
