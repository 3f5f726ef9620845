"""``mcode acp``: mcode as an Agent Client Protocol agent (Zed, JetBrains, Neovim, Emacs).

The editor starts ``mcode acp`` and speaks JSON-RPC with it on stdin and stdout::

    editor --(initialize, session/new, session/prompt, ...)--> wire.py --> agent.py
                                                                             |
        <--(session/update, session/request_permission, fs/*)-- bridge.py --+-- Session
                                                                    (verbs in, events out)

``wire`` frames and hardens the stream, ``agent`` answers the protocol's methods, one
``bridge`` per session drives an mcode Session and turns its events into updates
(``updates``), and ``prompt`` reads a prompt's content blocks. The protocol types are the
``agent-client-protocol`` package's (pinned: its 0.x API moves).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
from typing import Any, cast

__all__ = ["main"]


def flags(args: argparse.Namespace) -> dict[str, object]:
    return {
        "provider": args.provider,
        "model": args.model,
        "base_url": args.base_url,
        "thinking": args.thinking,
        "permission_mode": args.permission_mode,
        "max_turns": args.max_turns,
        "context_window": args.context_window,
    }


async def serve(args: argparse.Namespace) -> int:
    from acp.agent.connection import AgentSideConnection

    from mcode.acp.agent import McodeAgent
    from mcode.acp.wire import open_stdio
    from mcode.config import check_environment, data_home
    from mcode.runtime.build import preload
    from mcode.store import Store

    check_environment(os.environ)
    # An editor starts the agent when its panel opens: the imports of the first request are
    # done while the user is still typing the first prompt.
    threading.Thread(target=preload, name="mcode-acp-preload", daemon=True).start()
    store = Store(data_home() / "sessions.db")
    agent = McodeAgent(store, flags(args))
    wire = await open_stdio(agent.on_reply)
    # The package's Agent protocol spells every keyword out; McodeAgent takes what it uses.
    conn = AgentSideConnection(cast(Any, agent), wire, listening=False)
    try:
        await conn.listen()
    finally:
        await agent.close()
        with contextlib.suppress(Exception):
            await conn.close()
        store.close()
    return 0


def main(args: argparse.Namespace) -> int:
    from mcode.errors import MCodeError

    try:
        import acp  # noqa: F401
    except ImportError as e:
        print(
            f"mcode acp needs the agent-client-protocol package ({e}); run: "
            "pip install 'mcode[acp]'",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(serve(args))
    except MCodeError as e:
        print(f"mcode acp: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"mcode acp: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
