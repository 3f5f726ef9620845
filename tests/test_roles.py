"""Agent roles (mcode/roles.py) as the ``task`` tool uses them, through ``mcode exec`` against
the scripted model server: one role name from a plugin, the user and the project (which one
runs), a malformed role file (named with its line; the session goes on), and a role's model
reaching the sub-agent's requests (the same provider, another provider, one that cannot be had).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import clean_env, exec_args, make_repo, mcode, tool_messages, trust

from mcode.roles import RoleError, RoleSource, load_role, load_roles, role_dirs


def role(name: str, body: str, **meta: str) -> str:
    lines = [
        f"name: {name}",
        "description: checks a claim",
        *(f"{k}: {v}" for k, v in meta.items()),
    ]
    return "---\n" + "\n".join(lines) + "\n---\n" + body + "\n"


def delegate(role_name: str) -> dict:
    args = {"description": "check", "prompt": "Is the version 1.2?", "role": role_name}
    return {"tool_calls": [{"id": "t1", "name": "task", "arguments": args}]}


def system_of(body: dict) -> str:
    return body["messages"][0]["content"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"app.py": "VERSION = '1.2'\n"})


@pytest.fixture
def user_agents(home: Path) -> Path:
    folder = home / "config" / "mcode" / "agents"
    folder.mkdir(parents=True)
    return folder


def plugin_with_role(home: Path, text: str) -> Path:
    root = home / "config" / "mcode" / "plugins" / "acme"
    (root / ".claude-plugin").mkdir(parents=True)
    (root / ".claude-plugin" / "plugin.json").write_text(json.dumps({"name": "acme"}))
    (root / "agents").mkdir()
    (root / "agents" / "checker.md").write_text(text)
    return root


def run_checker(model_server, repo: Path, env: dict[str, str], *extra: str):
    """A session whose model delegates to the ``checker`` role, then answers; the server's
    request bodies (parent, sub-agent, parent) and the run."""
    server = model_server([delegate("checker"), {"text": "yes"}, {"text": "It is 1.2."}])
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", *extra), "check", cwd=repo, env=env
    )
    assert run.code == 0, run.stderr
    return server, run


def test_one_role_name_from_a_plugin_the_user_and_the_project_runs_the_projects(
    model_server, repo, env, home, user_agents
):
    plugin_with_role(home, role("checker", "You are the plugin's checker."))
    (user_agents / "checker.md").write_text(role("checker", "You are the user's checker."))
    (repo / ".mcode" / "agents").mkdir(parents=True)
    (repo / ".mcode" / "agents" / "checker.md").write_text(
        role("checker", "You are the project's checker.")
    )
    # An untrusted project's role does not apply: the user's runs.
    server, _ = run_checker(model_server, repo, env)
    assert system_of(server.bodies[1]) == "You are the user's checker."
    # Trusted, the project's wins over the user's and the plugin's.
    trust(repo, env)
    server, _ = run_checker(model_server, repo, env)
    assert system_of(server.bodies[1]) == "You are the project's checker."
    # Without the project's and the user's, the plugin's.
    (repo / ".mcode" / "agents" / "checker.md").unlink()
    (user_agents / "checker.md").unlink()
    server, _ = run_checker(model_server, repo, env)
    assert system_of(server.bodies[1]) == "You are the plugin's checker."
    # Offered once, next to the built-in roles.
    task = next(t for t in server.bodies[0]["tools"] if t["function"]["name"] == "task")
    enum = task["function"]["parameters"]["properties"]["role"]["enum"]
    assert enum == ["explore", "edit", "checker"]


def test_role_precedence_is_plugin_then_user_then_trusted_project(tmp_path: Path) -> None:
    home, config, project, plugin = (tmp_path / n for n in ("home", "cfg", "project", "plugin"))
    for folder, who in (
        (plugin, "plugin"),
        (home / ".claude" / "agents", "claude-user"),
        (config / "agents", "user"),
        (project / ".claude" / "agents", "claude-project"),
        (project / ".mcode" / "agents", "project"),
    ):
        folder.mkdir(parents=True)
        (folder / "checker.md").write_text(role("checker", f"from {who}"))
    plugins = [RoleSource(plugin, "plugin acme")]

    def winner(trusted: bool, gone: tuple[Path, ...] = ()) -> tuple[str, str]:
        for folder in gone:
            (folder / "checker.md").unlink()
        roles = load_roles(role_dirs(project, config, home, trusted=trusted, plugins=plugins))
        return roles["checker"].instructions, roles["checker"].origin

    assert winner(trusted=False) == ("from user", "user")
    assert winner(trusted=True) == ("from project", "project")
    assert winner(True, (project / ".mcode" / "agents",)) == ("from claude-project", "project")
    assert winner(True, (project / ".claude" / "agents", config / "agents")) == (
        "from claude-user",
        "user",
    )
    assert winner(True, (home / ".claude" / "agents",)) == ("from plugin", "plugin acme")


def test_a_malformed_role_names_the_file_and_line_and_the_session_goes_on(
    model_server, repo, env, user_agents
):
    bad = user_agents / "broken.md"
    bad.write_text("---\nname: broken\ndescription: ok\ntools Read\n---\nbody\n")
    with pytest.raises(RoleError) as caught:
        load_role(bad)
    assert caught.value.message.startswith(f"{bad}:4: cannot read 'tools Read'")
    assert "key: value" in caught.value.hint
    # YAML proper that is not valid: the line PyYAML stopped at.
    bad.write_text("---\nname: broken\ndescription: |\n  fine\n bad: [\n---\nbody\n")
    with pytest.raises(RoleError, match=f"^{bad}:5: front matter is not valid YAML"):
        load_role(bad)

    # In a session: said once at the start, and the other roles still work.
    (user_agents / "checker.md").write_text(role("checker", "You are the checker."))
    server, run = run_checker(model_server, repo, env)
    errors = [e["data"] for e in run.events() if e["type"] == "error"]
    assert [(e["kind"], e["recoverable"]) for e in errors] == [("RoleError", True)]
    assert errors[0]["message"].startswith(f"{bad}:5: ")
    assert system_of(server.bodies[1]) == "You are the checker."
    task = next(t for t in server.bodies[0]["tools"] if t["function"]["name"] == "task")
    assert "broken" not in task["function"]["parameters"]["properties"]["role"]["enum"]


def test_a_roles_model_is_what_the_sub_agents_requests_name(model_server, repo, env, user_agents):
    (user_agents / "checker.md").write_text(
        role("checker", "You are the checker.", model="judge-model")
    )
    server, _ = run_checker(model_server, repo, env)
    parent, child, parent_again = server.bodies
    assert (parent["model"], child["model"], parent_again["model"]) == (
        "test-model",
        "judge-model",
        "test-model",
    )
    assert system_of(child) == "You are the checker."
    assert tool_messages(parent_again)[0]["content"] == "yes"


def test_a_roles_thinking_switch_reaches_the_sub_agents_requests_only(
    model_server, repo, env, user_agents
):
    (user_agents / "checker.md").write_text(
        role("checker", "Check.", model="claude-opus-4-1", thinking="off")
    )
    server = model_server([delegate("checker"), {"text": "yes"}, {"text": "It is 1.2."}])
    flags = ["--model", "claude-sonnet-4-5", "--thinking", "on"]
    run = mcode(*exec_args(server, *flags, wire="anthropic"), "check", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    parent, child, parent_again = server.bodies
    assert (parent["model"], child["model"]) == ("claude-sonnet-4-5", "claude-opus-4-1")
    assert parent["thinking"]["type"] == parent_again["thinking"]["type"] == "enabled"
    assert child["thinking"] == {"type": "disabled"}


def test_claude_model_aliases_run_on_the_sessions_model_off_anthropic(
    model_server, repo, env, user_agents
):
    # A Claude Code agent file as it is (model: sonnet), on another provider: it still runs.
    (user_agents / "checker.md").write_text(role("checker", "Check.", model="sonnet"))
    server, _ = run_checker(model_server, repo, env)
    assert [b["model"] for b in server.bodies] == ["test-model"] * 3


def test_a_role_on_another_provider_is_sent_there_with_that_providers_key(
    model_server, repo, home, user_agents
):
    (user_agents / "checker.md").write_text(
        role("checker", "You are the checker.", model="anthropic:claude-opus-4-1")
    )
    key = "role-key-0123456789abcdef"
    # Its key in a variable whose name does not look secret: still redacted once it is used.
    (home / "config" / "mcode" / "config.toml").write_text(
        '[providers.anthropic]\napi_key_env = "ROLE_ANTHROPIC"\n'
    )
    echo = {"command": "echo key=[$ROLE_ANTHROPIC]"}
    server = model_server(
        [
            delegate("checker"),
            {"tool_calls": [{"id": "s1", "name": "bash", "arguments": echo}]},
            {"text": f"yes (I was sent {key})"},
            {"text": "It is 1.2."},
        ]
    )
    env = clean_env(home, ROLE_ANTHROPIC=key, ANTHROPIC_BASE_URL=server.anthropic_base_url)
    flags = ["--output-format", "stream-json", "--permission-mode", "full-auto"]
    run = mcode(*exec_args(server, *flags), "check", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    parent, child, child_again, parent_again = server.requests
    # The sub-agent's command did not see the key's variable.
    results = [
        b for m in child_again.body["messages"] for b in m["content"] if b["type"] == "tool_result"
    ]
    assert "key=[]" in json.dumps(results)
    assert parent.path == parent_again.path == "/v1/chat/completions"
    assert child.path.endswith("/v1/messages") and child.body["model"] == "claude-opus-4-1"
    assert child.headers["x-api-key"] == key and "authorization" not in parent.headers
    assert child.body["system"][0]["text"] == "You are the checker."
    assert key not in run.stdout and "yes (I was sent [REDACTED])" in run.stdout


def test_a_roles_model_that_cannot_be_had_is_an_error_event_and_the_parent_goes_on(
    model_server, repo, env, user_agents
):
    # Another provider whose key is not set: no sub-agent starts, the task call fails clearly.
    (user_agents / "checker.md").write_text(
        role("checker", "Check.", model="anthropic:claude-opus-4-1")
    )
    server = model_server([delegate("checker"), {"text": "I checked it myself: 1.2."}])
    run = mcode(*exec_args(server, "--output-format", "stream-json"), "check", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert len(server.requests) == 2  # the parent's two calls, no sub-agent's
    (error,) = [e for e in run.events() if e["type"] == "error"]
    assert error.get("agent") is None and error["data"]["kind"] == "RoleError"
    message = error["data"]["message"]
    assert "'anthropic:claude-opus-4-1'" in message and "ANTHROPIC_API_KEY" in message
    (result,) = tool_messages(server.bodies[1])
    assert result["content"].startswith("Error: the sub-agent's model 'anthropic:claude-opus-4-1'")
    finished = [e for e in run.events() if e["type"] == "turn.finished"]
    assert [f["data"]["reason"] for f in finished] == ["completed"]


def test_a_model_the_server_refuses_fails_the_sub_agent_naming_it(
    model_server, repo, env, user_agents
):
    (user_agents / "checker.md").write_text(role("checker", "Check.", model="no-such-model"))
    refused = {"status": 404, "body": {"error": {"message": "model no-such-model not found"}}}
    server = model_server([delegate("checker"), refused, {"text": "Done without it."}])
    run = mcode(*exec_args(server, "--output-format", "stream-json"), "check", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert server.bodies[1]["model"] == "no-such-model"
    (result,) = tool_messages(server.bodies[2])
    assert result["content"].startswith("Error: the sub-agent task-")
    assert "(on no-such-model) stopped (error)" in result["content"]
    assert "model no-such-model not found" in result["content"]


def test_under_max_cost_a_role_on_a_model_priced_otherwise_is_refused(
    model_server, repo, env, user_agents
):
    # The run's cost is kept at the session model's price: a sub-agent on another price could
    # not be counted right, so it does not start, and the parent goes on.
    (user_agents / "checker.md").write_text(role("checker", "Check.", model="gpt-4o"))
    server = model_server([delegate("checker"), {"text": "Checked it myself."}])
    flags = ["--output-format", "stream-json", "--model", "gpt-4.1", "--max-cost", "5"]
    run = mcode(*exec_args(server, *flags), "check", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert [b["model"] for b in server.bodies] == ["gpt-4.1", "gpt-4.1"]
    (error,) = [e["data"] for e in run.events() if e["type"] == "error"]
    assert "--max-cost" in error["message"] and "gpt-4o" in error["message"]
    assert "--max-tokens" in error["hint"]
