"""Session driven in-process as a front end would: steer, cancel and approve, over loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import ClassVar

import pytest
from helpers import gone, make_repo, sleeper, tool_messages

from mcode.config import load_settings
from mcode.runtime.build import open_session
from mcode.store import Store


def _session(server, repo: Path, home: Path, *, interactive: bool, mode: str = "full-auto"):
    settings = load_settings(
        repo,
        flags={
            "provider": "openai",
            "base_url": server.base_url,
            "model": "m",
            "permission_mode": mode,
        },
        env={"XDG_CONFIG_HOME": str(home / "cfg"), "HOME": str(home)},
    )
    store = Store(home / "sessions.db")
    session = open_session(settings, store, interactive=interactive)
    events: list[dict] = []
    session.subscribe(lambda event, line: events.append(json.loads(line)))
    session.start(cwd=str(repo), provider_reason="test", permission_mode=mode, resumed=False)
    return session, events


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


def test_steer_is_delivered_at_the_next_step_without_losing_work(model_server, repo, tmp_path):
    server = model_server(
        [
            {
                "tool_calls": [
                    {"id": "c1", "name": "bash", "arguments": {"command": "sleep 0.6; echo slept"}}
                ]
            },
            {"text": "done, and I used tabs"},
        ]
    )
    session, events = _session(server, repo, tmp_path, interactive=False)

    async def go():
        task = asyncio.ensure_future(session.submit("do the thing"))
        while not any(e["type"] == "tool.started" for e in events):
            await asyncio.sleep(0.02)
        session.steer("also: use tabs")
        return await task

    outcome = asyncio.run(go())
    assert outcome.reason == "completed"
    second = server.requests[1]["body"]["messages"]
    # The running command was not thrown away, and the steer follows its result.
    assert "slept" in tool_messages(server.requests[1]["body"])[0]["content"]
    assert second[-1] == {"role": "user", "content": "also: use tabs"}
    types = [e["type"] for e in events]
    assert (
        types.index("steer.received")
        < types.index("tool.finished")
        < types.index("steer.delivered")
    )


def test_steer_after_the_final_answer_still_reaches_the_model(model_server, repo, tmp_path):
    server = model_server([{"text": "first"}, {"text": "second"}])
    session, events = _session(server, repo, tmp_path, interactive=False)

    def steer_on_the_answer(event, line):
        # The model has just given its final answer; the turn has not ended yet.
        if (
            event.type == "message.assistant"
            and event.data["message"]["parts"][0]["text"] == "first"
        ):
            session.steer("one more thing")

    session.subscribe(steer_on_the_answer)
    outcome = asyncio.run(session.submit("start"))
    assert outcome.text == "second" and len(server.requests) == 2
    first, second = (r["body"]["messages"] for r in server.requests)
    assert "one more thing" not in json.dumps(first)
    # The second request is the first, plus the answer, plus the steer in the user's words.
    assert second[: len(first)] == first
    assert second[len(first)]["role"] == "assistant" and second[len(first)]["content"] == "first"
    assert second[-1]["role"] == "user" and "one more thing" in json.dumps(second[-1])
    types = [e["type"] for e in events]
    assert types.index("steer.delivered") < types.index("turn.finished")


def test_cancel_mid_tool_kills_it_and_leaves_history_consistent(model_server, repo, tmp_path):
    marker = repo / "marker"  # in the workspace: inside the sandbox /tmp is private
    pid_file = repo / "sleep.pid"
    server = model_server(
        [
            {
                "tool_calls": [
                    {
                        "id": "c1",
                        "name": "bash",
                        "arguments": {"command": sleeper(pid_file, f"touch {marker}")},
                    }
                ]
            },
            {"text": "never sent"},
        ]
    )
    session, events = _session(server, repo, tmp_path, interactive=False)

    async def go():
        task = asyncio.ensure_future(session.submit("run it"))
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.02)  # the command is running
        session.cancel()
        return await asyncio.wait_for(task, 60)  # a cancel that waits for it hangs

    outcome = asyncio.run(go())
    assert outcome.reason == "cancelled"
    assert gone(pid_file)  # the command's process group was killed, not waited for
    last = session.history[-1]
    assert last.role == "tool" and last.tool_call_id == "c1" and "cancelled" in last.text
    assert events[-1]["type"] == "turn.finished" and events[-1]["data"]["reason"] == "cancelled"
    assert len(server.requests) == 1
    assert not marker.exists()
    # The stored history is the same, so a resume starts from a consistent state.
    assert session.store.history(session.id) == session.history


@pytest.mark.parametrize("allow", [True, False])
def test_interactive_approval(model_server, repo, tmp_path, allow):
    server = model_server(
        [
            {
                "tool_calls": [
                    {"id": "c1", "name": "write", "arguments": {"path": "new.txt", "content": "hi"}}
                ]
            },
            {"text": "ok"},
        ]
    )
    session, events = _session(server, repo, tmp_path, interactive=True, mode="ask")

    def answer(event, line):
        if event.type == "permission.asked":
            assert event.data["name"] == "write" and event.data["subject"] == "new.txt"
            session.approve(event.data["request_id"], allow)

    session.subscribe(answer)
    outcome = asyncio.run(session.submit("write it"))
    assert outcome.reason == "completed"
    assert (repo / "new.txt").exists() is allow
    decided = [e["data"] for e in events if e["type"] == "permission.decided"]
    assert decided[0]["allowed"] is allow and decided[0]["by"] == "user"
    # The fields README lists for permission.decided, whichever way it went.
    assert decided[0]["subject"] == "new.txt" and decided[0]["reason"]


def test_read_only_calls_run_concurrently_and_results_keep_call_order(model_server, repo, tmp_path):
    from mcode.tools.base import Tool, ToolResult

    in_flight: list[str] = []
    most = 0
    finished: list[str] = []
    all_in = asyncio.Event()

    class CountingRead(Tool):
        """Counts the calls running at once; each waits until all three are in, then they end
        in reverse order (the first call last), so results come back out of call order."""

        name = "read"
        description = "read"
        parameters: ClassVar[dict] = {"type": "object", "properties": {"path": {"type": "string"}}}
        permission = "read"

        async def run(self, args, ctx):
            nonlocal most
            in_flight.append(args["path"])
            most = max(most, len(in_flight))
            if len(in_flight) == 3:
                all_in.set()
            try:
                # Run one after another, the first call would wait here alone: a bounded wait
                # turns that into a failed count, not a hung test.
                await asyncio.wait_for(all_in.wait(), timeout=10)
            except TimeoutError:
                pass
            while in_flight and in_flight[-1] != args["path"]:
                await asyncio.sleep(0)  # the last one in goes out first
            in_flight.remove(args["path"])
            finished.append(args["path"])
            return ToolResult(content=f"content of {args['path']}")

    server = model_server(
        [
            {
                "tool_calls": [
                    {"id": "c1", "name": "read", "arguments": {"path": "one"}},
                    {"id": "c2", "name": "read", "arguments": {"path": "two"}},
                    {"id": "c3", "name": "read", "arguments": {"path": "three"}},
                ]
            },
            {"text": "done"},
        ]
    )
    session, _ = _session(server, repo, tmp_path, interactive=False)
    session.main.tools = [CountingRead()]
    assert asyncio.run(session.submit("read three")).reason == "completed"
    assert most == 3  # all three were running at once
    assert finished == ["three", "two", "one"]
    results = tool_messages(server.requests[1]["body"])
    assert [r["tool_call_id"] for r in results] == ["c1", "c2", "c3"]
    assert [r["content"] for r in results] == [f"content of {p}" for p in ("one", "two", "three")]


def _bash_call(call_id: str, command: str = "echo hi") -> dict:
    return {"tool_calls": [{"id": call_id, "name": "bash", "arguments": {"command": command}}]}


def test_a_subscriber_that_steers_does_not_reorder_events_for_later_ones(
    model_server, repo, tmp_path
):
    server = model_server([_bash_call("c1"), {"text": "done"}])
    session, events = _session(server, repo, tmp_path, interactive=False)
    # A front end that reacts to an event by steering emits from inside the callback; the
    # subscribers after it must still get the events in order, each once.
    session.subscribe(lambda event, line: event.type == "tool.started" and session.steer("more"))
    seen: list[int] = []
    session.subscribe(lambda event, line: seen.append(event.seq))
    assert asyncio.run(session.submit("go")).reason == "completed"
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert seen == [e["seq"] for e in events if e["seq"] >= seen[0]]


def test_a_subscriber_that_raises_neither_ends_the_turn_nor_loses_events(
    model_server, repo, tmp_path
):
    server = model_server([_bash_call("c1"), {"text": "done"}])
    session, events = _session(server, repo, tmp_path, interactive=False)

    def broken(event, line):
        if event.type in ("tool.started", "text.delta"):
            raise RuntimeError("front-end bug")

    session.subscribe(broken)
    after: list[str] = []
    session.subscribe(lambda event, line: after.append(event.type))
    outcome = asyncio.run(session.submit("go"))
    assert outcome.reason == "completed" and outcome.text == "done"
    assert after[-1] == "turn.finished" and "tool.finished" in after
    errors = [e["data"] for e in events if e["type"] == "error"]
    # Reported once (as an event, so it is in the transcript), not once per failing call.
    assert len(errors) == 1 and errors[0]["kind"] == "subscriber"
    assert "front-end bug" in errors[0]["message"]
    stored = [e["seq"] for e in session.store.events(session.id)]
    assert stored == [e["seq"] for e in events if e["type"] not in ("text.delta", "tool.output")]


def test_cancel_while_an_approval_is_pending(model_server, repo, tmp_path):
    server = model_server([_bash_call("c1"), {"text": "second"}])
    session, events = _session(server, repo, tmp_path, interactive=True, mode="ask")

    async def go():
        task = asyncio.ensure_future(session.submit("run it"))
        while not any(e["type"] == "permission.asked" for e in events):
            await asyncio.sleep(0.01)
        session.cancel()
        outcome = await asyncio.wait_for(task, 30)  # a cancel that waits for the answer hangs
        assert not session._approvals  # the cancelled request's future is not kept
        request_id = next(e for e in events if e["type"] == "permission.asked")["data"][
            "request_id"
        ]
        session.approve(request_id, True)  # too late: harmless, runs nothing
        return outcome, await session.submit("again")

    outcome, second = asyncio.run(go())
    assert outcome.reason == "cancelled" and second.text == "second"
    call = [e for e in events if e["data"].get("id") == "c1"]
    # The front end learns the question is void (it closes its dialog) before the call ends.
    assert [e["type"] for e in call] == [
        "tool.requested",
        "permission.asked",
        "permission.decided",
        "tool.finished",
    ]
    assert call[2]["data"]["allowed"] is False and call[2]["data"]["by"] == "cancel"
    assert "cancelled" in call[3]["data"]["message"]["parts"][0]["text"]
    assert session.totals.denials == []  # a cancel is not a denial (exit code 4)
    assert len(server.requests) == 2


@pytest.mark.parametrize("on", ["usage", "turn.finished"])
def test_a_subscriber_cancelling_as_the_turn_ends_gets_an_outcome(model_server, repo, tmp_path, on):
    # E.g. a budget watcher that cancels on the last usage event, or exec's printer stopping
    # the run when stdout closes: the cancel lands after the turn's last await.
    server = model_server([{"text": "done"}])
    session, events = _session(server, repo, tmp_path, interactive=False)
    session.subscribe(lambda event, line: event.type == on and session.cancel())
    outcome = asyncio.run(session.submit("go"))
    assert outcome.reason == "completed" and outcome.text == "done"
    finished = [e["data"]["reason"] for e in events if e["type"] == "turn.finished"]
    assert finished == ["completed"]


def test_a_subscriber_cancelling_mid_tool_stops_the_turn_promptly(model_server, repo, tmp_path):
    pid_file = repo / "sleep.pid"  # in the workspace: inside the sandbox /tmp is private
    server = model_server([_bash_call("c1", sleeper(pid_file)), {"text": "never sent"}])
    session, events = _session(server, repo, tmp_path, interactive=False)
    session.subscribe(lambda event, line: event.type == "tool.started" and session.cancel())
    outcome = asyncio.run(asyncio.wait_for(session.submit("go"), 60))  # hangs if it waits
    assert outcome.reason == "cancelled"
    # The cancel may land before bash started; if it ran, its process group was killed.
    assert not pid_file.exists() or gone(pid_file)
    assert [e["data"]["reason"] for e in events if e["type"] == "turn.finished"] == ["cancelled"]
    assert len(server.requests) == 1


def test_cancel_before_the_turn_has_begun(model_server, repo, tmp_path):
    # A front end that gets "submit" and "cancel" in one batch (an editor's messages) cancels
    # a turn whose task has not run yet.
    server = model_server([{"text": "second"}])
    session, events = _session(server, repo, tmp_path, interactive=False)

    async def go():
        task = asyncio.ensure_future(session.submit("go"))
        await asyncio.sleep(0)  # submit has made the turn's task; the task has not run
        assert session.running
        session.cancel()
        return await task, await session.submit("again")

    outcome, second = asyncio.run(go())
    assert outcome.reason == "cancelled" and second.text == "second"
    assert len(server.requests) == 1  # the cancelled turn never called the model
    types = [e["type"] for e in events]
    assert types.count("turn.started") == types.count("turn.finished") == 2
    assert [e["data"]["reason"] for e in events if e["type"] == "turn.finished"] == [
        "cancelled",
        "completed",
    ]


def test_submit_right_after_cancel_runs_once_the_old_turn_has_wound_up(
    model_server, repo, tmp_path
):
    server = model_server([_bash_call("c1", "sleep 30"), {"text": "second"}])
    session, events = _session(server, repo, tmp_path, interactive=False)

    async def go():
        first = asyncio.ensure_future(session.submit("run it"))
        while not any(e["type"] == "tool.started" for e in events):
            await asyncio.sleep(0.01)
        session.cancel()
        # What the error's hint says to do ("cancel it first"), as Esc then Enter would.
        second = await session.submit("something else")
        return await first, second

    first, second = asyncio.run(go())
    assert first.reason == "cancelled" and second.text == "second"
    turns = [e for e in events if e["type"] in ("turn.started", "turn.finished")]
    assert [(e["type"], e["data"].get("reason")) for e in turns] == [
        ("turn.started", None),
        ("turn.finished", "cancelled"),
        ("turn.started", None),
        ("turn.finished", "completed"),
    ]
    # Each turn's events carry its own turn_id; none of the old turn's come after the new one.
    one, two = turns[0]["turn_id"], turns[2]["turn_id"]
    assert one != two
    ids = [e["turn_id"] for e in events if e["type"] != "session.started"]
    assert ids == [one] * ids.count(one) + [two] * ids.count(two)
    # The model's second request holds the first call, answered as cancelled.
    assert "cancelled" in tool_messages(server.requests[1]["body"])[0]["content"]


def test_a_steer_left_by_a_cancelled_turn_is_reported_not_carried_into_the_next(
    model_server, repo, tmp_path
):
    server = model_server([_bash_call("c1", "sleep 30"), {"text": "second"}])
    session, events = _session(server, repo, tmp_path, interactive=False)

    async def go():
        first = asyncio.ensure_future(session.submit("run it"))
        while not any(e["type"] == "tool.started" for e in events):
            await asyncio.sleep(0.01)
        session.steer("and then delete the logs")
        session.cancel()
        await first
        return await session.submit("something else")

    assert asyncio.run(go()).text == "second"
    # The user stopped that work; its steer must not act on the next, unrelated message
    # (exec said so already; a resumed session already dropped it).
    assert "delete the logs" not in json.dumps(server.requests[1]["body"]["messages"])
    assert not any(e["type"] == "steer.delivered" for e in events)
    types = [e["type"] for e in events]
    error = types.index("error")
    assert events[error]["data"]["kind"] == "steer"
    assert error < types.index("turn.finished")


def test_subscribers_get_events_with_the_key_scrubbed_from_their_data(model_server, repo, tmp_path):
    # A TUI renders event.data, not the JSON line: the key must be gone from both.
    key = "sk-test-PLANTED-SUBSCRIBER-0123456789"
    server = model_server([{"text": f"your key is {key}"}])
    settings = load_settings(
        repo,
        flags={"provider": "openai", "base_url": server.base_url, "model": "m"},
        env={
            "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
            "HOME": str(tmp_path),
            "OPENAI_API_KEY": key,
        },
    )
    session = open_session(settings, Store(tmp_path / "sessions.db"), interactive=False)
    seen: list[tuple[str, str]] = []
    session.subscribe(lambda event, line: seen.append((json.dumps(event.data), line)))
    session.start(cwd=str(repo), provider_reason="test", permission_mode="ask", resumed=False)
    assert asyncio.run(session.submit(f"remember {key}")).reason == "completed"
    assert seen and all(key not in data and key not in line for data, line in seen)
    assert any("[REDACTED]" in data for data, _ in seen)


SUMMARY = "## Progress\n- looked at a.txt\n## Open items\n- rename it"


def _asks_summary(body: dict) -> bool:
    return "about to be compacted" in body["messages"][-1]["content"]


def test_compact_between_turns_and_during_one(model_server, repo, tmp_path):
    """Session.compact between turns runs at once; asked while a turn runs, it happens at the
    turn's next step boundary, and the command in flight is not disturbed. (Each compaction
    has a long tool result to replace: a shorter conversation would not shrink, see
    test_exec_checks.py.)"""
    (repo / "a.txt").write_text("alpha\n" * 2000)
    command = "sleep 0.6; seq 1 2000; echo ok"
    server = model_server(
        [
            {"tool_calls": [{"id": "c1", "name": "read", "arguments": {"path": "a.txt"}}]},
            {"text": "a.txt says alpha"},
            {"text": SUMMARY},  # Session.compact between turns
            {"tool_calls": [{"id": "c2", "name": "bash", "arguments": {"command": command}}]},
            {"text": SUMMARY},  # asked during the command: after it, before the next call
            {"text": "renamed"},
        ]
    )
    session, events = _session(server, repo, tmp_path, interactive=False)

    async def go():
        await session.submit("What is in a.txt? Keep it short.")
        assert await session.compact("the file names")
        task = asyncio.ensure_future(session.submit("Now rename it."))
        while not any(e["type"] == "tool.started" and e["data"]["id"] == "c2" for e in events):
            await asyncio.sleep(0.02)
        during = asyncio.ensure_future(session.compact())
        outcome = await task
        return outcome, await during

    outcome, compacted = asyncio.run(go())
    assert outcome.reason == "completed" and compacted
    bodies = [r["body"] for r in server.requests]
    assert _asks_summary(bodies[2]) and "the file names" in bodies[2]["messages"][-1]["content"]
    assert _asks_summary(bodies[4])
    assert "ok" in tool_messages(bodies[4])[-1]["content"]  # the command finished first
    first, second = [e for e in events if e["type"] == "compaction"]
    assert first["turn_id"] is None and second["turn_id"] is not None
    assert [first["data"]["reason"], second["data"]["reason"]] == ["manual", "manual"]
    ledger = bodies[5]["messages"][1]["content"]
    assert "What is in a.txt? Keep it short." in ledger and "Now rename it." in ledger
    assert "rename it" in ledger  # the model's open item
    assert session.history[0].text == ledger


def test_cancel_during_a_compaction_leaves_the_history_as_it_was(model_server, repo, tmp_path):
    """A cancel while the summary is being written: no compaction, no lost message, and the
    next turn sends the history it would have sent."""
    long_answer = "alpha it is. " * 300  # long enough that a compaction would shrink it
    server = model_server(
        [
            {"text": long_answer},
            {"text": SUMMARY, "delay": 2},  # the summary, cancelled while it is awaited
            {"text": "still here"},
        ]
    )
    session, events = _session(server, repo, tmp_path, interactive=False)

    async def go():
        await session.submit("What is in a.txt?")
        before = list(session.history)
        compacting = asyncio.ensure_future(session.compact())
        while len(server.requests) < 2:
            await asyncio.sleep(0.02)
        session.cancel()
        with pytest.raises(asyncio.CancelledError):
            await compacting
        assert session.history == before
        return await session.submit("And now?")

    outcome = asyncio.run(go())
    assert outcome.reason == "completed" and outcome.text == "still here"
    assert not [e for e in events if e["type"] == "compaction"]
    third = server.requests[2]["body"]["messages"]
    assert [m["content"] for m in third if m["role"] == "user"] == [
        "What is in a.txt?",
        "And now?",
    ]


def test_an_empty_or_headless_summary_still_compacts(model_server, repo, tmp_path):
    """The model answers the summary request with nothing usable: the ledger is mcode's own
    record (summarised false), or the whole answer under Progress when it has no headings."""
    # Answers long enough that each compaction shrinks the conversation.
    server = model_server(
        [
            {"text": "a.txt says alpha. " * 300},
            {"text": ""},  # the first summary: empty
            {"text": "next done. " * 300},
            {"text": "done with a.txt, nothing else"},  # the second: no headings
        ]
    )
    session, events = _session(server, repo, tmp_path, interactive=False)

    async def go():
        await session.submit("Read a.txt. Keep it under 80 characters.")
        assert await session.compact()
        await session.submit("Next.")
        return await session.compact()

    assert asyncio.run(go())
    first, second = [e["data"] for e in events if e["type"] == "compaction"]
    assert first["summarised"] is False and second["summarised"] is True
    text = second["message"]["parts"][0]["text"]
    assert "Read a.txt. Keep it under 80 characters." in text and "Next." in text
    assert "## Progress\ndone with a.txt, nothing else" in text
