"""ACP sessions are mcode sessions: stored as they go, listed (session/list), loaded with their
history replayed (session/load) by another `mcode acp` process, resumed by `mcode exec`; modes
switch what asks; a steer (_mcode/steer) reaches the running prompt; the editor's file system
is the tools'."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import acp
import pytest
from acp_client import editor
from helpers import clean_env, exec_args, make_repo, mcode, stored_events, tool_messages


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\nbeta\n"})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, 120))


def call(name: str, call_id: str = "c1", **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"id": call_id, "name": name, "arguments": arguments}]}


def first_session(server: Any, repo: Path, env: dict[str, str]) -> str:
    """An editor session that read a.txt and answered, in a process that has ended since."""

    async def scenario() -> str:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = await ed.new(repo)
            reply = await ed.prompt(sid, "what is in a.txt?")
            assert reply.stop_reason == "end_turn"
            return sid

    return str(run(scenario()))


def test_a_loaded_session_replays_its_history_and_goes_on(model_server, repo, env):
    server = model_server(
        [call("read", "r1", path="a.txt"), {"text": "alpha and beta"}, {"text": "still here"}]
    )
    sid = first_session(server, repo, env)

    async def scenario() -> tuple[Any, Any, Any, Any]:
        async with editor(server, cwd=repo, env=env) as ed:
            listed = await ed.conn.list_sessions(cwd=str(repo))
            loaded = await ed.conn.load_session(cwd=str(repo), session_id=sid, mcp_servers=[])
            replayed = list(ed.updates)  # everything before the load's reply
            reply = await ed.prompt(sid, "and now?")
            return listed, loaded, replayed, reply, ed

    listed, loaded, replayed, reply, ed = run(scenario())
    # the loaded session's slash commands came too, after the load's reply
    (commands,) = ed.of(sid, "available_commands_update")
    assert [c.name for c in commands.available_commands] == ["compact", "team"]
    reply_at = ed.arrival(lambda m: "modes" in (m.get("result") or {}))
    commands_at = ed.arrival(
        lambda m: (
            m.get("params", {}).get("update", {}).get("sessionUpdate")
            == "available_commands_update"
        )
    )
    assert reply_at < commands_at
    replayed = [(i, u) for i, u in replayed if u.session_update != "available_commands_update"]
    (info,) = listed.sessions
    assert (info.session_id, info.cwd, info.title) == (sid, str(repo), "what is in a.txt?")
    assert loaded.modes.current_mode_id == "ask"
    kinds = [u.session_update for _, u in replayed]
    assert kinds == [
        "user_message_chunk",
        "tool_call",
        "tool_call_update",
        "agent_message_chunk",
    ]
    user, start, done, answer = (u for _, u in replayed)
    assert user.content.text == "what is in a.txt?"
    assert (start.tool_call_id, start.title, start.kind) == ("r1", "Read a.txt", "read")
    assert done.status == "completed" and "alpha" in done.content[0].content.text
    assert answer.content.text == "alpha and beta"
    # the loaded session's next prompt carries the stored history to the model
    assert reply.stop_reason == "end_turn"
    roles = [m["role"] for m in server.bodies[2]["messages"] if m["role"] != "system"]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]


def test_an_editor_session_resumes_in_mcode_exec(model_server, repo, env):
    server = model_server([call("read", "r1", path="a.txt"), {"text": "read it"}, {"text": "ok"}])
    sid = first_session(server, repo, env)
    stored = stored_events(Path(env["HOME"]), sid)
    assert stored[0]["type"] == "session.started" and stored[-1]["type"] == "session.finished"
    assert stored[-1]["data"]["reason"] == "completed"
    done = mcode(*exec_args(server, "--resume", sid, "go on"), cwd=repo, env=env)
    assert done.code == 0, done.stderr
    assert done.stdout.strip() == "ok"
    contents = [m.get("content") for m in server.bodies[2]["messages"]]
    assert "what is in a.txt?" in contents and contents[-1] == "go on"


def test_an_idle_editor_session_resumes_in_exec_while_the_agent_runs(model_server, repo, env):
    server = model_server([{"text": "one"}, {"text": "from exec", "delay": 1.5}, {"text": "three"}])
    resume = exec_args(server, "--resume")

    async def scenario() -> tuple[Any, ...]:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = await ed.new(repo)
            assert (await ed.prompt(sid, "first")).stop_reason == "end_turn"
            # The editor's session is idle: the terminal continues it while the agent runs.
            terminal = asyncio.ensure_future(
                asyncio.to_thread(mcode, *resume, sid, "from the terminal", cwd=repo, env=env)
            )
            while len(server.requests) < 2 and not terminal.done():  # exec is in its turn
                await asyncio.sleep(0.02)
            with pytest.raises(acp.RequestError) as busy:
                await ed.prompt(sid, "too soon")
            done = await terminal
            seen = len(ed.updates)
            reply = await ed.prompt(sid, "and now?")
            return sid, done, busy.value, reply, [u for _, u in ed.updates[seen:]]

    sid, done, busy, reply, after = run(scenario())
    assert done.code == 0, done.stderr
    assert done.stdout.strip() == "from exec"
    assert "in use by another mcode process" in busy.data["message"] and busy.data["hint"]
    assert reply.stop_reason == "end_turn"
    # The editor's next request carries the terminal's turn: its history was read again.
    contents = [m.get("content") for m in server.bodies[2]["messages"] if m["role"] != "system"]
    assert contents == ["first", "one", "from the terminal", "from exec", "and now?"]
    # and the client was shown that turn before the new prompt's answer
    chunks = [(u.session_update, u.content.text) for u in after if hasattr(u, "content")]
    assert chunks == [
        ("user_message_chunk", "from the terminal"),
        ("agent_message_chunk", "from exec"),
        ("agent_message_chunk", "three"),
    ]
    # One numbering across the three runs (no number taken twice), in the order they ran:
    # the editor's first prompt, the terminal's run, the editor again (resumed), which the
    # agent's exit ends.
    stored = stored_events(Path(env["HOME"]), sid)
    seqs = [e["seq"] for e in stored]
    assert seqs == sorted(set(seqs))
    runs = [(e["type"], e["data"].get("resumed")) for e in stored if e["type"].startswith("sess")]
    assert runs == [
        ("session.started", False),
        ("session.started", True),
        ("session.finished", None),
        ("session.started", True),
        ("session.finished", None),
    ]
    assert stored[-1]["data"]["result"] == "three"


def test_loading_an_unknown_session_is_an_invalid_params_error(model_server, repo, env):
    server = model_server([])

    async def scenario() -> Any:
        async with editor(server, cwd=repo, env=env) as ed:
            with pytest.raises(acp.RequestError) as failed:
                await ed.conn.load_session(cwd=str(repo), session_id="f" * 32, mcp_servers=[])
            # the agent goes on
            return failed.value, await ed.conn.list_sessions(cwd=str(repo))

    error, listed = run(scenario())
    assert error.code == -32602 and "no session" in error.data["message"]
    assert error.data["hint"]
    assert listed.sessions == []


def test_switching_to_full_auto_stops_the_asking(model_server, repo, env):
    server = model_server([call("bash", command="echo hi > hi.txt"), {"text": "ran"}])

    async def scenario() -> Any:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = await ed.new(repo)
            await ed.conn.set_session_mode(session_id=sid, mode_id="full-auto")
            reply = await ed.prompt(sid, "run it")
            with pytest.raises(acp.RequestError) as bad:
                await ed.conn.set_session_mode(session_id=sid, mode_id="yolo")
            return ed, reply, bad.value

    ed, reply, bad = run(scenario())
    assert reply.stop_reason == "end_turn"
    assert ed.client.asked == []
    assert (repo / "hi.txt").read_text() == "hi\n"
    assert bad.code == -32602 and "yolo" in bad.data["message"]


def test_a_steer_reaches_the_running_prompt(model_server, repo, env):
    server = model_server([{"text": "first answer", "delay": 2}, {"text": "steered answer"}])

    async def scenario() -> tuple[Any, str, Any, Any]:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = await ed.new(repo)
            with pytest.raises(acp.RequestError) as idle:  # nothing runs: nothing to steer
                await ed.conn.ext_method("mcode/steer", {"sessionId": sid, "text": "too early"})
            prompt = asyncio.ensure_future(ed.prompt(sid, "answer"))
            while not server.requests:
                await asyncio.sleep(0.02)
            steered = await ed.conn.ext_method(
                "mcode/steer", {"sessionId": sid, "text": "mention the steer"}
            )
            return ed, sid, await prompt, (steered, idle.value)

    ed, sid, reply, (steered, idle) = run(scenario())
    assert idle.code == -32602 and "nothing to steer" in idle.data["message"]
    assert steered == {"steered": True}
    assert reply.stop_reason == "end_turn"
    assert len(server.requests) == 2  # the steer made the turn take another step
    assert server.bodies[1]["messages"][-1]["content"] == "mention the steer"
    assert ed.text(sid) == "first answersteered answer"


def test_files_go_through_the_editor_when_it_offers_them(model_server, repo, env):
    unsaved = "alpha\nBETA in the buffer\n"
    edit = call("edit", "e1", path="a.txt", old_string="BETA in the buffer", new_string="gamma")
    server = model_server(
        [
            call("read", "r1", path="a.txt"),
            edit,
            call("write", "w1", path="new.txt", content="fresh\n"),
            {"text": "done"},
        ]
    )

    async def scenario() -> Any:
        auto = ("--permission-mode", "auto-edit")
        async with editor(server, cwd=repo, env=env, fs=True, extra=auto) as ed:
            ed.client.buffers[str(repo / "a.txt")] = unsaved  # changed in the editor, not saved
            sid = await ed.new(repo)
            reply = await ed.prompt(sid, "edit the buffer")
            assert reply.stop_reason == "end_turn"
            return ed

    ed = run(scenario())
    # the model read the editor's text, not the disk's
    assert "BETA in the buffer" in tool_messages(server.bodies[1])[0]["content"]
    # and the edit was made on it and handed to the editor, as was the new file
    assert ed.client.writes == [
        (str(repo / "a.txt"), "alpha\ngamma\n"),
        (str(repo / "new.txt"), "fresh\n"),
    ]
    assert (repo / "a.txt").read_text() == "alpha\ngamma\n"
    assert str(repo / "a.txt") in ed.client.reads


def test_config_options_switch_thinking_mode_and_model(model_server, repo, env):
    server = model_server([{"text": "one"}, {"text": "two"}, {"text": "three"}])
    claude = ("--model", "claude-sonnet-4-5")  # a model whose thinking can be switched

    async def scenario() -> tuple[Any, ...]:
        async with editor(server, cwd=repo, env=env, wire="anthropic", extra=claude) as ed:
            new = await ed.conn.new_session(cwd=str(repo), mcp_servers=[])
            sid = new.session_id
            off = await ed.conn.set_config_option(config_id="thinking", session_id=sid, value="off")
            await ed.prompt(sid, "first")
            await ed.conn.set_config_option(config_id="thinking", session_id=sid, value="on")
            mode = await ed.conn.set_config_option(
                config_id="mode", session_id=sid, value="read-only"
            )
            await ed.prompt(sid, "second")
            model = await ed.conn.set_config_option(
                config_id="model", session_id=sid, value="claude-opus-4-1"
            )
            await ed.prompt(sid, "third")
            with pytest.raises(acp.RequestError) as other:
                await ed.conn.set_config_option(config_id="model", session_id=sid, value="gpt-4o")
            return sid, new, off, mode, model, other.value

    sid, new, off, mode, model, other = run(scenario())
    assert {o.id for o in new.config_options} == {"mode", "model", "thinking"}
    models = next(o for o in new.config_options if o.id == "model")
    assert "claude-opus-4-1" in [c.value for c in models.options]
    current = {o.id: o.current_value for o in off.config_options}
    assert current["thinking"] == "off"
    assert {o.id: o.current_value for o in mode.config_options}["mode"] == "read-only"
    assert {o.id: o.current_value for o in model.config_options}["model"] == "claude-opus-4-1"
    assert server.bodies[0]["thinking"] == {"type": "disabled"}
    assert server.bodies[1]["thinking"]["type"] == "enabled"
    # the third prompt went to the new model, with the history of the first two
    assert [b["model"] for b in server.bodies] == ["claude-sonnet-4-5"] * 2 + ["claude-opus-4-1"]
    assert len(server.bodies[2]["messages"]) == 5
    assert other.code == -32602 and "gpt-4o" in other.data["message"]
    changed = [e for e in stored_events(Path(env["HOME"]), sid) if e["type"] == "model.changed"]
    assert [e["data"]["model"] for e in changed] == ["claude-opus-4-1"]


def test_the_editor_quitting_mid_prompt_cancels_and_records_it(model_server, repo, env):
    server = model_server([{"text": "too slow", "delay": 30}])

    async def scenario() -> tuple[str, Any, Any]:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = await ed.new(repo)
            prompt = asyncio.ensure_future(ed.prompt(sid, "take your time"))
            while not server.requests:
                await asyncio.sleep(0.02)
            process = ed.process
        # the editor closed the pipe: mcode acp ends by itself (not terminated by the helper)
        await asyncio.gather(prompt, return_exceptions=True)
        return sid, process.returncode, prompt

    sid, code, _ = run(scenario())
    assert code == 0
    stored = stored_events(Path(env["HOME"]), sid)
    assert [e["data"]["reason"] for e in stored if e["type"] == "turn.finished"] == ["cancelled"]
    assert stored[-1]["type"] == "session.finished"
    assert stored[-1]["data"]["reason"] == "cancelled"
