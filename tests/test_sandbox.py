"""The OS sandbox, through ``mcode exec`` with real bubblewrap: what a command may touch, what it
may not whatever the model writes, and that a sandbox that cannot start stops the run loudly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import clean_env, exec_args, make_repo, mcode, trust


def _bwrap_works() -> str | None:
    """Why bwrap cannot run the sandbox's flags here, or None when it can."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    flags = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net"]
    flags += ["--unshare-pid", "--die-with-parent", "--cap-drop", "ALL"]
    done = subprocess.run(["bwrap", *flags, "--", "true"], capture_output=True, text=True)
    return None if done.returncode == 0 else f"bwrap cannot run here: {done.stderr.strip()}"


pytestmark = pytest.mark.skipif(_bwrap_works() is not None, reason=str(_bwrap_works()))


def _bash(call_id: str, command: str) -> dict[str, Any]:
    return {"tool_calls": [{"id": call_id, "name": "bash", "arguments": {"command": command}}]}


def _results(run_events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """tool.finished by call id: ``ok`` and the text the model got."""
    out = {}
    for e in run_events:
        if e["type"] == "tool.finished":
            parts = e["data"]["message"]["parts"]
            text = "".join(p.get("text", "") for p in parts)
            out[e["data"]["id"]] = {"ok": e["data"]["ok"], "text": text}
    return out


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    home = tmp_path / "home"
    (home / "config" / "mcode").mkdir(parents=True)
    (home / "config" / "mcode" / "config.toml").write_text("# the user's own\n")
    repo = make_repo(tmp_path / "repo", {"a.txt": "hello\n"})
    return home, repo, clean_env(home)


@pytest.fixture
def outside() -> Any:
    """A path outside the workspace and off /tmp (which workspace-write leaves writable, as
    Codex does)."""
    path = Path("/var/tmp") / f"mcode-sandbox-{uuid.uuid4().hex}"
    yield path
    path.unlink(missing_ok=True)


def test_a_command_writes_the_workspace_and_nothing_else(
    model_server: Any, setup: Any, outside: Path
) -> None:
    home, repo, env = setup
    server = model_server([])
    port = server.port
    attempts = {
        "inside": "echo made > made.txt && cat made.txt",
        "outside": f"echo x > {outside}",
        "hook": "echo 'touch /tmp/pwned' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit",
        "gitconfig": "git config core.hooksPath /tmp/evil",
        "config": f"echo 'permission_mode = \"full-auto\"' >> {home}/config/mcode/config.toml",
        # A trusted folder's next session would obey a project config the model wrote.
        "project": "mkdir -p .mcode && echo 'permission_mode = \"full-auto\"' > .mcode/config.toml",
        # Root inside without --cap-drop could mount a writable / of its own.
        "nested": f"bwrap --bind / / -- touch {outside}",
        "remount": "mount -o remount,rw / && touch /etc/mcode-escaped",
        "unshare": f"unshare -U -r -m sh -c 'mount --bind / /mnt && touch /mnt{outside}'",
        "network": f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected",
        "environ": "cat /proc/1/environ | tr '\\0' '\\n' | grep -c ^ || true; ps -e | wc -l",
    }
    script = [_bash(k, v) for k, v in attempts.items()]
    server.push(*script, {"text": "done"})
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "try things",
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    results = _results(run.events())
    assert results["inside"] == {"ok": True, "text": "made\n"}
    assert (repo / "made.txt").read_text() == "made\n"
    for name in ("outside", "hook", "gitconfig", "config", "project", "nested", "remount"):
        assert not results[name]["ok"], (name, results[name])
    assert "Read-only file system" in results["outside"]["text"]
    assert "Read-only file system" in results["hook"]["text"]
    assert "Read-only file system" in results["project"]["text"]
    assert not (repo / ".mcode" / "config.toml").exists()
    assert not results["unshare"]["ok"]
    # (Under /tmp here: re-bound read-only inside, as mcode's config is wherever it lives.)
    assert "config.toml" in results["config"]["text"]
    assert not outside.exists()
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    assert "hooksPath" not in (repo / ".git" / "config").read_text()
    assert (home / "config" / "mcode" / "config.toml").read_text() == "# the user's own\n"
    assert not Path("/etc/mcode-escaped").exists()
    assert not results["network"]["ok"]
    assert "connected" not in results["network"]["text"]
    # Its own PID namespace: mcode (which holds the API key in its environment) is not there.
    assert results["environ"]["ok"]
    count = int(results["environ"]["text"].split()[-1])
    assert count < 10, results["environ"]["text"]


def test_the_model_cannot_pick_its_sandbox(model_server: Any, setup: Any, outside: Path) -> None:
    """bash takes a command and a timeout; a call that names a sandbox is refused, and a
    command that asks bwrap for more inside gets nothing."""
    _home, repo, env = setup
    server = model_server(
        [
            {
                "tool_calls": [
                    {
                        "id": "c1",
                        "name": "bash",
                        "arguments": {"command": f"touch {outside}", "sandbox": "none"},
                    }
                ]
            },
            _bash("c2", f"bwrap --dev-bind / / touch {outside}; touch {outside}"),
            {"text": "done"},
        ]
    )
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "go",
        cwd=repo,
        env=env,
    )
    results = _results(run.events())
    assert "unknown argument(s): sandbox" in results["c1"]["text"]
    assert not results["c2"]["ok"]
    assert not outside.exists()


