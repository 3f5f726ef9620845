"""pytest: run the project's tests and report each failure as a record, not a wall of text.

The tool runs ``python -m pytest`` in the workspace with a JUnit XML report written to a
temporary file, and answers with one line of counts and, per failing or erroring test, its
id, file and line, and the assertion message (the traceback's last lines, capped). The model
reads what failed and where without scrolling through pytest's output, and the result's
``summary`` says the counts for people.

pytest runs the project's code, so it runs like bash: inside the session's OS sandbox
(``mcode/tools/sandbox.py``) with the scrubbed environment; the report's temporary folder is
bound writable over it (a read-only sandbox's /tmp is private). A sandbox that cannot start is
the tool's error; the tests do not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mcode.errors import ToolError
from mcode.tools.base import Tool, ToolContext, ToolResult
from mcode.tools.sandbox import sandboxed_argv

TIMEOUT = 600.0  # seconds
DETAIL_CAP = 1_500  # characters of one failure's message and traceback tail
OUTPUT_TAIL = 3_000  # characters of pytest's own output when it reports no tests


@dataclass(frozen=True, slots=True)
class Failure:
    test: str
    file: str
    line: int | None
    kind: str  # failed, error
    message: str
    detail: str


class PytestTool(Tool):
    name = "pytest"
    description = (
        "Run the project's tests with pytest and get each failure as a record: test id, file, "
        "line, message. Give paths (files, folders or test ids) and/or a -k expression to run "
        "fewer tests."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "paths": {
                "type": "array",
                "items": {"type": "string"},
                "description": "test files, folders or node ids (default: pytest's own choice)",
            },
            "k": {"type": "string", "description": "a -k expression selecting tests"},
            "timeout": {"type": "number", "description": "seconds (default 600)"},
        },
        "additionalProperties": False,
    }
    permission = "execute"

    def subject(self, args: dict[str, Any]) -> str:
        return " ".join([*args.get("paths", []), *(["-k", args["k"]] if args.get("k") else [])])

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        paths = [str(p) for p in args.get("paths", [])]
        for p in paths:
            if p.startswith("-"):
                raise ToolError(f"{p!r} is not a path; pass options only through k")
        timeout = float(args.get("timeout") or TIMEOUT)
        root = Path(ctx.workspace.root)
        with tempfile.TemporaryDirectory(prefix="mcode-pytest-") as tmp:
            report = Path(tmp) / "report.xml"
            argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            argv += [f"--junitxml={report}", *(["-k", args["k"]] if args.get("k") else []), *paths]
            if ctx.sandbox is not None:  # raises SandboxError (a ToolError) before anything runs
                argv = sandboxed_argv(argv, ctx.sandbox, scratch=[Path(tmp)])
            code, output = await _run(argv, root, ctx, timeout)
            if not report.exists():
                tail = output[-OUTPUT_TAIL:]
                raise ToolError(
                    f"pytest wrote no report (exit code {code}); its output ends:\n{tail}",
                    hint="is pytest installed for this Python? Is the path right?",
                )
            counts, failures = parse_report(report, root)
        return _result(code, counts, failures)


async def _run(argv: list[str], cwd: Path, ctx: ToolContext, timeout: float) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=ctx.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill(proc.pid)
        await proc.wait()
        raise ToolError(f"pytest ran past {timeout:g} s and was stopped") from None
    except asyncio.CancelledError:
        _kill(proc.pid)
        raise
    return proc.returncode or 0, out.decode("utf-8", "replace")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def parse_report(path: Path, root: Path) -> tuple[dict[str, int], list[Failure]]:
    """Counts (tests, failures, errors, skipped) and the failures of a JUnit XML report."""
    tree = ET.parse(path)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failures: list[Failure] = []
    for suite in tree.iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, "0") or 0)
    for case in tree.iter("testcase"):
        for kind, tag in (("failed", "failure"), ("error", "error")):
            node = case.find(tag)
            if node is None:
                continue
            classname, name = case.get("classname", ""), case.get("name", "")
            file = case.get("file") or classname.replace(".", "/") + ".py"
            line = case.get("line")
            text = (node.text or "").strip()
            failures.append(
                Failure(
                    test=f"{file}::{name}" if file else name,
                    file=file,
                    line=int(line) + 1 if line and line.isdigit() else _line_of(text, file),
                    kind=kind,
                    message=(node.get("message") or "").strip().splitlines()[0][:300]
                    if node.get("message")
                    else "",
                    detail=text[-DETAIL_CAP:],
                )
            )
    return counts, failures


def _line_of(text: str, file: str) -> int | None:
    """The line of ``file`` in a traceback (pytest writes ``path:LINE: Error``)."""
    for row in reversed(text.splitlines()):
        head, sep, rest = row.partition(":")
        if sep and head.endswith(Path(file).name):
            number = rest.split(":", 1)[0]
            if number.isdigit():
                return int(number)
    return None


def _result(code: int, counts: dict[str, int], failures: list[Failure]) -> ToolResult:
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    head = (
        f"{passed} passed, {counts['failures']} failed, {counts['errors']} errors, "
        f"{counts['skipped']} skipped (pytest exit code {code})"
    )
    lines = [head]
    for f in failures:
        where = f"{f.file}:{f.line}" if f.line else f.file
        lines.append(f"\n{f.kind.upper()} {f.test}\n  at {where}\n  {f.message}")
        if f.detail:
            lines.append("  " + f.detail.replace("\n", "\n  "))
    # Failing tests are what the tool is for, not an error of the call: only a run pytest
    # itself could not do (usage error, interrupted, internal error) is one.
    return ToolResult("\n".join(lines), head, is_error=code not in (0, 1, 5))
