"""The ``task`` tool end to end through ``mcode exec``: a sub-agent in a child conversation
answers the parent's delegated job, against the scripted server over loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import Live, clean_env, exec_args, make_repo, mcode, stored_events, tool_messages

from mcode.store import history_of


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n", "b.txt": "beta\n"})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


def _delegate(prompt: str = "Find which file says alpha.", role: str | None = None) -> dict:
    args: dict[str, Any] = {"description": "find alpha", "prompt": prompt}
    if role:
        args["role"] = role
    return {"tool_calls": [{"id": "t1", "name": "task", "arguments": args}]}


def _tools(body: dict) -> list[str]:
    return [t["function"]["name"] for t in body["tools"]]


def _system(body: dict) -> str:
    return body["messages"][0]["content"]


def test_a_sub_agent_answers_the_delegated_job_with_its_own_prompt_and_tools(
    model_server, repo, env, tmp_path
):
    server = model_server(
        [
            _delegate(),
            {"tool_calls": [{"id": "s1", "name": "grep", "arguments": {"pattern": "alpha"}}]},
            {"text": "a.txt line 1 says alpha"},
            {"text": "The file is a.txt."},
        ]
    )
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "Which file says alpha? Use a sub-agent.",
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    parent, child, child_again, parent_again = server.bodies
    # The child: a fresh context whose first user message is the job, its own system prompt,
    # only the read-only tools (never task itself).
    assert "sub-agent" in _system(child) and _system(child) != _system(parent)
    assert [m["role"] for m in child["messages"]] == ["system", "user"]
    assert child["messages"][1]["content"] == "Find which file says alpha."
    assert _tools(child) == ["read", "grep", "glob", "ls"]
    assert "task" in _tools(parent)
    assert "alpha" in tool_messages(child_again)[0]["content"]  # its grep ran
    # Its answer is the parent's tool result; the parent's history is untouched otherwise.
    (result,) = tool_messages(parent_again)
    assert result["tool_call_id"] == "t1" and result["content"] == "a.txt line 1 says alpha"
    assert "s1" not in json.dumps(parent_again["messages"])  # the child's call stays its own

    events = run.events()
    agents = {e.get("agent") for e in events}
    (agent,) = agents - {None}
    assert agent.startswith("task-")
    child_types = [e["type"] for e in events if e.get("agent") == agent]
    assert child_types[0] == "turn.started" and child_types[-1] == "turn.finished"
    assert "tool.finished" in child_types
    # The child's usage counts into the session's totals: four model calls.
    finished = events[-1]
    assert finished["type"] == "session.finished" and finished["data"]["model_calls"] == 4
    # Its events are stored; its history rebuilds from them, the main one without them.
    stored = stored_events(tmp_path / "home", events[0]["session_id"])
    assert [m.text for m in history_of(stored, agent=agent)][-1] == "a.txt line 1 says alpha"
    main = history_of(stored)
    assert [m.role for m in main] == ["user", "assistant", "tool", "assistant"]


def test_a_failing_sub_agent_returns_a_clear_error_result(model_server, repo, env):
    server = model_server(
        [
            _delegate(),
            {"status": 400, "body": {"error": {"message": "bad request from the child"}}},
            {"text": "I will look myself."},
        ]
    )
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "Which file says alpha?",
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    (result,) = tool_messages(server.bodies[2])
    assert result["content"].startswith("Error: the sub-agent task-")
    assert "stopped (error)" in result["content"]
    assert "bad request from the child" in result["content"]
    finished = [e for e in run.events() if e["type"] == "turn.finished"]
    assert [(e.get("agent") is None, e["data"]["reason"]) for e in finished] == [
        (False, "error"),
        (True, "completed"),
    ]


def test_cancel_mid_child_cancels_the_child_and_the_parent(model_server, repo, env, tmp_path):
    server = model_server([_delegate(), {"text": "never", "delay": 30}, {"text": "unused"}])
    flags = ["--permission-mode", "full-auto", "--input-format", "stream-json"]
    run = Live(
        [*exec_args(server, *flags, "--output-format", "stream-json"), "Delegate it."],
        cwd=repo,
        env=env,
    )
    try:
        started = run.until("turn.started", n=2)  # the child's
        assert started.get("agent", "").startswith("task-")
        while len(server.requests) < 2:  # the child's model call is under way
            time.sleep(0.02)
        run.send(json.dumps({"type": "cancel"}))
        run.until("turn.finished", n=2, timeout=20)
        run.close()
        assert run.wait() == 130, run.stderr
    finally:
        run.kill()
    finished = [e for e in run.events if e["type"] == "turn.finished"]
    assert [(e.get("agent") is None, e["data"]["reason"]) for e in finished] == [
        (False, "cancelled"),
        (True, "cancelled"),
    ]
    # The parent's task call is answered as cancelled, and nothing more was asked.
    stored = stored_events(tmp_path / "home", run.events[0]["session_id"])
    (call,) = [e for e in stored if e["type"] == "tool.finished" and e.get("agent") is None]
    assert call["data"]["id"] == "t1" and "cancelled" in call["data"]["message"]["parts"][0]["text"]
    assert len(server.requests) == 2
