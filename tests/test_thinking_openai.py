"""Thinking on Chat Completions, end to end through ``mcode exec`` and the scripted model server:
the reasoning goes back in the next request the way it arrived, and a stray ``</think>`` never
shows as answer text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, exec_args, make_repo, mcode

THINKING = "The user wants the files listed; ls first, then answer briefly."


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


def _assistant(body: dict[str, Any]) -> dict[str, Any]:
    (message,) = [m for m in body["messages"] if m["role"] == "assistant"][:1]
    return message


def _run(model_server, repo, env, first: dict[str, Any], *extra: str):
    """One task: the model thinks (``first``) and calls ``ls``, then answers. Returns the
    server and the JSON result."""
    call = {"tool_calls": [{"id": "c1", "name": "ls", "arguments": {}}], "text": "Listing."}
    server = model_server([{**call, **first}, {"text": "done"}], chunk_size=8)
    run = mcode(*exec_args(server, "--output-format", "json", *extra), "list", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    return server, json.loads(run.stdout)


# The assistant message of the next request, per arrival form, thinking and all.
TOOL_CALLS = [{"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]
MIRRORED = {
    "think_tags": {
        "role": "assistant",
        "content": f"<think>{THINKING}</think>\n\nListing.",
        "tool_calls": TOOL_CALLS,
    },
    "reasoning_content": {
        "role": "assistant",
        "content": "Listing.",
        "reasoning_content": THINKING,
        "tool_calls": TOOL_CALLS,
    },
    "reasoning": {
        "role": "assistant",
        "content": "Listing.",
        "reasoning": THINKING,
        "tool_calls": TOOL_CALLS,
    },
    "reasoning_details": {
        "role": "assistant",
        "content": "Listing.",
        "reasoning_details": [
            {
                "type": "reasoning.text",
                "id": "r1",
                "format": "MiniMax-response-v1",
                "index": 0,
                "text": THINKING,
            }
        ],
        "tool_calls": TOOL_CALLS,
    },
}


@pytest.mark.parametrize("form", list(MIRRORED))
def test_thinking_goes_back_in_the_form_it_arrived(model_server, repo, env, form):
    server, result = _run(model_server, repo, env, {"thinking": THINKING, "thinking_style": form})
    assert _assistant(server.bodies[1]) == MIRRORED[form]

    # Stored and resumed, it goes back the same way, byte for byte the same message.
    server.push({"text": "again"})
    again = mcode(*exec_args(server, "--resume", result["session_id"]), "more", cwd=repo, env=env)
    assert again.code == 0, again.stderr
    replayed = [r.raw for r in server.requests]
    first = json.dumps(MIRRORED[form], ensure_ascii=False, separators=(",", ":")).encode()
    assert first in replayed[1] and first in replayed[2]


def test_a_pinned_replay_mode_wins_over_the_arrival_form(model_server, repo, env):
    (repo / ".mcode").mkdir()
    (repo / ".mcode" / "config.toml").write_text(
        '[providers.openai]\nreasoning_replay = "reasoning_content"\n'
    )
    server, _ = _run(model_server, repo, env, {"thinking": THINKING, "thinking_style": "reasoning"})
    sent = _assistant(server.bodies[1])
    assert sent["reasoning_content"] == THINKING and "reasoning" not in sent


def _deltas(events: list[dict[str, Any]], kind: str) -> str:
    return "".join(e["data"]["text"] for e in events if e["type"] == kind)


def test_reasoning_before_a_stray_closing_tag_streams_as_thinking(model_server, repo, env):
    # The chat template opens <think> in the prompt: each answer is reasoning, </think>, answer.
    def answer(thinking: str, text: str, **more: Any) -> dict[str, Any]:
        return {"thinking": thinking, "thinking_style": "prompt_opened", "text": text, **more}

    ls = [{"id": "c1", "name": "ls", "arguments": {}}]
    first, second = "List first, it is cheap.", "The listing shows a.py only."
    server = model_server(
        [answer(first, "Listing.", tool_calls=ls), answer(second, "Just a.py.")], chunk_size=6
    )
    run = mcode(*exec_args(server, "--output-format", "stream-json"), "list", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    events = run.events()
    assert "</think>" not in _deltas(events, "text.delta")
    # From the second answer on, the reasoning is thinking while it streams, never text.
    after = events[[e["type"] for e in events].index("message.assistant") + 1 :]
    assert _deltas(after, "thinking.delta") == second
    assert _deltas(after, "text.delta") == "Just a.py."
    # Each answer goes back to the model as it came.
    assert server.bodies[1]["messages"][2]["content"] == f"{first}</think>\n\nListing."

    # A later run of the same session knows it from the history: its first answer too.
    third = "Asked again; same answer."
    server.push(answer(third, "Still a.py."))
    again = mcode(
        *exec_args(server, "--output-format", "stream-json", "--continue"),
        "again",
        cwd=repo,
        env=env,
    )
    assert again.code == 0, again.stderr
    events = again.events()
    assert _deltas(events, "thinking.delta") == third
    assert _deltas(events, "text.delta") == "Still a.py."


def test_think_in_prompt_makes_the_first_answer_stream_as_thinking(model_server, repo, env):
    (repo / ".mcode").mkdir()
    (repo / ".mcode" / "config.toml").write_text("[providers.openai]\nthink_in_prompt = true\n")
    thinking = "Nothing to run; answer directly."
    step = {"thinking": thinking, "thinking_style": "prompt_opened", "text": "Hello."}
    server = model_server([step], chunk_size=6)
    run = mcode(*exec_args(server, "--output-format", "stream-json"), "hi", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    events = run.events()
    assert _deltas(events, "thinking.delta") == thinking
    assert _deltas(events, "text.delta") == "Hello."
