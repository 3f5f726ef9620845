"""Code actions: what mcode offers on a selection or a diagnostic, and the task each becomes.

``textDocument/codeAction`` answers with these actions for any range; "Fix this" only where the
editor sent a diagnostic. Each action carries its arguments as ``data`` and is resolved
(``codeAction/resolve``) into the command ``mcode.codeAction`` that runs the task; a client
that cannot resolve gets the command at once. The task's edits reach the editor as
``workspace/applyEdit`` (lsp/editor.py).

Quick actions (Explain, Fix this) run with thinking off; the larger ones (Refactor…, Add
tests, Ask mcode…) with thinking on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lsprotocol import types

from mcode.errors import UsageError

COMMAND = "mcode.codeAction"


@dataclass(frozen=True, slots=True)
class Action:
    id: str
    title: str
    kind: str
    thinking: bool
    needs_diagnostic: bool = False


ACTIONS = (
    Action("explain", "mcode: Explain", "mcode.explain", thinking=False),
    Action("fix", "mcode: Fix this", types.CodeActionKind.QuickFix, False, needs_diagnostic=True),
    Action("refactor", "mcode: Refactor…", types.CodeActionKind.RefactorRewrite, thinking=True),
    Action("tests", "mcode: Add tests", "mcode.tests", thinking=True),
    Action("ask", "mcode: Ask mcode…", "mcode.ask", thinking=True),
)
BY_ID = {a.id: a for a in ACTIONS}


@dataclass(frozen=True, slots=True)
class Request:
    """A code action's arguments, checked: which action, on which lines of which document."""

    action: Action
    uri: str
    start: int  # first line, 0-based
    end: int  # last line, 0-based, inclusive
    diagnostic: str | None = None
    question: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> Request:
        """From the command's argument object; UsageError naming what is wrong."""
        if not isinstance(raw, dict):
            raise UsageError(
                "mcode.codeAction takes one object argument",
                hint='[{"action": "explain", "uri": "file:///...", "range": {...}}]',
            )
        action = BY_ID.get(str(raw.get("action")))
        if action is None:
            raise UsageError(
                f"unknown code action {raw.get('action')!r}",
                hint=f"one of: {', '.join(BY_ID)}",
            )
        uri = raw.get("uri")
        rng = raw.get("range") or {}
        try:
            start = int(rng["start"]["line"])
            end = int(rng["end"]["line"])
            if rng["end"].get("character", 0) == 0 and end > start:
                end -= 1  # a selection of whole lines ends at the next line's start
        except (KeyError, TypeError, ValueError):
            raise UsageError(
                "the code action needs a range with start and end lines",
                hint='"range": {"start": {"line": 0, "character": 0}, "end": {...}}',
            ) from None
        if not isinstance(uri, str) or start < 0 or end < start:
            raise UsageError("the code action needs a document uri and a forward range")
        question = raw.get("prompt")
        return cls(
            action,
            uri,
            start,
            end,
            raw.get("diagnostic") if isinstance(raw.get("diagnostic"), str) else None,
            question if isinstance(question, str) and question.strip() else None,
        )


def offered(params: types.CodeActionParams, *, resolve: bool) -> list[types.CodeAction]:
    """The actions for ``params``' range; with ``resolve`` their command comes on resolve."""
    diagnostics = list(params.context.diagnostics or [])
    only = params.context.only
    out: list[types.CodeAction] = []
    for action in ACTIONS:
        if action.needs_diagnostic and not diagnostics:
            continue
        if only and not any(str(action.kind).startswith(str(k)) for k in only):
            continue
        data: dict[str, Any] = {
            "action": action.id,
            "uri": params.text_document.uri,
            "range": {
                "start": {
                    "line": params.range.start.line,
                    "character": params.range.start.character,
                },
                "end": {"line": params.range.end.line, "character": params.range.end.character},
            },
        }
        if action.needs_diagnostic:
            d = diagnostics[0]
            source = f" ({d.source})" if d.source else ""
            data["diagnostic"] = f"line {d.range.start.line + 1}: {d.message}{source}"
        code_action = types.CodeAction(
            title=action.title,
            kind=action.kind,
            diagnostics=diagnostics[:1] if action.needs_diagnostic else None,
            data=data,
        )
        if not resolve:
            code_action.command = command_for(code_action)
        out.append(code_action)
    return out


def command_for(action: types.CodeAction) -> types.Command:
    return types.Command(title=action.title, command=COMMAND, arguments=[action.data])


def prompt(request: Request, rel: str, text: str) -> str:
    """The task for ``request`` on ``text`` (the document's text, from the editor)."""
    lines = text.split("\n")
    chosen = "\n".join(lines[request.start : request.end + 1])
    where = f"{rel} (lines {request.start + 1}-{request.end + 1})"
    code = f"```\n{chosen}\n```"
    a = request.action.id
    if a == "explain":
        return (
            f"Explain what this code in {where} does and why, briefly. Do not change any "
            f"file.\n\n{code}"
        )
    if a == "fix":
        return (
            f"Fix this problem in {rel}: {request.diagnostic}. The code around it, in "
            f"{where}:\n\n{code}\n\nMake the smallest change that fixes it, with the edit "
            "tool, then say in one sentence what you changed."
        )
    if a == "refactor":
        return (
            f"Refactor this code in {where} to make it clearer, keeping its behaviour. Edit the "
            f"file with the edit tool.\n\n{code}"
        )
    if a == "tests":
        return (
            f"Add tests for this code in {where}, next to the project's existing tests, and "
            f"run them.\n\n{code}"
        )
    question = request.question or chosen
    return f"{question}\n\nAbout this code in {where}:\n\n{code}"
