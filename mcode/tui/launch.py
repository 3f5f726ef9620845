"""``mcode [PROMPT]``: argv -> settings -> the app, whose first frame comes before the session;
on exit, the transcript.

What is cheap to check is checked before the screen changes, so that it is said on the
terminal with a non-zero exit: the flags, the settings (config files, trust), ``--image``
files and a ``--resume`` / ``--continue`` id (a query of the store). The rest, importing the
runtime (tools, sandbox, provider) and opening the store and the first session, is what the
user would stare at a blank terminal for (~300 ms here): the app draws its first frame first
and opens the session behind it (``McodeApp(opening=...)``).

The :class:`Launcher` is what the app opens sessions with: the first one, and the ones
``/clear`` (a new session), ``/resume`` and ``/model`` / ``/thinking`` / ``/mode`` (the same
session resumed with one setting changed) open later. Tests build one pointed at the scripted
model server and hand it to the app directly.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcode.errors import MCodeError, UsageError

if TYPE_CHECKING:
    from mcode.messages import ImagePart
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
    store_path: Path | None = None
    """the store opened by the first :meth:`open`, when ``store`` is None (``mcode``: its
    import and opening come after the first frame)"""
    checked: Any = None
    """settings :meth:`check` loaded on the terminal: the first :meth:`open` takes them rather
    than reading the config files again"""

    def settings(self, **changes: Any) -> Any:
        from mcode.config import load_settings

        return load_settings(self.workspace, {**self.flags, **changes}, env=self.env)

    def check(self) -> None:
        """Load the settings now, so that a bad flag value, config line or untrusted widening
        is a MCodeError before the screen changes."""
        self.checked = self.settings()

    def open(
        self, *, resume_id: str | None = None, continue_last: bool = False, **changes: Any
    ) -> tuple[Session, Any]:
        """A session (new, or ``resume_id`` / the folder's latest resumed) and its settings;
        ``changes`` are settings that override the flags from now on (``/mode``)."""
        from mcode.runtime.build import open_session

        settings, self.checked = self.checked, None
        if settings is None or changes:
            settings = self.settings(**changes)
        if self.store is None and self.store_path is not None:
            from mcode.store import Store

            self.store = Store(self.store_path)
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

    workspace = Path(args.cwd or os.getcwd()).expanduser().resolve()
    launcher = Launcher(workspace, None, data_dir=data_home())
    resume_id: str | None = None
    try:
        if not workspace.is_dir():
            raise UsageError(f"--cwd {workspace}: no such folder")
        images: tuple[ImagePart, ...] = ()
        if args.image:
            from mcode.exec_input import load_image

            images = tuple(load_image(p) for p in args.image)
        launcher.flags = flag_settings(args)
        launcher.check()  # a bad flag value, config line or untrusted widening: said here
        if args.resume or args.continue_:
            from mcode.store import Store, resume_target

            launcher.store = Store(data_home() / "sessions.db")
            resume_id = resume_target(
                launcher.store, str(workspace), args.resume, args.continue_
            ).id
        else:
            launcher.store_path = data_home() / "sessions.db"
    except MCodeError as e:
        if launcher.store is not None:
            launcher.store.close()
        print(f"mcode: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"mcode: {e.hint}", file=sys.stderr)
        return e.exit_code
    from mcode.tui.app import McodeApp

    app = McodeApp(
        launcher,
        opening={"resume_id": resume_id},
        prompt=args.prompt,
        images=images,
        resumed=resume_id is not None,
    )

    def on_sigint(signum: int, frame: Any) -> None:
        # In the app Ctrl-C is a key (the terminal is raw); it is a signal only before the app
        # has the terminal and once it has let go. Before: quit as ever. Once the app is
        # leaving, more presses (a hammered Ctrl-C) must not kill mcode mid-exit: the
        # transcript still has to be printed. A handler, not SIG_IGN, which children inherit.
        if app.return_code is None:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        app.run(inline=args.inline)
    finally:
        # Ignored from here to the end (a handler is put back to the default as Python shuts
        # down, and a press then would still kill it); nothing is started after the app.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if launcher.store is not None:
            launcher.store.close()
    # Textual has left the alternate screen: this stays in the terminal's scrollback.
    transcript = app.transcript.text()
    if transcript:
        print(transcript)
    if app.session_id_shown:
        print(f"\n(session {app.session_id_shown}; `mcode --resume {app.session_id_shown}`)")
    return app.return_code or 0
