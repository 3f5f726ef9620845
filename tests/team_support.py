"""What the team tests share: the repository and environment a team runs in, the flags of a
``mcode exec --team`` that prints its events, reading those events, and a live run on the
scripted model server (tests/team_model.py answers per role).

The fixtures are picked up by assignment, so that a test file's parameters name them as
before without an import the linters read as unused::

    from tests import team_support

    repo, env = team_support.repo, team_support.env
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Live, clean_env, exec_args, make_repo
from tests.model_server import ScriptedServer
from tests.team_model import Req, TeamModel, call, say

TEAM = ("--team", "--permission-mode", "full-auto", "--output-format", "stream-json")
# The same with stream-json in too: the plan gate asks, steers and answers come on stdin.
LIVE = (*TEAM, "--input-format", "stream-json")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "demo\n"})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def until_agent(live: Live, kind: str, agent: str, timeout: float = 60) -> dict[str, Any]:
    """Read ``live``'s events until one of ``kind`` from conversation ``agent``."""
    deadline = time.monotonic() + timeout
    while True:
        for e in live.events:
            if e["type"] == kind and e.get("agent") == agent:
                return e
        n = sum(e["type"] == kind for e in live.events) + 1
        live.until(kind, n=n, timeout=max(0.1, deadline - time.monotonic()))


def writer(req: Req) -> dict[str, Any]:
    """A producer that writes ``<task id>.txt`` and answers."""
    if req.after_user == 0:
        return call("write", {"path": f"{req.task_id}.txt", "content": f"{req.task_id}\n"})
    return say("done")


def answer(request_id: str, decision: str, **more: Any) -> str:
    """An ``approve`` line for a ``team.plan.asked`` (allow, deny, or edit with ``plan``)."""
    return json.dumps({"type": "approve", "request_id": request_id, "decision": decision, **more})


class Ran:
    """A live run's end: its exit code and every event it printed."""

    code: int
    events: list[dict[str, Any]]
    stderr: str


@contextmanager
def live_team(
    repo: Path, env: dict[str, str], model: TeamModel, *args: str, steps: int = 40
) -> Iterator[tuple[Live, Ran]]:
    """A running ``mcode exec --team`` with stream-json in and out (LIVE, then ``args``: the
    prompt last) on a scripted server answering ``steps`` requests with ``model``. Inside the
    block the test reads and sends; leaving it closes stdin and waits for the exit, whose code
    and events ``Ran`` holds then (the process is killed if it is still there)."""
    ran = Ran()
    with ScriptedServer([model] * steps) as server:
        live = Live(exec_args(server, *LIVE, *args), cwd=repo, env=env)
        try:
            yield live, ran
            live.close()
            ran.code = live.wait(timeout=60)
        finally:
            live.kill()
    ran.events, ran.stderr = live.events, live.stderr
