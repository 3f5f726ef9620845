"""Permission modes, allow/deny rules, and the compound-command guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from mcode.errors import ConfigError
from mcode.permissions import Decision, PermissionMode, Permissions, Rule, split_command
from mcode.tools.base import Tool
from mcode.tools.bash import BashTool
from mcode.tools.files import EditTool, ReadTool, WriteTool
from mcode.tools.workspace import Workspace


class ComputerTool(Tool):
    name = "computer"
    description = "test double"
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }
    permission = "computer"


READ, EDIT, WRITE, BASH, COMPUTER = ReadTool(), EditTool(), WriteTool(), BashTool(), ComputerTool()
CALLS: dict[str, tuple[Tool, dict[str, Any]]] = {
    "read": (READ, {"path": "a.py"}),
    "edit": (EDIT, {"path": "a.py", "old_string": "a", "new_string": "b"}),
    "execute": (BASH, {"command": "make"}),
    "computer": (COMPUTER, {}),
}


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("read-only", {"read": "allow", "edit": "deny", "execute": "deny", "computer": "deny"}),
        ("ask", {"read": "allow", "edit": "ask", "execute": "ask", "computer": "ask"}),
        ("auto-edit", {"read": "allow", "edit": "allow", "execute": "ask", "computer": "ask"}),
        ("full-auto", {"read": "allow", "edit": "allow", "execute": "allow", "computer": "allow"}),
    ],
)
def test_mode_matrix(mode: str, expected: dict[str, str]) -> None:
    perms = Permissions(mode)
    got = {cls: perms.check(tool, args).action for cls, (tool, args) in CALLS.items()}
    assert got == expected


def test_reasons_are_sentences() -> None:
    assert Permissions("read-only").check(BASH, {"command": "ls"}) == Decision(
        "deny", "bash is not allowed in read-only mode", None
    )
    assert Permissions("ask").check(BASH, {"command": "ls"}).reason == (
        "bash needs approval in ask mode"
    )
    decision = Permissions("full-auto", deny=["bash(rm *)"]).check(BASH, {"command": "rm -rf x"})
    assert decision == Decision("deny", "denied by rule bash(rm *)", "bash(rm *)")


def test_deny_rules_win_over_every_mode_and_class() -> None:
    assert Permissions("full-auto", deny=["bash"]).check(BASH, {"command": "ls"}).action == "deny"
    assert Permissions("ask", deny=["read"]).check(READ, {"path": "a.py"}).action == "deny"
    perms = Permissions("ask", allow=["bash(git *)"], deny=["bash(git push*)"])
    assert perms.check(BASH, {"command": "git push --force"}).action == "deny"
    assert perms.check(BASH, {"command": "git log"}).action == "allow"


def test_an_edit_rule_covers_every_tool_that_writes_files() -> None:
    from mcode.tools.files import WriteTool

    perms = Permissions("full-auto", deny=["edit(.env)"])
    assert perms.check(WriteTool(), {"path": ".env", "content": "x"}).action == "deny"
    assert (
        perms.check(EDIT, {"path": ".env", "old_string": "a", "new_string": "b"}).action == "deny"
    )
    assert perms.check(WriteTool(), {"path": "ok.txt", "content": "x"}).action == "allow"
    allow = Permissions("ask", allow=["edit(docs/*)"])
    assert allow.check(WriteTool(), {"path": "docs/a.md", "content": "x"}).action == "allow"
    assert allow.check(BASH, {"command": "docs/a.md"}).action == "ask"


def test_allow_rules_cannot_override_read_only() -> None:
    perms = Permissions(PermissionMode.READ_ONLY, allow=["bash", "edit"])
    assert perms.check(BASH, {"command": "ls"}).action == "deny"
    assert perms.check(EDIT, CALLS["edit"][1]).action == "deny"


def test_allow_rules_in_ask_and_auto_edit() -> None:
    perms = Permissions("ask", allow=["bash(git status*)", "edit"])
    decision = perms.check(BASH, {"command": "git status -s"})
    assert decision == Decision("allow", "allowed by rule bash(git status*)", "bash(git status*)")
    assert perms.check(BASH, {"command": "git commit"}).action == "ask"
    assert perms.check(EDIT, CALLS["edit"][1]).rule == "edit"
    assert perms.check(WRITE, {"path": "a.py", "content": ""}).rule == "edit"  # edit covers write
    auto = Permissions("auto-edit", allow=["computer"])
    assert auto.check(COMPUTER, {}).action == "allow"
    assert auto.check(BASH, {"command": "make"}).action == "ask"


@pytest.mark.parametrize(
    "command",
    [
        "git status; rm -rf /",
        "git status && rm -rf /",
        "git status || rm -rf /",
        "git status | sh",
        "git status & rm -rf /",
        "git status\nrm -rf /",
        "git status $(rm -rf /)",
        'git status "$(rm -rf /)"',
        "git status `rm -rf /`",
        "git status > ~/.bashrc",
        "git status >> .git/hooks/pre-commit",
        "git status 'unclosed",
        "git status \\",
    ],
)
def test_compound_commands_do_not_ride_on_an_allow_rule(command: str) -> None:
    perms = Permissions("ask", allow=["bash(git status*)"])
    assert perms.check(BASH, {"command": command}).action == "ask"
    assert perms.check(BASH, {"command": command}, can_ask=False).action == "deny"


@pytest.mark.parametrize(
    "command",
    [
        "git status && git diff",
        "git status; git diff --stat | git status",
        "git status 2>&1",
        "git status >/dev/null 2>&1",
        "git diff 'a;b' \"c && d\"",
        "git diff a\\;b",
    ],
)
def test_compound_commands_whose_every_part_is_allowed(command: str) -> None:
    perms = Permissions("ask", allow=["bash(git status*)", "bash(git diff*)"])
    decision = perms.check(BASH, {"command": command})
    assert decision.action == "allow", command


def test_every_part_rule_names_the_rules_used() -> None:
    perms = Permissions("ask", allow=["bash(git status*)", "bash(git diff*)"])
    decision = perms.check(BASH, {"command": "git status && git diff"})
    assert decision.rule == "bash(git status*), bash(git diff*)"


@pytest.mark.parametrize(
    "command",
    [
        "ls && rm -rf /",
        "echo $(rm -rf /)",
        "echo `rm -rf /`",
        '"rm" -rf /',
        "(rm -rf /)",
        "ls | rm -rf /",
        "{ rm -rf /; }",
    ],
)
def test_deny_rules_catch_any_part(command: str) -> None:
    perms = Permissions("full-auto", deny=["bash(rm *)"])
    assert perms.check(BASH, {"command": command}).action == "deny", command


def test_split_command() -> None:
    assert split_command("a; b && c | d") == ["a", "b", "c", "d"]
    assert split_command("echo 'x; y' \"z|w\"") == ["echo 'x; y' \"z|w\""]
    assert split_command("make 2>&1 | tail -5") == ["make", "tail -5"]
    assert split_command("echo $(date)") is None
    assert split_command("echo 'a") is None


def test_path_rules_see_normalised_paths(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    (tmp_path / "src").mkdir()
    perms = Permissions("ask", allow=["edit(src/*)"], deny=["edit(.env)"], workspace=ws)

    def edit(path: str) -> Decision:
        return perms.check(EDIT, {"path": path, "old_string": "a", "new_string": "b"})

    assert edit("src/a.py").action == "allow"
    assert edit("./src/a.py").action == "allow"
    assert edit(str(tmp_path / "src" / "a.py")).action == "allow"
    assert edit("src/../secrets/a.py").action == "ask"
    assert edit(".env").action == "deny"
    assert edit("./src/../.env").action == "deny"
    assert edit(str(tmp_path / ".env")).action == "deny"
    no_ws = Permissions("full-auto", deny=["edit(.env)"])
    assert (
        no_ws.check(EDIT, {"path": "./.env", "old_string": "a", "new_string": "b"}).action == "deny"
    )


def test_headless_turns_ask_into_deny_with_a_way_out() -> None:
    decision = Permissions("ask").check(BASH, {"command": "make"}, can_ask=False)
    assert decision.action == "deny"
    assert "cannot ask" in decision.reason


def test_rule_parse() -> None:
    assert Rule.parse("read") == Rule("read", None)
    assert Rule.parse(" bash(git status*) ") == Rule("bash", "git status*")
    assert Rule.parse("bash(echo (hi))") == Rule("bash", "echo (hi)")
    assert str(Rule.parse("edit(src/*)")) == "edit(src/*)"
    assert Rule.parse("mcp__github__create_issue").tool == "mcp__github__create_issue"


@pytest.mark.parametrize(
    "text", ["bash(git status", "(git status)", "", "bash()", "ba sh", "bash(x)y"]
)
def test_malformed_rules_name_the_rule_and_the_expected_form(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Permissions("ask", allow=[text])
    assert repr(text) in str(info.value)
    assert "TOOL(PATTERN)" in info.value.hint


def test_unknown_mode_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown permission mode 'yolo'") as info:
        Permissions("yolo")
    assert "read-only, ask, auto-edit, full-auto" in info.value.hint
    assert PermissionMode("auto-edit") is PermissionMode.AUTO_EDIT
    assert str(PermissionMode.FULL_AUTO) == "full-auto"
