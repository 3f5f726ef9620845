"""Tool pacing is the agent's decision, carried on the request as ``tool_choice``: checked in
the bodies a served local model (``--provider local --base-url``, the scripted server in its
place) gets from ``mcode exec``, and in :func:`paced_choice` itself."""

from __future__ import annotations

from pathlib import Path

from helpers import clean_env, make_repo, mcode

from mcode.agent.ledger import LEDGER_HEADER
from mcode.agent.pacing import paced_choice
from mcode.messages import Message, TextPart, ToolCall, user_message


def _read(cid: str) -> dict:
    return {"tool_calls": [{"id": cid, "name": "read", "arguments": {"path": "a.txt"}}]}


def test_the_agent_paces_a_served_local_model_through_tool_choice(model_server, tmp_path: Path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    server = model_server([_read("c1"), {"text": "it says alpha"}])
    run = mcode(
        "exec", "--provider", "local", "--base-url", server.base_url,
        "--output-format", "json", "what is in a.txt?",
        cwd=repo, env=clean_env(tmp_path / "home"),
    )  # fmt: skip
    assert run.code == 0, run.stderr
    first, second = server.bodies
    # [local] tool_steps = 1: the first step must call a tool, after one call it must answer.
    assert first["tool_choice"] == "required" and second["tool_choice"] == "none"
    assert first["tools"] == second["tools"]


def _call(name: str, cid: str) -> Message:
    return Message(role="assistant", tool_calls=(ToolCall(id=cid, name=name, arguments="{}"),))


def _result(cid: str) -> Message:
    return Message(role="tool", parts=(TextPart("ok"),), tool_call_id=cid, name="read")


def test_paced_choice_requires_a_call_first_then_answers():
    ask = user_message("look around")
    assert paced_choice([ask], 1) == "required"
    one = [ask, _call("read", "c1"), _result("c1")]
    assert paced_choice(one, 1) == "none"
    assert paced_choice(one, 2) == "auto"
    assert paced_choice([*one, _call("ls", "c2"), _result("c2")], 2) == "none"
    # A new user message starts the count again.
    assert paced_choice([*one, user_message("and now?")], 1) == "required"
    # A compacted conversation whose ledger heads the turn answers from what it holds,
    # instead of filling the window again.
    ledger = user_message(LEDGER_HEADER + "\n...")
    assert paced_choice([ledger], 1) == "none"
    assert paced_choice([ledger, _call("read", "c1"), _result("c1")], 3) == "none"
