"""What a new user gets wrong on the command line and in the environment, and what mcode says
back: every bad flag, variable or file is refused up front (exit 2) with a message naming it,
an interrupted or stopped run never prints narration as its answer, and ``--output-format json``
prints an object on every exit. ``mcode exec`` and ``mcode undo`` as subprocesses against the
scripted model server on loopback."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import exec_args, make_repo, mcode

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 20
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# calc\n", "calc.py": "x = 1\n"})


def no_sessions(repo: Path, env: dict[str, str]) -> bool:
    return "no sessions" in mcode("sessions", "--all", cwd=repo, env=env).stdout


def call(cid: str, name: str, **args: Any) -> dict[str, Any]:
    return {"id": cid, "name": name, "arguments": args}


# ---- flags -------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--resume", "--model", "--base-url", "--cwd"])
def test_an_empty_flag_value_is_a_usage_error_not_the_default(model_server, repo, env, flag):
    server = model_server([{"text": "should not run"}])
    run = mcode(*exec_args(server), flag, "", "hi", cwd=repo, env=env)
    assert run.code == 2, run.stderr
    assert f"argument {flag}: expected" in run.stderr and "empty value" in run.stderr
    assert server.requests == [] and no_sessions(repo, env)


def test_undo_resume_with_an_empty_id_is_a_usage_error(repo, env):
    run = mcode("undo", "--resume", "", cwd=repo, env=env)
    assert run.code == 2 and "argument --resume: expected a session id" in run.stderr


def test_add_dir_must_name_an_existing_folder(model_server, repo, env, tmp_path):
    server = model_server([{"text": "should not run"}])
    missing = tmp_path / "no-such-folder"
    run = mcode(*exec_args(server, "--add-dir", str(missing), "hi"), cwd=repo, env=env)
    assert run.code == 2 and f"'{missing}': no such folder" in run.stderr
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    run = mcode(*exec_args(server, "--add-dir", str(a_file), "hi"), cwd=repo, env=env)
    assert run.code == 2 and "is not a folder" in run.stderr
    assert server.requests == []


def test_add_dir_with_an_existing_folder_lets_tools_read_there(model_server, repo, env, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "lib.txt").write_text("shared contents\n")
    server = model_server(
        [{"tool_calls": [call("r1", "read", path=str(shared / "lib.txt"))]}, {"text": "read it"}]
    )
    run = mcode(*exec_args(server, "--add-dir", "../shared", "read it"), cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert "shared contents" in json.dumps(server.requests[1].body["messages"][-1])


def test_an_image_is_checked_by_its_bytes_not_its_name(model_server, repo, env, tmp_path):
    server = model_server([{"text": "a photo"}])
    fake = tmp_path / "shot.png"
    fake.write_text("<!DOCTYPE html><html>a saved web page</html>\n")
    run = mcode(*exec_args(server, "--image", str(fake), "what is it?"), cwd=repo, env=env)
    assert run.code == 2
    assert f"--image {fake}: not a PNG, JPEG, GIF or WebP image" in run.stderr
    assert "it is text, starting '<!DOCTYPE html>" in run.stderr
    empty = tmp_path / "empty.gif"
    empty.write_bytes(b"")
    run = mcode(*exec_args(server, "--image", str(empty), "what is it?"), cwd=repo, env=env)
    assert run.code == 2 and "the file is empty" in run.stderr
    assert server.requests == []

    # A JPEG saved under a .png name goes out as what it is, whatever the name says.
    renamed = tmp_path / "photo.png"
    renamed.write_bytes(JPEG)
    # A GIF without any extension at all is an image too.
    bare = tmp_path / "anim"
    bare.write_bytes(b"GIF89a" + b"\x00" * 20)
    args = exec_args(server, "--image", str(renamed), "--image", str(bare), "what is it?")
    run = mcode(*args, cwd=repo, env=env)
    assert run.code == 0, run.stderr
    urls = [
        p["image_url"]["url"]
        for p in server.requests[0].body["messages"][-1]["content"]
        if p["type"] == "image_url"
    ]
    assert urls[0] == "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    assert urls[1].startswith("data:image/gif;base64,")


def test_an_image_on_a_stdin_line_is_checked_by_its_bytes(model_server, repo, env, tmp_path):
    server = model_server([{"text": "ok"}, {"text": "ok again"}])
    fake = tmp_path / "x.webp"
    fake.write_bytes(b"%PDF-1.7\n...")
    lines = [
        {"type": "user", "text": "look", "images": [str(fake)]},
        {"type": "user", "text": "look again", "images": [str(tmp_path / "y.png")]},
        {"type": "user", "text": "and this"},
    ]
    (tmp_path / "y.png").write_bytes(PNG)
    args = exec_args(server, "--input-format", "stream-json", "--output-format", "stream-json")
    stdin = "".join(json.dumps(x) + "\n" for x in lines)
    run = mcode(*args, cwd=repo, env=env, stdin=stdin)
    assert run.code == 0, run.stderr
    [error] = [e["data"] for e in run.events() if e["type"] == "error"]
    assert "line 1 was skipped" in error["message"] and "it is a PDF document" in error["message"]
    assert [
        e["data"]["message"]["parts"][0]["text"]
        for e in run.events()
        if e["type"] == "message.user"
    ] == [
        "look again",
        "and this",
    ]


# ---- environment and config files --------------------------------------------------------------


def test_a_misspelt_mcode_variable_is_a_usage_error_naming_the_closest(model_server, repo, env):
    server = model_server([{"text": "should not run"}])
    bad = {**env, "MCODE_NETWORK_MAX_RETRY": "0"}
    run = mcode(*exec_args(server, "hi"), cwd=repo, env=bad)
    assert run.code == 2
    assert "unknown environment variable MCODE_NETWORK_MAX_RETRY" in run.stderr
    assert "did you mean MCODE_NETWORK_MAX_RETRIES?" in run.stderr
    assert server.requests == [] and no_sessions(repo, env)
    # The commands that only read the data folder check too: a misspelt MCODE_DATA_DIR would
    # point them at another store than the user meant.
    for cmd in (["undo"], ["sessions"]):
        run = mcode(*cmd, cwd=repo, env={**env, "MCODE_DATADIR": "/tmp/x"})
        assert run.code == 2 and "did you mean MCODE_DATA_DIR?" in run.stderr, cmd


def test_every_mcode_variable_the_code_names_is_a_known_one():
    """A variable some module reads (or a hint names) but that the check does not know would
    stop every run that sets it: register it in config.ENV_ONLY."""
    from mcode.config import known_env_names

    sources = [*ROOT.glob("mcode/**/*.py"), *ROOT.glob("local_backend/**/*.py")]
    sources.append(ROOT / "tests" / "helpers.py")
    named = set()
    for path in sources:
        named.update(re.findall(r"\bMCODE_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    assert named - known_env_names() == set()
    assert "MCODE_DATA_DIR" in named and "MCODE_NETWORK_BACKOFF_BASE" in named


def test_an_unknown_provider_in_a_config_file_names_the_file_and_line(repo, env, home):
    cfg = home / "config" / "mcode" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('max_turns = 3\nprovider = "openia"\n')
    run = mcode("exec", "hi", cwd=repo, env=env)
    assert run.code == 2
    assert f"{cfg}:2: unknown provider 'openia'" in run.stderr
    assert "openai" in run.stderr  # what to use instead
    cfg.write_text('[permissions]\nallow = []\n\npermission_mode = "yolo"\n')
    cfg.write_text('permission_mode = "yolo"\n')
    run = mcode("exec", "hi", cwd=repo, env=env)
    assert run.code == 2 and f"{cfg}:1: unknown permission mode 'yolo'" in run.stderr
    cfg.unlink()
    run = mcode("exec", "hi", cwd=repo, env={**env, "MCODE_PROVIDER": "openia"})
    assert run.code == 2
    assert "environment variable MCODE_PROVIDER: unknown provider 'openia'" in run.stderr


# ---- what a run that did not finish prints -----------------------------------------------------

SLOW = [
    {
        "text": "Now a slow check.",
        "tool_calls": [call("c1", "bash", command="touch started && sleep 30")],
    },
    {"text": "never"},
]


def interrupted(server, repo: Path, env: dict[str, str], *flags: str) -> tuple[int, str, str]:
    """Run ``mcode exec``, SIGINT it once its bash call is running."""
    args = exec_args(server, "--permission-mode", "full-auto", *flags, "check it")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcode", *args],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (repo / "started").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the bash call never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_an_interrupted_run_prints_no_narration_as_its_answer(model_server, repo, env):
    code, out, err = interrupted(model_server(SLOW), repo, env)
    assert code == 130
    assert out == ""
    assert "mcode: interrupted: the task did not finish" in err and "--resume" in err


def test_an_interrupted_run_in_json_has_no_result_and_says_cancelled(model_server, repo, env):
    code, out, _ = interrupted(model_server(SLOW), repo, env, "--output-format", "json")
    assert code == 130
    result = json.loads(out)
    assert result["result"] is None and result["reason"] == "cancelled"
    assert result["exit_code"] == 130


def test_a_run_stopped_at_max_turns_prints_no_answer(model_server, repo, env):
    step = {"text": "Let me look.", "tool_calls": [call("c1", "read", path="calc.py")]}
    server = model_server([step, step])
    run = mcode(*exec_args(server, "--max-turns", "1", "look"), cwd=repo, env=env)
    assert run.code == 3 and run.stdout == ""
    assert "max turns" in run.stderr
    run = mcode(
        *exec_args(server, "--max-turns", "1", "--output-format", "json", "look"),
        cwd=repo,
        env=env,
    )
    result = json.loads(run.stdout)
    assert result["result"] is None and result["reason"] == "max_turns"


# ---- json on every exit ------------------------------------------------------------------------


def test_json_output_prints_an_object_on_usage_errors(model_server, repo, env, tmp_path):
    server = model_server([{"text": "should not run"}])
    # A stdin user line whose image is missing, and nothing else: the run has no message.
    line = {"type": "user", "text": "look", "images": [str(tmp_path / "missing.png")]}
    args = exec_args(server, "--input-format", "stream-json", "--output-format", "json")
    run = mcode(*args, cwd=repo, env=env, stdin=json.dumps(line) + "\n")
    assert run.code == 2
    result = json.loads(run.stdout)
    assert result["exit_code"] == 2 and result["result"] is None and result["reason"] == "usage"
    assert isinstance(result["session_id"], str)  # the bad line was recorded in that session
    message = result["error"]["message"]
    assert "ended before any user message" not in message and "ended before" not in run.stderr
    assert "1 line of standard input was skipped" in message and "missing.png" in message
    assert '{"type":"user","text":"..."}' in result["error"]["hint"]

    # Bad flags (argparse), a bad value (the run's own check) and an unknown session.
    for bad in (
        ["--max-turns", "0", "hi"],
        ["--resume", "", "hi"],
        ["--resume", "0123abcd", "hi"],
        ["--image", str(tmp_path / "missing.png"), "hi"],
    ):
        run = mcode(*exec_args(server, "--output-format", "json", *bad), cwd=repo, env=env)
        assert run.code == 2, bad
        result = json.loads(run.stdout)
        assert result["exit_code"] == 2 and result["session_id"] is None, bad
        assert result["error"]["message"], bad
    assert server.requests == []


# ---- mcode undo ---------------------------------------------------------------------------------


def test_undo_skips_newer_sessions_that_changed_nothing(model_server, repo, env):
    server = model_server(
        [
            {"tool_calls": [call("r1", "read", path="calc.py")]},
            {"tool_calls": [call("e1", "edit", path="calc.py", old_string="1", new_string="2")]},
            {"text": "Changed it."},
            {"text": "It sets x."},  # a later session that only answers
        ]
    )
    flags = ["--permission-mode", "full-auto"]
    assert mcode(*exec_args(server, *flags, "change x"), cwd=repo, env=env).code == 0
    assert mcode(*exec_args(server, *flags, "what is x?"), cwd=repo, env=env).code == 0
    assert (repo / "calc.py").read_text() == "x = 2\n"
    run = mcode("undo", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert "(the 1 newer session in this folder changed no files that are left to undo)" in (
        run.stdout
    )
    assert '("change x")' in run.stdout and "restored calc.py" in run.stdout
    assert (repo / "calc.py").read_text() == "x = 1\n"
    again = mcode("undo", cwd=repo, env=env)
    assert again.code == 0 and "Nothing to undo" in again.stdout


# ---- compaction that would not shrink ----------------------------------------------------------


def test_compacting_a_short_conversation_is_refused_and_changes_nothing(model_server, repo, env):
    server = model_server([{"text": "hello"}, {"text": "still here"}])
    lines = [
        {"type": "user", "text": "hi"},
        {"type": "compact"},
        {"type": "user", "text": "and now?"},
    ]
    args = exec_args(server, "--input-format", "stream-json", "--output-format", "stream-json")
    stdin = "".join(json.dumps(x) + "\n" for x in lines)
    run = mcode(*args, cwd=repo, env=env, stdin=stdin)
    assert run.code == 0, run.stderr
    events = run.events()
    assert not [e for e in events if e["type"] == "compaction"]
    [error] = [e["data"] for e in events if e["type"] == "error"]
    assert error["kind"] == "compaction" and error["recoverable"] is True
    assert (
        "not compacted (manual): compacting would not make the request smaller"
        in (error["message"])
    )
    # No summary was asked for, and the second turn's request holds the conversation as it was.
    assert len(server.requests) == 2
    messages = [m for m in server.requests[1].body["messages"] if m["role"] != "system"]
    assert [m["content"] for m in messages] == ["hi", "hello", "and now?"]


def test_auto_compaction_that_would_not_shrink_is_skipped_and_said(model_server, repo, env):
    """A window so small that the system prompt and tools nearly fill it: every request is
    over, but compacting its few short messages would only add the ledger's header."""
    # The API counts the first request at 1,900 tokens: over the 1,500 a request may hold.
    usage = {"prompt_tokens": 1900, "completion_tokens": 10}
    server = model_server(
        [{"tool_calls": [call("r1", "read", path="calc.py")], "usage": usage}, {"text": "x is 1"}]
    )
    args = exec_args(
        server, "--context-window", "2000", "--output-format", "stream-json", "what is x?"
    )
    run = mcode(*args, cwd=repo, env=env)
    assert run.code == 0, run.stderr
    events = run.events()
    assert not [e for e in events if e["type"] == "compaction"]
    errors = [e["data"] for e in events if e["type"] == "error"]
    assert errors and all(e["kind"] == "compaction" and e["recoverable"] for e in errors)
    assert (
        "not compacted (auto): compacting would not make the request smaller"
        in (errors[0]["message"])
    )
    assert len(server.requests) == 2  # no summary request
    assert events[-1]["data"]["result"] == "x is 1"


# ---- resume in another folder ------------------------------------------------------------------


def test_resuming_a_session_from_another_folder_is_refused(model_server, repo, env, tmp_path):
    server = model_server([{"text": "first"}, {"text": "second"}])
    first = mcode(*exec_args(server, "--output-format", "json", "hi"), cwd=repo, env=env)
    session_id = json.loads(first.stdout)["session_id"]
    other = make_repo(tmp_path / "other", {"README.md": "# other\n"})
    run = mcode(*exec_args(server, "--resume", session_id[:12], "go on"), cwd=other, env=env)
    assert run.code == 2
    assert f"session {session_id[:12]} worked in {repo}, not in {other}" in run.stderr
    assert f"mcode exec --cwd {repo} --resume {session_id[:12]}" in run.stderr
    assert len(server.requests) == 1
    # As the hint says: from anywhere, with --cwd naming its folder.
    args = exec_args(server, "--cwd", str(repo), "--resume", session_id[:12], "go on")
    run = mcode(*args, cwd=other, env=env)
    assert run.code == 0, run.stderr
    assert run.stdout == "second\n"
    assert [m["content"] for m in server.requests[1].body["messages"][1:]] == [
        "hi",
        "first",
        "go on",
    ]
