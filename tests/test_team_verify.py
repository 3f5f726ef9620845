"""The producer/verifier loop: a FAIL backed by a failing test leads to a revision that
passes; a PASS that mcode cannot back with what it saw is refused."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcode.team.checks import run_checks
from mcode.team.plan import Check
from mcode.tools.sandbox import SandboxError, SandboxPolicy
from tests.helpers import clean_env, exec_args, make_repo, mcode
from tests.model_server import ScriptedServer
from tests.team_model import Req, TeamModel, call, plan, planner_giving, say, task, verifier_running

TEAM = ("--team", "--permission-mode", "full-auto", "--output-format", "stream-json")
TEST_ADD = "from add import add\nassert add(2, 3) == 5, f'add(2, 3) is {add(2, 3)}'\nprint('ok')\n"


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"test_add.py": TEST_ADD})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


ADD_TASK = task("add", "write add.py with add(a, b)", [("python test_add.py", 0)])


def test_a_fail_backed_by_a_failing_test_leads_to_a_revision_that_passes(
    repo: Path, env: dict[str, str]
) -> None:
    def producer(req: Req) -> dict[str, Any]:
        if req.after_user == 0:
            # Round 1 is wrong; round 2 (after the verifier's findings) is right.
            body = "a - b" if req.round == 1 else "a + b"
            return call(
                "write", {"path": "add.py", "content": f"def add(a, b):\n    return {body}\n"}
            )
        return say("wrote add.py")

    model = TeamModel(
        planner=planner_giving(plan(ADD_TASK)),
        producer=producer,
        verifier=verifier_running("python test_add.py"),
    )
    with ScriptedServer([model] * 40) as server:
        run = mcode(*exec_args(server, *TEAM, "write add"), cwd=repo, env=env)
    events = run.events()
    assert run.code == 0, run.stderr
    verdicts = [e["data"] for e in of(events, "team.verdict")]
    assert [(v["verdict"], v["accepted"]) for v in verdicts] == [("FAIL", False), ("PASS", True)]
    # The FAIL was real: the verifier's command failed, and so did mcode's own check.
    assert verdicts[0]["checks"][0]["passed"] is False
    assert verdicts[0]["checks"][0]["exit_code"] == 1
    # The producer got the findings in its second round.
    revision = [e for e in of(events, "message.user") if e.get("agent") == "producer:add"][-1][
        "data"
    ]["message"]["parts"][0]["text"]
    assert "add(2, 3) is -1" in revision
    assert (repo / "add.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert of(events, "team.finished")[-1]["data"]["tasks"] == [
        {"id": "add", "status": "passed", "rounds": 2}
    ]


def _fixed_producer(req: Req) -> dict[str, Any]:
    if req.after_user == 0:
        return call("write", {"path": "add.py", "content": "def add(a, b):\n    return a + b\n"})
    return say("wrote add.py")


def _passing_with(evidence: list[dict[str, Any]], run_first: str | None = None) -> Any:
    """A verifier that (optionally runs ``run_first``, then) says PASS citing ``evidence``."""
    ran = 0 if run_first is None else 1

    def verifier(req: Req) -> dict[str, Any]:
        if req.step < ran:
            return call("bash", {"command": run_first})
        if req.step == ran:
            return call("verdict", {"verdict": "PASS", "evidence": evidence, "findings": []})
        return say("verified")

    return verifier


@pytest.mark.parametrize(
    ("verifier", "checks", "refusal"),
    [
        (_passing_with([]), [("python test_add.py", 0)], "cites no command"),
        (
            _passing_with([{"command": "python test_add.py", "exit_code": 0, "output": "ok"}]),
            [("python test_add.py", 0)],
            "which was not run in this verification",
        ),
        (
            _passing_with(
                [{"command": "python test_add.py", "exit_code": 0, "output": "all 12 passed"}],
                run_first="python test_add.py",
            ),
            [("python test_add.py", 0)],
            "that the command did not print",
        ),
        (
            _passing_with(
                [{"command": "python test_add.py", "exit_code": 0, "output": "ok"}],
                run_first="python test_add.py",
            ),
            [("python test_add.py", 0), ("test -f README.md", 0)],
            "failing acceptance checks",
        ),
    ],
    ids=["cites-nothing", "cites-a-command-not-run", "cites-output-not-printed", "failing-check"],
)
def test_a_pass_mcode_cannot_back_is_refused_and_the_task_fails(
    repo: Path, env: dict[str, str], verifier: Any, checks: list[tuple[str, int]], refusal: str
) -> None:
    spec = task("add", "write add.py", checks)
    model = TeamModel(
        planner=planner_giving(plan(spec)), producer=_fixed_producer, verifier=verifier
    )
    with ScriptedServer([model] * 40) as server:
        run = mcode(*exec_args(server, *TEAM, "--team-rounds", "1", "write add"), cwd=repo, env=env)
    events = run.events()
    assert run.code == 1, run.stderr
    (verdict,) = [e["data"] for e in of(events, "team.verdict")]
    assert verdict["verdict"] == "PASS"
    assert verdict["accepted"] is False
    assert refusal in verdict["refused"]
    assert of(events, "team.merge") == []
    assert not (repo / "add.py").exists()  # nothing unaccepted reaches the user's branch
    finished = of(events, "team.task.finished")[-1]["data"]
    assert (finished["status"], finished["rounds"]) == ("failed", 1)
    assert of(events, "session.finished")[-1]["data"]["exit_code"] == 1


# --- The sandbox: checks write only in their worktree, the verifier writes nothing ---------


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside the worktree and outside /tmp (which workspace-write shares, and
    where pytest keeps the test repository)."""
    base = Path("/var/tmp")
    if not base.is_dir() or base.resolve().is_relative_to("/tmp") or not os.access(base, os.W_OK):
        pytest.skip("needs a writable /var/tmp apart from /tmp")
    folder = Path(tempfile.mkdtemp(prefix="mcode-test-", dir=base))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_an_acceptance_check_may_write_in_its_worktree_but_nowhere_else(
    repo: Path, env: dict[str, str], outside: Path
) -> None:
    # Both checks pass unsandboxed; in the sandbox the second cannot write outside.
    inside = "echo built > built.txt && python test_add.py"
    outside_check = f"echo escaped > {outside / 'escaped.txt'}"
    model = TeamModel(
        planner=planner_giving(
            plan(task("add", "write add.py", [(inside, 0), (outside_check, 0)]))
        ),
        producer=_fixed_producer,
        verifier=verifier_running("python test_add.py"),
    )
    with ScriptedServer([model] * 40) as server:
        run = mcode(*exec_args(server, *TEAM, "--team-rounds", "1", "write add"), cwd=repo, env=env)
    events = run.events()
    assert run.code == 1, run.stderr
    (verdict,) = [e["data"] for e in of(events, "team.verdict")]
    first, second = verdict["checks"]
    assert first["passed"] is True, first
    assert second["passed"] is False
    assert "Read-only file system" in second["why"]
    assert not (outside / "escaped.txt").exists()
    assert verdict["accepted"] is False
    assert not (repo / "add.py").exists()


