"""Permissions: whether a tool call may run, must be asked about, or is refused.

Modes (:class:`PermissionMode`)::

    read-only   read tools only; edit, execute and computer are denied (allow rules can't
                override it: it is a safety mode)
    ask         read tools run; anything else runs if an allow rule matches, else ask
    auto-edit   read and edit tools run; execute/computer run if an allow rule matches, else ask
    full-auto   everything runs

Deny rules win over everything, modes included. Rules look like ``read`` (every call of the
tool) or ``bash(git status*)`` (a :func:`fnmatch.fnmatchcase` pattern on the tool's
:meth:`~mcode.tools.base.Tool.subject`: the command for bash, the path for file tools; ``*``
also matches ``/``). Path subjects are normalised (``./a/../b`` is ``b``; with a workspace,
absolute and symlinked paths become workspace-relative) so ``edit(.env)`` can't be dodged by
spelling the path differently.

Compound shell commands: an allow rule like ``bash(git status*)`` must not let through
``git status; rm -rf /``. A bash command is split on the control operators ``;``, ``&``,
``&&``, ``|``, ``||``, newline and the redirections ``<``/``>`` (outside quotes), and an allow
decision needs EVERY piece to match some allow rule. Redirections that write nothing (``2>&1``,
``>/dev/null``, ``</dev/null``) are dropped instead of splitting; any other redirection leaves
its target as a piece of its own, which no ordinary rule matches, so ``git status > f`` asks.
Command substitution (``$(...)``, backticks), an unclosed quote or a trailing backslash make
the split unsure, and an unsure command is never allowed by a rule (it is asked about, or
denied where nobody can be asked).
Deny rules work the other way: a command is denied if the whole or ANY piece matches a deny
rule, where the pieces for deny also include a cruder split that cuts at substitutions and
parentheses too, so ``echo $(rm -rf /)`` is caught by ``bash(rm *)``. Subshells and groups
(``(…)``, ``{ …; }``) and leading ``VAR=value`` assignments simply fail to match ordinary
allow rules, which errs towards asking.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from fnmatch import fnmatchcase
from typing import Any, Literal

from mcode.errors import ConfigError, MCodeError
from mcode.events import DecidedBy
from mcode.tools.base import Tool


class PermissionMode(str, Enum):
    READ_ONLY = "read-only"
    ASK = "ask"
    AUTO_EDIT = "auto-edit"
    FULL_AUTO = "full-auto"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str | PermissionMode) -> PermissionMode:
        """The mode named by ``value``; ConfigError listing the valid names if there is none."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ConfigError(
                f"unknown permission mode {value!r}", hint=f"use one of: {names}"
            ) from None


