"""`mcode acp` end to end: a real subprocess against the scripted model server, driven through
the agent-client-protocol package's client side (tests/acp_client.py), as an editor would."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import acp
import pytest
from acp_client import editor
from helpers import clean_env, make_repo, tool_messages


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


def test_initialize_says_what_mcode_supports(model_server, repo, env):
    server = model_server([])

    async def scenario() -> Any:
        async with editor(server, cwd=repo, env=env) as ed:
            return await ed.conn.initialize(protocol_version=acp.PROTOCOL_VERSION)

    reply = run(scenario())
    caps = reply.agent_capabilities
    assert caps.load_session is True
    assert caps.prompt_capabilities.embedded_context is True
    assert caps.prompt_capabilities.audio is False
    assert caps.session_capabilities.list is not None
    assert reply.agent_info.name == "mcode"


def test_a_prompt_streams_its_answer_and_ends_the_turn(model_server, repo, env):
    server = model_server([{"text": "Hello from mcode", "thinking": "let me think"}], chunk_size=4)

    async def scenario() -> tuple[Any, Any, Any]:
        async with editor(server, cwd=repo, env=env) as ed:
            new = await ed.conn.new_session(cwd=str(repo), mcp_servers=[])
            reply = await ed.prompt(new.session_id, "say hello")
            return ed, new, reply

    ed, new, reply = run(scenario())
    sid = new.session_id
    assert reply.stop_reason == "end_turn"
    chunks = ed.of(sid, "agent_message_chunk")
    assert len(chunks) > 1  # streamed in pieces, not one message at the end
    assert ed.text(sid) == "Hello from mcode"
    assert ed.text(sid, "agent_thought_chunk") == "let me think"
    assert server.bodies[0]["messages"][-1]["content"] == "say hello"
    # modes are the permission modes, and the session starts in ask
    assert new.modes.current_mode_id == "ask"
    assert [m.id for m in new.modes.available_modes] == [
        "read-only",
        "ask",
        "auto-edit",
        "full-auto",
    ]
    assert {o.id for o in new.config_options} >= {"mode", "model"}
    # the slash commands came, after the session/new reply (Zed drops them before it)
    commands = ed.of(sid, "available_commands_update")
    assert [c.name for c in commands[0].available_commands] == ["compact", "team"]
    reply_at = ed.arrival(lambda m: "sessionId" in (m.get("result") or {}))
    commands_at = ed.arrival(
        lambda m: (
            m.get("params", {}).get("update", {}).get("sessionUpdate")
            == "available_commands_update"
        )
    )
    assert reply_at < commands_at


def test_an_edit_is_a_tool_call_with_its_diff(model_server, repo, env):
    edit = call("edit", path="a.txt", old_string="beta", new_string="gamma")
    server = model_server([call("read", "r1", path="a.txt"), edit, {"text": "edited"}])

    async def scenario() -> tuple[Any, str, Any]:
        async with editor(
            server, cwd=repo, env=env, extra=("--permission-mode", "auto-edit")
        ) as ed:
            sid = await ed.new(repo)
            reply = await ed.prompt(sid, "change beta to gamma")
            return ed, sid, reply

    ed, sid, reply = run(scenario())
    assert reply.stop_reason == "end_turn"
    assert (repo / "a.txt").read_text() == "alpha\ngamma\n"
    starts = {u.tool_call_id: u for u in ed.of(sid, "tool_call")}
    assert starts["r1"].kind == "read" and starts["r1"].title == "Read a.txt"
    assert starts["r1"].locations[0].path == str(repo / "a.txt")
    start = starts["c1"]
    assert start.kind == "edit" and start.status == "pending"
    diff = start.content[0]
    assert (diff.type, diff.path, diff.old_text, diff.new_text) == (
        "diff",
        str(repo / "a.txt"),
        "beta",
        "gamma",
    )
    statuses = [u.status for u in ed.of(sid, "tool_call_update") if u.tool_call_id == "c1"]
    assert statuses == ["in_progress", "completed"]
    final = [u for u in ed.of(sid, "tool_call_update") if u.tool_call_id == "c1"][-1]
    assert final.content[0].type == "diff"  # the card keeps its diff when done


def test_the_todo_list_is_the_plan(model_server, repo, env):
    todos = [
        {"content": "read the code", "status": "completed"},
        {"content": "fix the bug", "status": "in_progress"},
    ]
    server = model_server([call("todo", todos=todos), {"text": "planned"}])

    async def scenario() -> tuple[Any, str]:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = await ed.new(repo)
            await ed.prompt(sid, "plan it")
            return ed, sid

    ed, sid = run(scenario())
    plans = ed.of(sid, "plan")
    assert [(e.content, e.status) for e in plans[-1].entries] == [
        ("read the code", "completed"),
        ("fix the bug", "in_progress"),
    ]


def test_cancel_ends_the_prompt_with_cancelled(model_server, repo, env):
    server = model_server([{"text": "slow answer", "delay": 30}])

    async def scenario() -> tuple[Any, str, Any]:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = await ed.new(repo)
            prompt = asyncio.ensure_future(ed.prompt(sid, "take your time"))
            while not server.requests:  # the model call is under way
                await asyncio.sleep(0.02)
            await ed.conn.cancel(session_id=sid)
            reply = await asyncio.wait_for(prompt, 10)
            return ed, sid, reply

    ed, sid, reply = run(scenario())
    assert reply.stop_reason == "cancelled"
    assert ed.text(sid) == ""


def write_call() -> dict[str, Any]:
    return call("write", path="new.txt", content="written\n")


def test_an_allowed_permission_lets_the_write_run(model_server, repo, env):
    server = model_server([write_call(), {"text": "done"}])

    async def scenario() -> tuple[Any, str, Any]:
        async with editor(server, cwd=repo, env=env) as ed:
            ed.client.answer = "allow_once"
            sid = await ed.new(repo)
            reply = await ed.prompt(sid, "write new.txt")
            return ed, sid, reply

    ed, sid, reply = run(scenario())
    assert reply.stop_reason == "end_turn"
    assert (repo / "new.txt").read_text() == "written\n"
    (asked,) = ed.client.asked
    assert asked.tool_call.tool_call_id == "c1" and asked.tool_call.title == "Write new.txt"
    assert [o.kind for o in asked.options] == ["allow_once", "allow_always", "reject_once"]
    # the client heard of the call before it was asked about it
    assert ed.of(sid, "tool_call")[0].tool_call_id == "c1"


def test_a_rejected_permission_reaches_the_model_as_a_denial(model_server, repo, env):
    server = model_server([write_call(), {"text": "understood"}])

    async def scenario() -> tuple[Any, str, Any]:
        async with editor(server, cwd=repo, env=env) as ed:
            ed.client.answer = "reject_once"
            sid = await ed.new(repo)
            reply = await ed.prompt(sid, "write new.txt")
            return ed, sid, reply

    ed, sid, reply = run(scenario())
    assert reply.stop_reason == "end_turn"
    assert not (repo / "new.txt").exists()
    result = tool_messages(server.bodies[1])[0]["content"]
    assert "permission denied" in result and "the user declined" in result
    final = [u for u in ed.of(sid, "tool_call_update") if u.tool_call_id == "c1"][-1]
    assert final.status == "failed"


def test_always_allow_stops_asking_for_the_session(model_server, repo, env):
    bash = call("bash", command="echo one > one.txt")
    again = call("bash", "c2", command="echo one > one.txt")
    later = call("bash", "c3", command="echo one > one.txt")
    server = model_server([bash, again, {"text": "twice"}, later, {"text": "asked again"}])

    async def scenario() -> tuple[Any, int]:
        async with editor(server, cwd=repo, env=env) as ed:
            ed.client.answer = "allow_always"
            sid = await ed.new(repo)
            await ed.prompt(sid, "run it twice")
            in_first = len(ed.client.asked)
            other = await ed.new(repo)  # "always" was this session's, not the next one's
            await ed.prompt(other, "run it once more")
            return ed, in_first

    ed, in_first = run(scenario())
    assert in_first == 1  # the second, identical command was not asked about
    assert len(ed.client.asked) == 2
    assert (repo / "one.txt").read_text() == "one\n"


def test_cancel_while_asking_ends_the_prompt_and_a_late_answer_does_nothing(
    model_server, repo, env
):
    server = model_server([write_call(), {"text": "never"}])

    async def scenario() -> tuple[Any, str, Any]:
        async with editor(server, cwd=repo, env=env) as ed:
            ed.client.hold = asyncio.Event()  # the user has not answered yet
            sid = await ed.new(repo)
            prompt = asyncio.ensure_future(ed.prompt(sid, "write new.txt"))
            await ed.until(lambda: ed.client.asked)
            await ed.conn.cancel(session_id=sid)
            reply = await asyncio.wait_for(prompt, 10)
            ed.client.answer = "allow_once"
            ed.client.hold.set()  # a late "allow" changes nothing
            await asyncio.sleep(0.5)
            return ed, sid, reply

    ed, sid, reply = run(scenario())
    assert reply.stop_reason == "cancelled"
    assert not (repo / "new.txt").exists()
    assert len(server.requests) == 1 and len(ed.client.asked) == 1
    final = [u for u in ed.of(sid, "tool_call_update") if u.tool_call_id == "c1"][-1]
    assert final.status == "failed"  # the card does not stay pending


def test_a_failed_turn_is_a_json_rpc_error_with_the_reason(model_server, repo, env):
    server = model_server([{"status": 400, "body": {"error": {"message": "no such model"}}}])

    async def scenario() -> tuple[Any, str, Any]:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = await ed.new(repo)
            with pytest.raises(acp.RequestError) as failed:
                await ed.prompt(sid, "hi")
            return ed, sid, failed.value

    ed, sid, error = run(scenario())
    assert error.code == -32603
    assert "no such model" in error.data["message"] and error.data["hint"]
    assert "no such model" in ed.text(sid)  # said in the conversation too


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def test_links_embedded_files_and_images_reach_the_model(model_server, repo, env):
    server = model_server([{"text": "seen"}])
    blocks = [
        acp.text_block("compare"),
        acp.resource_link_block(name="a.txt", uri=(repo / "a.txt").as_uri()),
        acp.text_block("with"),
        acp.resource_block(
            acp.embedded_text_resource(uri=(repo / "b.py").as_uri(), text="print('b')")
        ),
        acp.image_block(PNG, "image/png"),
    ]

    async def scenario() -> Any:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = await ed.new(repo)
            return await ed.conn.prompt(session_id=sid, prompt=blocks)

    reply = run(scenario())
    assert reply.stop_reason == "end_turn"
    content = server.bodies[0]["messages"][-1]["content"]
    text = next(p["text"] for p in content if p["type"] == "text")
    assert "compare @a.txt with" in text
    assert '<context uri="b.py">' in text and "print('b')" in text
    (image,) = [p for p in content if p["type"] == "image_url"]
    assert image["image_url"]["url"] == f"data:image/png;base64,{PNG}"


def test_a_prompt_the_model_cannot_take_is_refused_before_it_runs(model_server, repo, env):
    server = model_server([])

    async def scenario() -> Any:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = await ed.new(repo)
            with pytest.raises(acp.RequestError) as bad:
                await ed.conn.prompt(
                    session_id=sid, prompt=[acp.image_block("not base64!", "image/png")]
                )
            return bad.value

    bad = run(scenario())
    assert bad.code == -32602 and "base64" in bad.data["message"]
    assert server.requests == []
