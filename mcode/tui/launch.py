"""``mcode [PROMPT]``: argv -> settings and store -> the app; on exit, the transcript.

The :class:`Launcher` is what the app opens sessions with: the first one, and the ones
``/clear`` (a new session), ``/resume`` and ``/model`` / ``/thinking`` / ``/mode`` (the same
session resumed with one setting changed) open later. Tests build one pointed at the scripted
model server and hand it to the app directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcode.errors import MCodeError, UsageError
from mcode.runtime.session import Session
from mcode.store import Store


@dataclass
class Launcher:
    workspace: Path
    store: Store | None
    flags: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] | None = None
    data_dir: Path | None = None
    """where the prompt history is kept (None: nowhere)"""

    def settings(self, **changes: Any) -> Any:
        from mcode.config import load_settings

        return load_settings(self.workspace, {**self.flags, **changes}, env=self.env)

    def open(
        self, *, resume_id: str | None = None, continue_last: bool = False, **changes: Any
    ) -> tuple[Session, Any]:
        """A session (new, or ``resume_id`` / the folder's latest resumed) and its settings;
        ``changes`` are settings that override the flags from now on (``/mode``)."""
        from mcode.runtime.build import open_session

        settings = self.settings(**changes)
        session = open_session(
            settings,
            self.store,
            interactive=True,
            resume_id=resume_id,
            continue_last=continue_last,
        )
        self.flags.update({k: v for k, v in changes.items() if v is not None})
        return session, settings


def main(args: argparse.Namespace) -> int:
    from mcode.config import data_home, flag_settings
    from mcode.exec_input import load_image

    workspace = Path(args.cwd or os.getcwd()).expanduser().resolve()
    try:
        if not workspace.is_dir():
            raise UsageError(f"--cwd {workspace}: no such folder")
        images = tuple(load_image(p) for p in args.image)
        store = Store(data_home() / "sessions.db")
        launcher = Launcher(workspace, store, flag_settings(args), data_dir=data_home())
        # Opened before the screen changes, so that a bad flag or id is said on the terminal.
        first = launcher.open(resume_id=args.resume, continue_last=args.continue_)
    except MCodeError as e:
        print(f"mcode: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"mcode: {e.hint}", file=sys.stderr)
        return e.exit_code
    from mcode.tui.app import McodeApp

    app = McodeApp(
        launcher,
        first=first,
        prompt=args.prompt,
        images=images,
        resumed=bool(args.resume or args.continue_),
    )
    try:
        app.run(inline=args.inline)
    finally:
        store.close()
    # Textual has left the alternate screen: this stays in the terminal's scrollback.
    transcript = app.transcript.text()
    if transcript:
        print(transcript)
    if app.session_id_shown:
        print(f"\n(session {app.session_id_shown}; `mcode --resume {app.session_id_shown}`)")
    return app.return_code or 0
