"""Fixtures for the computer tests: an Xvfb with the Tk app of tests/computer_app.py in it.

Skipped, with the reason, where Xvfb, xdotool or Debian's python3-tk are missing (CI installs
them: .ci/run)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcode.computer.display import VirtualDisplay

APP = Path(__file__).with_name("computer_app.py")
TK_PYTHON = "/usr/bin/python3"  # python3-tk belongs to Debian's Python, not the one running mcode
# Screen pixels of the app's parts (tests/computer_app.py).
RED = (40, 40, 120, 120)
BLUE = (160, 40, 240, 120)
ENTRY_CENTRE = (190, 220)
BUTTON_CENTRE = (120, 325)


def missing() -> str | None:
    for program, package in (("Xvfb", "xvfb"), ("xdotool", "xdotool")):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install {package})"
    probe = subprocess.run([TK_PYTHON, "-c", "import tkinter"], capture_output=True)
    if probe.returncode != 0:
        return f"{TK_PYTHON} has no tkinter (apt-get install python3-tk)"
    return None


needs_x = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@dataclass
class App:
    """The app on its display: ``out`` gets the entry's text when Save is clicked."""

    display: VirtualDisplay
    out: Path
    size: tuple[int, int]

    @property
    def name(self) -> str:
        return self.display.name

    def saved(self, timeout: float = 10.0) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.out.exists():
                return self.out.read_text(encoding="utf-8")
            time.sleep(0.05)
        return None


def app_command(out: Path, ready: Path) -> str:
    return f"{TK_PYTHON} {APP} {out} {ready}"


def wait_ready(ready: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert time.monotonic() < deadline, "the Tk app did not come up"
        time.sleep(0.05)


def x_apps(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """The fixture ``x_app = pytest.fixture(x_apps)``: ``x_app((w, h))`` is an Xvfb of that
    size running the app, stopped after the test."""
    started: list[VirtualDisplay] = []

    def start(size: tuple[int, int] = (1024, 768)) -> App:
        out, ready = tmp_path / f"out-{len(started)}.txt", tmp_path / f"ready-{len(started)}"
        display = VirtualDisplay(size, app=app_command(out, ready)).start()
        started.append(display)
        wait_ready(ready)
        return App(display, out, size)

    yield start
    for display in started:
        display.stop()


def scaled(
    point: tuple[int, int], size: tuple[int, int], shown: tuple[int, int]
) -> tuple[int, int]:
    """A screen point in the pixels of an image of the screen shown at ``shown``."""
    return point[0] * shown[0] // size[0], point[1] * shown[1] // size[1]
