"""The workspace: which paths tools may touch.

Every path a model names goes through :meth:`Workspace.resolve`, which makes it absolute,
resolves ``..`` and symlinks, and refuses a result that lies outside the workspace root and the
extra roots (``--add-dir``) unless the user allowed everything (``allow_outside``). Because
symlinks are resolved *before* the check, a link inside the workspace that points outside is
refused as well. Writes go through :func:`mcode.atomic.atomic_write`, so a crash or a full
disk never leaves a half-written file behind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mcode.errors import PathEscapeError


class Workspace:
    """The root a session works in, plus any extra roots the user added.

    ``root`` and ``extra_roots`` are resolved once at construction (so a symlinked checkout
    works); ``allow_outside=True`` turns confinement off entirely.
    """

    def __init__(
        self,
        root: Path,
        extra_roots: Sequence[Path] = (),
        allow_outside: bool = False,
    ) -> None:
        self.root = Path(root).expanduser().resolve(strict=False)
        self.extra_roots = [Path(p).expanduser().resolve(strict=False) for p in extra_roots]
        self.allow_outside = allow_outside

    @property
    def roots(self) -> list[Path]:
        """The root first, then the extra roots."""
        return [self.root, *self.extra_roots]

    def __repr__(self) -> str:
        return (
            f"Workspace(root={str(self.root)!r}, "
            f"extra_roots={[str(p) for p in self.extra_roots]!r}, "
            f"allow_outside={self.allow_outside!r})"
        )

    def contains(self, path: Path) -> bool:
        """Whether an already-resolved absolute path lies inside one of the allowed roots."""
        return any(path == r or path.is_relative_to(r) for r in self.roots)

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """Turn a path from the model into an absolute, symlink-free path inside the workspace.

        Relative paths are taken from the root; ``~`` is expanded; the file need not exist
        (the existing part of the parent chain is resolved, the rest is kept as written).
        Raises :class:`PathEscapeError` if the result is outside every allowed root.
        """
        text = os.fspath(path)
        if "\x00" in text:
            raise PathEscapeError(f"path {text!r} contains a NUL byte", hint="send a plain path")
        raw = Path(text).expanduser() if text.startswith("~") else Path(text)
        if not raw.is_absolute():
            raw = self.root / raw
        resolved = raw.resolve(strict=False)
        if self.allow_outside or self.contains(resolved):
            return resolved
        where = str(self.root)
        if self.extra_roots:
            where += " (or " + ", ".join(str(p) for p in self.extra_roots) + ")"
        shown = text if str(resolved) == text else f"{text} (resolves to {resolved})"
        raise PathEscapeError(
            f"path {shown} is outside the workspace {where}",
            hint="use a path inside the workspace; the user can allow more with --add-dir DIR "
            "or allow_outside = true in the config",
        )

    def relative(self, path: str | os.PathLike[str]) -> str:
        """A short form for display: relative to the root when inside it (``"."`` for the root
        itself), else the absolute path."""
        p = Path(path)
        if not p.is_absolute():
            p = self.root / p
        try:
            rel = p.relative_to(self.root)
        except ValueError:
            return str(p)
        return rel.as_posix() or "."
