"""The MCP servers an editor sends with session/new over ACP: a real stdio server (the `mcp`
SDK's) started for that session, in the sandbox, its tools called by the scripted model, and
the same server over streamable HTTP; one whose command is missing is a clear tool error; its
env's secrets never reach the store."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import acp
import pytest
from acp import schema as s
from acp_client import editor
from helpers import clean_env, free_port, make_repo, serve_on, stored_events, tool_messages

pytest.importorskip("mcp")

SERVER = """\
import os, sys
from mcp.server.mcpserver import MCPServer

server = MCPServer("demo")

@server.tool()
def add(a: int, b: int) -> str:
    \"\"\"Add two integers.\"\"\"
    return str(a + b)

@server.tool()
def token() -> str:
    \"\"\"The token the editor gave this server.\"\"\"
    return "token is " + os.environ.get("DEMO_TOKEN", "missing")

@server.tool()
def write(path: str) -> str:
    \"\"\"Write a file.\"\"\"
    try:
        open(os.path.expanduser(path), "w").write("x\\n")
    except OSError as e:
        return f"refused: {e}"
    return "wrote"

if len(sys.argv) > 1:
    server.run("streamable-http", port=int(sys.argv[1]))
else:
    server.run("stdio")
"""
PLANTED = "ghp_plantedSecretValue0123456789"
# The demo server, once the file its first argument names exists: a server that has not
# answered initialize until the test says so (and never, if it never does).
GATED = (
    """\
import os, sys, time
gate = sys.argv.pop(1)
while not os.path.exists(gate):
    time.sleep(0.05)
"""
    + SERVER
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "a\n"})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


@pytest.fixture
def demo(tmp_path: Path) -> s.McpServerStdio:
    path = tmp_path / "demo_server.py"
    path.write_text(SERVER)
    token = s.EnvVariable(name="DEMO_TOKEN", value=PLANTED)
    return s.McpServerStdio(name="demo", command=sys.executable, args=[str(path)], env=[token])


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, 120))


def call(call_id: str, name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"id": call_id, "name": name, "arguments": arguments}]}


def running(script: Path) -> list[int]:
    """The pids of Python processes running ``script`` (the sandboxed server, seen from here)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(script).encode() in argv and not any(b"bwrap" in a for a in argv[:1]):
            found.append(int(proc.name))
    return found


def test_initialize_advertises_the_transports_mcodes_hub_speaks(model_server, repo, env):
    async def scenario() -> Any:
        async with editor(model_server([]), cwd=repo, env=env) as ed:
            return await ed.conn.initialize(protocol_version=acp.PROTOCOL_VERSION)

    caps = run(scenario()).agent_capabilities.mcp_capabilities
    assert caps.http is True and caps.sse is False


def test_the_editors_stdio_server_is_the_sessions_and_its_secret_stays_out(
    model_server, repo, env, demo
):
    server = model_server(
        [call("c1", "mcp__demo__add", a=2, b=3), call("c2", "mcp__demo__token"), {"text": "5"}]
    )

    async def scenario() -> tuple[Any, str, Any, list[int]]:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = (await ed.conn.new_session(cwd=str(repo), mcp_servers=[demo])).session_id
            reply = await ed.prompt(sid, "add 2 and 3")
            up = running(Path(demo.args[0]))
        return ed, sid, reply, up

    ed, sid, reply, up = run(scenario())
    assert reply.stop_reason == "end_turn" and ed.text(sid) == "5"
    names = [t["function"]["name"] for t in server.bodies[0]["tools"]]
    assert "mcp__demo__add" in names and "mcp__demo__token" in names
    assert tool_messages(server.bodies[1])[-1]["content"] == "5"
    # the server got the editor's env (the model saw it: it asked for it) ...
    assert tool_messages(server.bodies[2])[-1]["content"] == f"token is {PLANTED}"
    done = [u for u in ed.of(sid, "tool_call_update") if u.status == "completed"]
    assert len(done) == 2
    # ... but no event the store holds carries it
    stored = stored_events(Path(env["HOME"]), sid)
    assert any(e["type"] == "mcp.server" and e["data"]["state"] == "started" for e in stored)
    assert PLANTED not in repr(stored)
    # it ran while the session did, and stopped with it
    assert up
    assert not running(Path(demo.args[0]))


