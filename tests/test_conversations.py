"""Several conversations in one Session, and the Session's turn queue (``send``), driven
in-process as a front end or a team would, against the scripted server over loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from helpers import make_repo, tool_messages

from mcode.config import load_settings
from mcode.runtime.build import open_session
from mcode.store import Store, history_of


def _settings(server, repo: Path, home: Path):
    return load_settings(
        repo,
        flags={
            "provider": "openai",
            "base_url": server.base_url,
            "model": "m",
            "permission_mode": "full-auto",
        },
        env={"XDG_CONFIG_HOME": str(home / "cfg"), "HOME": str(home)},
    )


def _session(server, repo: Path, home: Path):
    session = open_session(
        _settings(server, repo, home), Store(home / "sessions.db"), interactive=False
    )
    events: list[dict] = []
    session.subscribe(lambda event, line: events.append(json.loads(line)))
    session.start(cwd=str(repo), provider_reason="test", permission_mode="full-auto", resumed=False)
    return session, events


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


def _system(body: dict) -> str:
    return body["messages"][0]["content"]


def _by_agent(body: dict) -> dict:
    """Each agent runs one command, then answers with what it printed."""
    who = "planner" if "You plan." in _system(body) else "coder"
    results = tool_messages(body)
    if results:
        return {"text": f"{who} saw {results[0]['content'].strip()}"}
    command = f"sleep 0.5; echo {who}-output"
    return {"tool_calls": [{"id": f"{who}-1", "name": "bash", "arguments": {"command": command}}]}


def test_two_conversations_run_turns_concurrently_and_each_history_is_rebuilt(
    model_server, repo, tmp_path
):
    server = model_server([_by_agent] * 4 + [{"text": "main answer"}])
    session, events = _session(server, repo, tmp_path)
    planner = session.main.child("planner", system_prompt="You plan.")
    coder = session.main.child("coder", system_prompt="You code.")
    session.add(planner)
    session.add(coder)

    async def go():
        both = await asyncio.gather(
            session.submit("plan the work", agent="planner"),
            session.submit("write the code", agent="coder"),
        )
        return (*both, await session.submit("and you?"))

    first, second, main = asyncio.run(go())
    assert (first.reason, first.text) == ("completed", "planner saw planner-output")
    assert (second.reason, second.text) == ("completed", "coder saw coder-output")
    assert main.text == "main answer"

    # Each request had its own conversation's system prompt and messages only.
    for body in server.bodies[:4]:
        who = "planner" if "You plan." in _system(body) else "coder"
        sent = json.dumps(body["messages"][1:])
        other = "coder" if who == "planner" else "planner"
        assert other not in sent
    # The events of the two interleave, each tagged with its agent; the main's carry none.
    tagged = [e.get("agent") for e in events if e["type"] != "session.started"]
    assert set(tagged) == {"planner", "coder", None}
    planner_turn = [i for i, a in enumerate(tagged) if a == "planner"]
    assert any(a == "coder" for a in tagged[planner_turn[0] : planner_turn[-1]])
    turns = {e.get("agent"): e["turn_id"] for e in events if e["type"] == "turn.started"}
    assert len(set(turns.values())) == 3  # each conversation's turn has its own id
    assert all(
        e["turn_id"] == turns[e.get("agent")] for e in events if e["type"] != "session.started"
    )

    # The store rebuilds each history exactly; a resumed session gets the main one back.
    stored = session.store.events(session.id)
    assert history_of(stored, agent="planner") == planner.history
    assert history_of(stored, agent="coder") == coder.history
    assert history_of(stored) == session.history
    assert [m.text for m in session.history] == ["and you?", "main answer"]
    resumed = open_session(
        _settings(server, repo, tmp_path), session.store, interactive=False, resume_id=session.id
    )
    assert resumed.history == session.history


def _slow(call_id: str, seconds: float = 0.6) -> dict:
    command = f"sleep {seconds}; echo {call_id}-done"
    return {"tool_calls": [{"id": call_id, "name": "bash", "arguments": {"command": command}}]}


def _users(body: dict) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def test_send_while_idle_starts_a_turn_and_while_running_steers_it(model_server, repo, tmp_path):
    server = model_server([_slow("c1"), {"text": "done with tabs"}])
    session, events = _session(server, repo, tmp_path)

    async def go():
        future = session.send("do the thing")
        assert future is not None and session.running  # queued, and started at once
        while not any(e["type"] == "tool.started" for e in events):
            await asyncio.sleep(0.02)
        assert session.send("also: use tabs") is None  # a turn runs: it steers
        return await future

    outcome = asyncio.run(go())
    assert outcome.reason == "completed" and outcome.text == "done with tabs"
    assert len(server.requests) == 2
    assert _users(server.bodies[1]) == ["do the thing", "also: use tabs"]
    types = [e["type"] for e in events]
    assert types.count("turn.started") == 1
    assert types.index("steer.received") < types.index("steer.delivered")


SUMMARY = "## Progress\n- read a.txt\n## Open items\n- none"


def _asks_summary(body: dict) -> bool:
    return "about to be compacted" in body["messages"][-1]["content"]


def test_queued_turns_and_compactions_run_in_order(model_server, repo, tmp_path):
    """A message sent while a compaction runs between turns waits for it; a compaction asked
    while a turn runs happens at its next step boundary, before the messages queued behind."""
    server = model_server(
        [
            {"text": "zero done"},
            {"text": SUMMARY, "delay": 0.5},  # between turns
            _slow("c1"),  # "one"
            {"text": SUMMARY},  # asked while c1 ran: after it, before one's next call
            {"text": "one done"},
            {"text": "two done"},
        ]
    )
    session, events = _session(server, repo, tmp_path)

    async def go():
        await session.submit("zero")
        between = asyncio.ensure_future(session.compact())
        while len(server.requests) < 2:
            await asyncio.sleep(0.02)
        one = session.send("one")
        assert not session.running  # it waits for the compaction
        while not any(e["type"] == "tool.started" for e in events):
            await asyncio.sleep(0.02)
        two = session.send("two", steer=False)
        during = await session.compact("keep it short")
        assert one is not None and two is not None
        return await between, during, await one, await two

    between, during, one, two = asyncio.run(go())
    assert (between, during, one.text, two.text) == (True, True, "one done", "two done")
    bodies = server.bodies
    assert _asks_summary(bodies[1]) and _users(bodies[2])[-1] == "one"
    assert _asks_summary(bodies[3]) and "keep it short" in bodies[3]["messages"][-1]["content"]
    assert "c1-done" in tool_messages(bodies[3])[-1]["content"]  # the command finished first
    assert _users(bodies[5])[-1] == "two"
    turns = [e["turn_id"] for e in events if e["type"] == "turn.started"]
    compactions = [e["turn_id"] for e in events if e["type"] == "compaction"]
    assert compactions == [None, turns[1]]


def test_cancel_drops_what_is_queued(model_server, repo, tmp_path):
    server = model_server([_slow("c1", 30), {"text": "three done"}])
    session, events = _session(server, repo, tmp_path)

    async def go():
        one = session.send("one")
        two = session.send("two", steer=False)
        while not any(e["type"] == "tool.started" for e in events):
            await asyncio.sleep(0.02)
        session.cancel()
        first, dropped = await one, await two
        assert session.idle
        three = session.send("three")
        return first, dropped, await three

    first, dropped, third = asyncio.run(go())
    assert first.reason == "cancelled" and dropped is None and third.text == "three done"
    assert [_users(b)[-1] for b in server.bodies] == ["one", "three"]
    assert [e["type"] for e in events].count("turn.started") == 2
