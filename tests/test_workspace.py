"""Workspace confinement and atomic writes, on the real filesystem."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mcode import atomic as atomic_mod
from mcode.atomic import atomic_write
from mcode.errors import PathEscapeError, ToolError
from mcode.tools.workspace import Workspace


@pytest.fixture()
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace ``repo`` and a sibling directory ``outside`` holding a secret."""
    repo = tmp_path / "repo"
    outside = tmp_path / "outside"
    (repo / "src").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    (repo / "src" / "a.py").write_text("a = 1\n")
    return repo, outside


def test_relative_paths_resolve_inside_root(layout: tuple[Path, Path]) -> None:
    repo, _ = layout
    ws = Workspace(repo)
    assert ws.resolve("src/a.py") == repo.resolve() / "src" / "a.py"
    assert ws.resolve("src/../src/./a.py") == repo.resolve() / "src" / "a.py"
    assert ws.resolve(".") == repo.resolve()
    assert ws.resolve(str(repo / "src")) == repo.resolve() / "src"


def test_not_yet_existing_files_resolve(layout: tuple[Path, Path]) -> None:
    repo, _ = layout
    ws = Workspace(repo)
    assert ws.resolve("new/dir/file.txt") == repo.resolve() / "new" / "dir" / "file.txt"


def test_dotdot_escape_is_refused_with_an_actionable_message(layout: tuple[Path, Path]) -> None:
    repo, _ = layout
    ws = Workspace(repo)
    with pytest.raises(PathEscapeError) as info:
        ws.resolve("../outside/secret.txt")
    message = str(info.value)
    assert "../outside/secret.txt" in message
    assert str(repo.resolve()) in message
    assert "--add-dir" in message and "allow_outside" in message
    assert isinstance(info.value, ToolError)  # goes back to the model, never ends the run


def test_absolute_path_outside_is_refused(layout: tuple[Path, Path]) -> None:
    ws = Workspace(layout[0])
    with pytest.raises(PathEscapeError, match="/etc/passwd"):
        ws.resolve("/etc/passwd")


def test_symlinked_file_pointing_outside_is_refused(layout: tuple[Path, Path]) -> None:
    repo, outside = layout
    (repo / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(PathEscapeError, match="resolves to"):
        Workspace(repo).resolve("link.txt")


def test_symlinked_dir_pointing_outside_is_refused_even_for_new_files(
    layout: tuple[Path, Path],
) -> None:
    repo, outside = layout
    (repo / "vendor").symlink_to(outside, target_is_directory=True)
    ws = Workspace(repo)
    with pytest.raises(PathEscapeError):
        ws.resolve("vendor/secret.txt")
    with pytest.raises(PathEscapeError):
        ws.resolve("vendor/not/yet/there.txt")


def test_symlink_inside_the_workspace_is_fine(layout: tuple[Path, Path]) -> None:
    repo, _ = layout
    (repo / "alias").symlink_to(repo / "src", target_is_directory=True)
    assert Workspace(repo).resolve("alias/a.py") == repo.resolve() / "src" / "a.py"


def test_extra_roots_and_allow_outside(layout: tuple[Path, Path]) -> None:
    repo, outside = layout
    (repo / "link.txt").symlink_to(outside / "secret.txt")
    secret = outside.resolve() / "secret.txt"
    extra = Workspace(repo, extra_roots=[outside])
    assert extra.resolve("../outside/secret.txt") == secret
    assert extra.resolve("link.txt") == secret
    with pytest.raises(PathEscapeError, match=str(outside.resolve())):
        extra.resolve("/etc/passwd")  # the message lists the extra roots too
    assert Workspace(repo, allow_outside=True).resolve("/etc/passwd") == Path("/etc/passwd")


def test_root_reached_through_a_symlink(tmp_path: Path, layout: tuple[Path, Path]) -> None:
    repo, _ = layout
    (tmp_path / "checkout").symlink_to(repo, target_is_directory=True)
    ws = Workspace(tmp_path / "checkout")
    assert ws.root == repo.resolve()
    assert ws.resolve("src/a.py") == repo.resolve() / "src" / "a.py"


def test_relative_for_display(layout: tuple[Path, Path]) -> None:
    repo, outside = layout
    ws = Workspace(repo, extra_roots=[outside])
    assert ws.relative(repo.resolve()) == "."
    assert ws.relative(repo.resolve() / "src" / "a.py") == "src/a.py"
    assert ws.relative(outside.resolve() / "secret.txt") == str(outside.resolve() / "secret.txt")


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if "mcode-tmp" in p.name]


def test_atomic_write_creates_with_umask_mode(tmp_path: Path) -> None:
    target = tmp_path / "new.txt"
    old_umask = os.umask(0o022)
    try:
        atomic_write(target, b"hello\n")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"hello\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", [0o600, 0o755, 0o640])
def test_atomic_write_keeps_permission_bits(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "script.sh"
    target.write_text("old\n")
    target.chmod(mode)
    atomic_write(target, b"new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert _leftovers(tmp_path) == []


def test_atomic_write_failure_leaves_the_original_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("original\n")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_mod.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, b"half-written")
    assert target.read_text() == "original\n"
    assert _leftovers(tmp_path) == []


def test_atomic_write_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write(link, b"new\n")
    assert link.is_symlink()
    assert real.read_text() == "new\n"


def test_the_sweep_removes_only_temp_files_of_writers_that_are_gone(tmp_path: Path) -> None:
    # A kill inside a write leaves `.NAME.<pid>-<hex>.mcode-tmp`; a resumed run sweeps the
    # ones whose writer is dead, never a live writer's, another file's or a stranger's name.
    import subprocess
    import sys

    target = tmp_path / "notes.txt"
    target.write_text("old\n")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "stale": f".notes.txt.{dead.stdout.strip()}-0a1b2c3d.mcode-tmp",
            "live": f".notes.txt.{live.pid}-0a1b2c3d.mcode-tmp",
            "other file": f".other.txt.{dead.stdout.strip()}-0a1b2c3d.mcode-tmp",
            "no pid": ".notes.txt.0a1b2c3d.mcode-tmp",
        }
        for name in names.values():
            (tmp_path / name).write_text("half")
        removed = atomic_mod.sweep_temp_files(target)
    finally:
        live.kill()
        live.wait()
    assert [p.name for p in removed] == [names["stale"]]
    assert sorted(_leftovers(tmp_path)) == sorted(n for k, n in names.items() if k != "stale")
    assert target.read_text() == "old\n"
