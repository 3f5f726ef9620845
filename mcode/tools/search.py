"""grep, glob and ls: finding things in the workspace.

``grep`` runs ripgrep when ``rg`` is on PATH and otherwise a Python fallback. The fallback
walks the tree itself, skips ``.git``, symlinks, binary files and what ``.gitignore`` files
(root and nested) exclude, using a subset of gitignore syntax: ``*``, ``?``, ``[...]``, ``**``,
a leading or inner ``/`` to anchor, a trailing ``/`` for directories, ``!`` to re-include. It
does not read ``.git/info/exclude``, the global excludes file, ``.ignore`` or ``.rgignore``
(ripgrep does), and its regexes are Python's (ripgrep's have no look-around or backreferences).
Both include hidden files and print ``path:line:text`` sorted by path.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mcode.errors import ToolError
from mcode.tools.base import Tool, ToolContext, ToolResult
from mcode.tools.workspace import Workspace

GREP_DEFAULT_MAX = 200
GLOB_MAX = 500
LS_MAX = 500
MAX_MATCH_LINE = 400
FALLBACK_MAX_FILE = 20 * 1024 * 1024
_GLOB_CHARS = set("*?[{")


def glob_regex(pattern: str) -> str:
    """Translate a glob into a regex over ``/``-separated relative paths.

    ``*`` and ``?`` stay within one path segment, ``**`` as a whole segment spans any number of
    directories (zero included), ``[...]`` is a character class, ``{a,b}`` alternatives.
    """
    parts = pattern.split("/")
    out: list[str] = []
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        if seg == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
        else:
            out.append(_segment_regex(seg) + ("" if last else "/"))
    return "".join(out)


def _segment_regex(seg: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = seg.find("]", i + 2 if seg[i + 1 : i + 2] in ("!", "^") else i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = seg[i + 1 : j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif c == "{":
            j = seg.find("}", i)
            if j < 0:
                out.append(re.escape(c))
            else:
                alts = seg[i + 1 : j].split(",")
                out.append("(?:" + "|".join(_segment_regex(a) for a in alts) + ")")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _IgnoreRule:
    base: str  # directory of the .gitignore, relative to the walk root ("" for the root)
    above: str  # for a .gitignore above the walk root: the walk root relative to its directory
    regex: re.Pattern[str]
    anchored: bool
    dir_only: bool
    negate: bool


class _Ignore:
    """The gitignore subset described in the module docstring; last matching rule wins."""

    def __init__(self) -> None:
        self.rules: list[_IgnoreRule] = []

    def load(self, directory: Path, rel_dir: str, above: str = "") -> None:
        try:
            text = (directory / ".gitignore").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        for raw in text.splitlines():
            line = raw.rstrip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:]
            line = line.removeprefix("\\")
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            # git: a slash at the start or in the middle anchors the pattern to its directory.
            anchored = "/" in line
            line = line.lstrip("/")
            if not line:
                continue
            regex = re.compile(glob_regex(line))
            self.rules.append(_IgnoreRule(rel_dir, above, regex, anchored, dir_only, negate))

    def ignored(self, rel: str, is_dir: bool) -> bool:
        result = False
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.base:
                if not rel.startswith(rule.base + "/"):
                    continue
                sub = rel[len(rule.base) + 1 :]
            else:
                sub = f"{rule.above}/{rel}" if rule.above else rel
            target = sub if rule.anchored else sub.rsplit("/", 1)[-1]
            if rule.regex.fullmatch(target):
                result = not rule.negate
        return result


def walk(
    base: Path, *, ignore: _Ignore | None = None, max_depth: int | None = None
) -> Iterator[tuple[os.DirEntry[str], str, bool]]:
    """Yield ``(entry, rel, is_dir)`` under ``base`` depth first, names sorted in each
    directory (ripgrep's ``--sort path`` order: a directory's contents follow it at once).

    Skips ``.git``; never follows symlinks (a symlink is yielded as a non-directory); with
    ``ignore``, skips ignored entries and loads nested ``.gitignore`` files as it goes.
    """
    if ignore is not None:
        ignore.load(base, "")
    stack: list[tuple[Iterator[os.DirEntry[str]], str, int]] = []

    def push(directory: Path, rel_dir: str, depth: int) -> None:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        stack.append((iter(entries), rel_dir, depth))

    push(base, "", 1)
    while stack:
        entries, rel_dir, depth = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        if entry.name == ".git":
            continue
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if ignore is not None and ignore.ignored(rel, is_dir):
            continue
        yield entry, rel, is_dir
        if is_dir and (max_depth is None or depth < max_depth):
            if ignore is not None:
                ignore.load(Path(entry.path), rel)
            push(Path(entry.path), rel, depth + 1)


def _cut(line: str) -> str:
    return line if len(line) <= MAX_MATCH_LINE else line[:MAX_MATCH_LINE] + "…"


class GrepTool(Tool):
    name = "grep"
    description = (
        "Search file contents with a regex (ripgrep syntax). Optional path (file or dir), glob "
        "filter (e.g. *.py), ignore_case, max_results (default 200). Prints path:line:text."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string"},
            "path": {"type": "string"},
            "glob": {"type": "string"},
            "ignore_case": {"type": "boolean"},
            "max_results": {"type": "integer"},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }
    permission = "read"

    def __init__(self, use_rg: bool | None = None) -> None:
        """``use_rg``: None picks ripgrep when it is on PATH; False forces the fallback."""
        self.use_rg = use_rg

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        ws: Workspace = ctx.workspace
        pattern: str = args["pattern"]
        target = ws.resolve(args.get("path") or ".")
        if not target.exists():
            raise ToolError(f"path not found: {ws.relative(target)}", hint="check it with ls")
        max_results = args.get("max_results") or GREP_DEFAULT_MAX
        if max_results < 1:
            raise ToolError("max_results must be at least 1")
        glob = args.get("glob") or None
        ignore_case = bool(args.get("ignore_case", False))
        rg = shutil.which("rg") if self.use_rg is not False else None
        if rg:
            lines, more = await _grep_rg(
                rg, ws, target, pattern, glob, ignore_case, max_results, ctx.env
            )
        else:
            lines, more = await asyncio.to_thread(
                _grep_python, ws, target, pattern, glob, ignore_case, max_results
            )
        if not lines:
            return ToolResult("no matches", summary=f"grep {pattern!r}: no matches")
        shown: list[str] = []
        size = 0
        for line in lines:
            if size + len(line) + 1 > ctx.output_cap:
                more = True
                break
            shown.append(line)
            size += len(line) + 1
        n = len(shown)
        if more:
            shown.append(
                f"[stopped at {n} matches; narrow it with path, glob or a more specific pattern]"
            )
        return ToolResult(
            "\n".join(shown),
            summary=f"grep {pattern!r}: {n}{'+' if more else ''} matches",
        )


async def _grep_rg(
    rg: str,
    ws: Workspace,
    target: Path,
    pattern: str,
    glob: str | None,
    ignore_case: bool,
    max_results: int,
    env: dict[str, str],
) -> tuple[list[str], bool]:
    cmd = [rg, "--line-number", "--no-heading", "--color", "never", "--with-filename"]
    # --hidden with !.git and --no-require-git make ripgrep see what the fallback sees;
    # --sort path makes the output stable (and single-threaded, the price of that).
    cmd += ["--hidden", "--glob", "!.git", "--no-require-git", "--sort", "path"]
    if ignore_case:
        cmd.append("--ignore-case")
    if glob:
        cmd += ["--glob", glob]
    cmd += ["--regexp", pattern, "--"]
    rel = ws.relative(target)
    if rel != ".":
        cmd.append(rel)
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=ws.root,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    more = False
    pending = b""
    try:
        while True:
            chunk = await proc.stdout.read(65536)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            # A minified file can have one enormous line; keep only its start in memory.
            pending = pending[: MAX_MATCH_LINE * 4]
            for raw in complete:
                if len(lines) >= max_results:
                    more = True
                    break
                lines.append(_cut(raw.decode("utf-8", errors="replace")))
            if more:
                break
        if pending and not more:
            lines.append(_cut(pending.decode("utf-8", errors="replace")))
        if more:
            proc.kill()
        err = await proc.stderr.read()
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if code == 2 and not lines:
        message = err.decode("utf-8", errors="replace").strip() or "ripgrep failed"
        raise ToolError(f"grep failed: {message[:600]}", hint="fix the pattern or the path")
    return lines, more


def _grep_python(
    ws: Workspace,
    target: Path,
    pattern: str,
    glob: str | None,
    ignore_case: bool,
    max_results: int,
) -> tuple[list[str], bool]:
    try:
        regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as e:
        raise ToolError(f"invalid regex {pattern!r}: {e}", hint="fix the pattern") from None
    # ripgrep's rule: a glob without "/" matches the file name at any depth.
    name_re = re.compile(glob_regex(glob if "/" in glob else "**/" + glob)) if glob else None
    files: Iterator[tuple[Path, str]]
    if target.is_file():
        files = iter([(target, ws.relative(target))])
    else:
        prefix = ws.relative(target)
        ignore = _Ignore()
        # Searching a subdirectory: the .gitignore files above it still apply.
        if target != ws.root and target.is_relative_to(ws.root):
            ancestors = [ws.root / part for part in reversed(target.relative_to(ws.root).parents)]
            for ancestor in ancestors:
                ignore.load(ancestor, "", above=target.relative_to(ancestor).as_posix())
        files = (
            (Path(entry.path), rel)
            for entry, rel, is_dir in walk(target, ignore=ignore)
            if entry.is_file(follow_symlinks=False)  # not links, dirs, FIFOs or sockets
            if name_re is None or name_re.fullmatch(rel)
        )
        if prefix != ".":
            files = ((p, f"{prefix}/{rel}") for p, rel in files)
    lines: list[str] = []
    for path, shown in files:
        try:
            if path.stat().st_size > FALLBACK_MAX_FILE:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if b"\x00" in data[:8192]:
            continue
        for n, line in enumerate(data.decode("utf-8", errors="replace").split("\n"), 1):
            if regex.search(line):
                if len(lines) >= max_results:
                    return lines, True
                lines.append(_cut(f"{shown}:{n}:{line.rstrip(chr(13))}"))
    return lines, False


class GlobTool(Tool):
    name = "glob"
    description = (
        "Find files by glob, e.g. **/*.py or src/*.ts ({a,b} works; * stays within one dir). "
        "Optional path to search under. Newest first."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}},
        "required": ["pattern"],
        "additionalProperties": False,
    }
    permission = "read"

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return await asyncio.to_thread(self._run, args, ctx)

    def _run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        ws: Workspace = ctx.workspace
        pattern: str = args["pattern"].strip()
        if not pattern:
            raise ToolError("pattern is empty", hint="e.g. **/*.py")
        segs = pattern.split("/")
        # Literal leading segments become part of the base, so "src/**/*.py" walks src only.
        lead = 0
        while lead < len(segs) - 1 and not (_GLOB_CHARS & set(segs[lead])):
            lead += 1
        # os.path.join drops the path argument when the pattern is absolute, as it should.
        base_text = os.path.join(args.get("path") or ".", "/".join(segs[:lead]) or ".")
        base = ws.resolve(base_text)
        rest = [s for s in segs[lead:] if s]
        if not rest:
            raise ToolError(f"pattern {pattern!r} has no file part", hint="e.g. **/*.py")
        if not base.is_dir():
            return ToolResult("no files matched", summary=f"glob {pattern}: 0 files")
        regex = re.compile(glob_regex("/".join(rest)))
        max_depth = None if "**" in rest else len(rest)
        found: list[tuple[int, str]] = []
        for entry, rel, is_dir in walk(base, max_depth=max_depth):
            if regex.fullmatch(rel):
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime_ns
                except OSError:
                    continue
                shown = ws.relative(Path(entry.path)) + ("/" if is_dir else "")
                found.append((mtime, shown))
        if not found:
            return ToolResult("no files matched", summary=f"glob {pattern}: 0 files")
        found.sort(key=lambda t: (-t[0], t[1]))
        lines = [shown for _, shown in found[:GLOB_MAX]]
        if len(found) > GLOB_MAX:
            lines.append(
                f"[showing the newest {GLOB_MAX} of {len(found)}; narrow the pattern or path]"
            )
        return ToolResult("\n".join(lines), summary=f"glob {pattern}: {len(found)} files")


class LsTool(Tool):
    name = "ls"
    description = (
        "List a directory (default: workspace root). Dirs end with /; links show -> target."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": [],
        "additionalProperties": False,
    }
    permission = "read"

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return await asyncio.to_thread(self._run, args, ctx)

    def _run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        ws: Workspace = ctx.workspace
        p = ws.resolve(args.get("path") or ".")
        rel = ws.relative(p)
        if not p.exists():
            raise ToolError(f"not found: {rel}", hint="check the path with ls on its parent")
        if not p.is_dir():
            raise ToolError(f"{rel} is a file, not a directory", hint="use read to see it")
        try:
            with os.scandir(p) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise ToolError(f"cannot list {rel}: {e.strerror}") from None
        lines: list[str] = []
        for entry in entries[:LS_MAX]:
            if entry.is_symlink():
                try:
                    lines.append(f"{entry.name} -> {os.readlink(entry.path)}")
                except OSError:
                    lines.append(f"{entry.name} -> ?")
            elif entry.is_dir():
                lines.append(entry.name + "/")
            else:
                lines.append(entry.name)
        if len(entries) > LS_MAX:
            lines.append(f"[showing {LS_MAX} of {len(entries)} entries; use glob to narrow]")
        if not lines:
            lines.append("[empty directory]")
        return ToolResult("\n".join(lines), summary=f"ls {rel}: {len(entries)} entries")
