"""A pasted file path read as an image to attach: what a terminal pastes when a file is dropped
on it, or a path copied from a file manager.

    '/home/me/Shot 1.png'             quoted (GNOME Terminal, Konsole)
    /home/me/Shot\\ 1.png              backslash-escaped (iTerm2, kitty, macOS Terminal)
    file:///home/me/Shot%201.png      a URL (some file managers copy one)
    shots/now.png                     relative: to the workspace
        |
    pasted_image_path()   the one path, if the whole paste is it and it names an image file
        |
    the prompt posts PastedImage instead of inserting the text; the app loads and attaches it

Anything else pastes as text: several lines, a sentence that mentions a path, a path to a
file that is missing or whose name is not an image's (a .txt dropped on the prompt is wanted
as its path, for the model to read).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["pasted_image_path"]


def pasted_image_path(text: str, workspace: Path) -> Path | None:
    """The image file ``text`` (stripped) is the path of, resolved against ``workspace``;
    None when it is not exactly one path to an existing file with an image suffix."""
    # Imported here: the prompt imports this module at start-up, and a paste is rare.
    from mcode.exec_input import IMAGE_SUFFIXES

    text = text.strip()
    if not text or "\n" in text or "\r" in text:
        return None
    for candidate in _readings(text):
        if not candidate.lower().endswith(IMAGE_SUFFIXES):
            continue
        path = workspace / os.path.expanduser(candidate)
        if path.is_file():
            return path.resolve()
    return None


def _readings(text: str) -> list[str]:
    """What the pasted ``text`` may mean as one path, the most literal reading first: a file
    whose name really has a quote or a backslash in it is found as it was pasted."""
    import shlex
    from urllib.parse import unquote, urlparse

    readings = [text]
    try:
        words = shlex.split(text)  # quotes and backslash escapes, as a shell reads them
    except ValueError:  # an unclosed quote: not a quoted path
        words = []
    if len(words) == 1 and words[0] != text:
        readings.append(words[0])
    paths = []
    for reading in readings:
        if reading.startswith("file://"):
            url = urlparse(reading)
            if url.netloc not in ("", "localhost"):
                continue  # another host's file is not on this disk
            reading = unquote(url.path)
        paths.append(reading)
    return paths
