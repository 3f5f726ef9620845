"""Hooks with Claude Code's names and I/O, through `mcode exec` against the scripted model
server: real hook commands (small shell and Python scripts) configured in the user's config,
in a trusted project's .claude/settings.json, or refused in an untrusted one."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from helpers import Live, exec_args, make_repo, mcode, tool_messages, trust

# Reads the hook input, appends it to hooks.log (one JSON line per call), then acts.
RECORDER = """\
import json, sys
data = json.load(sys.stdin)
with open({log!r}, "a") as f:
    f.write(json.dumps(data) + "\\n")
{then}
"""

BLOCK_RM = """\
cmd = data.get("tool_input", {}).get("command", "")
if "rm -rf" in cmd:
    print("rm -rf is not allowed here; delete files one by one", file=sys.stderr)
    sys.exit(2)
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"keep/a.txt": "a\n", "README.md": "hi\n"})


def hook_script(folder: Path, name: str, then: str = "") -> str:
    """A Python hook script that records its input in folder/hooks.log; its command line."""
    path = folder / f"{name}.py"
    path.write_text(RECORDER.format(log=str(folder / "hooks.log"), then=then))
    return f"{sys.executable} {path}"


def user_config(home: Path, text: str) -> None:
    config = home / "config" / "mcode"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text(text)


def logged(folder: Path) -> list[dict]:
    path = folder / "hooks.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def of_type(run, type_: str) -> list[dict]:
    return [e["data"] for e in run.events() if e["type"] == type_]


def rm_script() -> list[dict]:
    calls = [{"id": "c1", "name": "bash", "arguments": {"command": "rm -rf keep"}}]
    return [{"tool_calls": calls}, {"text": "could not delete"}]


def test_a_pretooluse_hook_blocks_rm_rf_and_the_model_reads_why(
    model_server, repo, env, home, tmp_path
):
    command = hook_script(tmp_path, "guard", BLOCK_RM)
    user_config(
        home,
        f'[[hooks.PreToolUse]]\nmatcher = "Bash"\nhooks = [{{ type = "command", command = {json.dumps(command)} }}]\n',
    )
    server = model_server(rm_script())
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "clean up",
        cwd=repo,
        env=env,
    )
    assert (repo / "keep" / "a.txt").exists()  # the command never ran
    (result,) = tool_messages(server.bodies[1])
    assert "rm -rf is not allowed here; delete files one by one" in result["content"]
    assert "PreToolUse hook" in result["content"]
    (decided,) = of_type(run, "permission.decided")
    assert decided["by"] == "hook" and decided["allowed"] is False
    (finished,) = of_type(run, "hook.finished")
    assert finished["hook_event"] == "PreToolUse" and finished["outcome"] == "blocked"
    assert finished["exit_code"] == 2 and finished["tool"] == "bash"
    # Claude Code's input: its tool name, the call's input, the event name, the session.
    (seen,) = logged(tmp_path)
    assert seen["hook_event_name"] == "PreToolUse" and seen["tool_name"] == "Bash"
    assert seen["tool_input"]["command"] == "rm -rf keep"
    assert seen["session_id"] == run.events()[0]["session_id"] and seen["cwd"] == str(repo)
    assert run.code == 4  # a call it needed was denied


def test_a_hook_that_times_out_is_an_event_and_the_run_goes_on(model_server, repo, env, home):
    user_config(
        home,
        '[[hooks.PreToolUse]]\nmatcher = "*"\nhooks = [{ type = "command", command = "sleep 30", timeout = 0.5 }]\n',
    )
    calls = [{"id": "c1", "name": "bash", "arguments": {"command": "echo hi > out.txt"}}]
    server = model_server([{"tool_calls": calls}, {"text": "done"}])
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "full-auto"),
        "go",
        cwd=repo,
        env=env,
        timeout=60,
    )
    assert run.code == 0, run.stderr
    assert (repo / "out.txt").read_text() == "hi\n"  # the call ran as if the hook had not
    (finished,) = of_type(run, "hook.finished")
    assert finished["outcome"] == "timeout" and finished["duration"] < 10
    assert "timeout of 0.5 s" in finished["message"]


