"""MCP servers through `mcode exec`: a real stdio server written with the `mcp` SDK (and one over
streamable HTTP), its tools offered as mcp__<server>__<tool> after the built-in tools, called
end to end, killed mid-session and recovered, resources read, started lazily once cached."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    clean_env,
    exec_args,
    free_port,
    make_repo,
    mcode,
    serve_on,
    tool_messages,
    trust,
)

pytest.importorskip("mcp")

SERVER = """\
import os, sys
from pathlib import Path
from mcp.server.mcpserver import MCPServer

log = Path(sys.argv[1])
with log.open("a") as f:
    f.write(f"{os.getpid()}\\n")  # one line per start
server = MCPServer("demo")

@server.tool()
def add(a: int, b: int) -> str:
    \"\"\"Add two integers.\"\"\"
    return str(a + b)

@server.tool()
def whoami() -> str:
    \"\"\"The server's process id.\"\"\"
    return f"pid {os.getpid()}"

@server.tool()
def write(path: str) -> str:
    \"\"\"Write a file.\"\"\"
    try:
        Path(path).expanduser().write_text("x\\n")
    except OSError as e:
        return f"refused: {e}"
    return "wrote"

@server.tool()
def connect(port: int) -> str:
    \"\"\"Open a TCP connection to 127.0.0.1:port.\"\"\"
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        return "connected"

@server.resource("notes://today")
def today() -> str:
    \"\"\"Today's notes.\"\"\"
    return "buy milk"

if len(sys.argv) > 2:
    server.run("streamable-http", port=int(sys.argv[2]))
else:
    server.run("stdio")
