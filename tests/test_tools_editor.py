"""The file tools with an editor holding the files (ToolContext.read_override / apply_edit, the
seam ``mcode lsp`` fills): buffers are read, edits reach the editor before the disk, and a
refused edit changes nothing. In-process, with a dict standing in for the editor's buffers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mcode.errors import MCodeError, ToolError
from mcode.tools.base import Tool, ToolContext, ToolResult, validate_arguments
from mcode.tools.files import EditTool, ReadTool, WriteTool
from mcode.tools.workspace import Workspace


class FakeEditor:
    """Buffers by path; ``refuse`` makes every edit fail as an editor's refusal would."""

    def __init__(self) -> None:
        self.buffers: dict[Path, str] = {}
        self.applied: list[tuple[Path, bytes | None, bytes]] = []
        self.checkpoints: list[tuple[Path, bytes | None, bytes | None]] = []
        self.refuse = False

    def read(self, path: Path) -> bytes | None:
        text = self.buffers.get(path)
        return None if text is None else text.encode()

    def apply(self, path: Path, before: bytes | None, after: bytes) -> None:
        if self.refuse:
            raise MCodeError("the editor refused the edit (version mismatch)")
        self.applied.append((path, before, after))
        if path in self.buffers:
            self.buffers[path] = after.decode()

    def checkpoint(
        self, path: Path, before: bytes | None, mode: int | None, after: bytes | None
    ) -> int:
        self.checkpoints.append((path, before, after))
        return len(self.checkpoints)


def call(tool: Tool, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    validate_arguments(tool, args)
    return asyncio.run(tool.run(args, ctx))


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, FakeEditor, ToolContext]:
    repo = tmp_path / "repo"
    repo.mkdir()
    editor = FakeEditor()
    ctx = ToolContext(workspace=Workspace(repo), checkpoint=editor.checkpoint)
    ctx.read_override, ctx.apply_edit = editor.read, editor.apply
    return repo.resolve(), editor, ctx


def test_an_open_buffer_is_read_and_edited_instead_of_the_disk(setup: Any) -> None:
    repo, editor, ctx = setup
    path = repo / "a.py"
    path.write_text("x = 1\n")
    editor.buffers[path] = "x = 2  # unsaved\n"
    assert "x = 2  # unsaved" in call(ReadTool(), {"path": "a.py"}, ctx).content
    result = call(EditTool(), {"path": "a.py", "old_string": "x = 2", "new_string": "x = 3"}, ctx)
    assert not result.is_error, result.content
    assert editor.applied == [(path, b"x = 2  # unsaved\n", b"x = 3  # unsaved\n")]
    assert editor.buffers[path] == "x = 3  # unsaved\n"
    assert path.read_text() == "x = 3  # unsaved\n"  # written through, the same bytes
    # The before-image kept for undo is what the editor showed before the edit.
    assert editor.checkpoints == [(path, b"x = 2  # unsaved\n", b"x = 3  # unsaved\n")]


def test_an_edit_the_editor_refuses_writes_nothing(setup: Any) -> None:
    repo, editor, ctx = setup
    path = repo / "a.py"
    path.write_text("x = 1\n")
    editor.buffers[path] = "x = 1\n"
    call(ReadTool(), {"path": "a.py"}, ctx)
    editor.refuse = True
    with pytest.raises(ToolError) as info:
        asyncio.run(
            EditTool().run({"path": "a.py", "old_string": "x = 1", "new_string": "x = 9"}, ctx)
        )
    assert "the editor did not take the edit" in str(info.value)
    assert path.read_text() == "x = 1\n"
    # The checkpoint was pointed back at the unchanged file, so undo does not see a change.
    assert editor.checkpoints[-1] == (path, b"x = 1\n", b"x = 1\n")


def test_a_buffer_typed_in_since_the_read_is_not_overwritten(setup: Any) -> None:
    repo, editor, ctx = setup
    path = repo / "a.py"
    path.write_text("x = 1\n")
    editor.buffers[path] = "x = 1\n"
    call(ReadTool(), {"path": "a.py"}, ctx)
    editor.buffers[path] = "x = 1\ny = 2\n"  # the user typed after the agent read it
    with pytest.raises(ToolError) as info:
        call(EditTool(), {"path": "a.py", "old_string": "x = 1", "new_string": "x = 9"}, ctx)
    assert "a.py changed in the editor since it was last read" in str(info.value)
    assert editor.applied == []
    assert path.read_text() == "x = 1\n"


def test_a_file_not_open_in_the_editor_is_still_edited_through_it(setup: Any) -> None:
    repo, editor, ctx = setup
    path = repo / "b.py"
    path.write_text("a = 1\n")
    call(ReadTool(), {"path": "b.py"}, ctx)
    call(WriteTool(), {"path": "b.py", "content": "a = 2\n"}, ctx)
    call(WriteTool(), {"path": "new.py", "content": "n = 1\n"}, ctx)
    assert editor.applied == [(path, b"a = 1\n", b"a = 2\n"), (repo / "new.py", None, b"n = 1\n")]
    assert path.read_text() == "a = 2\n" and (repo / "new.py").read_text() == "n = 1\n"
