"""ACP: how long an editor waits after ``session/prompt`` for the first ``session/update``.

    python tests/bench/acp.py [--runs 30] [--pause 1.0]

``mcode acp`` runs as a subprocess against the scripted model server with no latency (one
short answer per prompt, sent in one chunk), driven through the agent-client-protocol
package's client side as an editor would. One session, N prompts one after another; for each:
when the model server received the request (mcode's work before the model call), when the
first update (the answer's first chunk) arrived, and when the prompt's reply came. The first
prompt of a session also starts it (``session.started`` stored) and is shown on its own row,
sent ``--pause`` seconds after ``session/new`` (the user typing it; ``0`` shows what the
start-up's imports still cost then); the median and worst of the others follow. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Run as a script, this folder comes first on sys.path, and this file would be `import acp`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import acp  # noqa: E402
from acp_client import Recorder, acp_args  # noqa: E402
from helpers import clean_env, make_repo  # noqa: E402
from model_server import ScriptedServer  # noqa: E402


class Timed(Recorder):
    """A recorder that notes when the first update after each prompt arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.first: float | None = None

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        if self.first is None and update.session_update == "agent_message_chunk":
            self.first = time.monotonic()
        await super().session_update(session_id, update, **kwargs)


async def measure(runs: int, pause: float) -> list[tuple[float, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "repo", {"a.txt": "alpha\n"})
        env = clean_env(Path(tmp) / "home")
        server = ScriptedServer([{"text": "ok"}] * (runs + 1), chunk_size=1024).start()
        client = Timed()
        rows: list[tuple[float, float, float]] = []
        try:
            async with acp.spawn_agent_process(
                client,
                sys.executable,
                "-m",
                "mcode",
                *acp_args(server),
                env=env,
                cwd=repo,
                transport_kwargs={"stderr": None},
            ) as (conn, _):
                await conn.initialize(protocol_version=acp.PROTOCOL_VERSION)
                sid = (await conn.new_session(cwd=str(repo), mcp_servers=[])).session_id
                await asyncio.sleep(pause)  # the user types the first prompt
                for i in range(runs + 1):
                    client.first = None
                    started = time.monotonic()
                    await conn.prompt(session_id=sid, prompt=[acp.text_block(f"prompt {i}")])
                    replied = time.monotonic()
                    assert client.first is not None, "no update came"
                    received = server.requests[i].received_at
                    rows.append((received - started, client.first - started, replied - started))
        finally:
            server.stop()
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--pause", type=float, default=1.0, help="seconds between session/new and the first prompt"
    )
    args = parser.parse_args()
    rows = asyncio.run(measure(args.runs, args.pause))
    first, rest = rows[0], rows[1:]

    def ms(x: float) -> str:
        return f"{x * 1000:.1f}"

    print("| prompt | to the model request (ms) | to the first update (ms) | to the reply (ms) |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| the session's first | {ms(first[0])} | {ms(first[1])} | {ms(first[2])} |")
    for name, pick in (("median of the next", statistics.median), ("worst of the next", max)):
        cells = " | ".join(ms(pick(r[k] for r in rest)) for k in range(3))
        print(f"| {name} {len(rest)} | {cells} |")


if __name__ == "__main__":
    main()
