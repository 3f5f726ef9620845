"""Commands the model runs never see mcode's API keys or other credentials in their
environment, unless the user passes one through by name."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from helpers import clean_env, exec_args, make_repo, mcode, stored_events

from mcode.messages import Message
from mcode.tools.child_env import child_environment, looks_secret

KEY = "sk-test-0123456789abcdefLEAKME"
PASSED = "ghp_passedThroughOnPurpose42"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# r\n"})


def secret_env(home: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        home,
        OPENAI_API_KEY=KEY,
        ANTHROPIC_API_KEY="sk-ant-other-provider-key-1234",
        GITHUB_TOKEN=PASSED,
        AWS_SECRET_ACCESS_KEY="aws-secret-value-5678",
        DB_PASSWORD="db-password-value-9012",
        KEYBOARD_LAYOUT="dvorak",  # a name that merely starts like KEY
        SSH_AUTH_SOCK="/tmp/agent.sock",
        **extra,
    )


SCRIPT = [
    {
        "tool_calls": [
            {"id": "b1", "name": "bash", "arguments": {"command": "echo $OPENAI_API_KEY | base64"}},
            {"id": "b2", "name": "bash", "arguments": {"command": "env"}},
        ]
    },
    {"text": "done"},
]


def leaked(text: str) -> list[str]:
    encoded = base64.b64encode((KEY + "\n").encode()).decode()
    values = [KEY, encoded, encoded[:16], "sk-ant-other", "aws-secret-value", "db-password-value"]
    return [v for v in values if v in text]


@pytest.mark.parametrize("allow_by", ["config", "env"])
def test_bash_gets_no_keys_but_what_the_user_passes(model_server, repo, tmp_path, allow_by):
    home = tmp_path / "home"
    extra = {}
    if allow_by == "config":
        (home / "config" / "mcode").mkdir(parents=True)
        (home / "config" / "mcode" / "config.toml").write_text('[tools]\npass_env = ["GITHUB_*"]\n')
    else:
        extra["MCODE_TOOLS_PASS_ENV"] = "GITHUB_TOKEN"
    server = model_server(SCRIPT)
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "show me",
        cwd=repo,
        env=secret_env(home, **extra),
    )
    assert run.code == 0, run.stderr
    finished = {
        e["data"]["id"]: Message.from_dict(e["data"]["message"]).text
        for e in run.events()
        if e["type"] == "tool.finished"
    }
    echoed, env_out = finished["b1"], finished["b2"]
    assert echoed.strip() == base64.b64encode(b"\n").decode()  # the variable was empty
    names = {line.split("=", 1)[0] for line in env_out.splitlines() if "=" in line}
    assert "OPENAI_API_KEY" not in names and "ANTHROPIC_API_KEY" not in names
    assert "AWS_SECRET_ACCESS_KEY" not in names and "DB_PASSWORD" not in names
    assert f"GITHUB_TOKEN={PASSED}" in env_out  # passed through on purpose
    assert {"KEYBOARD_LAYOUT", "SSH_AUTH_SOCK", "PATH", "HOME"} <= names
    # Nowhere: not the events, not the store, not what the model was sent.
    session_id = run.events()[0]["session_id"]
    stored = json.dumps(stored_events(home, session_id))
    sent = b"".join(r.raw for r in server.requests).decode()
    assert leaked(run.stdout) == [] and leaked(stored) == [] and leaked(sent) == []
    assert PASSED in sent  # the check above would see a key that got through


def test_a_key_under_a_custom_variable_is_dropped_by_name_and_by_value(tmp_path):
    env = {"MY_LLM": KEY, "COPY_OF_IT": f"Bearer {KEY}", "PATH": "/bin", "LANG": "C.UTF-8"}
    out = child_environment(env, drop=["MY_LLM"], secrets=[KEY])
    assert out == {"PATH": "/bin", "LANG": "C.UTF-8"}


def test_a_project_config_cannot_pass_credentials_through(repo, tmp_path):
    (repo / ".mcode").mkdir()
    (repo / ".mcode" / "config.toml").write_text('[tools]\npass_env = ["OPENAI_API_KEY"]\n')
    run = mcode("exec", "hi", cwd=repo, env=secret_env(tmp_path / "home"))
    assert run.code == 2
    assert "config.toml:2" in run.stderr and "'tools.pass_env' cannot be set" in run.stderr


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_KEY",
        "MINIMAX_API_KEY",
        "GITHUB_TOKEN",
        "aws_secret_access_key",
        "AWS_SESSION_TOKEN",
        "PGPASSWORD",
        "DB_PASSWORD",
        "MYSQL_PWD",
        "SECRET_KEY_BASE",
        "NPM_CONFIG_TOKENS",
        "HF_APIKEY",
        "GPG_PASSPHRASE",
    ],
)
def test_names_that_say_secret(name):
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name",
    [
        "KEYBOARD",
        "KEYMAP",
        "TOKENIZERS_PARALLELISM",
        "SSH_AUTH_SOCK",
        "PWD",
        "OLDPWD",
        "PATH",
        "MONKEY_BUSINESS",
        "SECRETARY",
        "GIT_ASKPASS",
    ],
)
def test_names_that_do_not(name):
    assert not looks_secret(name)
