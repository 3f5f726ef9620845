"""``mcode doctor`` run as the user runs it: each check against the real thing it names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import clean_env, make_repo, mcode, trust


def _doctor(repo: Path, env: dict[str, str], *extra: str) -> tuple[int, dict[str, dict[str, Any]]]:
    run = mcode("doctor", "--json", *extra, cwd=repo, env=env)
    report = json.loads(run.stdout)
    assert report["ok"] == (run.code == 0), run.stdout
    return run.code, {c["name"]: c for c in report["checks"]}


@pytest.fixture
def where(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = make_repo(tmp_path / "repo", {"a.txt": "hi\n"})
    return repo, clean_env(tmp_path / "home")


def test_every_part_is_checked_and_a_good_machine_passes(where: Any) -> None:
    repo, env = where
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    code, checks = _doctor(repo, env)
    assert list(checks) == [
        "config",
        "sandbox",
        "ripgrep",
        "git",
        "display",
        "models",
        "store",
        "trust",
    ]
    assert code == 0
    assert checks["sandbox"]["status"] == "ok"
    assert "workspace-write" in checks["sandbox"]["detail"]
    assert str(repo) in checks["sandbox"]["detail"]
    assert checks["git"]["status"] == "ok" and "git version" in checks["git"]["detail"]
    # No key is set: the embedded model, and why.
    assert checks["models"]["detail"].startswith("local/")
    assert "no API key is set" in checks["models"]["detail"]
    assert checks["store"]["status"] == "ok"
    assert (Path(env["XDG_DATA_HOME"]) / "mcode" / "sessions.db").exists()


def test_the_text_report_has_a_line_per_check_and_hints_where_not_ok(where: Any) -> None:
    repo, env = where
    env["MCODE_BWRAP"] = "/nonexistent/bwrap"
    run = mcode("doctor", cwd=repo, env=env)
    assert run.code == 1
    lines = run.stdout.splitlines()
    sandbox = next(i for i, line in enumerate(lines) if line.split()[1:2] == ["sandbox"])
    assert lines[sandbox].startswith("fail  sandbox")
    assert "bubblewrap ('/nonexistent/bwrap') is not installed" in lines[sandbox]
    assert "-> install bubblewrap" in lines[sandbox + 1]
    assert "danger-full-access" in lines[sandbox + 1]


def test_a_sandbox_that_cannot_start_fails_and_danger_full_access_warns(where: Any) -> None:
    repo, env = where
    env["MCODE_BWRAP"] = "/nonexistent/bwrap"
    code, checks = _doctor(repo, env)
    assert code == 1
    assert checks["sandbox"]["status"] == "fail"
    env["MCODE_SANDBOX_MODE"] = "danger-full-access"
    code, checks = _doctor(repo, env)
    assert checks["sandbox"]["status"] == "warn"
    assert "no sandbox" in checks["sandbox"]["detail"]
    assert code == 0  # a choice, not a failure


def test_a_broken_bwrap_fails_with_what_it_said(where: Any, tmp_path: Path) -> None:
    repo, env = where
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    env["MCODE_BWRAP"] = str(fake)
    code, checks = _doctor(repo, env)
    assert code == 1
    assert "No permissions to creating new namespace" in checks["sandbox"]["detail"]
    assert "user namespaces" in checks["sandbox"]["hint"] + checks["sandbox"]["detail"]


def test_a_bad_config_fails_naming_the_file_and_line(where: Any) -> None:
    repo, env = where
    config = Path(env["XDG_CONFIG_HOME"]) / "mcode" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('max_turns = 3\n[sandbox]\nmode = "everything"\n')
    code, checks = _doctor(repo, env)
    assert code == 1
    assert checks["config"]["status"] == "fail"
    assert f"{config}:3" in checks["config"]["detail"]
    assert "workspace-write" in checks["config"]["hint"]
    assert checks["models"]["status"] == "fail"

    config.write_text("max_turns = 3\n")
    code, checks = _doctor(repo, env)
    assert checks["config"]["status"] == "ok" and str(config) in checks["config"]["detail"]


def test_missing_tools_warn_and_an_unwritable_store_fails(where: Any, tmp_path: Path) -> None:
    repo, env = where
    bwrap = shutil.which("bwrap")
    empty = tmp_path / "bin"
    empty.mkdir()
    env["PATH"] = str(empty)
    if bwrap:
        env["MCODE_BWRAP"] = bwrap
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env["MCODE_DATA_DIR"] = str(blocker / "data")  # under a file: cannot be created
    code, checks = _doctor(repo, env)
    assert (
        checks["ripgrep"]["status"] == "warn"
        and "apt-get install ripgrep" in checks["ripgrep"]["hint"]
    )
    assert checks["git"]["status"] == "warn"
    assert checks["store"]["status"] == "fail"
    assert code == 1


def test_trust_warns_while_a_project_file_is_held_back(where: Any) -> None:
    repo, env = where
    (repo / ".mcode").mkdir()
    (repo / ".mcode" / "config.toml").write_text('permission_mode = "full-auto"\n')
    _, checks = _doctor(repo, env)
    assert checks["trust"]["status"] == "warn"
    assert "permission_mode" in checks["trust"]["detail"]
    assert "mcode trust" in checks["trust"]["hint"]
    trust(repo, env)
    _code, checks = _doctor(repo, env)
    assert checks["trust"]["status"] == "ok" and "is trusted" in checks["trust"]["detail"]


def test_a_remote_provider_is_named_with_why(where: Any) -> None:
    repo, env = where
    env["OPENAI_API_KEY"] = "sk-doctor-test-key-123456"
    env["OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"
    run = mcode("doctor", "--json", cwd=repo, env=env)
    checks = {c["name"]: c for c in json.loads(run.stdout)["checks"]}
    assert checks["models"]["status"] == "ok"
    assert checks["models"]["detail"].startswith("openai/")
    assert "OPENAI_API_KEY is set" in checks["models"]["detail"]
    assert "sk-doctor-test-key" not in run.stdout  # never the key
