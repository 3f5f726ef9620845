"""Shared fixtures. Keep this file small: a fixture used by one test file lives in that file."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Test helpers (model_server) import as top-level modules whatever pytest's import mode.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from helpers import clean_env  # noqa: E402
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


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A user's home for tests that run mcode as a process (clean_env points XDG there)."""
    return tmp_path / "home"


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    """mcode's environment for such a process: no keys, nothing of the machine's user."""
    return clean_env(home)


@pytest.fixture(autouse=True, scope="session")
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """In-process tests that reach the data dir (the local engine keeps its crash-check
    verdicts there) write under a temp folder, never into the user's."""
    saved = os.environ.get("MCODE_DATA_DIR")
    os.environ["MCODE_DATA_DIR"] = str(tmp_path_factory.mktemp("mcode-data"))
    yield
    if saved is None:
        os.environ.pop("MCODE_DATA_DIR", None)
    else:
        os.environ["MCODE_DATA_DIR"] = saved
