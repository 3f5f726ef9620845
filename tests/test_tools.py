"""The built-in tools against a real filesystem, real bash and (when installed) real ripgrep."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from mcode.errors import PathEscapeError, ToolError
from mcode.tools import READ_ONLY_SAFE, default_tools
from mcode.tools import files as files_mod
from mcode.tools import search as search_mod
from mcode.tools.base import Tool, ToolContext, ToolResult, validate_arguments
from mcode.tools.bash import BashTool
from mcode.tools.files import EditTool, ReadTool, WriteTool
from mcode.tools.search import GlobTool, GrepTool, LsTool
from mcode.tools.todo import TodoTool
from mcode.tools.workspace import Workspace


def call(tool: Tool, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    """Validate the arguments against the tool's schema, as the agent loop does, then run."""
    validate_arguments(tool, args)
    return asyncio.run(tool.run(args, ctx))


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    return root


@pytest.fixture()
def ctx(repo: Path) -> ToolContext:
    return ToolContext(workspace=Workspace(repo))


def make_old(path: Path, seconds: float = 10.0) -> None:
    """Backdate a file so its stamp is trusted by stat alone (not 'racy')."""
    t = time.time() - seconds
    os.utime(path, (t, t))


# ---- read -------------------------------------------------------------------------------


def test_read_numbers_lines_like_cat_n_and_records_a_stamp(repo: Path, ctx: ToolContext) -> None:
    (repo / "a.py").write_text("one\ntwo\n")
    result = call(ReadTool(), {"path": "a.py"}, ctx)
    assert result.content == "     1\tone\n     2\ttwo"
    stamp = ctx.file_stamps[str(repo.resolve() / "a.py")]
    assert stamp.sha256 == hashlib.sha256(b"one\ntwo\n").hexdigest()
    assert stamp.size == 8


def test_read_says_when_a_file_is_not_utf8_and_edit_refuses_it(
    repo: Path, ctx: ToolContext
) -> None:
    (repo / "latin1.txt").write_bytes("café = 1\n".encode("latin-1"))
    result = call(ReadTool(), {"path": "latin1.txt"}, ctx)
    assert "not valid UTF-8" in result.content and "caf\ufffd = 1" in result.content
    with pytest.raises(ToolError, match="not valid UTF-8"):
        call(EditTool(), {"path": "latin1.txt", "old_string": "1", "new_string": "2"}, ctx)
    assert (repo / "latin1.txt").read_bytes() == "café = 1\n".encode("latin-1")


