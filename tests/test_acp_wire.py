"""What a client gets for what it should not send: `mcode acp` fed raw lines on stdin answers
each bad one with the JSON-RPC error it is, says what was wrong, and keeps serving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from acp_client import acp_args
from helpers import clean_env, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


def request(id: int, method: str, params: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params})


def test_bad_messages_get_errors_and_the_agent_keeps_serving(model_server, repo, tmp_path):
    server = model_server([])
    lines = [
        "this is not json",
        "[1, 2, 3]",
        json.dumps({"jsonrpc": "2.0", "id": {"nested": 1}, "method": "initialize"}),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": 7}),
        request(2, "no/such/method", {}),
        request(3, "session/prompt", {"prompt": "not a list"}),
        request(4, "session/prompt", {"sessionId": "nope", "prompt": []}),
        request(5, "session/new", {"cwd": "relative/path", "mcpServers": []}),
        request(6, "_mcode/steer", {"sessionId": 5}),
        request(7, "initialize", {"protocolVersion": 1}),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "mcode", *acp_args(server)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=repo,
        env=clean_env(tmp_path / "home"),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    errors = {r["id"]: r["error"] for r in replies if "error" in r and r["id"] is not None}
    anonymous = [r["error"]["code"] for r in replies if r["id"] is None]
    assert anonymous == [-32700, -32600, -32600]  # not JSON, not an object, an id of {}
    assert errors[1]["code"] == -32600  # method not a string
    assert errors[2]["code"] == -32601
    assert errors[3]["code"] == -32602  # no sessionId, prompt not a list
    assert errors[4]["code"] == -32602 and "no open session" in errors[4]["data"]["message"]
    assert errors[5]["code"] == -32602 and "absolute" in errors[5]["data"]["message"]
    assert errors[6]["code"] == -32602 and errors[6]["data"]["hint"]
    # and after all that, it still answers
    (ok,) = [r for r in replies if r["id"] == 7]
    assert ok["result"]["agentInfo"]["name"] == "mcode"
