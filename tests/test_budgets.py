"""Run limits through ``mcode exec`` against the scripted model server: --max-tokens,
--max-cost and --max-time end the turn cleanly with a ``budget`` error, exit 3 and nothing
half-done; an interrupted-by-budget turn continues with ``--continue``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import clean_env, exec_args, gone, make_repo, mcode, sleeper

FULL = ("--permission-mode", "full-auto", "--output-format", "stream-json")


def _bash(call_id: str, command: str, tokens: tuple[int, int] = (600, 100)) -> dict[str, Any]:
    return {
        "tool_calls": [{"id": call_id, "name": "bash", "arguments": {"command": command}}],
        "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]},
    }


@pytest.fixture
def where(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = make_repo(tmp_path / "repo", {"a.txt": "hi\n"})
    # Off the sandbox: these tests are about the limits (and their pids are the host's).
    return repo, clean_env(tmp_path / "home", MCODE_SANDBOX_MODE="danger-full-access")


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == kind]


def test_max_tokens_ends_the_turn_at_a_step_boundary(model_server: Any, where: Any) -> None:
    repo, env = where
    server = model_server(
        [
            _bash("c1", "echo one > one.txt"),  # 700 tokens: under the limit, runs
            _bash("c2", "echo two > two.txt"),  # 1,400 in all: at the limit, not run
            {"text": "never asked"},
        ]
    )
    run = mcode(*exec_args(server, *FULL, "--max-tokens", "1000"), "go", cwd=repo, env=env)
    assert run.code == 3, run.stderr
    events = run.events()
    assert (repo / "one.txt").read_text() == "one\n"
    assert not (repo / "two.txt").exists()
    errors = [e for e in _of(events, "error") if e["kind"] == "budget"]
    assert len(errors) == 1 and "1,400 tokens" in errors[0]["message"]
    assert "--max-tokens" in errors[0]["message"] and "--continue" in errors[0]["hint"]
    assert _of(events, "turn.finished")[-1]["reason"] == "budget"
    # Every call in history has its result: the one not run says why.
    finished = {e["id"]: e for e in _of(events, "tool.finished")}
    assert finished["c2"]["ok"] is False and finished["c2"]["summary"] == "stopped at a run limit"
    assert _of(events, "session.finished")[-1]["exit_code"] == 3
    assert len(server.requests) == 2


def test_json_result_says_budget(model_server: Any, where: Any) -> None:
    repo, env = where
    server = model_server([_bash("c1", "true", (5000, 10)), {"text": "never"}])
    run = mcode(
        *exec_args(server, "--permission-mode", "full-auto", "--output-format", "json"),
        "--max-tokens",
        "100",
        "go",
        cwd=repo,
        env=env,
    )
    assert run.code == 3
    result = json.loads(run.stdout)
    assert result["reason"] == "budget" and result["result"] is None
    assert "--max-tokens" in result["error"]["message"]


def test_max_cost_uses_the_models_price(model_server: Any, where: Any) -> None:
    repo, env = where
    # gpt-4.1: $2 / $8 per M tokens: 100k in + 10k out = $0.28 a call.
    big = (100_000, 10_000)
    server = model_server([_bash("c1", "true", big), _bash("c2", "touch two", big), {"text": "x"}])
    args = ["exec", "--provider", "openai", "--base-url", server.base_url, "--model", "gpt-4.1"]
    run = mcode(*args, *FULL, "--max-cost", "0.5", "go", cwd=repo, env=env)
    assert run.code == 3, run.stderr
    (error,) = [e for e in _of(run.events(), "error") if e["kind"] == "budget"]
    assert "$0.5600" in error["message"] and "$0.5" in error["message"]
    assert not (repo / "two").exists()


def test_max_cost_for_a_model_without_a_price_is_refused(model_server: Any, where: Any) -> None:
    repo, env = where
    server = model_server([{"text": "never"}])
    run = mcode(*exec_args(server, "--max-cost", "1"), "go", cwd=repo, env=env)
    assert run.code == 2
    assert "price of 'test-model' is not known" in run.stderr
    assert "--max-tokens" in run.stderr
    assert len(server.requests) == 0


def test_max_time_stops_a_running_command_and_kills_it(
    model_server: Any, where: Any, tmp_path: Path
) -> None:
    repo, env = where
    pid = tmp_path / "pid"
    server = model_server([_bash("c1", sleeper(pid, "echo late > late.txt")), {"text": "never"}])
    started = time.monotonic()
    run = mcode(*exec_args(server, *FULL, "--max-time", "2"), "go", cwd=repo, env=env)
    took = time.monotonic() - started
    assert run.code == 3, run.stderr
    assert took < 20  # the 300 s sleep did not run out
    assert gone(pid)  # its process group was killed
    assert not (repo / "late.txt").exists()
    events = run.events()
    (error,) = [e for e in _of(events, "error") if e["kind"] == "budget"]
    assert "time limit of 2 s" in error["message"]
    assert _of(events, "turn.finished")[-1]["reason"] == "budget"
    (done,) = _of(events, "tool.finished")
    assert done["ok"] is False


def test_a_turn_stopped_by_a_budget_continues_with_continue(model_server: Any, where: Any) -> None:
    repo, env = where
    server = model_server([_bash("c1", "echo one > one.txt", (900, 200))])
    run = mcode(*exec_args(server, "-q", "--max-tokens", "1000"), "go", cwd=repo, env=env)
    assert run.code == 3
    server.push(_bash("c2", "echo two > two.txt"), {"text": "finished"})
    run = mcode(
        *exec_args(server, "-q", "--permission-mode", "full-auto", "--max-tokens", "100000"),
        "--continue",
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    assert run.stdout.strip() == "finished"
    assert (repo / "two.txt").exists()


def test_prices_match_dated_names_and_nothing_else() -> None:
    from mcode.messages import Usage
    from mcode.providers.prices import PRICES, price_of

    assert price_of("claude-sonnet-4-5-20250929") is PRICES["claude-sonnet-4-5"]
    assert price_of("claude-sonnet-4-20250514") is PRICES["claude-sonnet-4"]
    assert price_of("MiniMaxAI/MiniMax-M2") is PRICES["MiniMax-M2"]
    assert price_of("MiniMax-M2.7-highspeed") is None  # not its base model's price
    assert price_of("gpt-4.1-mini") is PRICES["gpt-4.1-mini"]
    assert price_of("my-model") is None
    # Cached input at its own rate: 1M in (400k cached) + 100k out on gpt-4.1.
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cached_tokens=400_000)
    assert PRICES["gpt-4.1"].cost(usage) == pytest.approx(0.6 * 2 + 0.4 * 0.5 + 0.1 * 8)
