"""Which folders a run may touch and where mcode keeps its data, end to end: ``--add-dir``,
``permissions.add_dirs`` and ``permissions.allow_outside`` widen what the tools reach; ``--cwd``
picks the workspace; ``MCODE_DATA_DIR`` moves the store; ``mcode sessions`` lists this folder's
sessions and ``--all`` everyone's. ``mcode exec`` in real git repos against the scripted model
server on loopback, asserting the files and the event stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, exec_args, make_repo, mcode


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A folder beside the repository, outside its workspace."""
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "lib.txt").write_text("shared library notes\n")
    return folder


def read_and_write(folder: Path) -> list[dict[str, Any]]:
    """A model that reads folder/lib.txt and writes folder/new.txt, by absolute path."""
    calls = [
        {"id": "r1", "name": "read", "arguments": {"path": str(folder / "lib.txt")}},
        {
            "id": "w1",
            "name": "write",
            "arguments": {"path": str(folder / "new.txt"), "content": "x"},
        },
    ]
    return [{"tool_calls": calls}, {"text": "done"}]


def finished(run: Any) -> dict[str, dict[str, Any]]:
    return {e["data"]["id"]: e["data"] for e in run.events() if e["type"] == "tool.finished"}


def text(result: dict[str, Any]) -> str:
    return result["message"]["parts"][0]["text"]


def run_full_auto(server: Any, repo: Path, env: dict[str, str], *extra: str) -> Any:
    flags = ["--permission-mode", "full-auto", "--output-format", "stream-json", *extra]
    run = mcode(*exec_args(server, *flags), "go", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    return run


def test_a_folder_outside_the_workspace_is_refused_until_added_with_add_dir(
    model_server, repo, shared, tmp_path
):
    env = clean_env(tmp_path / "home")
    refused = finished(run_full_auto(model_server(read_and_write(shared)), repo, env))
    assert [refused[i]["ok"] for i in ("r1", "w1")] == [False, False]
    assert "outside the workspace" in text(refused["r1"])
    assert not (shared / "new.txt").exists()

    server = model_server(read_and_write(shared))
    added = finished(run_full_auto(server, repo, env, "--add-dir", str(shared)))
    assert [added[i]["ok"] for i in ("r1", "w1")] == [True, True]
    assert "shared library notes" in text(added["r1"])
    assert (shared / "new.txt").read_text() == "x"


@pytest.mark.parametrize(
    "config",
    ['[permissions]\nadd_dirs = ["{shared}"]\n', "[permissions]\nallow_outside = true\n"],
    ids=["add_dirs", "allow_outside"],
)
def test_the_config_file_widens_the_workspace_too(model_server, repo, shared, tmp_path, config):
    home = tmp_path / "home"
    user = home / "config" / "mcode" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text(config.format(shared=shared))
    server = model_server(read_and_write(shared))
    done = finished(run_full_auto(server, repo, clean_env(home)))
    assert [done[i]["ok"] for i in ("r1", "w1")] == [True, True], done
    assert "shared library notes" in text(done["r1"])
    assert (shared / "new.txt").read_text() == "x"


def test_cwd_picks_the_workspace_whatever_folder_mcode_starts_in(model_server, repo, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = [
        {"tool_calls": [{"id": "r1", "name": "read", "arguments": {"path": "a.txt"}}]},
        {
            "tool_calls": [
                {"id": "w1", "name": "write", "arguments": {"path": "b.txt", "content": "b"}}
            ]
        },
        {"text": "done"},
    ]
    env = clean_env(tmp_path / "home")
    run = run_full_auto(model_server(script), elsewhere, env, "--cwd", str(repo))
    assert run.events()[0]["data"]["cwd"] == str(repo.resolve())
    assert "alpha" in text(finished(run)["r1"])
    assert (repo / "b.txt").read_text() == "b" and not (elsewhere / "b.txt").exists()
    # The session belongs to the repository: listed there, not where mcode was started.
    session = run.events()[0]["session_id"][:12]
    assert session in mcode("sessions", cwd=repo, env=env).stdout
    assert session not in mcode("sessions", cwd=elsewhere, env=env).stdout


def test_mcode_data_dir_moves_the_store(model_server, repo, tmp_path):
    data = tmp_path / "my-data"
    env = clean_env(tmp_path / "home", MCODE_DATA_DIR=str(data))
    run = run_full_auto(model_server([{"text": "hi"}]), repo, env)
    session = run.events()[0]["session_id"][:12]
    assert (data / "sessions.db").is_file()
    assert not (tmp_path / "home" / "data" / "mcode" / "sessions.db").exists()
    assert session in mcode("sessions", cwd=repo, env=env).stdout
    without = clean_env(tmp_path / "home")  # the default store does not have it
    assert session not in mcode("sessions", cwd=repo, env=without).stdout


def test_sessions_lists_this_folder_and_all_lists_every_folder(model_server, tmp_path):
    env = clean_env(tmp_path / "home")
    repos = [make_repo(tmp_path / name, {"a.txt": "a\n"}) for name in ("one", "two")]
    ids = []
    for repo in repos:
        run = run_full_auto(model_server([{"text": "hi"}]), repo, env)
        ids.append(run.events()[0]["session_id"][:12])
    here = mcode("sessions", cwd=repos[0], env=env)
    assert here.code == 0 and ids[0] in here.stdout and ids[1] not in here.stdout
    every = mcode("sessions", "--all", cwd=repos[0], env=env)
    assert every.code == 0
    lines = {line.split()[0]: line for line in every.stdout.splitlines()}
    assert set(ids) <= set(lines)
    assert [lines[i].endswith(str(r.resolve())) for i, r in zip(ids, repos, strict=True)] == [
        True,
        True,
    ]