def test_read_only_mode_writes_nothing_and_danger_full_access_writes_anywhere(
    model_server: Any, setup: Any, outside: Path
) -> None:
    _home, repo, env = setup
    server = model_server([_bash("c1", "echo x > here.txt"), {"text": "done"}])
    args = exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto")
    run = mcode(*args, "--sandbox", "read-only", "go", cwd=repo, env=env)
    assert "Read-only file system" in _results(run.events())["c1"]["text"]
    assert not (repo / "here.txt").exists()

    server.push(_bash("c2", f"echo x > {outside}"), {"text": "done"})
    run = mcode(*args, "--sandbox", "danger-full-access", "go", cwd=repo, env=env)
    assert _results(run.events())["c2"]["ok"], run.stdout
    assert outside.read_text() == "x\n"


def test_config_sets_the_mode_and_network_and_a_project_file_cannot_widen_it(
    model_server: Any, setup: Any, outside: Path
) -> None:
    home, repo, env = setup
    (home / "config" / "mcode" / "config.toml").write_text("[sandbox]\nnetwork = true\n")
    (repo / ".mcode").mkdir()
    (repo / ".mcode" / "config.toml").write_text('[sandbox]\nmode = "danger-full-access"\n')
    trust(repo, env)  # even a trusted folder's file may only narrow the sandbox
    server = model_server([])
    server.push(
        _bash("c1", f"exec 3<>/dev/tcp/127.0.0.1/{server.port} && echo connected"),
        _bash("c2", f"echo x > {outside}"),
        {"text": "done"},
    )
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "go",
        cwd=repo,
        env=env,
    )
    results = _results(run.events())
    assert results["c1"] == {"ok": True, "text": "connected\n"}  # the user allowed network
    assert not results["c2"]["ok"]  # the repository's file did not lift the sandbox
    assert not outside.exists()
    assert "sandbox.mode" in run.stderr


def test_an_add_dir_folder_is_writable(model_server: Any, setup: Any, tmp_path: Path) -> None:
    _home, repo, env = setup
    extra = tmp_path / "extra"
    extra.mkdir()
    server = model_server([_bash("c1", f"echo x > {extra}/f.txt"), {"text": "done"}])
    run = mcode(
        *exec_args(server, "--permission-mode", "full-auto", "--add-dir", str(extra)),
        "go",
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    assert (extra / "f.txt").read_text() == "x\n"


def test_a_sandbox_that_cannot_start_refuses_commands_loudly(model_server: Any, setup: Any) -> None:
    home, repo, env = setup
    env["MCODE_BWRAP"] = str(home / "no-such-bwrap")
    marker = repo / "ran.txt"
    server = model_server([_bash("c1", f"touch {marker}")])  # a second request would get 500
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "go",
        cwd=repo,
        env=env,
    )
    events = run.events()
    errors = [e["data"] for e in events if e["type"] == "error"]
    assert errors and errors[0]["kind"] == "sandbox"
    assert "bubblewrap" in errors[0]["message"]
    assert "danger-full-access" in errors[0]["hint"]
    result = _results(events)["c1"]
    assert not result["ok"] and "the sandbox cannot start" in result["text"]
    assert not marker.exists()
    finished = [e["data"] for e in events if e["type"] == "turn.finished"]
    assert finished[-1]["reason"] == "error"
    assert run.code == 1  # never exit 0 after a command that did not run
    assert not server.exhausted  # the model was not asked to carry on without commands

    # text format: the user reads why on stderr.
    server.push(_bash("c2", f"touch {marker}"), {"text": "never"})
    run = mcode(*exec_args(server, "--permission-mode", "full-auto"), "go", cwd=repo, env=env)
    assert run.code == 1
    assert "the sandbox cannot start" in run.stderr
    assert "danger-full-access" in run.stderr
    assert not marker.exists()


