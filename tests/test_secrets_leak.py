"""A planted key never leaves mcode: not in the events a front end gets (stream-json), not in
the store, not on stderr, not in an error message, not in the tool output shown.

The key is planted where a user's keys live: the environment variable the user config names
(``api_key_env``), a second credential mcode does not use (``DEPLOY_TOKEN``), and a ``.env`` file
in the project that the model reads with ``read`` and prints with ``bash``. The model itself
repeats the key in its answer, and the server's 401 echoes it back, as some proxies do.
(mcode/secrets.py redacts the keys it holds from every event line and scrubs key-shaped text
from error messages; mcode/tools/child_env.py keeps credentials out of the commands' environment.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers import clean_env, exec_args, make_repo, mcode

KEY = "sk-planted-7f3a9c2e41d84b6f9a0c5e17d2b3"  # the model API key mcode holds
TOKEN = "dpl-0c9e8d7f6a5b4c3d2e1f0a9b8c7d"  # another credential, which mcode does not use


def leaks(text: str) -> list[str]:
    """The planted secrets (or a long piece of one) found in ``text``."""
    return [s for s in (KEY, TOKEN) if s in text or s[:16] in text or s[-16:] in text]


def test_a_planted_key_appears_in_no_event_store_log_error_or_tool_output(
    model_server, tmp_path: Path
):
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "app.py": "print('hi')\n"})
    (repo / ".env").write_text(f"TEAM_MODEL_KEY={KEY}\nDEPLOY_TOKEN={TOKEN}\n")
    home = tmp_path / "home"
    (home / "config" / "mcode").mkdir(parents=True)
    (home / "config" / "mcode" / "config.toml").write_text(
        '[providers.openai]\napi_key_env = "TEAM_MODEL_KEY"\n'
    )
    env = clean_env(home, TEAM_MODEL_KEY=KEY, DEPLOY_TOKEN=TOKEN)

    bash = 'cat .env; echo "[$TEAM_MODEL_KEY] [$DEPLOY_TOKEN]"; env | grep -c -e sk-planted || true'
    server = model_server(
        [
            {"tool_calls": [{"id": "r1", "name": "read", "arguments": {"path": ".env"}}]},
            {"tool_calls": [{"id": "b1", "name": "bash", "arguments": {"command": bash}}]},
            {"text": f"The key is {KEY}, the token {TOKEN}."},
        ]
    )
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "Read .env and show me what is in it.",
        cwd=repo,
        env=env,
    )
    events = run.events()
    # The run went where the script says: the key really was sent, read, printed and echoed.
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    tools = {e["data"]["id"]: e["data"] for e in events if e["type"] == "tool.finished"}
    assert tools["r1"]["ok"] and tools["b1"]["ok"]
    assert "TEAM_MODEL_KEY=[REDACTED]" in json.dumps(tools["r1"])
    # The command's environment never had them: the echo prints empty brackets.
    assert "[] []" in json.dumps(tools["b1"]), tools["b1"]

    # Front end: every event line, including tool output and the model's own text.
    assert not leaks(run.stdout), "in stream-json"
    assert run.code == 0 and not leaks(run.stderr), run.stderr

    # The next run's server answers 401 and echoes the key back, as some proxies do.
    echo = model_server(
        [{"status": 401, "body": {"error": {"message": f"Incorrect API key provided: {KEY}"}}}]
    )
    session_id = events[0]["session_id"]
    again = mcode(
        *exec_args(echo, "--resume", session_id, "--output-format", "stream-json"),
        "Again.",
        cwd=repo,
        env=env,
    )
    assert again.code == 1 and "HTTP 401" in again.stderr and "Incorrect API key" in again.stderr
    assert not leaks(again.stderr), again.stderr
    assert not leaks(again.stdout), "in the error event"
    # The store, read as bytes (the database and its WAL), and everything else under the
    # user's data and config folders.
    for path in sorted((home / "data").rglob("*")) + sorted((home / "config").rglob("*")):
        if path.is_file():
            assert not leaks(path.read_bytes().decode("latin-1")), path
    # The project: nothing but the .env the user wrote holds them.
    for path in repo.rglob("*"):
        if path.is_file() and ".git" not in path.parts and path.name != ".env":
            assert not leaks(path.read_bytes().decode("latin-1")), path
    record_secret_rows()


def record_secret_rows() -> None:
    rows = os.environ.get("MCODE_RELIABILITY_ROWS")
    if rows:
        with open(rows, "a") as f:
            for where in (
                "stream-json events (tool output, model text)",
                "the session store (database and WAL, as bytes)",
                "stderr and the 401 error message echoing the key",
                "the commands' environment (echo $VAR, env)",
            ):
                f.write(json.dumps({"table": "secrets", "where": where}) + "\n")
