"""Side questions (`Session.ask_aside`, /btw): one answer from the main conversation's request
prefix, no tool call run, the main history untouched; idle and while a main turn runs. Driven
in-process as a front end would, against the scripted server over loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from bench.rounds import prefix_stable
from helpers import make_repo, tool_messages

from mcode.config import load_settings
from mcode.errors import MCodeError
from mcode.runtime.build import open_session
from mcode.store import Store, history_of

BTW = "btw: what does the -n flag of seq do?"


def _session(server, repo: Path, home: Path, wire: str = "openai"):
    settings = load_settings(
        repo,
        flags={
            "provider": wire,
            "base_url": server.base_url if wire == "openai" else server.anthropic_base_url,
            "model": "m",
            "permission_mode": "full-auto",
        },
        env={"XDG_CONFIG_HOME": str(home / "cfg"), "HOME": str(home)},
    )
    session = open_session(settings, Store(home / "sessions.db"), interactive=False)
    events: list[dict] = []
    session.subscribe(lambda event, line: events.append(json.loads(line)))
    session.start(cwd=str(repo), provider_reason="test", permission_mode="full-auto", resumed=False)
    return session, events


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


def _messages_bytes(raw: bytes) -> bytes:
    """The request body's ``messages`` array exactly as it was sent."""
    start = raw.index(b'"messages":') + len(b'"messages":')
    text = raw.decode("utf-8")
    begin = len(raw[:start].decode("utf-8"))
    _, end = json.JSONDecoder().raw_decode(text, begin)
    return text[begin:end].encode("utf-8")


def _is_aside(body: dict[str, Any]) -> bool:
    return BTW in json.dumps(body["messages"][-1])


def test_an_aside_answers_from_the_main_prefix_once_and_leaves_the_main_history(
    model_server, repo, tmp_path
):
    server = model_server(
        [
            {"text": "the main answer"},
            # Asked for no tool call; a server that sends one anyway does not get it run.
            {
                "text": "-n is not a seq flag",
                "tool_calls": [
                    {"id": "x1", "name": "bash", "arguments": {"command": "touch pwned"}}
                ],
            },
            {"text": "next main answer"},
        ]
    )
    session, events = _session(server, repo, tmp_path)

    async def go():
        await session.submit("count to three")
        before = list(session.history)
        answer = await session.ask_aside(BTW)
        assert session.history == before  # untouched
        await session.submit("and now?")
        return answer

    assert asyncio.run(go()) == "-n is not a seq flag"
    main1, aside, main2 = server.requests
    # The aside is the main request plus the question: same system prompt and tools, its
    # messages begin with the main request's byte for byte (the prompt cache's prefix).
    assert aside.body["tools"] == main1.body["tools"] and aside.body["tools"]
    assert aside.body["tool_choice"] == "none" and "tool_choice" not in main1.body
    assert _messages_bytes(aside.raw).startswith(_messages_bytes(main1.raw)[:-1])
    assert aside.body["messages"][:-1] == [
        *main1.body["messages"],
        {"role": "assistant", "content": "the main answer"},
    ]
    assert not (repo / "pwned").exists()
    # The next main request knows nothing of the aside.
    assert BTW not in json.dumps(main2.body) and "seq flag" not in json.dumps(main2.body)

    # Its events are a turn of its own agent id and turn id, no tool call among them.
    tagged = [e for e in events if e.get("agent")]
    (agent,) = {e["agent"] for e in tagged}
    assert agent.startswith("aside-")
    assert [e["type"] for e in tagged if e["type"] != "text.delta"] == [
        "turn.started", "message.user", "message.assistant", "usage", "turn.finished"
    ]  # fmt: skip
    assert len({e["turn_id"] for e in tagged}) == 1
    assert tagged[0]["turn_id"] not in {e["turn_id"] for e in events if not e.get("agent")}
    stored = session.store.events(session.id)
    assert history_of(stored) == session.history
    assert [m.text for m in history_of(stored, agent=agent)][-2:] == [BTW, "-n is not a seq flag"]
    assert session.totals.model_calls == 3  # the aside's call is paid for and counted
    assert session.conversations == {}  # nothing left behind


def _main_or_aside(body: dict[str, Any]) -> dict[str, Any]:
    if _is_aside(body):
        return {"text": "it numbers lines? no: seq has no -n"}
    if tool_messages(body):
        return {"text": "main done"}
    command = "sleep 1.5; echo slow-done"
    return {"tool_calls": [{"id": "s1", "name": "bash", "arguments": {"command": command}}]}


def test_an_aside_while_a_main_turn_runs_its_tools(model_server, repo, tmp_path):
    server = model_server([_main_or_aside] * 3)
    session, events = _session(server, repo, tmp_path)

    async def go():
        turn = asyncio.ensure_future(session.submit("run the slow thing"))
        while not any(e["type"] == "tool.started" for e in events):
            await asyncio.sleep(0.02)
        answer = await session.ask_aside(BTW)
        assert session.running  # answered while the main turn's command still ran
        return answer, await turn

    answer, outcome = asyncio.run(go())
    assert answer == "it numbers lines? no: seq has no -n"
    assert (outcome.reason, outcome.text) == ("completed", "main done")
    main1, aside, main2 = server.requests
    assert _is_aside(aside.body) and not _is_aside(main2.body)
    # The main turn's call had no result yet: the aside's prefix is the main's last request
    # exactly (the assistant message with the open call is left out).
    assert _messages_bytes(aside.raw).startswith(_messages_bytes(main1.raw)[:-1])
    assert aside.body["messages"][:-1] == main1.body["messages"]
    assert BTW not in json.dumps(main2.body)
    # The aside's events came between the main's tool.started and tool.finished.
    kinds = [(e["type"], e.get("agent")) for e in events]
    started = kinds.index(("tool.started", None))
    finished = kinds.index(("tool.finished", None))
    aside_at = [i for i, (_, agent) in enumerate(kinds) if agent]
    assert aside_at and started < aside_at[0] and aside_at[-1] < finished
    assert [m.text for m in session.history if m.role == "user"] == ["run the slow thing"]


def test_an_aside_that_fails_raises_and_the_session_goes_on(model_server, repo, tmp_path):
    server = model_server(
        [{"text": "first"}, {"status": 400, "body": {"error": {"message": "bad"}}}, {"text": "ok"}]
    )
    session, _ = _session(server, repo, tmp_path)

    async def go():
        await session.submit("hi")
        with pytest.raises(MCodeError):
            await session.ask_aside(BTW)
        return await session.submit("again")

    assert asyncio.run(go()).text == "ok"
    assert [m.text for m in session.history] == ["hi", "first", "again", "ok"]


def test_an_aside_on_the_anthropic_wire_extends_the_main_request(model_server, repo, tmp_path):
    server = model_server([{"text": "the main answer"}, {"text": "aside answer"}])
    session, _ = _session(server, repo, tmp_path, wire="anthropic")

    async def go():
        await session.submit("count to three")
        return await session.ask_aside(BTW)

    assert asyncio.run(go()) == "aside answer"
    main1, aside = server.bodies
    # cache_control markers move to the aside's last message; all else is the main request's,
    # which is what Anthropic's prompt cache matches (the rounds benchmark's checker).
    assert prefix_stable(main1, aside) and _is_aside(aside)
    assert aside["tool_choice"] == {"type": "none"} and aside["tools"]
