"""What ``mcode lsp`` adds to an editor's wait, against a zero-latency scripted model server.

    python tests/bench/lsp.py [--completions 40] [--actions 10]

Rows:

- inline completion: from the editor sending ``textDocument/inlineCompletion`` to its answer
  (round trip), split into editor -> model request (mcode's side before the model: the prompt
  from the buffer, the request built and sent) and model request -> answer (the zero-latency
  server's answer streamed back, parsed and answered). Requests are spaced past the debounce
  window, as a user's pauses are, so none waits on it.
- code action to first progress: from the editor sending ``workspace/executeCommand``
  (``mcode.codeAction`` Explain) to the first ``$/progress`` report (``begin`` too), each a new
  stored session: settings, store, open_session, session.started, progress create; and to
  its model request (the provider's HTTP client made for that session besides).

The server runs as the editor runs it, a subprocess on stdio; the client is pygls's. Both
clocks are this process's (the scripted server runs in a thread here). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from lsprotocol import types  # noqa: E402
from model_server import ScriptedServer  # noqa: E402
from pygls.lsp.client import LanguageClient  # noqa: E402

KEY_VARS = ("MINIMAX_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
SOURCE = "def add(a, b):\n    return \n\nprint(add(1, 2))\n" * 20


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"{statistics.median(values) * 1000:.1f} | {p90 * 1000:.1f}"


async def bench(completions: int, actions: int, repo: Path, env: dict[str, str]) -> list[str]:
    script: list[Any] = [{"text": "a + b"}] * (completions + 1) + [{"text": "It adds."}] * actions
    server = ScriptedServer(script, chunk_size=4096).start()
    client = LanguageClient("bench", "1")
    progress: list[tuple[float, str]] = []

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def create(_params: Any) -> None:
        return None

    @client.feature(types.PROGRESS)
    def on_progress(params: types.ProgressParams) -> None:
        progress.append((time.monotonic(), str(params.value.get("kind"))))

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def log(_params: Any) -> None:
        return None

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def show(_params: Any) -> None:
        return None

    args = ["-m", "mcode", "lsp", "--provider", "openai", "--base-url", server.base_url]
    await client.start_io(sys.executable, *args, "--model", "bench", env=env, cwd=repo)
    caps = types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=True),
        workspace=types.WorkspaceClientCapabilities(apply_edit=True),
    )
    await client.initialize_async(
        types.InitializeParams(capabilities=caps, root_uri=repo.as_uri(), process_id=os.getpid())
    )
    client.initialized(types.InitializedParams())
    uri = (repo / "calc.py").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=SOURCE
            )
        )
    )
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=1, character=11),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )
    await client.text_document_inline_completion_async(params)  # warm: the completion session
    rounds, to_model, from_model = [], [], []
    for _ in range(completions):
        await asyncio.sleep(0.1)  # a pause past the debounce window
        seen = len(server.requests)
        started = time.monotonic()
        answer = await client.text_document_inline_completion_async(params)
        done = time.monotonic()
        assert answer is not None and answer.items[0].insert_text == "a + b", answer
        received = server.requests[seen].received_at
        rounds.append(done - started)
        to_model.append(received - started)
        from_model.append(done - received)

    lines = {"start": {"line": 0, "character": 0}, "end": {"line": 2, "character": 0}}
    first_report, first_begin, action_to_model = [], [], []
    for _ in range(actions):
        progress.clear()
        seen = len(server.requests)
        started = time.monotonic()
        summary = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="mcode.codeAction",
                arguments=[{"action": "explain", "uri": uri, "range": lines}],
            )
        )
        assert summary["reason"] == "completed", summary
        first_begin.append(next(t for t, kind in progress if kind == "begin") - started)
        first_report.append(next(t for t, kind in progress if kind == "report") - started)
        action_to_model.append(server.requests[seen].received_at - started)

    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    server.stop()
    return [
        "| measure | median ms | p90 ms |",
        "| --- | --- | --- |",
        f"| inline completion, round trip ({completions}) | {_ms(rounds)} |",
        f"| inline: editor -> model request | {_ms(to_model)} |",
        f"| inline: model request -> answer in the editor | {_ms(from_model)} |",
        f"| code action -> progress begin ({actions}) | {_ms(first_begin)} |",
        f"| code action -> first progress report | {_ms(first_report)} |",
        f"| code action -> its model request | {_ms(action_to_model)} |",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--completions", type=int, default=40)
    ap.add_argument("--actions", type=int, default=10)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = root / "repo"
        repo.mkdir()
        (repo / "calc.py").write_text(SOURCE)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
        env.update(XDG_DATA_HOME=str(root / "data"), XDG_CONFIG_HOME=str(root / "cfg"))
        lines = asyncio.run(bench(a.completions, a.actions, repo, env))
    print(
        f"machine: {platform.node()} ({platform.processor() or platform.machine()}), "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