def test_read_range_says_what_remains_and_how_to_continue(repo: Path, ctx: ToolContext) -> None:
    (repo / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    result = call(ReadTool(), {"path": "a.txt", "offset": 3, "limit": 2}, ctx)
    lines = result.content.split("\n")
    assert lines[:2] == ["     3\tline 3", "     4\tline 4"]
    assert "6 more" in lines[2] and "offset=5" in lines[2]


def test_read_default_limit_is_2000_lines(repo: Path, ctx: ToolContext) -> None:
    (repo / "big.txt").write_text("x\n" * 2005)
    result = call(ReadTool(), {"path": "big.txt"}, ctx)
    assert result.content.count("\tx") == 2000
    assert "offset=2001" in result.content


def test_read_cuts_long_lines(repo: Path, ctx: ToolContext) -> None:
    (repo / "min.js").write_text("a" * 2500 + "\n")
    content = call(ReadTool(), {"path": "min.js"}, ctx).content
    assert "a" * 2000 + "… [line cut: 2500 characters]" in content
    assert "a" * 2001 not in content


def test_read_stops_at_the_output_cap_on_a_line_boundary(repo: Path, ctx: ToolContext) -> None:
    (repo / "a.txt").write_text("".join(f"{i:04}\n" for i in range(100)))
    ctx.output_cap = 100
    content = call(ReadTool(), {"path": "a.txt"}, ctx).content
    shown = [line for line in content.split("\n") if "\t" in line]
    assert len(shown) == 8  # 12 characters a line
    assert f"offset={len(shown) + 1}" in content


def test_read_refuses_directories_binaries_and_missing_files(repo: Path, ctx: ToolContext) -> None:
    (repo / "src").mkdir()
    (repo / "blob.bin").write_bytes(b"\x00\x01\x02text")
    with pytest.raises(ToolError, match="directory") as info:
        call(ReadTool(), {"path": "src"}, ctx)
    assert "ls" in info.value.hint
    with pytest.raises(ToolError, match="binary"):
        call(ReadTool(), {"path": "blob.bin"}, ctx)
    with pytest.raises(ToolError, match="not found"):
        call(ReadTool(), {"path": "nope.py"}, ctx)
    with pytest.raises(PathEscapeError):
        call(ReadTool(), {"path": "/etc/passwd"}, ctx)
    os.mkfifo(repo / "pipe")  # reading it would block for ever
    with pytest.raises(ToolError, match="not a regular file"):
        call(ReadTool(), {"path": "pipe"}, ctx)
    assert call(GrepTool(use_rg=False), {"pattern": "text"}, ctx).content == "no matches"


def test_read_offset_past_the_end(repo: Path, ctx: ToolContext) -> None:
    (repo / "a.txt").write_text("a\nb\n")
    with pytest.raises(ToolError, match="has 2 lines"):
        call(ReadTool(), {"path": "a.txt", "offset": 5}, ctx)


def test_read_image_becomes_an_image_part(repo: Path, ctx: ToolContext) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 20
    (repo / "shot.png").write_bytes(png)
    result = call(ReadTool(), {"path": "shot.png"}, ctx)
    assert len(result.images) == 1
    assert result.images[0].media_type == "image/png"
    assert base64.b64decode(result.images[0].data) == png
    assert "shot.png" in result.content


# ---- write ------------------------------------------------------------------------------


def test_write_creates_new_files_and_parent_dirs(repo: Path, ctx: ToolContext) -> None:
    result = call(WriteTool(), {"path": "pkg/sub/mod.py", "content": "x = 1\n"}, ctx)
    assert (repo / "pkg/sub/mod.py").read_text() == "x = 1\n"
    assert result.changed_files == ["pkg/sub/mod.py"]
    assert "created" in result.summary
    assert not [p for p in (repo / "pkg/sub").iterdir() if "tmp" in p.name]


def test_write_reports_what_it_wrote_so_a_truncated_argument_shows(
    repo: Path, ctx: ToolContext
) -> None:
    result = call(WriteTool(), {"path": "t.py", "content": "a = 1\nb = '</par'\n\n"}, ctx)
    assert "(3 lines, 19 bytes; last line: \"b = '</par'\")" in result.content


def test_write_over_an_unread_file_is_refused(repo: Path, ctx: ToolContext) -> None:
    (repo / "a.py").write_text("precious\n")
    with pytest.raises(ToolError, match="has not been read"):
        call(WriteTool(), {"path": "a.py", "content": "clobbered\n"}, ctx)
    assert (repo / "a.py").read_text() == "precious\n"


def test_write_after_read_then_again_without_rereading(repo: Path, ctx: ToolContext) -> None:
    (repo / "a.py").write_text("v1\n")
    call(ReadTool(), {"path": "a.py"}, ctx)
    call(WriteTool(), {"path": "a.py", "content": "v2\n"}, ctx)
    call(WriteTool(), {"path": "a.py", "content": "v3\n"}, ctx)  # its own write is known
    assert (repo / "a.py").read_text() == "v3\n"


def test_write_refuses_a_file_changed_since_it_was_read(repo: Path, ctx: ToolContext) -> None:
    (repo / "a.py").write_text("v1\n")
    call(ReadTool(), {"path": "a.py"}, ctx)
    (repo / "a.py").write_text("user\n")
    with pytest.raises(ToolError, match="changed on disk"):
        call(WriteTool(), {"path": "a.py", "content": "v2\n"}, ctx)
    assert (repo / "a.py").read_text() == "user\n"


# ---- edit -------------------------------------------------------------------------------


def read_first(repo: Path, ctx: ToolContext, name: str, text: str) -> Path:
    path = repo / name
    path.write_text(text)
    call(ReadTool(), {"path": name}, ctx)
    return path


def test_edit_replaces_a_unique_match_and_reports_a_diff(repo: Path, ctx: ToolContext) -> None:
    path = read_first(repo, ctx, "a.py", "def f():\n    return 1\n")
    result = call(
        EditTool(),
        {"path": "a.py", "old_string": "return 1", "new_string": "x = 2\n    return x"},
        ctx,
    )
    assert path.read_text() == "def f():\n    x = 2\n    return x\n"
    assert result.summary == "edited a.py (+2 \u22121)"
    assert "-    return 1" in result.content and "+    x = 2" in result.content
    assert result.changed_files == ["a.py"]
    # The edit's own write is known, so a second edit needs no new read.
    call(EditTool(), {"path": "a.py", "old_string": "x = 2", "new_string": "x = 3"}, ctx)
    assert "x = 3" in path.read_text()


def test_edit_ambiguous_match_asks_for_context_or_replace_all(repo: Path, ctx: ToolContext) -> None:
    path = read_first(repo, ctx, "a.py", "x = 1\ny = 2\nx = 1\nx = 1\n")
    with pytest.raises(ToolError, match="3 times") as info:
        call(EditTool(), {"path": "a.py", "old_string": "x = 1", "new_string": "x = 9"}, ctx)
    assert "lines 1, 3, 4" in str(info.value)
    assert "replace_all" in info.value.hint
    assert path.read_text() == "x = 1\ny = 2\nx = 1\nx = 1\n"
    args = {"path": "a.py", "old_string": "x = 1", "new_string": "x = 9", "replace_all": True}
    result = call(EditTool(), args, ctx)
    assert path.read_text() == "x = 9\ny = 2\nx = 9\nx = 9\n"
    assert "3 replacements" in result.summary


def test_edit_requires_a_read_first(repo: Path, ctx: ToolContext) -> None:
    (repo / "a.py").write_text("a\n")
    with pytest.raises(ToolError, match="has not been read"):
        call(EditTool(), {"path": "a.py", "old_string": "a", "new_string": "b"}, ctx)
    assert (repo / "a.py").read_text() == "a\n"


def test_edit_refuses_a_file_changed_on_disk_since_read(repo: Path, ctx: ToolContext) -> None:
    # Same size, straight after the read: mtime and size may both be unchanged, so only the
    # hash can tell.
    path = read_first(repo, ctx, "a.py", "hello\n")
    path.write_text("HELLO\n")
    with pytest.raises(ToolError, match="changed on disk"):
        call(EditTool(), {"path": "a.py", "old_string": "HELLO", "new_string": "bye"}, ctx)
    assert path.read_text() == "HELLO\n"


def test_edit_refuses_an_old_file_changed_since_read(repo: Path, ctx: ToolContext) -> None:
    path = repo / "a.py"
    path.write_text("hello\n")
    make_old(path)
    call(ReadTool(), {"path": "a.py"}, ctx)
    path.write_text("hello world\n")
    with pytest.raises(ToolError, match="changed on disk"):
        call(EditTool(), {"path": "a.py", "old_string": "hello", "new_string": "bye"}, ctx)
    assert path.read_text() == "hello world\n"


def test_edit_accepts_a_touched_but_unchanged_file(repo: Path, ctx: ToolContext) -> None:
    path = read_first(repo, ctx, "a.py", "hello\n")
    make_old(path, 100)  # mtime differs from the stamp; the hash still matches
    call(EditTool(), {"path": "a.py", "old_string": "hello", "new_string": "bye"}, ctx)
    assert path.read_text() == "bye\n"


def test_edit_notices_a_change_made_while_it_works(
    repo: Path, ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = read_first(repo, ctx, "a.py", "hello\n")
    real = files_mod.read_bytes
    calls = []

    def read_then_someone_writes(p: Path) -> Any:
        result = real(p)
        if not calls:
            path.write_text("HELLO\n")  # lands between the edit's read and its write
        calls.append(p)
        return result

    monkeypatch.setattr(files_mod, "read_bytes", read_then_someone_writes)
    with pytest.raises(ToolError, match="while it was being edited"):
        call(EditTool(), {"path": "a.py", "old_string": "hello", "new_string": "bye"}, ctx)
    assert path.read_text() == "HELLO\n"


def test_edit_rejects_no_op_and_empty_old_string(repo: Path, ctx: ToolContext) -> None:
    read_first(repo, ctx, "a.py", "a\n")
    with pytest.raises(ToolError, match="the same"):
        call(EditTool(), {"path": "a.py", "old_string": "a", "new_string": "a"}, ctx)
    with pytest.raises(ToolError, match="empty"):
        call(EditTool(), {"path": "a.py", "old_string": "", "new_string": "b"}, ctx)


def test_edit_no_match_hints(repo: Path, ctx: ToolContext) -> None:
    read_first(repo, ctx, "a.py", "def f():\n\treturn compute(1)\n")
    with pytest.raises(ToolError) as info:
        call(
            EditTool(),
            {"path": "a.py", "old_string": "    return compute(1)", "new_string": "x"},
            ctx,
        )
    assert "not found" in str(info.value) and "whitespace" in info.value.hint
    assert "line 2" in info.value.hint
    with pytest.raises(ToolError) as info:
        call(
            EditTool(),
            {"path": "a.py", "old_string": "     2\treturn compute(1)", "new_string": "x"},
            ctx,
        )
    assert "line number" in info.value.hint
    with pytest.raises(ToolError) as info:
        call(
            EditTool(),
            {"path": "a.py", "old_string": "return compute(2, 3)", "new_string": "x"},
            ctx,
        )
    assert "closest line is 2" in info.value.hint


def test_edit_keeps_crlf_line_endings(repo: Path, ctx: ToolContext) -> None:
    path = repo / "win.txt"
    path.write_bytes(b"one\r\ntwo\r\nthree\r\n")
    call(ReadTool(), {"path": "win.txt"}, ctx)
    call(EditTool(), {"path": "win.txt", "old_string": "one\ntwo", "new_string": "1\n2"}, ctx)
    assert path.read_bytes() == b"1\r\n2\r\nthree\r\n"


def test_edit_keeps_file_mode(repo: Path, ctx: ToolContext) -> None:
    path = read_first(repo, ctx, "run.sh", "echo hi\n")
    path.chmod(0o755)
    call(EditTool(), {"path": "run.sh", "old_string": "hi", "new_string": "bye"}, ctx)
    assert path.stat().st_mode & 0o777 == 0o755


# ---- grep -------------------------------------------------------------------------------

HAVE_RG = shutil.which("rg") is not None
BACKENDS = [
    pytest.param(True, id="rg", marks=pytest.mark.skipif(not HAVE_RG, reason="rg not installed")),
    pytest.param(False, id="python"),
]


@pytest.fixture()
def code_repo(repo: Path) -> Path:
    (repo / "src").mkdir()
    (repo / "src/app.py").write_text("import os\n\ndef main():\n    return helper()\n")
    (repo / "src/util.py").write_text("def helper():\n    return 1\n")
    (repo / "src/debug.log").write_text("def main in a log\n")
    (repo / "src/.gitignore").write_text("*.log\n")
    (repo / "build").mkdir()
    (repo / "build/gen.py").write_text("def main(): generated\n")
    (repo / ".git").mkdir()
    (repo / ".git/notes").write_text("def main\n")
    (repo / "blob.bin").write_bytes(b"\x00def main\n")
    (repo / "README.md").write_text("Call DEF MAIN to start.\n")
    (repo / ".github").mkdir()
    (repo / ".github/ci.yml").write_text("run: def main\n")
    (repo / ".gitignore").write_text("# generated\nbuild/\n")
    return repo


@pytest.mark.parametrize("use_rg", BACKENDS)
def test_grep_finds_matches_and_skips_git_ignored_and_binary(
    code_repo: Path, ctx: ToolContext, use_rg: bool
) -> None:
    result = call(GrepTool(use_rg=use_rg), {"pattern": r"def \w+\(\)"}, ctx)
    assert result.content.split("\n") == ["src/app.py:3:def main():", "src/util.py:1:def helper():"]


@pytest.mark.parametrize("use_rg", BACKENDS)
def test_grep_options(code_repo: Path, ctx: ToolContext, use_rg: bool) -> None:
    tool = GrepTool(use_rg=use_rg)
    lines = call(tool, {"pattern": "def main", "ignore_case": True}, ctx).content.split("\n")
    assert lines == [
        ".github/ci.yml:1:run: def main",
        "README.md:1:Call DEF MAIN to start.",
        "src/app.py:3:def main():",
    ]
    only_md = call(tool, {"pattern": "main", "glob": "*.md", "ignore_case": True}, ctx)
    assert only_md.content == "README.md:1:Call DEF MAIN to start."
    in_src = call(tool, {"pattern": "return", "path": "src"}, ctx)
    assert in_src.content.split("\n") == [
        "src/app.py:4:    return helper()",
        "src/util.py:2:    return 1",
    ]
    one_file = call(tool, {"pattern": "return", "path": "src/util.py"}, ctx)
    assert one_file.content == "src/util.py:2:    return 1"
    assert call(tool, {"pattern": "zebra"}, ctx).content == "no matches"


@pytest.mark.parametrize("use_rg", BACKENDS)
def test_grep_caps_results_with_a_note(code_repo: Path, ctx: ToolContext, use_rg: bool) -> None:
    result = call(GrepTool(use_rg=use_rg), {"pattern": "e", "max_results": 2}, ctx)
    lines = result.content.split("\n")
    assert len(lines) == 3 and "stopped at 2 matches" in lines[2]


@pytest.mark.parametrize("use_rg", BACKENDS)
def test_grep_bad_regex_is_a_tool_error(code_repo: Path, ctx: ToolContext, use_rg: bool) -> None:
    with pytest.raises(ToolError, match=r"grep failed|invalid regex"):
        call(GrepTool(use_rg=use_rg), {"pattern": "(unclosed"}, ctx)


def test_grep_falls_back_when_rg_is_not_on_path(
    code_repo: Path, ctx: ToolContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = call(GrepTool(), {"pattern": "helper", "path": "src/util.py"}, ctx)
    assert result.content == "src/util.py:1:def helper():"


@pytest.mark.parametrize("use_rg", BACKENDS)
def test_grep_gitignore_negation_and_anchoring(repo: Path, ctx: ToolContext, use_rg: bool) -> None:
    (repo / ".gitignore").write_text("*.tmp\n!keep.tmp\n/top.txt\ndocs/*.txt\n")
    for name in ("a.tmp", "keep.tmp", "top.txt", "docs/x.txt", "docs/y.md", "sub/top.txt"):
        (repo / name).parent.mkdir(exist_ok=True)
        (repo / name).write_text("needle\n")
    lines = call(GrepTool(use_rg=use_rg), {"pattern": "needle"}, ctx).content.split("\n")
    # /top.txt is anchored to the root, so sub/top.txt stays.
    assert [line.split(":")[0] for line in lines] == ["docs/y.md", "keep.tmp", "sub/top.txt"]


def test_grep_fallback_agrees_with_git_about_ignored_files(repo: Path, ctx: ToolContext) -> None:
    (repo / ".gitignore").write_text("*.tmp\n!keep.tmp\n/top.txt\ndocs/*.txt\nout/\n**/gen/*.py\n")
    (repo / "docs/.gitignore").parent.mkdir()
    (repo / "docs/.gitignore").write_text("draft*\n")
    names = [
        "a.tmp",
        "keep.tmp",
        "top.txt",
        "docs/x.txt",
        "docs/y.md",
        "docs/draft1.md",
        "docs/deep/x.txt",
        "sub/top.txt",
        "sub/out/o.c",
        "out/o.c",
        "lib/gen/g.py",
        "lib/gen/g.c",
        "lib/a.py",
    ]
    for name in names:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("needle\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    for sub in (".", "docs", "lib"):
        listed = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard", "--", sub],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        expected = sorted(n for n in listed if not n.endswith(".gitignore"))
        found = call(GrepTool(use_rg=False), {"pattern": "needle", "path": sub}, ctx).content
        assert sorted(line.split(":")[0] for line in found.split("\n")) == expected, sub


# ---- glob and ls ------------------------------------------------------------------------


@pytest.fixture()
def dated_repo(repo: Path) -> Path:
    now = time.time()
    for age, name in [
        (300, "a.py"),
        (100, "sub/b.py"),
        (200, "sub/deep/c.py"),
        (50, "sub/d.txt"),
        (10, ".git/hook.py"),
    ]:
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
        os.utime(path, (now - age, now - age))
    return repo


def test_glob_sorts_newest_first_and_skips_git(dated_repo: Path, ctx: ToolContext) -> None:
    result = call(GlobTool(), {"pattern": "**/*.py"}, ctx)
    assert result.content.split("\n") == ["sub/b.py", "sub/deep/c.py", "a.py"]


def test_glob_star_stays_in_one_directory(dated_repo: Path, ctx: ToolContext) -> None:
    assert call(GlobTool(), {"pattern": "*.py"}, ctx).content == "a.py"
    assert call(GlobTool(), {"pattern": "sub/*.{py,txt}"}, ctx).content.split("\n") == [
        "sub/d.txt",
        "sub/b.py",
    ]
    under = call(GlobTool(), {"pattern": "**/*.py", "path": "sub/deep"}, ctx)
    assert under.content == "sub/deep/c.py"
    assert call(GlobTool(), {"pattern": "**/*.rs"}, ctx).content == "no files matched"
    with pytest.raises(PathEscapeError):
        call(GlobTool(), {"pattern": "../*"}, ctx)


def test_glob_caps_with_a_note(
    dated_repo: Path, ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_mod, "GLOB_MAX", 2)
    lines = call(GlobTool(), {"pattern": "**/*.py"}, ctx).content.split("\n")
    assert lines[:2] == ["sub/b.py", "sub/deep/c.py"]
    assert "newest 2 of 3" in lines[2]


def test_ls_marks_dirs_and_links_and_hides_nothing(dated_repo: Path, ctx: ToolContext) -> None:
    (dated_repo / "link").symlink_to("sub/b.py")
    result = call(LsTool(), {}, ctx)
    assert result.content.split("\n") == [".git/", "a.py", "link -> sub/b.py", "sub/"]
    assert call(LsTool(), {"path": "sub"}, ctx).content.split("\n") == ["b.py", "d.txt", "deep/"]
    with pytest.raises(ToolError, match="is a file"):
        call(LsTool(), {"path": "a.py"}, ctx)


# ---- bash -------------------------------------------------------------------------------


def running(pid: int) -> bool:
    """Whether pid is a live process (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], seconds: float = 2.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if running(p)]
        if not alive:
            return []
        time.sleep(0.02)
    return [p for p in pids if running(p)]


def bash(args: dict[str, Any], repo: Path, **ctx_kw: Any) -> tuple[ToolResult, list[str]]:
    chunks: list[str] = []

    async def go() -> ToolResult:
        ctx = ToolContext(workspace=Workspace(repo), emit_output=chunks.append, **ctx_kw)
        validate_arguments(BashTool(), args)
        return await BashTool().run(args, ctx)

    return asyncio.run(go()), chunks


def test_bash_output_cwd_and_stdin(repo: Path) -> None:
    result, chunks = bash({"command": "pwd; echo err >&2; cat"}, repo)
    assert result.content == f"{repo.resolve()}\nerr\n"  # cat got /dev/null, so no hang
    assert not result.is_error
    assert "".join(chunks) == result.content


def test_bash_nonzero_exit_is_an_error_with_the_code(repo: Path) -> None:
    result, _ = bash({"command": "echo failing; exit 1"}, repo)
    assert result.is_error
    assert result.content == "failing\nexit code 1"


def test_bash_exit_status_passes_through_the_gate(repo: Path) -> None:
    # bash starts behind the supervisor's gate: its status must read as bash's own.
    assert bash({"command": "exit 3"}, repo)[0].content == "exit code 3"
    assert bash({"command": "kill -SEGV $$"}, repo)[0].content == "killed by SIGSEGV"
    # Line numbers stay the user's; the gate's stdin is gone (no fd beyond 0-2 but ls's own).
    result, _ = bash({"command": "echo $LINENO\nls /proc/self/fd\nif then"}, repo)
    assert result.content.startswith("1\n0\n1\n2\n3\n") and "line 3: syntax" in result.content
    # The command gets ctx.env, and its parent is mcode itself: no process in between.
    probe = {"command": "echo $PROBE; echo $PPID"}
    result, _ = bash(probe, repo, env={"PATH": os.environ["PATH"], "PROBE": "x"})
    assert result.content == f"x\n{os.getpid()}\n"


def test_bash_timeout_kills_the_whole_process_group(repo: Path) -> None:
    result, _ = bash({"command": "sleep 30 & echo $!; echo $$; wait", "timeout": 1}, repo)
    assert result.is_error
    assert "timed out after 1 s" in result.content
    pids = [int(x) for x in result.content.split("\n")[:2]]
    assert wait_gone(pids) == []


def test_bash_escalates_to_sigkill_when_sigterm_is_ignored(repo: Path) -> None:
    command = "trap '' TERM; sleep 30 & echo $!; wait"
    result, _ = bash({"command": command, "timeout": 0.5}, repo)
    assert "timed out" in result.content
    assert wait_gone([int(result.content.split("\n")[0])]) == []


def test_bash_kills_background_jobs_left_behind(repo: Path) -> None:
    result, _ = bash({"command": "sleep 30 & echo $!"}, repo)
    assert not result.is_error
    assert wait_gone([int(result.content.strip())]) == []


def test_bash_ctx_cancel_kills_and_returns_partial_output(repo: Path) -> None:
    async def go() -> tuple[ToolResult, str]:
        chunks: list[str] = []
        ctx = ToolContext(workspace=Workspace(repo), emit_output=chunks.append)
        task = asyncio.create_task(BashTool().run({"command": "echo $$; sleep 30"}, ctx))
        while not chunks:
            await asyncio.sleep(0.01)
        ctx.cancel.set()
        return await task, chunks[0]

    result, first = asyncio.run(go())
    assert result.is_error and "cancelled" in result.content
    assert result.content.startswith(first)
    assert wait_gone([int(first)]) == []


def test_bash_task_cancellation_kills_and_reraises(repo: Path) -> None:
    async def go() -> list[int]:
        chunks: list[str] = []
        ctx = ToolContext(workspace=Workspace(repo), emit_output=chunks.append)
        task = asyncio.create_task(
            BashTool().run({"command": "echo $$; sleep 30 & echo $!; wait"}, ctx)
        )
        while "".join(chunks).count("\n") < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return [int(x) for x in "".join(chunks).split()]

    assert wait_gone(asyncio.run(go())) == []


def test_bash_caps_output_keeping_head_and_tail(repo: Path) -> None:
    full = "".join(f"{i}\n" for i in range(1, 10001))
    result, chunks = bash({"command": "seq 1 10000"}, repo, output_cap=1000)
    streamed = "".join(chunks)  # the live stream is capped too, and says so
    assert streamed.startswith(full[:1000]) and len(streamed) < 1100
    assert "live output stops here" in streamed
    head, marker_and_tail = result.content.split("\n[… ", 1)
    marker, tail = marker_and_tail.split(" …]\n", 1)
    assert full.startswith(head) and full.endswith(tail)
    assert len(head) == 500 and len(tail) == 500
    assert marker == f"{len(full) - 1000} characters omitted"


def test_bash_rejects_bad_timeouts(repo: Path) -> None:
    with pytest.raises(ToolError, match="positive"):
        bash({"command": "true", "timeout": -1}, repo)


# ---- todo -------------------------------------------------------------------------------


def test_todo_replaces_the_list(ctx: ToolContext) -> None:
    todos = [
        {"content": "write tests", "status": "completed"},
        {"content": "fix bug", "status": "in_progress"},
        {"content": "ship", "status": "pending"},
    ]
    seen_by_front_end = ctx.todos
    result = call(TodoTool(), {"todos": todos}, ctx)
    assert result.content == "[x] write tests\n[>] fix bug\n[ ] ship"
    assert result.summary == "todos: 1/3 completed"
    assert seen_by_front_end == todos
    call(TodoTool(), {"todos": []}, ctx)
    assert ctx.todos == []
    with pytest.raises(ToolError, match="status 'done'"):
        call(TodoTool(), {"todos": [{"content": "x", "status": "done"}]}, ctx)


# ---- the set ----------------------------------------------------------------------------


def test_default_tools_order_schemas_and_size() -> None:
    tools = default_tools()
    assert [t.name for t in tools] == [
        "read",
        "write",
        "edit",
        "grep",
        "glob",
        "ls",
        "bash",
        "todo",
        "task",
    ]
    assert {"read", "grep", "glob", "ls"} == READ_ONLY_SAFE
    assert all(t.permission == "read" for t in tools if t.name in READ_ONLY_SAFE)
    for tool in tools:
        assert tool.parameters["additionalProperties"] is False
        assert "required" in tool.parameters
    specs = json.dumps([asdict(t.spec()) for t in tools])
    assert len(specs) < 6000  # the embedded model has an 8K-token window
    assert specs == json.dumps([asdict(t.spec()) for t in default_tools()])  # cache-stable


def test_unknown_arguments_are_rejected_by_the_schema() -> None:
    with pytest.raises(ToolError, match="unknown argument"):
        validate_arguments(ReadTool(), {"path": "a", "lines": 3})
