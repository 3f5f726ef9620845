"""Prompt caching: every request of a session extends the previous one (tools, system and earlier
messages byte-identical, ``cache_control`` markers aside), on both wire formats, through thinking,
text, tool calls (read, write, bash, a failing one), a steer, a second user message and a
``--resume`` in a new process. The check is the benchmark's (tests/bench/rounds.py)."""

from __future__ import annotations

import copy
import datetime
import gc
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.rounds import prefix_stable, system_tools_bytes, unstable_requests
from helpers import Live, clean_env, exec_args, make_repo, mcode, trust

from mcode.messages import ImagePart, Message, TextPart, ThinkingPart, ToolCall, ToolSpec
from mcode.providers import anthropic_request, openai_request
from mcode.providers.anthropic import AnthropicProvider
from mcode.providers.base import ModelInfo, ModelRequest
from mcode.providers.network import NetworkSettings
from mcode.providers.openai import OpenAIProvider
from mcode.providers.options import AnthropicOptions, OpenAIOptions

MAX_SYSTEM_TOOLS = 15_000


def call(call_id: str, name: str, **arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "name": name, "arguments": arguments}


def script(go: Path) -> list[dict[str, Any]]:
    return [
        # turn 1 (the prompt)
        {
            "thinking": "Let me look at the README first.",
            "text": "Reading it.",
            "tool_calls": [call("c1", "read", path="README.md")],
        },
        {
            "thinking": "Now write the notes and check them.",
            "tool_calls": [
                call("c2", "write", path="notes.txt", content="one\ntwo\n"),
                call("c3", "bash", command="cat notes.txt"),
            ],
        },
        {
            "text": "Waiting for the go file.",
            "tool_calls": [
                call("c4", "bash", command=f"while [ ! -e {go} ]; do sleep 0.02; done; echo go")
            ],
        },
        {
            "thinking": "The user wants tabs.",
            "text": "Done, with tabs.",
            "thinking_style": "think_tags",
        },
        # turn 2 (a second user message on stdin)
        {"tool_calls": [call("c5", "read", path="missing.txt")]},
        {"text": "missing.txt does not exist."},
        # turn 3 (--resume, a new process)
        {"thinking": "Check the folder.", "tool_calls": [call("c6", "bash", command="ls")]},
        {"text": "All done."},
    ]


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_every_request_extends_the_previous_one(model_server, tmp_path: Path, wire: str) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# demo\n\nA demo.\n"})
    env = clean_env(tmp_path / "home")
    go = tmp_path / "go"
    server = model_server(script(go))
    flags = [
        "--permission-mode",
        "full-auto",
        "--context-window",
        "1000000",
        "--thinking",
        "on",
        "--output-format",
        "stream-json",
    ]

    # Turns 1 and 2: one process, messages and a steer on stdin.
    live = Live(
        exec_args(server, *flags, "--input-format", "stream-json", wire=wire), cwd=repo, env=env
    )
    try:
        live.send(json.dumps({"type": "user", "text": "Write the notes."}))
        live.until("tool.started", 4, timeout=60)  # c4 waits for the go file: steer it now
        live.send(json.dumps({"type": "steer", "text": "also: use tabs"}))
        live.until("steer.received", timeout=60)
        go.touch()
        live.until("turn.finished", timeout=60)
        live.send(json.dumps({"type": "user", "text": "Now read missing.txt."}))
        live.close()
        assert live.wait(timeout=60) == 0, live.stderr
    finally:
        live.kill()
    session_id = live.events[0]["session_id"]

    # Turn 3: a new process resumes the session from the store.
    run = mcode(
        *exec_args(server, *flags, "--resume", session_id, wire=wire),
        "One more.",
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr

    bodies = server.bodies
    assert len(bodies) == 8 and not server.exhausted
    assert unstable_requests(bodies) == []
    assert system_tools_bytes(bodies[0]) < MAX_SYSTEM_TOOLS
    # The scenario happened as scripted: the steer, the error result and the resumed history
    # are all in the requests that were checked.
    text = json.dumps(bodies[3])
    assert "also: use tabs" in text and "also: use tabs" not in json.dumps(bodies[2])
    assert "missing.txt" in json.dumps(bodies[5]) and "One more." in json.dumps(bodies[6])
    assert len(bodies[6]["messages"]) > len(bodies[5]["messages"])


def _prompt_and_tools(body: dict[str, Any]) -> bytes:
    """The system prompt and tool schemas of one request, serialised as mcode sends them."""
    system = body["system"] if "system" in body else body["messages"][0]
    blob = {"system": system, "tools": body.get("tools")}
    return json.dumps(blob, ensure_ascii=False, separators=(",", ":")).encode()


def _date_spellings(day: datetime.date) -> list[str]:
    formats = ["%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d", "%B %d"]
    formats += ["%d %B", "%b %d", "%d %b", "%A"]
    spelled = {day.strftime(f) for f in formats}
    spelled |= {f"{day:%B} {day.day}", f"{day.day} {day:%B}", f"{day:%b} {day.day}", str(day.year)}
    return sorted(spelled)


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_the_system_prompt_is_the_same_bytes_in_any_folder_on_any_day(
    model_server, tmp_path: Path, wire: str
) -> None:
    # README: a static system prompt, "no date, no paths". Two repositories with the same files
    # at different absolute paths under different names: one request each; the system prompt
    # and tools must be byte-identical and name neither folder nor today.
    files = {"README.md": "# demo\n", "AGENTS.md": "Run the tests with make test.\n"}
    repos = [
        make_repo(tmp_path / "alpha-checkout", files),
        make_repo(tmp_path / "work" / "nested" / "zeta_service", files),
    ]
    env = clean_env(tmp_path / "home")
    server = model_server([{"text": "ok"}, {"text": "ok"}])
    days = {datetime.date.today()}
    for repo in repos:
        trust(repo, env)  # AGENTS.md joins the prompt only in a trusted folder
        run = mcode(*exec_args(server, "hi", wire=wire), cwd=repo, env=env)
        assert run.code == 0, run.stderr
    days.add(datetime.date.today())  # the runs may straddle midnight
    first, second = (_prompt_and_tools(b) for b in server.bodies)
    assert b"make test" in first  # AGENTS.md is in it: the prompt is really the one sent
    assert first == second
    text = first.decode()
    for repo in repos:
        for leak in (str(repo), repo.name, str(tmp_path)):
            assert leak not in text, f"the system prompt names the folder: {leak}"
    for day in days:
        for spelling in _date_spellings(day):
            assert spelling not in text, f"the system prompt holds today's date: {spelling}"


# ----------------------------------------------------------------------------- the check itself


def test_the_check_ignores_cache_markers_and_catches_a_changed_prefix() -> None:
    a = {
        "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "t", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {}}]}
        ],
    }
    b = copy.deepcopy(a)
    del b["messages"][0]["content"][0]["cache_control"]
    b["messages"].append({"role": "assistant", "content": [{"type": "text", "text": "yo"}]})
    assert prefix_stable(a, b) and prefix_stable(json.dumps(a), json.dumps(b).encode())
    changed = copy.deepcopy(b)
    changed["messages"][0]["content"][0]["text"] = "hi!"
    assert not prefix_stable(a, changed)
    shorter = copy.deepcopy(a)
    shorter["messages"] = []
    assert not prefix_stable(a, shorter)
    other_system = copy.deepcopy(b)
    other_system["system"][0]["text"] = "s2"
    assert not prefix_stable(a, other_system)
    assert unstable_requests([a, b, changed]) == [2]


