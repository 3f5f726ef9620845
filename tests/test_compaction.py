"""Compaction, as a user meets it: ``mcode exec`` against the scripted model server over loopback,
on both wire formats. The server plays a model that counts its prompt like an API does (about
three bytes of request per token), calls tools and, when asked to summarise, writes a summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench.rounds import unstable_requests
from helpers import clean_env, exec_args, make_repo, mcode, start_until, stored_events
from model_server import ScriptedServer

from mcode.agent.ledger import LEDGER_HEADER, SUMMARY_ASK

GOAL = "Build the report generator. Constraint: keep every output line under 80 characters."
AMEND = "Amendment: also write the report to out/report.txt, and never delete old reports."
SUMMARY = (
    "## Decisions\n- generate with seq\n## Failed approaches\n- awk was too slow\n"
    "## Identifiers\n- REPORT_MAX=80\n## Progress\n- rounds done so far\n"
    "## Open items\n- finish the report"
)


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(
        b.get("text", "") or text_of(b) for b in content or [] if b.get("type") != "image"
    )


def is_summary_request(body: dict[str, Any]) -> bool:
    last = body["messages"][-1]
    return last["role"] == "user" and SUMMARY_ASK in text_of(last)


def conversation(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The body's messages without the Chat Completions system message."""
    return [m for m in body["messages"] if m["role"] != "system"]


class Model:
    """A scripted model: per turn (a user message that is not a summary request) ``rounds``
    bash calls printing ``lines`` numbers each, then an answer; a summary when asked. Reports
    ``prompt_tokens`` as the request's size / 3, like an API whose tokens are ~3 bytes."""

    def __init__(
        self,
        rounds: int = 3,
        lines: int = 600,
        overflow_above: int | None = None,
        refuse_after: int | None = None,
        summary: str = SUMMARY,
    ):
        self.rounds = rounds
        self.lines = lines
        self.overflow_above = overflow_above  # prompt tokens above which the API says overflow
        self.refuse_after = refuse_after  # requests after which every one overflows
        self.summary = summary  # what it answers when asked to summarise
        self.requests = 0
        self.calls = 0
        self.issued: dict[str, int] = {}

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        tokens = len(json.dumps(body)) // 3
        self.requests += 1
        refused = self.refuse_after is not None and self.requests > self.refuse_after
        if refused or (self.overflow_above is not None and tokens > self.overflow_above):
            return {
                "status": 400,
                "body": {
                    "error": {
                        "message": f"This model's maximum context length is "
                        f"{self.overflow_above} tokens. However, your messages resulted in "
                        f"{tokens} tokens.",
                        "type": "invalid_request_error",
                        "code": "context_length_exceeded",
                    }
                },
            }
        usage = {"prompt_tokens": tokens, "completion_tokens": 20}
        if is_summary_request(body):
            return {"text": self.summary, "usage": usage}
        # Which task it is on: the amendment's turn once the amendment is in the request
        # (in a message or in the ledger), else the goal's. Calls are counted per task.
        task = AMEND if AMEND in json.dumps(body) else GOAL
        done = self.issued.get(task, 0)
        if done < self.rounds:
            self.issued[task] = done + 1
            self.calls += 1
            first = self.calls * 10000
            call = {
                "id": f"c{self.calls}",
                "name": "bash",
                "arguments": {"command": f"seq {first} {first + self.lines}"},
            }
            return {"tool_calls": [call], "usage": usage}
        return {"text": f"Done after {done} commands.", "usage": usage}


def _tool_uses(m: dict[str, Any]) -> bool:
    content = m.get("content")
    return isinstance(content, list) and any(b.get("type") == "tool_use" for b in content)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# reports\n"})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home", OPENAI_API_KEY="sk-test", ANTHROPIC_API_KEY="sk-test")


def run_lines(
    server: ScriptedServer,
    repo: Path,
    env: dict[str, str],
    lines: list[dict[str, Any]],
    *flags: str,
    wire: str = "openai",
):
    """``mcode exec`` (full-auto, stream-json in and out) reading ``lines`` from stdin."""
    args = exec_args(
        server,
        "--permission-mode",
        "full-auto",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        *flags,
        wire=wire,
    )
    stdin = "".join(json.dumps(line) + "\n" for line in lines)
    return mcode(*args, cwd=repo, env=env, stdin=stdin)


