"""mcode lsp: review findings as diagnostics with source ``mcode``, which follow their lines
as the user edits and are cleared once their line is fixed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from helpers import make_repo
from lsp_client import Editor, run
from lsprotocol import types

SOURCE = "def add(a, b):\n    return a - b\n\nprint(add(1, 2)\n"


def test_review_findings_become_diagnostics_that_clear_when_fixed(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": SOURCE})
    findings = [
        {"line": 2, "message": "add subtracts", "severity": "error"},
        {"line": 4, "message": "missing closing parenthesis", "severity": "warning"},
        {"line": 99, "message": "past the end: skipped"},
    ]
    server = model_server(
        [
            {"tool_calls": [{"id": "r1", "name": "read", "arguments": {"path": "calc.py"}}]},
            {"text": f"Findings:\n{json.dumps(findings)}"},
        ]
    )

    async def scenario() -> tuple[Any, list[list[tuple[int, str, str | None]]]]:
        seen: list[list[tuple[int, str, str | None]]] = []

        def snapshot(uri: str) -> None:
            seen.append(
                [(d.range.start.line, d.message, d.source) for d in ed.client.diagnostics[uri]]
            )

        async with Editor(tmp_path / "home", repo, server) as ed:
            uri = ed.open("calc.py")
            summary = await ed.command("mcode.review", {"uri": uri})
            snapshot(uri)
            waiting = ed.client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
            ed.type(uri, 0, 0, "import math\n")  # every line moves down one
            await asyncio.wait_for(waiting, 10)
            snapshot(uri)
            waiting = ed.client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
            ed.type(uri, 2, 13, "+")  # "return a - b" -> "return a +- b": that line changed
            await asyncio.wait_for(waiting, 10)
            snapshot(uri)
            assert [m.message for m in ed.client.messages] == [
                "mcode review of calc.py: 2 findings"
            ]
            return summary, seen

    summary, seen = run(scenario())
    assert summary["findings"] == [
        {"line": 2, "message": "add subtracts"},
        {"line": 4, "message": "missing closing parenthesis"},
    ]
    found, moved, fixed = seen
    assert found == [(1, "add subtracts", "mcode"), (3, "missing closing parenthesis", "mcode")]
    assert moved == [(2, "add subtracts", "mcode"), (4, "missing closing parenthesis", "mcode")]
    assert fixed == [(4, "missing closing parenthesis", "mcode")]