# ----------------------------------------------------------------------------- memoised bodies

PNG = ImagePart("image/png", "iVBORw0KGgo=", "a.png")
TOOLS = [
    ToolSpec(
        "read", "Read a file.", {"type": "object", "properties": {"path": {"type": "string"}}}
    ),
    ToolSpec("ls", "List a folder.", {}),
]


def history() -> list[Message]:
    """Every kind of entry the builders render, in an order that exercises their grouping."""
    signed = ThinkingPart("hm", signature="sig", extra={"format": "anthropic", "origin": "o"})
    return [
        Message("user", (TextPart("Read ü.py \ud800"), PNG)),
        Message(
            "assistant",
            (
                signed,
                ThinkingPart("inline", extra={"format": "think_tags", "tail": "\n"}),
                TextPart("ok"),
            ),
            (ToolCall("c1", "read", '{"path":"ü.py"}'), ToolCall("c:2", "ls", "")),
        ),
        Message("tool", (TextPart("A"), PNG), tool_call_id="c1", name="read"),
        Message("tool", (TextPart("nope"),), tool_call_id="c:2", name="ls", is_error=True),
        Message("user", (TextPart("steer"),)),
        Message(
            "assistant",
            (
                ThinkingPart("r", extra={"format": "reasoning_content"}),
                ThinkingPart(
                    "d", extra={"format": "reasoning_details", "details": [{"text": "d"}]}
                ),
                ThinkingPart("v", extra={"format": "reasoning"}),
            ),
            (ToolCall("c3", "ls", "{bad"),),
        ),
        Message("tool", (TextPart(""),), tool_call_id="c3", name="ls"),
        Message("assistant", (TextPart("Done."),)),
        Message("user", (TextPart(""),)),
        Message("user", (TextPart("Thanks"),)),
    ]


# Where a session sends a request: after a user message, after all the results of a turn's calls
# (a request never carries some of them only), never right after an assistant message.
SENT = (1, 4, 5, 7, 9, 10)


