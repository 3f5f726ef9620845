"""Computer use: the screen into multimodal turns, mouse and keyboard out, on X11.

    mcode exec --virtual-display --allow-computer "..."     (or DISPLAY and --allow-computer)
        open_session -> open_computer(): the display, xdotool, a first capture for the size
            |
    ComputerTool (tool.py)  the `computer` tool, Anthropic's action vocabulary
        |-- capture.py      mss -> Pillow: scaled to fit 1280x800, PNG (JPEG), Geometry maps
        |                   the model's pixels back to the screen's
        |-- input.py        xdotool: clicks, drags, scrolls, typing, keys
        '-- display.py      which display; VirtualDisplay: an Xvfb of mcode's own
    screenshots -> <data dir>/screenshots/<session>/NNNNN.png, by reference in the transcript
    mcode/agent/images.py   only the newest few go into each request

``screenshot_part`` is the capture a front end attaches to a user message (``mcode exec
--screenshot``); ``attach_screenshot`` is the interactive front ends' ``/screenshot`` (the TUI,
the plain REPL) around it. Importing this package imports neither mss nor
Pillow; capturing does.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mcode.computer.display import ComputerUnavailable, VirtualDisplay, find_display

if TYPE_CHECKING:
    from mcode.computer.tool import ComputerTool
    from mcode.config import ComputerSettings
    from mcode.messages import ImagePart
    from mcode.providers.base import ModelInfo

__all__ = [
    "ComputerUnavailable",
    "VirtualDisplay",
    "attach_screenshot",
    "find_display",
    "open_computer",
    "screenshot_part",
]


def open_computer(
    settings: ComputerSettings, *, env: dict[str, str] | None = None, shots_dir: Path | None
) -> ComputerTool:
    """The ``computer`` tool for ``settings`` (its display, or ``DISPLAY``), checked usable.
    Raises ComputerUnavailable naming what is missing (display, xdotool, mss)."""
    from mcode.computer.tool import ComputerTool

    display = settings.display or find_display(os.environ)
    return ComputerTool.open(
        display,
        monitor=settings.monitor,
        env=env,
        shots_dir=shots_dir,
        settle=settings.settle_delay,
        image_format="jpeg" if settings.image_format == "jpeg" else "png",
    )


def screenshot_part(
    display: str | None = None, *, monitor: int = 1, folder: Path | None = None
) -> ImagePart:
    """A capture of ``display`` (default ``DISPLAY``) as an image part for a user message;
    with ``folder`` (the session's screenshots) kept there as ``attached-N.png`` and stored by
    reference."""
    from mcode.computer.capture import capture
    from mcode.messages import ImagePart

    shot = capture(display or find_display(os.environ), monitor=monitor)
    data = base64.b64encode(shot.data).decode("ascii")
    source = f"screenshot ({shot.geometry.size_text})"
    if folder is None:
        return ImagePart(shot.media_type, data, source=source)
    folder.mkdir(parents=True, exist_ok=True)
    n = 1 + sum(1 for p in folder.glob("attached-*"))
    path = folder / f"attached-{n}.{'png' if shot.media_type == 'image/png' else 'jpg'}"
    path.write_bytes(shot.data)
    return ImagePart(shot.media_type, data, source=source, ref=str(path))


async def attach_screenshot(
    model: ModelInfo, env: Mapping[str, str], *, monitor: int = 1, folder: Path | None
) -> ImagePart:
    """``/screenshot``: the screen the computer tool would see (``DISPLAY`` in ``env``, the one
    the settings were read from), as an image part for the next message, kept in ``folder``
    (the session's screenshots) by reference as ``mcode exec --screenshot`` keeps it. Refused
    (UsageError) for a model without image input before anything is captured; no display or
    no mss is ComputerUnavailable; an unwritable folder a MCodeError saying so."""
    from mcode.errors import MCodeError, UsageError

    if not model.supports_images:  # asked first: no capture made for nothing
        raise UsageError(
            f"the model {model.model} does not take images, so it cannot see a screenshot",
            hint="/model NAME to continue on a model with image input",
        )
    display = find_display(env)
    try:
        # In a thread: mss and the PNG encoding take a tenth of a second or more, which the
        # front end's event loop would not draw or read keys through.
        return await asyncio.to_thread(screenshot_part, display, monitor=monitor, folder=folder)
    except OSError as e:  # the screenshots folder (the capture's errors are ComputerUnavailable)
        raise MCodeError(
            f"cannot keep the screenshot in {folder}: {e.strerror}",
            hint="check that the data folder is writable (MCODE_DATA_DIR)",
        ) from None
