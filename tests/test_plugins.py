"""Plugins through `mcode exec` against the scripted model server: a real Claude Code-style
plugin folder (.claude-plugin/plugin.json, commands, agents, skills, hooks, .mcp.json) used
part by part, a broken manifest, enable/disable, trust, and hot reload during a session."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from helpers import Live, exec_args, make_repo, mcode, tool_messages, trust

GREET = """\
---
description: Greet someone by name
argument-hint: NAME
---
Say hello to $ARGUMENTS. Their first name is $1.
"""

CHECKER = """\
---
name: checker
description: Checks a claim against the code and answers yes or no
tools: Read, Grep
model: inherit
---
You are the checker. Answer only yes or no, then one line of evidence.
"""

SKILL = """\
---
name: release
description: How to cut a release of this project
---
RELEASE STEPS: bump the version, tag it, push the tag.
"""

HOOK_LOG = "hook-ran.txt"


def claude_plugin(root: Path, log_dir: Path) -> Path:
    """A Claude Code plugin folder, as one would find it in a marketplace."""
    (root / ".claude-plugin").mkdir(parents=True)
    (root / ".claude-plugin" / "plugin.json").write_text(
        json.dumps({"name": "acme", "version": "1.0.0", "description": "Acme's helpers"})
    )
    (root / "commands").mkdir()
    (root / "commands" / "greet.md").write_text(GREET)
    (root / "agents").mkdir()
    (root / "agents" / "checker.md").write_text(CHECKER)
    (root / "skills" / "release").mkdir(parents=True)
    (root / "skills" / "release" / "SKILL.md").write_text(SKILL)
    (root / "skills" / "release" / "checklist.md").write_text("- [ ] changelog\n")
    (root / "hooks").mkdir()
    hook = {
        "type": "command",
        "command": f"echo $CLAUDE_PLUGIN_ROOT >> {log_dir / HOOK_LOG}",
    }
    (root / "hooks" / "hooks.json").write_text(
        json.dumps({"hooks": {"PreToolUse": [{"matcher": "Read|Grep", "hooks": [hook]}]}})
    )
    return root


@pytest.fixture
def plugin(home: Path, tmp_path: Path) -> Path:
    return claude_plugin(home / "config" / "mcode" / "plugins" / "acme", tmp_path)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"app.py": "VERSION = '1.2'\n", "README.md": "hi\n"})


def of_type(run, type_: str) -> list[dict]:
    return [e["data"] for e in run.events() if e["type"] == type_]


def call(id_: str, name: str, /, **arguments) -> dict:
    return {"tool_calls": [{"id": id_, "name": name, "arguments": arguments}]}


def system_of(body: dict) -> str:
    return body["messages"][0]["content"]


def test_a_command_expands_its_template_with_the_arguments(model_server, repo, env, plugin):
    server = model_server([{"text": "Hello Ada"}, {"text": "Hello again"}])
    run = mcode(
        *exec_args(server, "--output-format", "json"), "/greet Ada Lovelace", cwd=repo, env=env
    )
    assert run.code == 0, run.stderr
    sent = server.bodies[0]["messages"][-1]["content"]
    assert "Say hello to Ada Lovelace. Their first name is Ada." in json.dumps(sent)
    assert "/greet" not in json.dumps(sent)
    # The namespaced name works too; an unknown /word is left as the user wrote it.
    run = mcode(*exec_args(server, "--output-format", "json"), "/acme:greet Bob", cwd=repo, env=env)
    assert "Say hello to Bob." in json.dumps(server.bodies[1]["messages"][-1]["content"])


def test_skills_roles_and_hooks_of_one_plugin_in_a_session(
    model_server, repo, env, plugin, tmp_path
):
    server = model_server(
        [
            call("c1", "skill", name="release"),
            call("c2", "skill", name="release", file="checklist.md"),
            call("c3", "task", description="check", prompt="Is the version 1.2?", role="checker"),
            call("s1", "read", path="app.py"),  # the sub-agent's
            {"text": "yes: app.py says VERSION = '1.2'"},  # the sub-agent's answer
            {"text": "released"},
        ]
    )
    run = mcode(
        *exec_args(server, "--output-format", "stream-json"), "cut a release", cwd=repo, env=env
    )
    assert run.code == 0, run.stderr
    first = server.bodies[0]
    # The skill's name and description are in the prompt; its body is not, until loaded.
    assert "- release: How to cut a release of this project" in system_of(first)
    assert "RELEASE STEPS" not in json.dumps(first)
    assert "RELEASE STEPS: bump the version" in tool_messages(server.bodies[1])[-1]["content"]
    assert "checklist.md" in tool_messages(server.bodies[1])[-1]["content"]
    assert tool_messages(server.bodies[2])[-1]["content"] == "- [ ] changelog\n"
    # The role: offered by the task tool, run with its own prompt and only its tools.
    task = next(t for t in first["tools"] if t["function"]["name"] == "task")
    assert "checker" in task["function"]["parameters"]["properties"]["role"]["enum"]
    sub = server.bodies[3]
    assert system_of(sub).startswith("You are the checker.")
    assert sorted(t["function"]["name"] for t in sub["tools"]) == ["grep", "read"]
    assert "yes: app.py" in tool_messages(server.bodies[5])[-1]["content"]
    # The plugin's hook ran for the sub-agent's read, with its root in CLAUDE_PLUGIN_ROOT.
    assert (tmp_path / HOOK_LOG).read_text().split() == [str(plugin)]
    (loaded,) = of_type(run, "plugins.loaded")
    assert loaded["plugins"] == ["acme"] and loaded["skills"] == ["release"]
    assert loaded["roles"] == ["checker"] and loaded["commands"] == ["greet"]
    assert loaded["problems"] == []


def test_a_plugins_mcp_server_is_offered_and_called(model_server, repo, env, plugin, tmp_path):
    from test_mcp import SERVER

    (tmp_path / "srv.py").write_text(SERVER)
    servers = {
        "demo": {
            "command": sys.executable,
            "args": [str(tmp_path / "srv.py"), str(tmp_path / "s.log")],
        }
    }
    (plugin / ".mcp.json").write_text(json.dumps({"mcpServers": servers}))
    server = model_server([call("c1", "mcp__demo__add", a=40, b=2), {"text": "42"}])
    run = mcode(
        *exec_args(server, "--output-format", "json", "--permission-mode", "full-auto"),
        "add",
        cwd=repo,
        env=env,
        timeout=120,
    )
    assert run.code == 0, run.stderr
    assert tool_messages(server.bodies[1])[-1]["content"] == "42"


def test_a_broken_manifest_is_named_and_the_rest_still_loads(model_server, repo, env, home, plugin):
    broken = home / "config" / "mcode" / "plugins" / "broken"
    broken.mkdir()
    (broken / "mcode-plugin.toml").write_text('name = "broken"\ncommands = 42\nflavour = "x"\n')
    bad_toml = home / "config" / "mcode" / "plugins" / "worse"
    bad_toml.mkdir()
    (bad_toml / "mcode-plugin.toml").write_text('name = "worse\n')
    (plugin / "commands" / "odd.md").write_text("---\ndescription: odd\ncolour: red\n---\nodd\n")
    server = model_server([{"text": "fine"}])
    run = mcode(
        *exec_args(server, "--output-format", "stream-json"), "/greet Ada", cwd=repo, env=env
    )
    assert run.code == 0, run.stderr
    (loaded,) = of_type(run, "plugins.loaded")
    problems = "\n".join(loaded["problems"])
    assert f"{broken / 'mcode-plugin.toml'}: field 'commands' must be a path" in problems
    assert f"{broken / 'mcode-plugin.toml'}: unknown field 'flavour'" in problems
    assert f"{bad_toml / 'mcode-plugin.toml'}: cannot be read" in problems
    assert f"{plugin / 'commands' / 'odd.md'}: front matter: unknown key 'colour'" in problems
    assert "acme" in loaded["plugins"] and "odd" in loaded["commands"]  # the rest loads
    assert "Say hello to Ada." in json.dumps(server.bodies[0]["messages"][-1])


def test_plugins_list_enable_and_disable(model_server, repo, env, plugin):
    listed = mcode("plugins", "list", cwd=repo, env=env)
    assert listed.code == 0, listed.stderr
    rows = {line.split()[1]: line.split()[0] for line in listed.stdout.splitlines()}
    assert rows["acme"] == "on" and rows["web"] == "off" and rows["git"] == "off"
    assert mcode("plugins", "disable", "acme", cwd=repo, env=env).code == 0
    server = model_server([{"text": "x"}])
    run = mcode(*exec_args(server, "--output-format", "json"), "/greet Ada", cwd=repo, env=env)
    assert "/greet Ada" in json.dumps(server.bodies[0]["messages"][-1])  # not expanded
    assert "- release:" not in system_of(server.bodies[0])
    missing = mcode("plugins", "enable", "nope", cwd=repo, env=env)
    assert missing.code == 2 and "no plugin named 'nope'" in missing.stderr
    assert mcode("plugins", "enable", "git", cwd=repo, env=env).code == 0
    rows = {
        line.split()[1]: line.split()[0]
        for line in mcode("plugins", "list", cwd=repo, env=env).stdout.splitlines()
    }
    assert rows["acme"] == "off" and rows["git"] == "on"
    assert run.code == 0
    # [plugins] in a config file wins over what `mcode plugins` recorded.
    (plugin.parents[1] / "config.toml").write_text(
        '[plugins]\nenabled = ["acme"]\ndisabled = ["git"]\n'
    )
    rows = {
        line.split()[1]: line.split()[0]
        for line in mcode("plugins", "list", cwd=repo, env=env).stdout.splitlines()
    }
    assert rows["acme"] == "on" and rows["git"] == "off"


def test_a_project_plugin_loads_only_in_a_trusted_folder(model_server, repo, env, tmp_path):
    claude_plugin(repo / ".mcode" / "plugins" / "acme", tmp_path)
    (repo / ".claude" / "commands").mkdir(parents=True)
    (repo / ".claude" / "commands" / "deploy.md").write_text("Deploy to $1 now.\n")
    server = model_server([{"text": "x"}] * 2)
    args = exec_args(server, "--output-format", "stream-json")
    run = mcode(*args, "/deploy staging", cwd=repo, env=env)
    assert "/deploy staging" in json.dumps(server.bodies[0]["messages"][-1])
    (loaded,) = of_type(run, "plugins.loaded")
    assert loaded["plugins"] == [] and len(loaded["ignored"]) == 2
    trust(repo, env)
    run = mcode(*args, "/deploy staging", cwd=repo, env=env)
    assert "Deploy to staging now." in json.dumps(server.bodies[1]["messages"][-1])
    (loaded,) = of_type(run, "plugins.loaded")
    assert sorted(loaded["plugins"]) == ["acme", "claude-project"]


def test_a_command_file_edited_during_a_session_is_used_at_once(model_server, repo, env, plugin):
    server = model_server([{"text": "one"}, {"text": "two"}, {"text": "three"}])
    live = Live(
        [*exec_args(server, "--input-format", "stream-json", "--output-format", "stream-json")],
        cwd=repo,
        env=env,
    )
    try:
        live.send(json.dumps({"type": "user", "text": "/greet Ada"}))
        live.until("turn.finished")
        (plugin / "commands" / "greet.md").write_text("Wave at $ARGUMENTS.\n")
        (plugin / "commands" / "shout.md").write_text("SHOUT $ARGUMENTS!\n")
        live.until("plugins.reloaded", timeout=30)
        live.send(json.dumps({"type": "user", "text": "/greet Ada"}))
        live.until("turn.finished", 2)
        live.send(json.dumps({"type": "user", "text": "/shout hi"}))
        live.until("turn.finished", 3)
        live.close()
        assert live.wait() == 0, live.stderr
    finally:
        live.kill()
    said = [json.dumps(b["messages"][-1]) for b in server.bodies]
    assert "Say hello to Ada." in said[0]
    assert "Wave at Ada." in said[1]  # the edited file, without a restart
    assert "SHOUT hi!" in said[2]  # a new file
    reloaded = [e["data"] for e in live.events if e["type"] == "plugins.reloaded"]
    assert "commands" in reloaded[-1]["what"]


def test_the_model_is_told_when_a_file_it_read_was_changed_by_someone_else(
    model_server, repo, env, plugin
):
    def change_it(body: dict) -> dict:
        (repo / "app.py").write_text("VERSION = '2.0'\n")  # the user, in their editor
        time.sleep(0.05)
        return call("c2", "grep", pattern="VERSION")

    server = model_server([call("c1", "read", path="app.py"), change_it, {"text": "ok"}])
    run = mcode(*exec_args(server, "--output-format", "json"), "look", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    first, second = (tool_messages(server.bodies[i])[-1]["content"] for i in (1, 2))
    assert "someone else changed" not in first
    assert "someone else changed app.py" in second


def test_front_ends_can_list_the_commands(repo, home, plugin, monkeypatch):
    from mcode.plugin_host import expand_command, list_commands

    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("HOME", str(home))
    commands = list_commands(repo, trusted=False)
    (greet,) = [c for c in commands if c.name == "greet"]
    assert greet.description == "Greet someone by name" and greet.argument_hint == "NAME"
    assert greet.plugin == "acme" and "acme:greet" in greet.aliases
    assert expand_command("/greet Ada", commands) == "Say hello to Ada. Their first name is Ada."
    assert expand_command("/nope", commands) is None


def test_agents_md_edited_during_a_session_reaches_the_next_request(
    model_server, repo, env, home, plugin
):
    (repo / "AGENTS.md").write_text("Indent with tabs.\n")
    trust(repo, env)
    (home / "config" / "mcode" / "config.toml").write_text('[plugins]\ndisabled = ["git"]\n')
    server = model_server([{"text": "one"}, {"text": "two"}])
    live = Live(
        [*exec_args(server, "--input-format", "stream-json", "--output-format", "stream-json")],
        cwd=repo,
        env=env,
    )
    try:
        live.send(json.dumps({"type": "user", "text": "hi"}))
        live.until("turn.finished")
        (repo / "AGENTS.md").write_text("Indent with four spaces.\n")
        reloaded = live.until("plugins.reloaded", timeout=30)
        live.send(json.dumps({"type": "user", "text": "again"}))
        live.until("turn.finished", 2)
        live.close()
        assert live.wait() == 0, live.stderr
    finally:
        live.kill()
    assert "agents_md" in reloaded["data"]["what"]
    assert "Indent with tabs." in system_of(server.bodies[0])
    assert "Indent with four spaces." in system_of(server.bodies[1])
    assert "tabs" not in system_of(server.bodies[1])
