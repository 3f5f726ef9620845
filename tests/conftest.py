"""Shared fixtures. Keep this file small: a fixture used by one test file lives in that file."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Test helpers (model_server) import as top-level modules whatever pytest's import mode.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from model_server import ScriptedServer, Step  # noqa: E402


@pytest.fixture
def model_server() -> Iterator[Callable[..., ScriptedServer]]:
    """Start scripted model servers: ``server = model_server(script, chunk_size=8)``.
    Every server started is stopped at teardown."""
    servers: list[ScriptedServer] = []

    def start(script: list[Step], **kw: Any) -> ScriptedServer:
        server = ScriptedServer(script, **kw).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