def test_a_failing_hook_is_reported_never_silent(model_server, repo, env, home):
    user_config(
        home,
        '[[hooks.PostToolUse]]\ncommand = "echo broken >&2; exit 3"\n',
    )
    calls = [{"id": "c1", "name": "read", "arguments": {"path": "README.md"}}]
    server = model_server([{"tool_calls": calls}, {"text": "done"}])
    run = mcode(*exec_args(server, "--output-format", "stream-json"), "go", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    (finished,) = of_type(run, "hook.finished")
    assert finished["outcome"] == "failed" and finished["exit_code"] == 3
    assert finished["message"] == "broken"
    (result,) = tool_messages(server.bodies[1])
    assert "broken" not in result["content"]  # a failed hook does not speak to the model
    # Text mode says it on stderr, -q too.
    server = model_server([{"tool_calls": calls}, {"text": "done"}] * 2)
    run = mcode(*exec_args(server), "go", cwd=repo, env=env)
    assert run.code == 0 and "PostToolUse hook (read) failed: broken" in run.stderr
    run = mcode(*exec_args(server, "-q"), "go", cwd=repo, env=env)
    assert run.code == 0 and "PostToolUse hook (read) failed: broken" in run.stderr


def test_json_output_can_allow_deny_or_rewrite_a_call(model_server, repo, env, home, tmp_path):
    # Rewrites every bash command's input (updatedInput) and allows it without asking.
    then = (
        "print(json.dumps({'hookSpecificOutput': {'hookEventName': 'PreToolUse',"
        " 'permissionDecision': 'allow', 'permissionDecisionReason': 'checked by policy',"
        " 'updatedInput': {'command': 'echo rewritten > out.txt'}}}))"
    )
    command = hook_script(tmp_path, "rewrite", then)
    user_config(home, f'[[hooks.PreToolUse]]\nmatcher = "bash"\ncommand = {json.dumps(command)}\n')
    calls = [{"id": "c1", "name": "bash", "arguments": {"command": "echo original > out.txt"}}]
    server = model_server([{"tool_calls": calls}, {"text": "done"}])
    # ask mode, headless: without the hook's allow this call would be denied.
    run = mcode(*exec_args(server, "--output-format", "stream-json"), "go", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert (repo / "out.txt").read_text() == "rewritten\n"
    (decided,) = of_type(run, "permission.decided")
    assert decided == {**decided, "allowed": True, "by": "hook", "reason": "checked by policy"}


def test_prompt_stop_and_post_hooks_speak_to_the_model(model_server, repo, env, home, tmp_path):
    context = hook_script(tmp_path, "context", "print('The build command is make check.')")
    post = hook_script(
        tmp_path,
        "post",
        "print(json.dumps({'hookSpecificOutput': {'hookEventName': 'PostToolUse',"
        " 'additionalContext': 'README.md is generated; edit docs/ instead'}}))",
    )
    # Blocks the first stop (tests not run yet), lets the second one through.
    stop = hook_script(
        tmp_path,
        "stop",
        "if not data['stop_hook_active']:\n"
        "    print(json.dumps({'decision': 'block', 'reason': 'run the tests before you stop'}))",
    )
    user_config(
        home,
        f"[[hooks.UserPromptSubmit]]\ncommand = {json.dumps(context)}\n"
        f'[[hooks.PostToolUse]]\nmatcher = "read"\ncommand = {json.dumps(post)}\n'
        f"[[hooks.Stop]]\ncommand = {json.dumps(stop)}\n",
    )
    calls = [{"id": "c1", "name": "read", "arguments": {"path": "README.md"}}]
    server = model_server([{"tool_calls": calls}, {"text": "first stop"}, {"text": "tests pass"}])
    run = mcode(*exec_args(server, "--output-format", "json"), "fix it", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["result"] == "tests pass"
    first_user = server.bodies[0]["messages"][-1]["content"]
    assert "fix it" in json.dumps(first_user) and "make check" in json.dumps(first_user)
    (result,) = tool_messages(server.bodies[1])
    assert "README.md is generated; edit docs/ instead" in result["content"]
    last = server.bodies[2]["messages"][-1]
    assert last["role"] == "user" and "run the tests before you stop" in json.dumps(last)
    events = [e["hook_event_name"] for e in logged(tmp_path)]
    assert events == ["UserPromptSubmit", "PostToolUse", "Stop", "Stop"]


def test_a_blocking_prompt_hook_keeps_the_message_from_the_model(model_server, repo, env, home):
    user_config(
        home, '[[hooks.UserPromptSubmit]]\ncommand = "echo no secrets in prompts >&2; exit 2"\n'
    )
    server = model_server([{"text": "never"}])
    run = mcode(
        *exec_args(server, "--output-format", "stream-json"), "my password is x", cwd=repo, env=env
    )
    assert run.code == 1
    assert server.bodies == []  # the model never saw it
    (error,) = [e for e in of_type(run, "error") if e["kind"] == "HookBlocked"]
    assert "no secrets in prompts" in error["message"]
    assert not of_type(run, "message.user")


def test_project_hooks_run_only_in_a_trusted_folder(model_server, repo, env, tmp_path):
    marker = tmp_path / "ran.txt"
    settings = {
        "hooks": {
            "PreToolUse": [
                {"matcher": "Read", "hooks": [{"type": "command", "command": f"touch {marker}"}]}
            ]
        }
    }
    (repo / ".claude").mkdir()
    (repo / ".claude" / "settings.json").write_text(json.dumps(settings))
    calls = [{"id": "c1", "name": "read", "arguments": {"path": "README.md"}}]
    server = model_server([{"tool_calls": calls}, {"text": "done"}] * 2)
    args = exec_args(server, "--output-format", "stream-json")
    run = mcode(*args, "go", cwd=repo, env=env)
    assert run.code == 0 and not marker.exists()
    (loaded,) = of_type(run, "plugins.loaded")
    assert any("settings.json" in i for i in loaded["ignored"])
    trust(repo, env)
    run = mcode(*args, "go", cwd=repo, env=env)
    assert run.code == 0 and marker.exists()


def test_a_bad_hook_entry_is_named_and_the_rest_still_run(model_server, repo, env, home, tmp_path):
    good = hook_script(tmp_path, "good")
    user_config(
        home,
        f"[[hooks.PreToolUse]]\ncommand = {json.dumps(good)}\n"
        '[[hooks.PreToolUse]]\ncommand = "true"\ntimeout = -1\n'
        '[[hooks.BeforeEverything]]\ncommand = "true"\n',
    )
    calls = [{"id": "c1", "name": "read", "arguments": {"path": "README.md"}}]
    server = model_server([{"tool_calls": calls}, {"text": "done"}])
    run = mcode(*exec_args(server, "--output-format", "stream-json"), "go", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    (loaded,) = of_type(run, "plugins.loaded")
    problems = "\n".join(loaded["problems"])
    assert "config.toml: hooks.PreToolUse[1].hooks[0].timeout" in problems
    assert "hooks.BeforeEverything: unknown hook event" in problems
    assert [e["hook_event_name"] for e in logged(tmp_path)] == ["PreToolUse"]


def test_session_subagent_notification_and_compaction_hooks(
    model_server, repo, env, home, tmp_path
):
    then = (
        "keep = {k: data[k] for k in ('source', 'message', 'trigger', 'stop_hook_active') if k in data}\n"
        "print(json.dumps({'hookSpecificOutput': {'additionalContext': 'CTX ' + json.dumps(keep)}}))"
    )
    command = json.dumps(hook_script(tmp_path, "all", then))
    user_config(
        home,
        "".join(
            f"[[hooks.{event}]]\ncommand = {command}\n"
            for event in ("SessionStart", "SubagentStop", "Stop", "Notification", "PreCompact")
        ),
    )
    task = {"description": "look", "prompt": "find README.md"}
    server = model_server(
        [
            {"tool_calls": [{"id": "c1", "name": "task", "arguments": task}]},
            {"text": "it is there"},  # the sub-agent
            {"text": "done"},
            {"tool_calls": [{"id": "c2", "name": "bash", "arguments": {"command": "echo hi"}}]},
            {"text": "ran"},
            {"text": "summary"},
            {"text": "summary"},
        ]
    )
    args = exec_args(server, "--input-format", "stream-json", "--output-format", "stream-json")
    live = Live(args, cwd=repo, env=env)
    try:
        live.send(json.dumps({"type": "user", "text": "delegate"}))
        live.until("turn.finished")
        live.send(json.dumps({"type": "user", "text": "run it"}))
        asked = live.until("permission.asked")
        live.send(
            json.dumps(
                {"type": "approve", "request_id": asked["data"]["request_id"], "decision": "allow"}
            )
        )
        live.until("turn.finished", 2)
        live.send(json.dumps({"type": "compact"}))
        deadline = time.monotonic() + 30
        while not any(e["hook_event_name"] == "PreCompact" for e in logged(tmp_path)):
            assert time.monotonic() < deadline, live.stderr
            time.sleep(0.1)
        live.close()
        live.wait()
    finally:
        live.kill()
    seen = [(e["hook_event_name"], e.get("source") or e.get("trigger")) for e in logged(tmp_path)]
    assert seen[0] == ("SessionStart", "startup")
    names = [name for name, _ in seen]
    assert names.index("SubagentStop") < names.index("Stop")  # the sub-agent's, then the turn's
    assert ("PreCompact", "manual") in seen
    note = next(e for e in logged(tmp_path) if e["hook_event_name"] == "Notification")
    assert "permission to use bash" in note["message"]
    # SessionStart's context reached the model with the first message, once.
    first = [part["text"] for part in server.bodies[0]["messages"][-1]["content"]]
    assert first == ["delegate", 'CTX {"source": "startup"}']
    assert "CTX" not in json.dumps(server.bodies[3]["messages"][-1])