def test_a_verifier_command_that_writes_is_refused_by_the_sandbox(
    repo: Path, env: dict[str, str]
) -> None:
    # Unsandboxed this prints "tampered" and exits 0: a PASS the checks would back.
    model = TeamModel(
        planner=planner_giving(plan(ADD_TASK)),
        producer=_fixed_producer,
        verifier=verifier_running("echo tampered > add.py && cat add.py"),
    )
    with ScriptedServer([model] * 40) as server:
        run = mcode(*exec_args(server, *TEAM, "--team-rounds", "1", "write add"), cwd=repo, env=env)
    events = run.events()
    assert run.code == 1, run.stderr
    (verdict,) = [e["data"] for e in of(events, "team.verdict")]
    assert verdict["verdict"] == "FAIL"
    assert "Read-only file system" in verdict["findings"][0]
    assert verdict["checks"][0]["passed"] is True  # the producer's add.py is untouched


def test_checks_whose_sandbox_cannot_start_raise_and_run_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    policy = SandboxPolicy(writable=(tmp_path,), bwrap=str(tmp_path / "no-bwrap"))
    with pytest.raises(SandboxError) as raised:
        asyncio.run(run_checks((Check(f"touch {marker}"),), tmp_path, dict(os.environ), policy))
    assert "the sandbox cannot start" in raised.value.message
    assert "bubblewrap" in (raised.value.hint or "")
    assert not marker.exists()