def test_a_server_whose_command_is_missing_is_a_clear_tool_error(model_server, repo, env, demo):
    broken = s.McpServerStdio(name="broken", command="/nonexistent/mcp-server", args=[], env=[])
    server = model_server([call("c1", "mcp_resource", server="broken"), {"text": "went on"}])

    async def scenario() -> tuple[Any, str, Any]:
        async with editor(server, cwd=repo, env=env) as ed:
            new = await ed.conn.new_session(cwd=str(repo), mcp_servers=[broken, demo])
            reply = await ed.prompt(new.session_id, "list its resources")
        return ed, new.session_id, reply

    ed, sid, reply = run(scenario())
    assert reply.stop_reason == "end_turn" and ed.text(sid) == "went on"
    said = tool_messages(server.bodies[1])[-1]["content"]
    assert "the MCP server broken did not start" in said
    assert "'/nonexistent/mcp-server' was not found" in said and "check how" in said
    assert [u.status for u in ed.of(sid, "tool_call_update")][-1] == "failed"
    # the other server of the session works all the same
    assert "mcp__demo__add" in [t["function"]["name"] for t in server.bodies[0]["tools"]]


def test_a_server_that_has_not_answered_never_blocks_the_connection(
    model_server, tmp_path, repo, env
):
    """session/new with a server that is still starting: the connection goes on serving
    (another session/new, session/list) while it has not answered; the first prompt waits for
    its tools and the model gets them."""
    script, gate = tmp_path / "gated_server.py", tmp_path / "gate"
    script.write_text(GATED)
    gated = s.McpServerStdio(
        name="gated", command=sys.executable, args=[str(script), str(gate)], env=[]
    )
    server = model_server([call("c1", "mcp__gated__add", a=2, b=3), {"text": "5"}])

    async def scenario() -> tuple[Any, str, Any, list[str]]:
        async with editor(server, cwd=repo, env=env) as ed:
            opening = asyncio.ensure_future(ed.conn.new_session(cwd=str(repo), mcp_servers=[gated]))
            # Answered while the gated server has not: a blocked loop would answer neither
            # until its listing gave up (a minute later).
            other = await asyncio.wait_for(ed.conn.new_session(cwd=str(repo)), 30)
            listed = await asyncio.wait_for(ed.conn.list_sessions(cwd=str(repo)), 30)
            sid = (await asyncio.wait_for(opening, 30)).session_id
            prompting = asyncio.ensure_future(ed.prompt(sid, "add 2 and 3"))
            await asyncio.sleep(0.5)  # the prompt is in; not an assert, just the likely order
            gate.touch()
            reply = await prompting
            answered = [other.session_id, listed.sessions]  # a session is listed once it ran
        return ed, sid, reply, answered

    ed, sid, reply, answered = run(scenario())
    assert answered[0] != sid
    assert reply.stop_reason == "end_turn" and ed.text(sid) == "5"
    assert "mcp__gated__add" in [t["function"]["name"] for t in server.bodies[0]["tools"]]
    assert tool_messages(server.bodies[1])[-1]["content"] == "5"


def test_a_prompt_waiting_for_a_servers_tools_can_be_cancelled(model_server, tmp_path, repo, env):
    """session/cancel reaches a first prompt that waits for a server still starting: it ends
    cancelled, before any model call; the next prompt gets the tools once the server answers."""
    script, gate = tmp_path / "gated_server.py", tmp_path / "gate"
    script.write_text(GATED)
    gated = s.McpServerStdio(
        name="gated", command=sys.executable, args=[str(script), str(gate)], env=[]
    )
    server = model_server([{"text": "now"}])

    async def scenario() -> tuple[Any, Any, int]:
        async with editor(server, cwd=repo, env=env) as ed:
            sid = (await ed.conn.new_session(cwd=str(repo), mcp_servers=[gated])).session_id
            prompting = asyncio.ensure_future(ed.prompt(sid, "first"))
            await asyncio.sleep(0.5)  # the prompt is in (if not, the cancel finds none to stop)
            await ed.conn.cancel(session_id=sid)
            first = await asyncio.wait_for(prompting, 30)
            calls = len(server.bodies)
            gate.touch()
            second = await ed.prompt(sid, "again")
        return first, second, calls

    first, second, calls = run(scenario())
    assert first.stop_reason == "cancelled" and calls == 0
    assert second.stop_reason == "end_turn"
    assert "mcp__gated__add" in [t["function"]["name"] for t in server.bodies[0]["tools"]]