Action = Literal["allow", "deny", "ask"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one call. ``reason`` is a sentence for the user; ``rule`` is the text of
    the rule that decided it, or None when the mode did."""

    action: Action
    reason: str
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """How an asked call (or a team's plan gate) was answered. ``by``: user (an approve),
    timeout (no answer came in time), headless (nobody can answer any more: the front end's
    input ended). ``edit``: the plan gate only, the whole plan JSON the user answered with."""

    allowed: bool
    reason: str = ""
    by: DecidedBy = "user"
    edit: Any = None


def mode_note(mode: PermissionMode | str, *, can_ask: bool, timeout: float | None) -> str | None:
    """One sentence a headless run says up front: its mode and what it will deny or ask about,
    with what to do; None when the mode allows everything."""
    mode = PermissionMode.parse(mode)
    what = {
        PermissionMode.READ_ONLY: "edits and commands",
        PermissionMode.ASK: "edits and commands",
        PermissionMode.AUTO_EDIT: "commands",
    }.get(mode)
    if what is None:
        return None
    if mode is PermissionMode.READ_ONLY:
        return (
            f"permission mode read-only: {what} are denied; "
            "use --permission-mode auto-edit or full-auto to allow them"
        )
    wider = "auto-edit or full-auto" if mode is PermissionMode.ASK else "full-auto"
    if can_ask:
        wait = f"within {timeout:g} s " if timeout else ""
        return (
            f"permission mode {mode}: {what} not allowed by a rule are asked about "
            f"(permission.asked); answer each with an approve line {wait}or it is denied"
        )
    return (
        f"permission mode {mode}: {what} not allowed by a rule will be denied (headless: "
        f"nobody can approve them); use --permission-mode {wider}"
    )


_RULE_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.:-]*)\s*(?:\((.*)\))?\s*", re.DOTALL)
_RULE_FORM = 'expected TOOL or TOOL(PATTERN), e.g. "read", "bash(git status*)", "edit(src/*)"'


@dataclass(frozen=True, slots=True)
class Rule:
    """One allow or deny rule: a tool name and an optional fnmatch pattern on the subject."""

    tool: str
    pattern: str | None = None

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Parse ``"read"`` or ``"bash(git status*)"``; raise ConfigError naming a bad rule."""
        if not isinstance(text, str):
            raise ConfigError(f"permission rule {text!r} is not a string", hint=_RULE_FORM)
        m = _RULE_RE.fullmatch(text)
        if m is None:
            raise ConfigError(f"malformed permission rule {text!r}", hint=_RULE_FORM)
        tool, pattern = m.group(1), m.group(2)
        if pattern is not None and not pattern.strip():
            raise ConfigError(
                f"permission rule {text!r} has an empty pattern",
                hint=f'write "{tool}" to match every {tool} call; {_RULE_FORM}',
            )
        return cls(tool, pattern)

    def __str__(self) -> str:
        return self.tool if self.pattern is None else f"{self.tool}({self.pattern})"

    def applies_to(self, tool: Tool) -> bool:
        """A rule names one tool, except ``edit``, which stands for every tool that writes files
        (edit and write): ``deny = ["edit(.env)"]`` must not be dodged by writing instead."""
        return self.tool == tool.name or (self.tool == "edit" and tool.permission == "edit")

    def matches(self, subject: str) -> bool:
        return self.pattern is None or fnmatchcase(subject, self.pattern)


_OPERATORS = set(";&|<>\n")
_HARMLESS_REDIRECT = re.compile(r"(?:[<>]&(?:\d+|-)|(?:&>>?|>>?|<)\s*/dev/null)(?=$|[\s;&|)])")


def split_command(command: str) -> list[str] | None:
    """Split a shell command into simple commands at control operators and redirections.

    Quote-aware (``'…'``, ``"…"``, backslash escapes). Returns None when unsure: command
    substitution anywhere, an unclosed quote, a trailing backslash. Empty pieces are dropped.
    """
    pieces: list[str] = []
    buf: list[str] = []
    quote: str | None = None
    i, n = 0, len(command)
    while i < n:
        c = command[i]
        if quote == "'":
            buf.append(c)
            if c == "'":
                quote = None
            i += 1
            continue
        if c == "\\":
            if i + 1 >= n:
                return None
            buf.append(command[i : i + 2])
            i += 2
            continue
        if c == "`" or command.startswith("$(", i):
            return None
        if quote == '"':
            buf.append(c)
            if c == '"':
                quote = None
            i += 1
            continue
        if c in "'\"":
            quote = c
            buf.append(c)
        elif c in _OPERATORS:
            harmless = _HARMLESS_REDIRECT.match(command, i)
            if harmless is not None:
                # "2>&1", ">/dev/null": they write nothing, so the command stays one piece.
                text = "".join(buf)
                fd = re.search(r"(?:^|\s)(\d+)$", text)
                buf = [text[: fd.start(1)] if fd else text]
                i = harmless.end()
                continue
            pieces.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    if quote is not None:
        return None
    pieces.append("".join(buf))
    return [p.strip() for p in pieces if p.strip()]


_CRUDE_SPLIT = re.compile(r"[;&|<>\n`(){}]|\$\(")


def _deny_candidates(command: str) -> list[str]:
    whole = command.strip()
    candidates = [whole]
    candidates += split_command(command) or []
    candidates += [p.strip() for p in _CRUDE_SPLIT.split(command) if p.strip()]
    # Quotes around a word don't change what runs: "rm" -rf / is rm -rf /.
    candidates += [re.sub(r"[\"'\\]", "", c) for c in candidates]
    return list(dict.fromkeys(candidates))


class Permissions:
    """Decides tool calls for one session.

    ``mode`` is a :class:`PermissionMode` or its name; ``allow`` and ``deny`` are rule strings
    (parsed now, so a bad rule fails at startup with a ConfigError). ``workspace`` (a
    :class:`mcode.tools.workspace.Workspace`), when given, is used to normalise path subjects.
    """

    def __init__(
        self,
        mode: PermissionMode | str = PermissionMode.ASK,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        workspace: Any = None,
    ) -> None:
        self.mode = PermissionMode.parse(mode)
        self.allow = [Rule.parse(r) for r in allow]
        self.deny = [Rule.parse(r) for r in deny]
        self.workspace = workspace

    def check(self, tool: Tool, args: dict[str, Any], *, can_ask: bool = True) -> Decision:
        """Decide one call. With ``can_ask=False`` (headless runs), what would be asked is
        denied instead, with a reason that says how to allow it."""
        decision = self._check(tool, args)
        if decision.action == "ask" and not can_ask:
            return Decision(
                "deny",
                f"{decision.reason}, and this run cannot ask; allow it with a rule such as "
                f'"{tool.name}" or a more permissive mode',
                None,
            )
        return decision

    def _check(self, tool: Tool, args: dict[str, Any]) -> Decision:
        name = tool.name
        subject = self._subject(tool, args)
        is_bash = name == "bash"
        for rule in self.deny:
            if not rule.applies_to(tool):
                continue
            candidates = _deny_candidates(subject) if is_bash and rule.pattern else [subject]
            if any(rule.matches(c) for c in candidates):
                return Decision("deny", f"denied by rule {rule}", str(rule))
        if tool.permission == "read":
            return Decision("allow", f"{name} only reads, which every mode allows")
        if self.mode is PermissionMode.READ_ONLY:
            return Decision("deny", f"{name} is not allowed in read-only mode")
        if self.mode is PermissionMode.FULL_AUTO:
            return Decision("allow", f"full-auto mode allows {name}")
        if self.mode is PermissionMode.AUTO_EDIT and tool.permission == "edit":
            return Decision("allow", f"auto-edit mode allows {name}")
        rule_hit = self._allowed_by(tool, subject, is_bash)
        if rule_hit is not None:
            return Decision("allow", f"allowed by rule {rule_hit}", rule_hit)
        if tool.permission == "computer":  # the user's screen: say how to allow it up front
            return Decision(
                "ask",
                f"{name} needs approval in {self.mode.value} mode (mcode exec --allow-computer, "
                'or an allow rule "computer", lets it run)',
            )
        return Decision("ask", f"{name} needs approval in {self.mode.value} mode")

    def _allowed_by(self, tool: Tool, subject: str, is_bash: bool) -> str | None:
        rules = [r for r in self.allow if r.applies_to(tool)]
        if not rules:
            return None
        for rule in rules:
            if rule.pattern is None:
                return str(rule)
        if not is_bash:
            hit = next((r for r in rules if r.matches(subject)), None)
            return None if hit is None else str(hit)
        pieces = split_command(subject)
        if not pieces:  # unsure (or empty): never allowed by a pattern
            return None
        used: list[str] = []
        for piece in pieces:
            hit = next((r for r in rules if r.matches(piece)), None)
            if hit is None:
                return None
            if str(hit) not in used:
                used.append(str(hit))
        return ", ".join(used)

    def _subject(self, tool: Tool, args: dict[str, Any]) -> str:
        subject = tool.subject(args)
        path = args.get("path")
        if isinstance(path, str) and path and subject == path:
            return self._normalise_path(path)
        return subject

    def _normalise_path(self, path: str) -> str:
        if self.workspace is not None:
            try:
                return str(self.workspace.relative(self.workspace.resolve(path)))
            except MCodeError:
                pass  # outside the workspace: the tool itself will refuse it
        return os.path.normpath(path)
