"""The loop breaker (mcode/agent/loop_guard.py): a model that keeps sending the same failing call
is told at the 3rd failure and stopped at the 5th. End to end: `mcode exec` in a real git repo
against the scripted model server on loopback; plus unit tests of the guard itself."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, exec_args, make_repo, mcode, stored_events, tool_messages

from mcode.agent.loop_guard import (
    NOT_RUN_RESULT,
    STOP_AT,
    WARN_AT,
    LoopGuard,
    call_key,
    canonical_arguments,
    short_arguments,
)
from mcode.config import load_settings
from mcode.events import TRANSIENT_TYPES
from mcode.messages import ToolCall
from mcode.runtime.build import open_session
from mcode.store import Store
from mcode.tools.base import ToolResult

NOTE = "mcode: this exact call has failed"
_ids = itertools.count(1)


def call(name: str, arguments: Any, call_id: str | None = None) -> dict[str, Any]:
    return {"id": call_id or f"call_{next(_ids)}", "name": name, "arguments": arguments}


def step(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": list(calls)}


def read_missing() -> dict[str, Any]:
    return call("read", {"path": "missing.py"})


def bad_edit() -> dict[str, Any]:
    return call("edit", {"path": "calc.py", "old_string": "not there", "new_string": "x"})


def bodies(server: Any) -> list[dict[str, Any]]:
    return [r["body"] for r in server.requests]


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == type_]


def assert_every_call_answered(events: list[dict[str, Any]]) -> None:
    """Every tool call in the history has exactly one result."""
    asked = [
        c["id"] for m in of_type(events, "message.assistant") for c in m["message"]["tool_calls"]
    ]
    answered = [f["id"] for f in of_type(events, "tool.finished")]
    assert sorted(asked) == sorted(answered)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"calc.py": "def add(a, b):\n    return a - b\n"})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


def run_json_stream(server: Any, repo: Path, env: dict[str, str], *extra: str) -> Any:
    return mcode(
        *exec_args(server, "--output-format", "stream-json", *extra), "fix it", cwd=repo, env=env
    )


# ------------------------------------------------------------------------------- end to end


def test_same_failing_call_is_warned_then_stopped(model_server, repo, env, tmp_path):
    # Nine identical failing reads scripted; the run must stop after the 5th.
    server = model_server([step(read_missing()) for _ in range(9)])
    run = run_json_stream(server, repo, env)
    assert run.code == 3, run.stderr
    events = run.events()

    # The server was asked exactly five times: never again after the stop.
    reqs = bodies(server)
    assert len(reqs) == STOP_AT
    assert server.remaining == 9 - STOP_AT

    # What the model heard: results 1-2 plain errors, the 3rd and 4th with the note after the
    # original error, and (in history) the 5th saying the turn was stopped.
    results = [f["message"]["parts"][0]["text"] for f in of_type(events, "tool.finished")]
    assert len(results) == STOP_AT
    for n, text in enumerate(results, 1):
        assert text.startswith("Error: "), text  # the original error text comes first
        assert "missing.py" in text.split("\n\n")[0]
        assert (NOTE in text) == (n >= WARN_AT)
    assert f"{NOTE} 3 times" in results[2] and "change the arguments" in results[2]
    assert f"{NOTE} 5 times" in results[4] and "stopped the turn" in results[4]
    sent = tool_messages(reqs[WARN_AT])  # the request after the 3rd failure
    assert f"{NOTE} 3 times" in sent[-1]["content"]
    assert sent[-1]["content"].startswith("Error: ")
    assert all(NOTE not in m["content"] for m in tool_messages(reqs[WARN_AT - 1]))

    # Events: one recoverable warning at the 3rd, one final error, then turn.finished loop.
    loops = [e for e in of_type(events, "error") if e["kind"] == "loop"]
    assert [e["recoverable"] for e in loops] == [True, False]
    assert "read" in loops[0]["message"] and "missing.py" in loops[0]["message"]
    final = loops[1]
    assert "5 times" in final["message"] and 'read {"path":"missing.py"}' in final["message"]
    assert "last error" in final["message"] and final["hint"]
    assert of_type(events, "turn.finished") == [{"reason": "loop"}]
    types = [e["type"] for e in events]
    assert types[-3:] == ["error", "turn.finished", "session.finished"]
    finished = events[-1]["data"]
    assert finished["reason"] == "loop" and finished["exit_code"] == 3
    assert_every_call_answered(events)
    # Stored like every other event (the store keeps what was streamed).
    durable = [e for e in events if e["type"] not in TRANSIENT_TYPES]
    assert stored_events(tmp_path / "home", events[0]["session_id"]) == durable


def test_stop_answers_every_call_of_the_batch_and_runs_no_more(model_server, repo, env):
    # Four failing edits, then one answer whose first call is the 5th failure and whose later
    # calls (a write, a read) must not run but must still get a result.
    failing = [step(bad_edit()) for _ in range(STOP_AT - 1)]
    last = step(bad_edit(), call("write", {"path": "new.txt", "content": "x"}), read_missing())
    server = model_server([*failing, last, {"text": "never asked"}])
    run = run_json_stream(server, repo, env, "--permission-mode", "full-auto")
    assert run.code == 3, run.stderr
    events = run.events()
    assert len(server.requests) == STOP_AT
    assert_every_call_answered(events)
    tail = of_type(events, "tool.finished")[-3:]
    assert [t["name"] for t in tail] == ["edit", "write", "read"]
    assert tail[0]["message"]["parts"][0]["text"].startswith("Error: calc.py")  # its own error
    assert [t["message"]["parts"][0]["text"] for t in tail[1:]] == [NOT_RUN_RESULT] * 2
    assert not (repo / "new.txt").exists()
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    # --output-format json carries the reason and the error too.
    server = model_server([step(bad_edit()) for _ in range(STOP_AT)])
    run = mcode(*exec_args(server, "--output-format", "json"), "fix", cwd=repo, env=env)
    assert run.code == 3, run.stderr
    result = json.loads(run.stdout)
    assert result["reason"] == "loop" and result["exit_code"] == 3
    assert "edit" in result["error"]["message"]


def test_text_mode_says_why_it_stopped(model_server, repo, env):
    server = model_server([step(read_missing()) for _ in range(STOP_AT)])
    run = mcode(*exec_args(server), "fix it", cwd=repo, env=env)
    assert run.code == 3
    assert "loop: stopped the turn: the model sent the same failing call 5 times" in run.stderr


def test_changing_the_arguments_after_the_note_goes_on(model_server, repo, env):
    fixed = call("edit", {"path": "calc.py", "old_string": "a - b", "new_string": "a + b"})
    server = model_server(
        [
            *[step(bad_edit()) for _ in range(WARN_AT)],
            # The note got through: the model reads, then fails differently a few times, then
            # fixes it; none of that is the same call again.
            step(call("read", {"path": "calc.py"})),
            *[step(call("read", {"path": f"other{n}.py"})) for n in range(STOP_AT)],
            step(fixed),
            {"text": "fixed"},
        ]
    )
    run = run_json_stream(server, repo, env, "--permission-mode", "auto-edit")
    assert run.code == 0, run.stderr
    events = run.events()
    assert of_type(events, "turn.finished") == [{"reason": "completed"}]
    assert [e["recoverable"] for e in of_type(events, "error") if e["kind"] == "loop"] == [True]
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"


def test_success_of_the_same_call_clears_its_count(model_server, repo, env):
    # `read new.txt` fails twice; then the file appears (made by someone else, not by a model
    # call, which would clear every count anyway) and the same read succeeds; then it is gone
    # again and the read fails four more times. 2 + 4 would be 6, a stop at the 3rd of them;
    # the success cleared the count, so the four only warn.
    new = repo / "new.txt"
    read_new = {"path": "new.txt"}

    def after(change: Any) -> Any:
        def answer(body: dict[str, Any]) -> dict[str, Any]:
            change()
            return step(call("read", read_new))

        return answer

    server = model_server(
        [
            step(call("read", read_new)),
            step(call("read", read_new)),
            after(lambda: new.write_text("hi\n")),
            after(new.unlink),
            *[step(call("read", read_new)) for _ in range(STOP_AT - 2)],
            {"text": "done"},
        ]
    )
    run = run_json_stream(server, repo, env)
    assert run.code == 0, run.stderr
    events = run.events()
    assert of_type(events, "turn.finished") == [{"reason": "completed"}]
    oks = [f["ok"] for f in of_type(events, "tool.finished")]
    assert oks == [False, False, True, *[False] * (STOP_AT - 1)]
    last = of_type(events, "tool.finished")[-1]["message"]["parts"][0]["text"]
    assert f"{NOTE} {STOP_AT - 1} times" in last


def test_a_read_between_failures_clears_nothing(model_server, repo, env):
    # Only the same call's success clears its count (or a call that changes things): reading
    # the file between identical failing edits is still a loop.
    script = []
    for _ in range(STOP_AT):
        script += [step(call("read", {"path": "calc.py"})), step(bad_edit())]
    server = model_server(script)
    run = run_json_stream(server, repo, env, "--permission-mode", "auto-edit")
    assert run.code == 3, run.stderr
    assert of_type(run.events(), "turn.finished") == [{"reason": "loop"}]


def test_alternating_failing_calls_are_caught(model_server, repo, env):
    a = {"path": "missing.py"}
    b = {"path": "gone.py"}
    script = [step(call("read", a if n % 2 == 0 else b)) for n in range(12)]
    server = model_server(script)
    run = run_json_stream(server, repo, env)
    assert run.code == 3, run.stderr
    # A, B, A, B, ...: A's 5th failure is the 9th call.
    assert len(server.requests) == 2 * STOP_AT - 1
    final = [e for e in of_type(run.events(), "error") if e["kind"] == "loop"][-1]
    assert "missing.py" in final["message"] and final["recoverable"] is False


def test_key_order_and_spacing_do_not_hide_a_loop(model_server, repo, env):
    spellings = [
        '{"path": "calc.py", "old_string": "nope", "new_string": "x"}',
        '{"new_string":"x","old_string":"nope","path":"calc.py"}',
        '{ "old_string" : "nope",\n  "path" : "calc.py", "new_string" : "x" }',
    ]
    script = [step(call("edit", spellings[n % 3])) for n in range(STOP_AT)]
    server = model_server(script)
    run = run_json_stream(server, repo, env, "--permission-mode", "auto-edit")
    assert run.code == 3, run.stderr


def test_identical_successful_calls_are_not_a_loop(model_server, repo, env):
    server = model_server(
        [*[step(call("read", {"path": "calc.py"})) for _ in range(2 * STOP_AT)], {"text": "ok"}]
    )
    run = run_json_stream(server, repo, env)
    assert run.code == 0, run.stderr
    events = run.events()
    assert not [e for e in of_type(events, "error") if e["kind"] == "loop"]
    assert all(NOTE not in m["content"] for m in tool_messages(bodies(server)[-1]))


def test_rerunning_a_failing_test_between_fixes_is_not_a_loop(model_server, repo, env):
    # The honest cycle: the same test command fails, the model edits, runs it again. An edit
    # that succeeds changes the world, so the retry is not counted as a repeat.
    (repo / "test_calc.py").write_text("import sys\nsys.exit(1)\n")
    test = {"command": "python test_calc.py"}
    script = []
    for n in range(STOP_AT + 1):
        script += [
            step(call("bash", test)),
            step(call("write", {"path": f"note{n}.txt", "content": "tried\n"})),
        ]
    server = model_server([*script, {"text": "gave up politely"}])
    run = run_json_stream(server, repo, env, "--permission-mode", "full-auto")
    assert run.code == 0, run.stderr
    assert not [e for e in of_type(run.events(), "error") if e["kind"] == "loop"]


def test_headless_denied_call_repeated_ends_with_loop(model_server, repo, env):
    # Default permission mode: bash asks, and headless turns ask into deny. A model that keeps
    # retrying the denied command must not run to --max-turns.
    server = model_server([step(call("bash", {"command": "make test"})) for _ in range(20)])
    run = run_json_stream(server, repo, env)
    assert run.code == 3, run.stderr
    events = run.events()
    assert len(server.requests) == STOP_AT
    decided = of_type(events, "permission.decided")
    assert len(decided) == STOP_AT and all(d["by"] == "headless" for d in decided)
    final = [e for e in of_type(events, "error") if e["kind"] == "loop"][-1]
    assert "bash" in final["message"] and "make test" in final["message"]
    assert "--permission-mode" in final["hint"]  # what the user can do about a denial
    assert events[-1]["data"]["reason"] == "loop"
    assert_every_call_answered(events)


def _session(server: Any, repo: Path, home: Path) -> tuple[Any, list[dict[str, Any]]]:
    """A headless Session driven in-process, as a front end would (see test_session.py)."""
    settings = load_settings(
        repo,
        flags={"provider": "openai", "base_url": server.base_url, "model": "m"},
        env={"XDG_CONFIG_HOME": str(home / "cfg"), "HOME": str(home)},
    )
    session = open_session(settings, Store(home / "sessions.db"), interactive=False)
    events: list[dict[str, Any]] = []
    session.subscribe(lambda event, line: events.append(json.loads(line)))
    return session, events


def test_a_steer_starts_the_count_afresh(model_server, repo, tmp_path):
    # Four identical failures, then the user steers: four more do not stop the turn.
    server = model_server(
        [*[step(read_missing()) for _ in range(2 * (STOP_AT - 1))], {"text": "ok, I stop"}]
    )
    session, events = _session(server, repo, tmp_path)

    def steer_after_the_fourth(event: Any, line: str) -> None:
        if event.type == "tool.finished" and len(of_type(events, "tool.finished")) == STOP_AT - 1:
            session.steer("the file is called calc.py")

    session.subscribe(steer_after_the_fourth)
    outcome = asyncio.run(session.submit("fix it"))
    assert outcome.reason == "completed", events
    assert of_type(events, "steer.delivered")
    assert of_type(events, "turn.finished") == [{"reason": "completed"}]


def test_a_new_turn_starts_the_count_afresh(model_server, repo, tmp_path):
    four = [step(read_missing()) for _ in range(STOP_AT - 1)]
    server = model_server([*four, {"text": "stuck"}, *four, {"text": "still stuck"}])
    session, events = _session(server, repo, tmp_path)

    async def two_turns() -> list[str]:
        return [(await session.submit(text)).reason for text in ("fix it", "try again")]

    assert asyncio.run(two_turns()) == ["completed", "completed"]
    warnings = [e for e in of_type(events, "error") if e["kind"] == "loop"]
    assert [w["recoverable"] for w in warnings] == [True, True]  # one per turn, no stop


def test_unknown_tool_and_malformed_arguments_repeated_are_caught(model_server, repo, tmp_path):
    script = [step(call("nosuchtool", {"x": 1})) for _ in range(STOP_AT)]
    script += [step(call("read", '{"path": calc.py}')) for _ in range(STOP_AT)]
    script.append({"text": "never"})
    server = model_server(script)
    session, _events = _session(server, repo, tmp_path)

    async def two_turns() -> list[Any]:
        return [await session.submit(text) for text in ("go", "go on")]

    first, second = asyncio.run(two_turns())
    assert first.reason == "loop" and "nosuchtool" in first.error.message
    assert second.reason == "loop"
    assert '{"path": calc.py}' in second.error.message  # unparsable: shown as sent


def test_loop_turn_can_be_continued_after_allowing_the_call(model_server, repo, env):
    server = model_server(
        [
            *[step(call("bash", {"command": "echo hi"})) for _ in range(STOP_AT)],
            step(call("bash", {"command": "echo hi"})),
            {"text": "it ran"},
        ]
    )
    first = run_json_stream(server, repo, env)
    assert first.code == 3, first.stderr
    session_id = first.events()[0]["session_id"]
    again = mcode(
        *exec_args(server, "--output-format", "json", "--permission-mode", "full-auto"),
        "--resume",
        session_id,
        cwd=repo,
        env=env,
    )
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["result"] == "it ran"


# ------------------------------------------------------------------------------- unit


def test_canonical_arguments_ignore_key_order_and_whitespace():
    a = '{"path": "a.py", "limit": 10, "nested": {"y": 1, "x": [1, 2]}}'
    b = '{ "nested":{"x":[1,2],"y":1},\n "limit":10,"path":"a.py" }'
    assert canonical_arguments(a) == canonical_arguments(b)
    assert call_key("read", a) == call_key("read", b)
    assert call_key("read", a) != call_key("grep", a)  # the tool name is part of the key
    assert call_key("read", a) != call_key("read", a.replace("10", "11"))
    # Empty arguments mean {} (as parse_arguments reads them); unparsable text is kept as sent.
    assert canonical_arguments("") == canonical_arguments("  ") == "{}"
    assert canonical_arguments(" {bad json ") == "{bad json"
    assert call_key("read", "{bad") != call_key("read", "{bad2")
    # Non-ASCII is compared as text, not as escapes.
    assert canonical_arguments('{"p": "\\u00e9"}') == canonical_arguments('{"p": "é"}')
    assert short_arguments('{"b": 1,  "a": "x"}') == '{"a":"x","b":1}'
    assert short_arguments(json.dumps({"content": "x" * 500})).endswith("…")
    assert len(short_arguments(json.dumps({"content": "x" * 500}))) == 120


def fail(content: str = "Error: nope", summary: str = "nope") -> ToolResult:
    return ToolResult(content=content, summary=summary, is_error=True)


def ok() -> ToolResult:
    return ToolResult(content="fine")


def test_guard_counts_warns_and_stops():
    guard = LoopGuard()
    c = ToolCall("1", "read", '{"path": "x"}')
    given = [fail() for _ in range(STOP_AT)]
    seen = [guard.observe(c, result) for result in given]
    assert [s.count for s in seen] == [1, 2, 3, 4, 5]
    assert [s.warning is not None for s in seen] == [False, False, True, False, False]
    assert [s.stop is not None for s in seen] == [False, False, False, False, True]
    assert seen[0].result.content == "Error: nope"
    assert seen[2].result.content.startswith("Error: nope\n\nmcode: this exact call")
    assert seen[2].warning is not None
    warning = seen[2].warning.to_data()  # the error event's data, as written
    assert set(warning) == {"kind", "message", "hint", "recoverable"}
    assert (warning["kind"], warning["recoverable"]) == ("loop", True)
    assert "read failed 3 times" in warning["message"] and '{"path":"x"}' in warning["message"]
    assert "at 5 identical failures" in warning["hint"]
    stop = seen[4].stop
    assert stop is not None and stop.tool == "read" and stop.arguments == '{"path":"x"}'
    assert "read the error" in stop.hint
    # The caller's results are never mutated: each noted result is a new object, and every
    # result handed in still holds just its own error.
    assert [r.content for r in given] == ["Error: nope"] * STOP_AT
    assert all(s.result is not r for s, r in zip(seen[2:], given[2:], strict=True))
    assert [s.result.content.count("mcode: this exact call") for s in seen] == [0, 0, 1, 1, 1]


def test_guard_resets():
    guard = LoopGuard()
    a = ToolCall("1", "read", '{"path": "x"}')
    b = ToolCall("2", "read", '{"path": "y"}')
    for _ in range(4):
        guard.observe(a, fail())
        guard.observe(b, fail())
    # The same call succeeding clears its own count only.
    assert guard.observe(a, ok()).count == 0
    assert guard.observe(a, fail()).count == 1
    assert guard.observe(b, fail()).stop is not None
    # A successful read elsewhere clears nothing; a successful acting call clears everything.
    guard.reset()
    for _ in range(3):
        guard.observe(a, fail())
    guard.observe(ToolCall("3", "read", '{"path": "z"}'), ok())
    assert guard.observe(a, fail()).count == 4
    guard.observe(ToolCall("4", "bash", '{"command": "make"}'), ok(), acted=True)
    assert guard.observe(a, fail()).count == 1
    # reset (a new turn, a delivered steer) starts afresh.
    guard.reset()
    assert guard.observe(a, fail()).count == 1


def test_guard_denial_hint_says_how_to_allow():
    guard = LoopGuard()
    c = ToolCall("1", "bash", '{"command": "make"}')
    denied = fail("Error: permission denied: headless", "permission denied")
    stop = [guard.observe(c, denied) for _ in range(STOP_AT)][-1].stop
    assert stop is not None and "--permission-mode" in stop.hint
