"""mcode lsp: inline completion (textDocument/inlineCompletion) on the fast path: one model
call from the text around the cursor, no tools; cancelled requests dropped; bursts debounced."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from helpers import clean_env, make_repo, mcode
from lsp_client import Editor, run
from lsprotocol import types
from pygls.exceptions import JsonRpcException

SOURCE = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"


def _params(uri: str, line: int = 1, character: int = 11) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic
        ),
    )


def test_inline_completion_fills_in_the_middle_from_the_buffer(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": "x = 1\n"})  # the buffer differs from disk
    server = model_server([{"text": "a + b"}])
    home = tmp_path / "home"

    async def scenario() -> Any:
        async with Editor(home, repo, server) as ed:
            uri = ed.open("calc.py", SOURCE)
            return await ed.client.text_document_inline_completion_async(_params(uri))

    result = run(scenario())
    assert isinstance(result, types.InlineCompletionList)
    (item,) = result.items
    assert item.insert_text == "a + b"
    assert item.range is not None and item.range.start == types.Position(line=1, character=11)
    (request,) = server.requests
    body = request.body
    assert "tools" not in body  # the fast path: no tools
    prompt = body["messages"][-1]["content"]
    assert "    return <CURSOR>\n\nprint(add(1, 2))" in prompt
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 128  # a short answer
    # A completion is not a task: no session was stored for it.
    listed = mcode("sessions", cwd=repo, env=clean_env(home))
    assert listed.stdout.startswith("no sessions"), listed.stdout


def test_a_completion_the_editor_cancels_is_dropped_and_the_server_goes_on(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": SOURCE})
    server = model_server([{"delay": 5.0, "text": "too late"}, {"text": "a + b"}])

    async def scenario() -> tuple[BaseException | None, float, Any]:
        async with Editor(tmp_path / "home", repo, server) as ed:
            uri = ed.open("calc.py")
            future = ed.client.protocol.send_request(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, _params(uri), msg_id="inline-1"
            )
            for _ in range(500):
                if server.requests:
                    break
                await asyncio.sleep(0.01)
            started = time.monotonic()
            ed.client.cancel_request(types.CancelParams(id="inline-1"))
            error = None
            try:
                await asyncio.wait_for(asyncio.wrap_future(future), 10)
            except JsonRpcException as e:
                error = e
            waited = time.monotonic() - started
            await asyncio.sleep(0.2)  # past the debounce window: the next goes out at once
            after = await ed.client.text_document_inline_completion_async(_params(uri))
            return error, waited, after

    error, waited, after = run(scenario())
    assert isinstance(error, JsonRpcException) and error.code == -32800
    assert waited < 4.0  # answered at the cancel, not when the model would have answered
    assert after.items[0].insert_text == "a + b"


def test_a_burst_of_completion_requests_costs_two_model_calls_the_first_cut_short(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": SOURCE})

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["messages"][-1]["content"]
        if "    retur<CURSOR>" in prompt:  # warming up: the completion session exists
            return {"text": "n"}
        if "    return <CURSOR>" in prompt:  # the leading request: slow, and cut short
            return {"delay": 5.0, "text": "stale"}
        return {"text": "a + b" if "    re<CURSOR>" in prompt else "wrong request"}

    server = model_server([answer] * 5)

    async def scenario() -> tuple[list[Any], float]:
        async with Editor(
            tmp_path / "home", repo, server, init_options={"inlineDebounceMs": 1500}
        ) as ed:
            uri = ed.open("calc.py")
            warm = await ed.client.text_document_inline_completion_async(_params(uri, 1, 9))
            assert warm.items[0].insert_text == "n"
            await asyncio.sleep(1.6)  # a pause past the debounce window
            started = time.monotonic()
            first = asyncio.ensure_future(
                ed.client.text_document_inline_completion_async(_params(uri, 1, 11))
            )
            for _ in range(500):  # the leading request went to the model at once
                if len(server.requests) == 2:
                    break
                await asyncio.sleep(0.01)
            burst = [  # the cursor moves as the user types on
                ed.client.text_document_inline_completion_async(_params(uri, 1, col))
                for col in (8, 7, 6)
            ]
            results = list(await asyncio.gather(first, *burst))
            return results, time.monotonic() - started

    results, took = run(scenario())
    assert results[:3] == [None, None, None]  # superseded while the user typed on
    assert results[3].items[0].insert_text == "a + b"
    assert len(server.requests) == 3  # warming up, the leading call (cut short), the last one
    assert took < 4.5  # nobody waited for the cut call's delayed answer