def test_a_sandboxed_command_dies_with_mcode(model_server: Any, setup: Any) -> None:
    """kill -9 of mcode: the supervisor (and bwrap's --die-with-parent) take the command down,
    background jobs inside the sandbox included."""
    _home, repo, env = setup
    tick = repo / "tick"
    loop = "(while true; do date +%s%N > tick; sleep 0.05; done) & echo started; wait"
    server = model_server([_bash("c1", loop), {"text": "never"}])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcode",
            *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
            "go",
        ],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["type"] == "tool.output":
            break
    deadline = time.monotonic() + 10
    while not tick.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    time.sleep(3.0)  # the supervisor's SIGTERM grace is 2 s
    before = tick.read_text()
    time.sleep(0.5)
    assert tick.read_text() == before  # nothing writes it any more


def test_the_gate_holds_inside_bwrap(tmp_path: Path) -> None:
    """The supervisor's gate works through bwrap: a command whose go never comes (mcode died
    before registering it) runs nothing; with the go, it runs."""
    from mcode.tools.bash import command_argv
    from mcode.tools.sandbox import SandboxPolicy

    ws = tmp_path / "ws"
    ws.mkdir()
    policy = SandboxPolicy("workspace-write", writable=(ws,))
    for go, ran in ((b"", False), (b"\n", True)):
        marker = ws / f"ran-{int(ran)}"
        argv = command_argv(f"touch {marker}", policy)
        assert argv[0].endswith("bwrap")
        proc = subprocess.Popen(argv, cwd=ws, stdin=subprocess.PIPE, start_new_session=True)
        assert proc.stdin is not None
        proc.stdin.write(go)
        proc.stdin.close()  # end of file: what the gate reads when mcode is gone
        proc.wait(timeout=30)
        assert marker.exists() == ran


def test_a_cancel_while_bwrap_starts_neither_hangs_nor_runs_the_command(tmp_path: Path) -> None:
    """A cancel that lands inside the start: asyncio alone would kill bwrap and wait for pipes
    its children hold at the gate, for ever (an `mcode exec | head -1` hung so). The command
    sleeps before it leaves its mark: a cancel a few milliseconds in may land after the gate
    opened (then the command has started, and cancelling kills it), but never lets it finish."""
    import asyncio

    from mcode.tools import bash
    from mcode.tools.base import ToolContext
    from mcode.tools.bash import BashTool
    from mcode.tools.sandbox import SandboxPolicy
    from mcode.tools.workspace import Workspace

    ws = tmp_path / "ws"
    ws.mkdir()
    ctx = ToolContext(workspace=Workspace(ws), sandbox=SandboxPolicy(writable=(ws,)))

    async def go(delay: float) -> None:
        task = asyncio.ensure_future(BashTool().run({"command": "sleep 1; touch ran"}, ctx))
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 20)
        while bash._abandoned:  # the cancelled start winds up: its process exits at the gate
            await asyncio.sleep(0.01)

    # 2-20 ms in is where bwrap is still setting the sandbox up: a SIGTERM then killed bwrap
    # alone and the command ran on (CI caught it); each delay twice, as the window is narrow.
    for delay in (0, 0, 0.001, 0.002, 0.002, 0.005, 0.005, 0.01, 0.01, 0.02, 0.02):
        asyncio.run(asyncio.wait_for(go(delay), 30))
    time.sleep(1.5)  # a command the cancel missed would have left its mark by now
    assert not (ws / "ran").exists()