def request(messages: list[Message]) -> ModelRequest:
    return ModelRequest("m", "sys", messages, tools=TOOLS, thinking=True, temperature=0.5)


def builder(module: Any, kw: dict[str, Any]) -> Any:
    """The request builder of ``module`` for model "m"; ``kw`` holds options fields, plus
    ``supports_images`` and (Messages) ``origin``."""
    kw = dict(kw)
    images = kw.pop("supports_images", True)
    if module is openai_request:
        return module.OpenAIRequestBuilder("m", OpenAIOptions(**kw), supports_images=images)
    origin = kw.pop("origin", "")
    return module.AnthropicRequestBuilder(
        "m", AnthropicOptions(**kw), supports_images=images, origin=origin
    )


@pytest.mark.parametrize(
    ("module", "kw"),
    [
        (openai_request, {"reasoning_replay": "reasoning_content"}),
        (openai_request, {"reasoning_replay": "mirror"}),
        (openai_request, {"reasoning_replay": "think_tags", "supports_images": False}),
        (openai_request, {"reasoning_replay": "none", "stream": False}),
        (anthropic_request, {"origin": "o"}),
        (anthropic_request, {"origin": "", "supports_images": False, "thinking_style": "minimax"}),
    ],
)
def test_memoised_bodies_are_the_bytes_of_a_fresh_build(module: Any, kw: dict[str, Any]) -> None:
    build = builder(module, kw).build
    full = history()
    # The conversation grows one message at a time, so the memo is warm for all but the last.
    warm = [build(request(full[:n])) for n in range(len(full) + 1)]
    for n, raw in enumerate(warm):
        # A fresh build: copies of the messages share no identity with anything rendered.
        fresh = [copy.copy(m) for m in full[:n]]
        assert build(request(fresh)) == raw
        # Canonical compact JSON, as json.dumps writes it.
        assert (
            json.dumps(json.loads(raw), ensure_ascii=False, separators=(",", ":")).encode() == raw
        )
    # Each request a session would send extends the previous one, but for one known case: on
    # Messages a user message right after tool results joins their message, so the body after
    # SENT[1] (results last) changes that message in the one after SENT[2] (the user's text
    # joined). A session sends both only when a turn ended between the results and the answer
    # (cancelled, an error); a steer is delivered before the request, so it joins at once.
    sent = [warm[n] for n in SENT]
    assert unstable_requests(sent) == ([] if module is openai_request else [2])


def test_each_provider_renders_a_shared_history_its_own_way() -> None:
    # Two providers in one process (a session and its side question, two sessions) may hold the
    # same message objects; each renders them for its own endpoint, however the builds interleave.
    msg = Message(
        "assistant",
        (
            ThinkingPart("plan", signature="sig", extra={"format": "anthropic", "origin": "o"}),
            ThinkingPart("inline", extra={"format": "think_tags", "tail": "\n"}),
            TextPart("ok"),
        ),
    )
    shared = [Message("user", (TextPart("hi"),)), msg, Message("user", (TextPart("go on"),))]
    tags = builder(openai_request, {"reasoning_replay": "think_tags"})
    bare = builder(openai_request, {"reasoning_replay": "none"})
    here = builder(anthropic_request, {"origin": "o"})
    elsewhere = builder(anthropic_request, {"origin": "p"})
    for _ in range(3):
        with_tags = json.loads(tags.build(request(shared)))["messages"][2]
        assert with_tags["content"] == "<think>plan</think><think>inline</think>\nok"
        assert json.loads(bare.build(request(shared)))["messages"][2]["content"] == "ok"
        kept = json.loads(here.build(request(shared)))["messages"][1]["content"]
        assert [b["type"] for b in kept] == ["thinking", "text"]
        dropped = json.loads(elsewhere.build(request(shared)))["messages"][1]["content"]
        assert [b["type"] for b in dropped] == ["text"]


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_what_a_provider_rendered_goes_with_the_provider(wire: str) -> None:
    # The memo of rendered history belongs to the provider: a finished session's messages (up to
    # megabytes each) are not kept alive by a table other sessions share.
    info = ModelInfo(wire, "m", 100_000)
    make: Any = OpenAIProvider if wire == "openai" else AnthropicProvider
    big = Message("user", (TextPart("x" * 100_000),))
    alone = sys.getrefcount(big)
    provider = make(
        model="m",
        base_url="http://127.0.0.1:9/v1",
        api_key=None,
        info=info,
        network=NetworkSettings(),
    )
    first = provider.build_body(request([big]))
    assert sys.getrefcount(big) > alone  # kept for the next request, which sends it again
    assert provider.build_body(request([big])) == first
    del provider
    gc.collect()
    assert sys.getrefcount(big) == alone