"""


@pytest.fixture
def server_file(tmp_path: Path) -> Path:
    path = tmp_path / "demo_server.py"
    path.write_text(SERVER)
    return path


@pytest.fixture
def starts(tmp_path: Path) -> Path:
    return tmp_path / "starts.log"


@pytest.fixture
def repo(tmp_path: Path, server_file: Path, starts: Path) -> Path:
    mcp_json = {
        "mcpServers": {"demo": {"command": sys.executable, "args": [str(server_file), str(starts)]}}
    }
    return make_repo(tmp_path / "repo", {".mcp.json": json.dumps(mcp_json), "a.txt": "a\n"})


def pids(starts: Path) -> list[int]:
    """The pids the server's starts wrote: as the server saw them, inside the sandbox's PID
    namespace (so never to be signalled from here; see :func:`server_processes`)."""
    return [int(x) for x in starts.read_text().split()] if starts.exists() else []


def server_processes(server_file: Path) -> list[int]:
    """The pids (as this process sees them) of the running Python servers of ``server_file``:
    found by command line, not by the pid the server wrote from inside the sandbox."""
    found = []
    for name in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0] == sys.executable.encode() and str(server_file).encode() in argv:
            found.append(int(name))
    return found


def call(id_: str, name: str, /, **arguments) -> dict:
    return {"tool_calls": [{"id": id_, "name": name, "arguments": arguments}]}


def of_type(run, type_: str) -> list[dict]:
    return [e["data"] for e in run.events() if e["type"] == type_]


def full_auto(server, *more: str) -> list[str]:
    return exec_args(
        server, "--output-format", "stream-json", "--permission-mode", "full-auto", *more
    )


def test_an_mcp_tool_is_called_end_to_end_then_the_server_dies_and_comes_back(
    model_server, repo, env, starts, server_file
):
    trust(repo, env)

    def kill_it(body: dict) -> dict:
        (pid,) = server_processes(server_file)
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        return call("c2", "mcp__demo__whoami")

    server = model_server(
        [
            call("c1", "mcp__demo__add", a=2, b=3),
            kill_it,  # killed between two calls, while the session runs
            call("c3", "mcp__demo__whoami"),
            {"text": "done"},
        ]
    )
    run = mcode(*full_auto(server), "add", cwd=repo, env=env, timeout=120)
    assert run.code == 0, run.stderr
    names = [t["function"]["name"] for t in server.bodies[0]["tools"]]
    builtins = ["read", "write", "edit", "grep", "glob", "ls", "bash", "todo", "task"]
    assert names[: len(builtins)] == builtins  # the prefix the built-ins make stays first
    mine = {"mcp__demo__add", "mcp__demo__whoami", "mcp__demo__write", "mcp_resource"}
    assert mine <= set(names[len(builtins) :])
    first, second, third = (tool_messages(server.bodies[i])[-1]["content"] for i in (1, 2, 3))
    assert first == "5"
    assert "the MCP server demo is not running" in second and "restarting" in second
    started = pids(starts)
    assert len(started) == 2  # restarted once
    assert third == f"pid {started[-1]}"
    states = [d["state"] for d in of_type(run, "mcp.server")]
    assert states[0] == "started" and "restarting" in states and states.count("started") == 2


def test_a_cached_server_is_not_started_until_its_tool_is_used(model_server, repo, env, starts):
    trust(repo, env)
    first = model_server([{"text": "hello"}])
    run = mcode(*full_auto(first), "hi", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert len(pids(starts)) == 1  # never seen before: started to list its tools
    again = model_server([{"text": "hello"}])
    run = mcode(*full_auto(again), "hi", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert len(pids(starts)) == 1  # listed from the cache: not started
    names = [t["function"]["name"] for t in again.bodies[0]["tools"]]
    assert "mcp__demo__add" in names
    used = model_server([call("c1", "mcp__demo__add", a=1, b=1), {"text": "2"}])
    run = mcode(*full_auto(used), "add", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert tool_messages(used.bodies[1])[-1]["content"] == "2"
    assert len(pids(starts)) == 2  # started on the first call


def test_resources_are_listed_and_read_through_a_tool(model_server, repo, env):
    trust(repo, env)
    server = model_server(
        [
            call("c1", "mcp_resource", server="demo"),
            call("c2", "mcp_resource", server="demo", uri="notes://today"),
            {"text": "done"},
        ]
    )
    run = mcode(*full_auto(server), "notes", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert "notes://today" in tool_messages(server.bodies[1])[-1]["content"]
    assert tool_messages(server.bodies[2])[-1]["content"] == "buy milk"


def test_an_untrusted_projects_mcp_json_starts_nothing(model_server, repo, env, starts):
    server = model_server([{"text": "hello"}])
    run = mcode(*full_auto(server), "hi", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert pids(starts) == []
    assert not any(t["function"]["name"].startswith("mcp") for t in server.bodies[0]["tools"])
    (loaded,) = of_type(run, "plugins.loaded")
    assert any(".mcp.json" in i for i in loaded["ignored"])


def test_a_server_that_cannot_start_is_an_event_and_the_run_goes_on(
    model_server, tmp_path, env, home
):
    config = home / "config" / "mcode"
    config.mkdir(parents=True)
    (config / "config.toml").write_text('[mcp_servers.broken]\ncommand = "/nonexistent/server"\n')
    repo = make_repo(tmp_path / "plain", {"a.txt": "a\n"})
    server = model_server([{"text": "fine"}])
    run = mcode(*full_auto(server), "hi", cwd=repo, env=env, timeout=90)
    assert run.code == 0, run.stderr
    (state, *_) = of_type(run, "mcp.server")
    assert state["server"] == "broken" and state["state"] == "failed"
    assert not any(t["function"]["name"].startswith("mcp__") for t in server.bodies[0]["tools"])


def test_a_server_that_never_answers_times_out_and_the_run_goes_on_without_it(
    model_server, tmp_path, env, home, server_file
):
    """Its startup_timeout ends the first prompt's wait for its tools: said as failed, naming
    it and its log; the model gets the other tools and the turn runs."""
    stuck = tmp_path / "stuck_server.py"
    # The demo server behind a gate nobody opens: it never answers initialize.
    stuck.write_text(
        "import os, sys, time\nwhile True:\n    time.sleep(1)\n" + server_file.read_text()
    )
    config = home / "config" / "mcode"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(
        f'[mcp_servers.stuck]\ncommand = "{sys.executable}"\nargs = ["{stuck}"]\n'
        "startup_timeout = 2\n"
    )
    repo = make_repo(tmp_path / "plain", {"a.txt": "a\n"})
    server = model_server([{"text": "went on"}])
    run = mcode(*full_auto(server), "hi", cwd=repo, env=env, timeout=90)
    assert run.code == 0, run.stderr
    (state,) = of_type(run, "mcp.server")
    assert state["server"] == "stuck" and state["state"] == "failed"
    assert "did not list its tools within 2 s" in state["message"]
    assert "mcp-logs/stuck.log" in state["message"] and "raise startup_timeout" in state["message"]
    names = [t["function"]["name"] for t in server.bodies[0]["tools"]]
    assert "read" in names and not any(n.startswith("mcp__stuck") for n in names)
    assert of_type(run, "turn.finished")[-1]["reason"] == "completed"


def test_a_streamable_http_server_from_the_config(
    model_server, tmp_path, env, home, server_file, starts
):
    port = free_port()
    proc = serve_on([sys.executable, str(server_file), str(starts), str(port)], port)
    try:
        config = home / "config" / "mcode"
        config.mkdir(parents=True)
        (config / "config.toml").write_text(
            f'[mcp_servers.web]\ntype = "http"\nurl = "http://127.0.0.1:{port}/mcp"\n'
        )
        repo = make_repo(tmp_path / "plain", {"a.txt": "a\n"})
        server = model_server([call("c1", "mcp__web__add", a=20, b=22), {"text": "42"}])
        run = mcode(*full_auto(server), "add", cwd=repo, env=env, timeout=90)
        assert run.code == 0, run.stderr
        assert tool_messages(server.bodies[1])[-1]["content"] == "42"
    finally:
        proc.terminate()
        proc.wait(10)


def _no_sandbox() -> str:
    """Why bwrap cannot run here ("" when it can)."""
    from mcode.tools.sandbox import SandboxPolicy, problem

    failure = problem(SandboxPolicy(writable=(Path("/tmp"),)))
    return "" if failure is None else failure.message


@pytest.mark.skipif(bool(_no_sandbox()), reason=_no_sandbox() or "bwrap works")
def test_a_stdio_server_runs_in_the_sandbox_with_the_network_on(model_server, tmp_path, repo):
    """A stdio server writes the workspace, not ``~`` (here off /tmp, which workspace-write
    leaves writable); it reaches the network all the same, while bash does not."""
    home = Path("/var/tmp") / f"mcode-home-{os.getpid()}-{tmp_path.name}"
    home.mkdir()
    try:
        env = clean_env(home)
        trust(repo, env)
        server = model_server([])
        port = server.port
        server.push(
            call("c1", "mcp__demo__write", path="~/.bashrc"),
            call("c2", "mcp__demo__write", path=str(repo / "made.txt")),
            call("c3", "mcp__demo__connect", port=port),
            call("c4", "bash", command=f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"),
            {"text": "done"},
        )
        run = mcode(*full_auto(server), "try", cwd=repo, env=env, timeout=120)
        assert run.code == 0, run.stderr
        said = [tool_messages(server.bodies[i])[-1]["content"] for i in (1, 2, 3, 4)]
        assert said[0].startswith("refused:") and "Read-only file system" in said[0]
        assert not (home / ".bashrc").exists()
        assert said[1] == "wrote" and (repo / "made.txt").read_text() == "x\n"
        assert said[2] == "connected"
        assert "connected" not in said[3]  # the model's own commands stay off the network

        # A sandbox that cannot start: the server is "failed" with the reason, never started.
        env["MCODE_BWRAP"] = str(home / "no-such-bwrap")
        started = len(pids(repo.parent / "starts.log"))
        server = model_server([call("c1", "mcp__demo__whoami"), {"text": "done"}])
        run = mcode(*full_auto(server), "who", cwd=repo, env=env, timeout=120)
        states = [d for d in of_type(run, "mcp.server") if d["server"] == "demo"]
        assert states and states[0]["state"] == "failed", states
        assert "the sandbox cannot start" in states[0]["message"]
        assert len(pids(repo.parent / "starts.log")) == started
    finally:
        for path in sorted(home.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        home.rmdir()