@pytest.mark.parametrize("reporter", ["perl", "python"])
def test_a_signal_death_inside_bwrap_reads_as_the_signal(
    tmp_path: Path, reporter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bwrap exits 139 both for a child killed by SIGSEGV and for one that ran ``exit 139``;
    the model is told which, sandboxed as unsandboxed, with either reporter."""
    import asyncio

    from mcode.tools import bash
    from mcode.tools.base import ToolContext
    from mcode.tools.bash import BashTool
    from mcode.tools.sandbox import SandboxPolicy
    from mcode.tools.workspace import Workspace

    if reporter == "perl":
        if shutil.which("perl") is None:
            pytest.skip("no perl here")
        assert bash.reporter()[0] == shutil.which("perl")
    else:
        python = (sys.executable, "-I", "-S", "-c", bash.PYTHON_REPORTER)
        monkeypatch.setattr(bash, "reporter", lambda: python)
    ws = tmp_path / "ws"
    ws.mkdir()
    said = {}
    for sandbox in (SandboxPolicy(writable=(ws,)), None):
        for command in ("echo before; kill -SEGV $$", "exit 139", "kill -KILL $$", "exit 3"):
            ctx = ToolContext(workspace=Workspace(ws), sandbox=sandbox)  # its Event: one loop
            result = asyncio.run(BashTool().run({"command": command}, ctx))
            said[sandbox is not None, command] = (result.content, result.exit_code)
    for sandboxed in (True, False):
        assert said[sandboxed, "echo before; kill -SEGV $$"] == ("before\nkilled by SIGSEGV", None)
        assert said[sandboxed, "exit 139"] == ("exit code 139", 139)
        assert said[sandboxed, "kill -KILL $$"] == ("killed by SIGKILL", None)
        assert said[sandboxed, "exit 3"] == ("exit code 3", 3)


def test_hooks_write_the_workspace_but_nothing_outside_even_in_a_read_only_session(
    model_server: Any, setup: Any, outside: Path
) -> None:
    """Hooks run sandboxed at least workspace-write: a formatter hook may rewrite the
    workspace's files (even when the session is read-only), a hook that writes elsewhere
    fails; with a sandbox that cannot start the hook does not run at all, and says why."""
    home, repo, env = setup
    # (exit 1: a failed redirection is sh's exit 2, which would block the prompt)
    hooks = [f"echo formatted > {repo}/formatted.txt", f"echo x > {outside} || exit 1"]
    entries = ", ".join(f'{{ type = "command", command = {json.dumps(c)} }}' for c in hooks)
    (home / "config" / "mcode" / "config.toml").write_text(
        f"[[hooks.UserPromptSubmit]]\nhooks = [{entries}]\n"
    )
    server = model_server([{"text": "done"}])
    args = exec_args(server, "--output-format", "stream-json", "--sandbox", "read-only")
    run = mcode(*args, "go", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    finished = {
        e["data"]["command"]: e["data"] for e in run.events() if e["type"] == "hook.finished"
    }
    assert finished[hooks[0]]["outcome"] == "ok", finished
    assert (repo / "formatted.txt").read_text() == "formatted\n"
    assert finished[hooks[1]]["outcome"] == "failed"
    assert "Read-only file system" in finished[hooks[1]]["message"]
    assert not outside.exists()

    (repo / "formatted.txt").unlink()
    env["MCODE_BWRAP"] = str(home / "no-such-bwrap")
    server = model_server([{"text": "done"}])
    run = mcode(*exec_args(server, "--output-format", "stream-json"), "go", cwd=repo, env=env)
    finished = {
        e["data"]["command"]: e["data"] for e in run.events() if e["type"] == "hook.finished"
    }
    assert finished[hooks[0]]["outcome"] == "failed"
    assert "the sandbox cannot start" in finished[hooks[0]]["message"]
    assert "danger-full-access" in finished[hooks[0]]["message"]  # the hint comes along
    assert not (repo / "formatted.txt").exists() and not outside.exists()
