"""Hot reload: watchdog watches the plugins' folders, the config files, the project's
``.claude/`` and ``.mcode/`` and its AGENTS.md, and the session reads them again when they
change (``plugins.reloaded``), without a restart.

    watchdog thread --(changed paths, 0.3 s quiet)--> the session's loop: PluginHost.reload
                                                      and, for AGENTS.md, the system prompt

Commands' bodies and skills' files are read at each use anyway; what a reload adds is new and
removed files, front matter, hooks and AGENTS.md. The watcher only runs while a session with a
plugin host is open; a session with nothing configured starts none (and imports no watchdog).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcode.plugin_host.host import PluginHost

QUIET = 0.3  # seconds without a change before the batch is reloaded
# Files whose change matters (in the watched folders, any .md, .json or .toml counts).
_SUFFIXES = (".md", ".json", ".toml")


class Watcher:
    def __init__(self, host: PluginHost, loop: asyncio.AbstractEventLoop) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        self.host = host
        self.loop = loop
        self._changed: set[str] = set()
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory or event.event_type in ("opened", "closed_no_write"):
                    return
                for raw in (event.src_path, getattr(event, "dest_path", "")):
                    path = raw.decode() if isinstance(raw, bytes) else str(raw)
                    if path and path.endswith(_SUFFIXES):
                        watcher._note(path)

        self.observer = Observer()
        handler = Handler()
        for folder, recursive in self._targets():
            with contextlib.suppress(OSError):
                self.observer.schedule(handler, str(folder), recursive=recursive)
        self.observer.daemon = True
        self.observer.start()

    def _targets(self) -> list[tuple[Path, bool]]:
        host = self.host
        targets: list[tuple[Path, bool]] = [(host.workspace, False)]  # AGENTS.md, .mcp.json
        for folder in (host.config_dir, host.workspace / ".mcode", host.workspace / ".claude"):
            if folder.is_dir():
                targets.append((folder, True))
        for plugin in host.contents.discovered.plugins:
            if plugin.source != "bundled" and plugin.root.is_dir():
                targets.append((plugin.root, True))
        seen: list[tuple[Path, bool]] = []
        for folder, recursive in targets:
            covered = any(r and (folder == f or f in folder.parents) for f, r in seen)
            if not covered:
                seen.append((folder, recursive))
        return seen

    def _note(self, path: str) -> None:
        with self._lock:
            self._changed.add(path)
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(QUIET, self._flush)
            self._timer.daemon = True
            self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            paths, self._changed = sorted(self._changed), set()
            self._timer = None
        if paths and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.host.reload, paths)

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self.observer.stop()
        self.observer.join(2)


def start_watcher(host: PluginHost) -> Any:
    """A running watcher for ``host``, or None (watchdog not installed, or no loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    try:
        return Watcher(host, loop)
    except ImportError:
        return None
