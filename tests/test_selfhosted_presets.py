"""The ``vllm`` and ``sglang`` presets: mcode as the client of a self-hosted server (the scripted
model server standing in), with no API key, reasoning in its own field, cached tokens from
``prompt_tokens_details`` and the reasoning replayed where the server's parser expects it."""

from __future__ import annotations

import pytest
from helpers import clean_env, make_repo, mcode


@pytest.mark.parametrize(
    ("provider", "style"),
    [("vllm", "reasoning_content"), ("vllm", "reasoning"), ("sglang", "reasoning_content")],
)
def test_a_self_hosted_server_needs_no_key_and_its_reasoning_and_cache_are_read(
    model_server, tmp_path, provider, style
):
    server = model_server(
        [
            {
                "thinking": "Read the file first.",
                "thinking_style": style,
                "tool_calls": [{"id": "t1", "name": "read", "arguments": {"path": "a.txt"}}],
                "usage": {"prompt_tokens": 900, "completion_tokens": 20, "cached_tokens": 0},
            },
            {
                "text": "It says alpha.",
                "usage": {"prompt_tokens": 960, "completion_tokens": 5, "cached_tokens": 896},
            },
        ]
    )
    repo = make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    run = mcode(
        "exec",
        "--provider",
        provider,
        "--base-url",
        server.base_url,
        "--model",
        "MiniMaxAI/MiniMax-M2",
        "--output-format",
        "stream-json",
        "What does a.txt say?",
        cwd=repo,
        env=clean_env(tmp_path / "home"),  # no key anywhere
    )
    assert run.code == 0, run.stderr
    events = run.events()
    assert events[0]["data"]["provider"] == provider
    thinking = "".join(e["data"]["text"] for e in events if e["type"] == "thinking.delta")
    assert thinking == "Read the file first."
    assert events[-1]["data"]["usage"]["cached_tokens"] == 896
    first, second = (r["body"] for r in server.requests)
    assert first["model"] == "MiniMaxAI/MiniMax-M2" and first["max_tokens"] > 0
    assert "authorization" not in {k.lower() for k in server.requests[0]["headers"]}
    (turn,) = [m for m in second["messages"] if m["role"] == "assistant"]
    assert turn["reasoning_content"] == "Read the file first."