def test_an_sse_server_is_not_started_and_the_log_says_why(model_server, repo, env, capfd):
    sse = s.SseMcpServer(type="sse", name="old", url="http://127.0.0.1:9/sse", headers=[])

    async def scenario() -> Any:
        async with editor(model_server([]), cwd=repo, env=env) as ed:
            return await ed.conn.new_session(cwd=str(repo), mcp_servers=[sse])

    assert run(scenario()).session_id  # the session opens without it
    err = capfd.readouterr().err
    assert "'old': mcode does not speak MCP over 'sse'" in err


def test_editor_servers_become_specs_with_safe_names_and_their_headers_secret(tmp_path):
    from mcode.acp.mcp import editor_servers
    from mcode.plugin_host.mcp_config import spec_secrets

    auth = s.HttpHeader(name="Authorization", value="Bearer tok_0123456789abcdef")
    servers = [
        s.HttpMcpServer(
            type="http", name="GitHub MCP", url="https://example.test/mcp", headers=[auth]
        ),
        s.McpServerStdio(
            name="../up",
            command="srv",
            args=["-v"],
            # A path is no credential: redacted, it would blank every event naming the folder.
            env=[s.EnvVariable(name="ROOT", value=str(tmp_path / "project"))],
        ),
        s.McpServerStdio(name="GitHub_MCP", command="other", args=[], env=[]),
    ]
    specs, problems = editor_servers(servers, tmp_path)
    assert [(x.name, x.transport) for x in specs] == [("GitHub_MCP", "http"), ("___up", "stdio")]
    assert specs[1].cwd == str(tmp_path) and specs[1].args == ("-v",)
    assert len(problems) == 1 and "a second server of the name 'GitHub_MCP'" in problems[0]
    assert spec_secrets(specs) == ["Bearer tok_0123456789abcdef", "tok_0123456789abcdef"]


def _no_sandbox() -> str:
    from mcode.tools.sandbox import SandboxPolicy, problem

    failure = problem(SandboxPolicy(writable=(Path("/tmp"),)))
    return "" if failure is None else failure.message


@pytest.mark.skipif(bool(_no_sandbox()), reason=_no_sandbox() or "bwrap works")
def test_the_editors_stdio_server_runs_in_the_sandbox(model_server, tmp_path, repo, demo):
    """It writes the workspace, not ``~`` (a home off /tmp, which the sandbox leaves writable)."""
    home = Path("/var/tmp") / f"mcode-acp-home-{os.getpid()}-{tmp_path.name}"
    home.mkdir()
    try:
        server = model_server(
            [
                call("c1", "mcp__demo__write", path="~/.bashrc"),
                call("c2", "mcp__demo__write", path=str(repo / "made.txt")),
                {"text": "done"},
            ]
        )

        async def scenario() -> Any:
            async with editor(server, cwd=repo, env=clean_env(home)) as ed:
                sid = (await ed.conn.new_session(cwd=str(repo), mcp_servers=[demo])).session_id
                return await ed.prompt(sid, "write")

        assert run(scenario()).stop_reason == "end_turn"
        said = [tool_messages(server.bodies[i])[-1]["content"] for i in (1, 2)]
        assert said[0].startswith("refused:") and not (home / ".bashrc").exists()
        assert said[1] == "wrote" and (repo / "made.txt").read_text() == "x\n"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_the_editors_streamable_http_server(model_server, tmp_path, repo, env, demo):
    port = free_port()
    proc = serve_on([sys.executable, demo.args[0], str(port)], port)
    try:
        auth = s.HttpHeader(name="Authorization", value="Bearer tok_0123456789abcdef")
        web = s.HttpMcpServer(
            type="http", name="web", url=f"http://127.0.0.1:{port}/mcp", headers=[auth]
        )
        server = model_server([call("c1", "mcp__web__add", a=20, b=22), {"text": "42"}])

        async def scenario() -> Any:
            async with editor(server, cwd=repo, env=env) as ed:
                sid = (await ed.conn.new_session(cwd=str(repo), mcp_servers=[web])).session_id
                return await ed.prompt(sid, "add")

        assert run(scenario()).stop_reason == "end_turn"
        assert tool_messages(server.bodies[1])[-1]["content"] == "42"
    finally:
        proc.terminate()
        proc.wait(10)