def run_two_turns(server: ScriptedServer, repo: Path, env: dict[str, str], wire: str, *flags: str):
    turns = [{"type": "user", "text": t} for t in (GOAL, AMEND)]
    return run_lines(server, repo, env, turns, *flags, wire=wire)


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_a_long_run_compacts_near_the_window_and_keeps_the_task(
    repo: Path, env: dict[str, str], wire: str
) -> None:
    model = Model(rounds=4, lines=600)
    with ScriptedServer([model] * 40) as server:
        run = run_two_turns(server, repo, env, wire, "--context-window", "9000")
        bodies = server.bodies
    assert run.code == 0, run.stderr
    events = run.events()
    compactions = [e["data"] for e in events if e["type"] == "compaction"]
    assert len(compactions) >= 2, "a 9K window cannot hold eight rounds of 3 KB of output"
    assert events[-1]["data"]["compactions"] == len(compactions)
    limit = 9000 - 9000 // 4  # the reserve: a quarter of the window (the output cap is bigger)
    for c in compactions:
        assert c["reason"] == "auto" and c["window"] == 9000
        assert c["tokens_before"] > limit > c["tokens_after"]
        assert c["summarised"] is True
    # No request the model answered was over the window.
    answered = [b for b in bodies if not is_summary_request(b)]
    assert max(len(json.dumps(b)) // 3 for b in answered) <= 9000

    # Each summary request is the previous request plus the ask: same tools and system, so the
    # provider's cache serves all but the ask.
    for i, body in enumerate(bodies):
        if is_summary_request(body):
            previous = bodies[i - 1]
            assert body.get("tools") == previous.get("tools")
            assert body.get("system") == previous.get("system")
            head = conversation(body)[:-1]
            assert head == conversation(previous)[: len(head)]
    # After each compaction the conversation starts with the ledger: the goal and, once given,
    # the amendment, word for word, and the model's sections.
    starts = [b for b in answered if text_of(conversation(b)[0]).startswith(LEDGER_HEADER)]
    assert starts
    assert all(GOAL in text_of(conversation(b)[0]) for b in starts)
    assert AMEND in text_of(conversation(starts[-1])[0])
    assert "REPORT_MAX=80" in text_of(conversation(starts[-1])[0])
    # A later compaction does not take the earlier ledger for one of the user's requests.
    assert all(text_of(conversation(b)[0]).count(LEDGER_HEADER) == 1 for b in starts)
    # Between compactions every request extends the one before it, byte for byte.
    segments: list[list[dict[str, Any]]] = [[]]
    for b in bodies:
        if is_summary_request(b):
            segments.append([])
        else:
            segments[-1].append(b)
    for segment in segments:
        assert unstable_requests(segment) == []

    # --resume rebuilds the compacted history exactly: the next request extends the last one.
    session_id = events[0]["session_id"]
    stored = stored_events(Path(env["HOME"]), session_id)
    assert [e["data"]["kept"] for e in stored if e["type"] == "compaction"] == [
        c["kept"] for c in compactions
    ]
    with ScriptedServer([{"text": "resumed"}]) as server:
        again = mcode(
            *exec_args(
                server, "--resume", session_id, "--context-window", "9000", "go on", wire=wire
            ),
            cwd=repo,
            env=env,
        )
        resumed = server.bodies[0]
    assert again.code == 0, again.stderr
    assert unstable_requests([answered[-1], resumed]) == []


def test_a_run_that_fits_its_window_never_compacts(repo: Path, env: dict[str, str]) -> None:
    with ScriptedServer([Model(rounds=4, lines=600)] * 20) as server:
        run = run_two_turns(server, repo, env, "openai", "--context-window", "60000")
        bodies = server.bodies
    assert run.code == 0, run.stderr
    assert not [e for e in run.events() if e["type"] == "compaction"]
    assert not any(is_summary_request(b) for b in bodies)
    assert unstable_requests(bodies) == []


# A summary far bigger than a quarter of a 9K window: five sections of ~3 KB each.
HUGE_SUMMARY = "\n".join(
    f"## {name}\n" + "\n".join(f"- {name.lower()} note {i}: " + "detail " * 6 for i in range(60))
    for name in ("Decisions", "Failed approaches", "Identifiers", "Progress", "Open items")
)


def test_the_ledger_takes_at_most_a_quarter_of_the_window_and_usage_says_how_full_it_is(
    repo: Path, env: dict[str, str]
) -> None:
    window = 9000
    model = Model(rounds=4, lines=600, summary=HUGE_SUMMARY)
    with ScriptedServer([model] * 40) as server:
        run = run_two_turns(server, repo, env, "openai", "--context-window", str(window))
        bodies = server.bodies
    assert run.code == 0, run.stderr
    events = run.events()
    started = events[0]["data"]
    assert started["schema_version"] == 1 == events[0]["v"]
    assert started["context_window"] == window
    compactions = [e["data"] for e in events if e["type"] == "compaction"]
    assert compactions and len(HUGE_SUMMARY) > window

    # The ledger heading each compacted request is at most a quarter of the window, counted as
    # the test model counts (three bytes a token), and it still holds the user's words.
    answered = [b for b in bodies if not is_summary_request(b)]
    ledgers = [text_of(conversation(b)[0]) for b in answered]
    ledgers = [t for t in ledgers if t.startswith(LEDGER_HEADER)]
    assert ledgers and all(GOAL in t for t in ledgers)
    assert max(len(t) for t in ledgers) <= window // 4 * 3
    assert all(len(text_of(c["message"])) <= window // 4 * 3 for c in compactions)

    # usage: each answer's event says how full the window is (the API's count of the request
    # plus the answer) and how big it is; a summary call's says what it was for, nothing more.
    usage = [e["data"] for e in events if e["type"] == "usage"]
    summaries = [u for u in usage if u.get("purpose") == "compaction"]
    answers = [u for u in usage if "purpose" not in u]
    assert len(summaries) == len(compactions) == sum(map(is_summary_request, bodies))
    assert all("context_tokens" not in u for u in summaries)
    assert len(answers) == len(answered)
    for u, body in zip(answers, answered, strict=True):
        counted = len(json.dumps(body)) // 3  # what the test model reported as prompt_tokens
        assert (u["input_tokens"], u["output_tokens"]) == (counted, 20)
        assert u["context_tokens"] == counted + 20
        assert u["context_window"] == window


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_an_overflow_before_any_output_compacts_once_and_resends_once(
    repo: Path, env: dict[str, str], wire: str
) -> None:
    # The declared window is large, so nothing compacts early; the API's real limit is lower.
    model = Model(rounds=5, lines=600, overflow_above=5000)
    with ScriptedServer([model] * 20) as server:
        run = mcode(
            *exec_args(
                server,
                "--permission-mode",
                "full-auto",
                "--output-format",
                "stream-json",
                GOAL,
                wire=wire,
            ),
            cwd=repo,
            env=env,
        )
        bodies = server.bodies
    assert run.code == 0, run.stderr
    events = run.events()
    compactions = [e["data"] for e in events if e["type"] == "compaction"]
    assert [c["reason"] for c in compactions] == ["overflow"]
    # The rejected request; the summary (asked as the history plus the ask, which overflows
    # too here, then as a clipped transcript, which fits); then the same step again with the
    # ledger in front. The step is sent twice in all, never more.
    rejected = next(i for i, b in enumerate(bodies) if len(json.dumps(b)) // 3 > 5000)
    first_ask, transcript, resent = bodies[rejected + 1 : rejected + 4]
    assert is_summary_request(first_ask) and len(conversation(first_ask)) > 2
    assert is_summary_request(transcript) and len(conversation(transcript)) == 1
    assert "The conversation so far, as a transcript" in text_of(transcript["messages"][-1])
    assert text_of(conversation(resent)[0]).startswith(LEDGER_HEADER)
    assert compactions[0]["summarised"] is True
    assert events[-1]["data"]["reason"] == "completed"


def test_an_overflow_that_compaction_cannot_fix_is_a_clear_error(
    repo: Path, env: dict[str, str]
) -> None:
    model = Model(rounds=5, lines=600, refuse_after=3)  # then nothing fits any more
    with ScriptedServer([model] * 20) as server:
        run = mcode(
            *exec_args(
                server, "--permission-mode", "full-auto", "--output-format", "stream-json", GOAL
            ),
            cwd=repo,
            env=env,
        )
        bodies = server.bodies
    assert run.code == 1
    events = run.events()
    # One compaction (its summary was refused too, so the ledger is mcode's own record) and one
    # resend: three answered steps, the refused one, the resend.
    compactions = [e["data"] for e in events if e["type"] == "compaction"]
    assert len(compactions) == 1 and compactions[0]["summarised"] is False
    assert GOAL in compactions[0]["message"]["parts"][0]["text"]
    assert len([b for b in bodies if not is_summary_request(b)]) == 5
    errors = [e["data"] for e in events if e["type"] == "error"]
    assert any(e["kind"] == "compaction" and e["recoverable"] for e in errors)
    assert errors[-1]["kind"] == "context_overflow" and not errors[-1]["recoverable"]
    assert events[-1]["data"]["exit_code"] == 1


def test_an_overflow_with_nothing_to_compact_is_a_clear_error(
    repo: Path, env: dict[str, str]
) -> None:
    with ScriptedServer([Model(overflow_above=1)] * 5) as server:
        run = mcode(*exec_args(server, "--output-format", "stream-json", GOAL), cwd=repo, env=env)
        assert len(server.bodies) == 1  # the prompt alone is too long: nothing to resend
    assert run.code == 1
    events = run.events()
    assert not [e for e in events if e["type"] == "compaction"]
    assert [e["data"]["kind"] for e in events if e["type"] == "error"] == ["context_overflow"]
    assert "shorten the prompt" in run.stderr


def test_compact_on_request_between_turns(repo: Path, env: dict[str, str]) -> None:
    lines = [
        {"type": "user", "text": GOAL},
        {"type": "compact", "instructions": "the report format"},
        {"type": "user", "text": AMEND},
    ]
    # Enough output that the compaction shrinks the conversation (a shorter one is refused).
    with ScriptedServer([Model(rounds=1, lines=2000)] * 10) as server:
        run = run_lines(server, repo, env, lines)
        bodies = server.bodies
    assert run.code == 0, run.stderr
    compactions = [e["data"] for e in run.events() if e["type"] == "compaction"]
    assert [c["reason"] for c in compactions] == ["manual"]
    summary = next(b for b in bodies if is_summary_request(b))
    assert "the report format" in text_of(summary["messages"][-1])
    after = conversation(bodies[-2])  # the second turn's first request
    assert text_of(after[0]).startswith(LEDGER_HEADER) and GOAL in text_of(after[0])
    assert text_of(after[-1]) == AMEND


def test_killed_right_after_a_compaction_resumes_from_the_ledger(
    repo: Path, env: dict[str, str]
) -> None:
    """kill -9 once the compaction event is printed (so stored): `--resume` with no prompt
    continues the interrupted turn on the compacted history, ledger first."""
    with ScriptedServer([Model(rounds=6, lines=600)] * 20) as server:
        proc, printed = start_until(
            *exec_args(
                server,
                "--permission-mode",
                "full-auto",
                "--output-format",
                "stream-json",
                "--context-window",
                "9000",
                GOAL,
            ),
            cwd=repo,
            env=env,
            event_type="compaction",
        )
        proc.kill()
        proc.communicate(timeout=30)
    compaction = printed[-1]["data"]
    session_id = printed[0]["session_id"]
    events = stored_events(Path(env["HOME"]), session_id)  # what the killed run left
    with ScriptedServer([{"text": "finished from the ledger"}]) as server:
        again = mcode(
            *exec_args(server, "--resume", session_id, "--context-window", "9000"),
            cwd=repo,
            env=env,
        )
        resumed = conversation(server.bodies[0])
    assert again.code == 0, again.stderr
    assert again.stdout.strip() == "finished from the ledger"
    assert text_of(resumed[0]) == compaction["message"]["parts"][0]["text"]
    # Nothing lost: after the ledger and the kept tail come exactly the messages stored after
    # the compaction (the kill may land a step later on a loaded machine), then a "did not
    # finish" result for each call the kill left open.
    at = next(i for i, e in enumerate(events) if e["type"] == "compaction")
    after = [e for e in events[at + 1 :] if "message" in e["data"]]
    tail = resumed[1 + compaction["kept"] :]
    assert len(tail) >= len(after)
    assert [m["role"] for m in tail[: len(after)]] == [e["data"]["message"]["role"] for e in after]
    assert all(m["role"] == "tool" and "did not finish" in text_of(m) for m in tail[len(after) :])


def test_a_ledger_round_trips_through_its_dict_with_every_field_and_no_shared_lists() -> None:
    """What a compaction event stores and a resume reads back: every field (one added to the
    dataclass must not be left out of the dict), and copies (editing the conversation's ledger
    afterwards must not change an event already emitted)."""
    import dataclasses

    from mcode.agent.ledger import Ledger

    ledger = Ledger(
        goal="Build it. Constraint: no vendor/.",
        requests=["Requirement R1: tag batch 1."],
        files={"out/a.txt": "created"},
        read=["README.md"],
        commands=["$ make -> ok"],
        failures=["read(x): no such file"],
        sections={"Progress": "- half done"},
    )
    d = ledger.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(Ledger)}
    assert Ledger.from_dict(d) == ledger
    ledger.requests.append("Requirement R2")
    ledger.files["out/b.txt"] = "created"
    assert d["requests"] == ["Requirement R1: tag batch 1."] and "out/b.txt" not in d["files"]
