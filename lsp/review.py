"""Review findings as diagnostics with source ``mcode``, cleared when fixed.

``mcode.review`` runs a task that reads a file and answers with its findings as JSON. Each
finding becomes a diagnostic on its line and remembers that line's text. Whenever the document
changes, a finding whose line text is gone (edited: presumably fixed) is cleared, and one whose
line moved follows it; the diagnostics are published again only when that changed something.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from lsprotocol import types

SOURCE = "mcode"

_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "info": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}


def review_prompt(rel: str) -> str:
    return (
        f"Review {rel} for bugs and risky code. Read it; change no file. Answer with only a "
        'JSON array, one object per finding: {"line": <1-based line>, "message": "<what is '
        'wrong and what to do>", "severity": "error" | "warning" | "info"}. Answer [] if '
        "there is nothing to report."
    )


@dataclass(slots=True)
class Finding:
    line: int  # 0-based
    text: str  # the line's text when it was found
    message: str
    severity: types.DiagnosticSeverity

    def diagnostic(self) -> types.Diagnostic:
        return types.Diagnostic(
            range=types.Range(
                start=types.Position(line=self.line, character=0),
                end=types.Position(line=self.line, character=len(self.text)),
            ),
            message=self.message,
            severity=self.severity,
            source=SOURCE,
        )


def parse_findings(answer: str, text: str) -> list[Finding]:
    """The findings in a model's answer (the first JSON array in it), on ``text``'s lines;
    entries that do not fit are skipped."""
    match = re.search(r"\[.*\]", answer, re.DOTALL)
    if match is None:
        return []
    try:
        items = json.loads(match.group(0))
    except ValueError:
        return []
    lines = text.split("\n")
    found: list[Finding] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        try:
            line = int(item.get("line", 0)) - 1
        except (TypeError, ValueError):
            continue
        message = item.get("message")
        if not (0 <= line < len(lines)) or not isinstance(message, str) or not message.strip():
            continue
        severity = _SEVERITY.get(str(item.get("severity", "warning")).lower())
        found.append(
            Finding(
                line, lines[line], message.strip(), severity or types.DiagnosticSeverity.Warning
            )
        )
    return found


class Findings:
    """The findings of every reviewed document, by uri."""

    def __init__(self) -> None:
        self.by_uri: dict[str, list[Finding]] = {}

    def set(self, uri: str, findings: list[Finding]) -> list[types.Diagnostic]:
        self.by_uri[uri] = findings
        return [f.diagnostic() for f in findings]

    def update(self, uri: str, text: str) -> list[types.Diagnostic] | None:
        """Follow ``uri``'s findings into its new ``text``; the diagnostics to publish, or None
        when nothing changed."""
        findings = self.by_uri.get(uri)
        if not findings:
            return None
        lines = text.split("\n")
        kept: list[Finding] = []
        changed = False
        for f in findings:
            if f.line < len(lines) and lines[f.line] == f.text:
                kept.append(f)
                continue
            changed = True
            places = [i for i, line in enumerate(lines) if line == f.text and f.text.strip()]
            if len(places) == 1:
                f.line = places[0]
                kept.append(f)
        if not changed:
            return None
        self.by_uri[uri] = kept
        return [f.diagnostic() for f in kept]


def as_json(findings: list[Finding]) -> list[dict[str, Any]]:
    return [{"line": f.line + 1, "message": f.message} for f in findings]
