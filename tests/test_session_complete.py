"""Session.complete: one model call beside the conversation (inline completion's runtime verb),
in-process against the scripted model server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from helpers import make_repo

from mcode.config import load_settings
from mcode.runtime.build import open_session


def test_complete_is_one_call_without_tools_that_leaves_the_conversation_alone(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    server = model_server(
        [{"text": "a + b", "usage": {"prompt_tokens": 30, "completion_tokens": 3}}]
    )
    home = tmp_path / "home"
    settings = load_settings(
        repo,
        flags={"provider": "openai", "base_url": server.base_url, "model": "m"},
        env={"XDG_CONFIG_HOME": str(home / "cfg"), "HOME": str(home)},
    )
    session = open_session(settings, None, interactive=False)
    events: list[dict[str, Any]] = []
    session.subscribe(lambda event, line: events.append(json.loads(line)))

    async def go() -> str:
        try:
            return await session.complete(
                "x = <CURSOR>", system="Complete code.", max_output_tokens=16
            )
        finally:
            await session.close()

    assert asyncio.run(go()) == "a + b"
    (request,) = server.requests
    body = request.body
    assert "tools" not in body
    assert body["messages"][0] == {"role": "system", "content": "Complete code."}
    assert body["messages"][-1]["content"] == "x = <CURSOR>"
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 16
    assert session.history == [] and events == []  # not a turn: no history, no event
    assert session.totals.model_calls == 1 and session.totals.usage.output_tokens == 3
