"""Errors that no retry can fix stop the run at once with a message that says what failed,
where, and what to do; errors worth retrying are retried, and a quiet run still says so once
the retries have gone on a while."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from helpers import clean_env, exec_args, free_port, make_repo, mcode

from mcode import events as ev
from mcode.events import Event
from mcode.progress import Progress


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# r\n"})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


def test_a_refused_connection_to_this_machine_fails_at_once(repo, env):
    port = free_port()  # bound and closed again: nothing listens there now
    url = f"http://someone:hunter22pw@127.0.0.1:{port}/v1"
    run = mcode(
        "exec",
        "--provider",
        "openai",
        "--base-url",
        url,
        "--output-format",
        "stream-json",
        "hi",
        cwd=repo,
        env=env,
    )
    assert run.code == 1
    types = [e["type"] for e in run.events()]
    assert "retry" not in types  # not one retry: a server does not appear by waiting
    error = next(e["data"] for e in run.events() if e["type"] == "error")
    assert error["kind"] == "connection" and "connection refused" in error["message"]
    # What failed, where (without the credentials), and what to do.
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in run.stderr
    assert "start the model server" in run.stderr
    assert "hunter22pw" not in run.stderr + run.stdout and "someone" not in run.stderr


@pytest.mark.parametrize("status", [400, 404, 422, 501, 505])
def test_a_status_that_retrying_cannot_fix_is_sent_once(model_server, repo, env, status):
    server = model_server(
        [{"status": status, "body": {"error": {"message": f"nope {status}"}}}, {"text": "never"}]
    )
    run = mcode(*exec_args(server, "--output-format", "stream-json"), "hi", cwd=repo, env=env)
    assert run.code == 1
    assert len(server.requests) == 1
    assert "retry" not in [e["type"] for e in run.events()]
    assert f"HTTP {status}" in run.stderr and f"nope {status}" in run.stderr
    assert f"{server.base_url}/chat/completions" in run.stderr  # where it failed
    if status == 501:
        assert "does not implement this API" in run.stderr


@pytest.mark.parametrize("status", [408, 409, 429, 503])
def test_a_status_worth_retrying_is_sent_again(model_server, repo, env, status):
    server = model_server([{"status": status}, {"text": "second time lucky"}])
    run = mcode(*exec_args(server), "hi", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert len(server.requests) == 2 and run.stdout == "second time lucky\n"


@pytest.mark.parametrize("output_format", ["text", "json"])
def test_a_quiet_run_says_when_retries_go_on(model_server, repo, env, output_format):
    server = model_server([{"status": 503}, {"status": 503}, {"text": "back"}])
    run = mcode(*exec_args(server, "-q", "--output-format", output_format), "hi", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert len(server.requests) == 3
    lines = run.stderr.splitlines()
    # The first retry is quick and stays quiet; the second says what is going on.
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("mcode: retrying in ") and "(attempt 2)" in lines[0]
    assert "HTTP 503" in lines[0]


def test_a_quiet_run_stays_quiet_through_one_short_retry(model_server, repo, env):
    server = model_server([{"status": 503}, {"text": "back"}])
    run = mcode(*exec_args(server, "-q"), "hi", cwd=repo, env=env)
    assert (run.code, run.stdout, run.stderr) == (0, "back\n", "")
    assert len(server.requests) == 2


def retry_event(attempt: int, wait: float) -> Event:
    data = {"attempt": attempt, "reason": "model API error: HTTP 503", "wait": wait, "kind": "x"}
    return Event(ev.RETRY, data, attempt, "s", "t", 0.0)


def test_a_quiet_run_shows_a_first_retry_that_waits_long():
    out = io.StringIO()
    progress = Progress(out, quiet=True)
    progress(retry_event(1, 0.5), "")  # a short first wait: nothing
    progress(retry_event(1, 4.0), "")  # the next call's first retry waits 4 s: shown
    progress(retry_event(1, 1.0), "")
    progress(retry_event(1, 1.0), "")  # a call's first retry again, short: nothing
    assert out.getvalue() == "mcode: retrying in 4.0 s (attempt 1): model API error: HTTP 503\n"
