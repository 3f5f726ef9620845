"""The edit mcode lsp sends for a change (lsp/editor.py): the changed lines only, positions in
the editor's units (UTF-16 by default), applied by an independent applier to check them."""

from __future__ import annotations

import pytest
from lsp_client import apply_text_edit
from mcode.lsp.editor import offset_of, position, text_edit

CASES = [
    ("one line changed", "a = 1\nb = 2\nc = 3\n", "a = 1\nb = 20\nc = 3\n"),
    ("a line added at the end, no final newline", "a = 1\nb = 2", "a = 1\nb = 2\nc = 3"),
    ("everything replaced", "old\n", "new text\nmore\n"),
    ("emptied", "x\ny\n", ""),
    ("from empty", "", "x = 1\n"),
    ("astral characters before the change", "s = '😀😀'; t = 1\n", "s = '😀😀'; t = 2\n"),
    ("CRLF lines", "a = 1\r\nb = 2\r\n", "a = 1\r\nb = 3\r\n"),
]


@pytest.mark.parametrize(("old", "new"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_edit_turns_the_old_text_into_the_new(old: str, new: str) -> None:
    edit = text_edit(old, new)
    assert edit is not None
    assert apply_text_edit(old, edit) == new
    assert edit.range.start.character == 0  # whole lines, from a line's start


def test_one_changed_line_is_one_edit_of_that_line() -> None:
    edit = text_edit("a = 1\nb = 2\nc = 3\n", "a = 1\nb = 20\nc = 3\n")
    assert edit is not None
    assert (edit.range.start.line, edit.range.end.line, edit.range.end.character) == (1, 1, 5)
    assert edit.new_text == "b = 20"


def test_no_change_is_no_edit() -> None:
    assert text_edit("same\n", "same\n") is None


def test_columns_count_in_the_negotiated_encoding() -> None:
    text = "s = '😀'; t = 1"
    at = text.index("t")
    assert position(text, at, "utf-16").character == at + 1  # the emoji is two UTF-16 units
    assert position(text, at, "utf-8").character == at + 3  # and four UTF-8 bytes
    assert position(text, at, "utf-32").character == at
    for encoding in ("utf-16", "utf-8", "utf-32"):
        assert offset_of(text, position(text, at, encoding), encoding) == at
