"""The verifier's answer (the ``verdict`` tool) and when mcode believes it.

A verifier says PASS, FAIL or PARTIAL with ``evidence[]`` (commands it ran: ``command``,
``exit_code``, ``output``) and ``findings[]``. A verifier can claim anything, so a PASS counts
only when it is backed by what mcode itself saw in this verification (:func:`judge`):

- it cites at least one command;
- each cited command was run through this verifier's own ``bash`` (:class:`RecordingBash`
  keeps every run: the command, its exit code, its output), the cited exit code is the
  recorded one, and the cited output is contained in the recorded output (a verifier may quote
  part of it; whitespace at the ends does not count);
- every acceptance check of the task passed when mcode ran it (``checks.py``).

Anything else is refused, with the reason, and the task is treated as not accepted.

The verifier's commands run in the OS sandbox read-only (:func:`read_only`): it may run the
tests, not change the work it judges (a write fails with "Read-only file system"; its /tmp
is private and empty). The acceptance checks run with the producer's policy instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mcode.errors import ToolError
from mcode.events import Evidence
from mcode.tools.base import Tool, ToolContext, ToolResult
from mcode.tools.bash import BashTool
from mcode.tools.sandbox import SandboxPolicy

__all__ = [
    "VERDICT_SCHEMA",
    "CommandRun",
    "RecordingBash",
    "Verdict",
    "VerdictTool",
    "judge",
    "read_only",
]

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["PASS", "FAIL", "PARTIAL"]},
        "evidence": {
            "type": "array",
            "description": "commands you ran with bash in this verification, as they ran",
            "items": {
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "exactly as you ran it"},
                    "exit_code": {"type": "integer"},
                    "output": {"type": "string", "description": "its output, or a part of it"},
                },
                "required": ["command", "exit_code", "output"],
                "additionalProperties": False,
            },
        },
        "findings": {
            "type": "array",
            "items": {"type": "string"},
            "description": "for FAIL / PARTIAL: what is wrong or missing, for the producer",
        },
    },
    "required": ["verdict", "evidence", "findings"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class CommandRun:
    """One bash call of a verifier, as mcode ran it; ``exit_code`` None: it timed out, was
    cancelled or killed."""

    command: str
    exit_code: int | None
    output: str


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: str
    evidence: tuple[Evidence, ...]
    findings: tuple[str, ...]


def read_only(policy: SandboxPolicy | None) -> SandboxPolicy | None:
    """The verifier's sandbox: the producer's, with nothing writable. Under
    ``danger-full-access`` (the user's explicit choice of no sandbox) it stays as it is."""
    if policy is None or not policy.active:
        return policy
    return dataclasses.replace(policy, mode="read-only")


class RecordingBash(BashTool):
    """bash, keeping each run for :func:`judge`. One per verifier conversation."""

    def __init__(self) -> None:
        self.runs: list[CommandRun] = []

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        result = await super().run(args, ctx)
        self.runs.append(CommandRun(args["command"], result.exit_code, result.content))
        return result


@dataclass(slots=True)
class VerdictTool(Tool):
    """The verifier's one way to answer; the verdict is kept in ``verdict``."""

    name: ClassVar[str] = "verdict"
    description: ClassVar[str] = (
        "Give your verdict on the result: PASS only if you could not break it, citing as "
        "evidence the commands you ran (command, exit_code, output exactly as bash returned "
        "them); FAIL or PARTIAL with findings the producer can act on. Call it once."
    )
    parameters: ClassVar[dict[str, Any]] = VERDICT_SCHEMA
    permission: ClassVar[Any] = "read"
    verdict: Verdict | None = field(default=None)

    def subject(self, args: dict[str, Any]) -> str:
        return str(args.get("verdict", ""))

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        name = args.get("verdict")
        if name not in ("PASS", "FAIL", "PARTIAL"):
            raise ToolError("verdict must be PASS, FAIL or PARTIAL")
        evidence: list[Evidence] = []
        for i, item in enumerate(args.get("evidence") or []):
            ok = (
                isinstance(item, dict)
                and isinstance(item.get("command"), str)
                and isinstance(item.get("exit_code"), int)
                and isinstance(item.get("output"), str)
            )
            if not ok:
                raise ToolError(
                    f"evidence[{i}] must be an object of command (string), exit_code "
                    "(integer), output (string)"
                )
            evidence.append(
                {
                    "command": item["command"],
                    "exit_code": item["exit_code"],
                    "output": item["output"],
                }
            )
        findings = args.get("findings") or []
        if not isinstance(findings, list) or not all(isinstance(f, str) for f in findings):
            raise ToolError("findings must be a list of strings")
        self.verdict = Verdict(name, tuple(evidence), tuple(findings))
        return ToolResult(content="Verdict recorded. Answer with one line.", summary=name)


def judge(verdict: Verdict | None, runs: list[CommandRun], checks_passed: bool) -> str:
    """Why a PASS is refused, or "" when it stands (and for FAIL / PARTIAL, which need no
    backing to be believed)."""
    if verdict is None:
        return "the verifier gave no verdict"
    if verdict.verdict != "PASS":
        return ""
    if not verdict.evidence:
        return "the PASS cites no command; a PASS must cite commands run in this verification"
    for item in verdict.evidence:
        problem = _unbacked(item, runs)
        if problem:
            return problem
    if not checks_passed:
        return "the PASS stands against failing acceptance checks"
    return ""


def _unbacked(item: Evidence, runs: list[CommandRun]) -> str:
    command = item["command"]
    same = [r for r in runs if r.command.strip() == command.strip()]
    if not same:
        return f"the PASS cites {command!r}, which was not run in this verification"
    if not any(r.exit_code == item["exit_code"] for r in same):
        codes = ", ".join(str(r.exit_code) for r in same)
        return (
            f"the PASS cites {command!r} with exit code {item['exit_code']}, but it exited {codes}"
        )
    cited = item["output"].strip()
    if not any(r.exit_code == item["exit_code"] and cited in r.output for r in same):
        return f"the PASS cites output of {command!r} that the command did not print"
    return ""
