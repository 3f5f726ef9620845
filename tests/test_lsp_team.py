"""mcode lsp's mcode.teamTask: an agent team from the editor, with real git, a real ``mcode
lsp`` process and the scripted model answering per role (tests/team_model.py): progress through
the team's steps to its summary, a cancel (mcode.cancel, $/cancelRequest) mid-run, a steer that
reaches the team, and the refusal while a tracked file has unsaved changes in the editor."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import gone, make_repo, sleeper, stored_events
from lsp_client import Editor, run
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from team_model import Req, TeamModel, call, plan, planner_giving, say, task, verifier_running

FULL_AUTO = ("--permission-mode", "full-auto")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


async def _until(predicate: Any, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting")


def writer(req: Req) -> dict[str, Any]:
    """A producer that writes ``<task id>.txt`` and answers."""
    if req.after_user == 0:
        return call("write", {"path": f"{req.task_id}.txt", "content": f"made by {req.task_id}\n"})
    return say("done")


def test_a_team_task_reports_each_step_merges_both_tasks_and_answers_a_summary(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    model = TeamModel(
        planner=planner_giving(
            plan(
                task("a", "write a.txt", [("test -f a.txt", 0)]),
                task("b", "write b.txt", [("test -f b.txt", 0)]),
            )
        ),
        producer=writer,
        verifier=verifier_running("cat *.txt"),
    )
    server = model_server([model] * 60)

    async def scenario() -> tuple[dict[str, Any], Editor]:
        async with Editor(tmp_path / "home", repo, server, *FULL_AUTO) as ed:
            ed.open("README.md")  # open and saved: the team may start
            summary = await ed.command("mcode.teamTask", {"prompt": "make a and b"})
            return summary, ed

    summary, ed = run(scenario(), timeout=120)
    assert summary["reason"] == "completed", summary
    assert sorted((t["id"], t["status"]) for t in summary["tasks"]) == [
        ("a", "passed"),
        ("b", "passed"),
    ]
    assert "a: passed" in summary["summary"] and summary["error"] is None
    # Merged into the user's branch on disk, the tree clean.
    assert (repo / "a.txt").read_text() == "made by a\n"
    assert (repo / "b.txt").read_text() == "made by b\n"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    # The progress: begin, the team's steps in exec's words, end with the team's reason.
    (reports,) = ed.client.progress_reports.values()
    begin, *middle, end = reports
    assert isinstance(begin, types.WorkDoneProgressBegin)
    assert begin.title == "mcode: make a and b" and begin.cancellable
    assert isinstance(end, types.WorkDoneProgressEnd) and end.message == "completed"
    lines = [r.message for r in middle]
    assert lines[0] == "team: plan: 2 task(s): a, b"
    for step in ("round 1 (producer:", "PASS, accepted", "merged", "passed ("):
        for t in ("a", "b"):
            assert any(line.startswith(f"team: {t}: ") and step in line for line in lines), (
                step,
                lines,
            )
    assert lines[-1] == "team: completed"
    assert not any(line.startswith("write") for line in lines)  # members' tools stay out
    # Stored like any session: its team events and how it ended.
    events = stored_events(tmp_path / "home", summary["session"])
    finished = [e for e in events if e["type"] == "session.finished"][-1]["data"]
    assert finished["reason"] == "completed" and finished["exit_code"] == 0


@pytest.mark.parametrize("how", ["mcode.cancel", "$/cancelRequest"])
def test_cancelling_a_team_task_stops_every_member_and_leaves_the_tree_clean(
    tmp_path: Path, model_server: Any, how: str
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    pid = tmp_path / "sleep.pid"

    def producer(req: Req) -> dict[str, Any]:
        return call("bash", {"command": sleeper(pid)})

    model = TeamModel(
        planner=planner_giving(plan(task("a", "x"), task("b", "y", depends_on=("a",)))),
        producer=producer,
        verifier=verifier_running("true"),
    )
    server = model_server([model] * 20)

    async def scenario() -> tuple[Any, str]:
        async with Editor(tmp_path / "home", repo, server, *FULL_AUTO) as ed:
            params = types.ExecuteCommandParams(
                command="mcode.teamTask", arguments=[{"prompt": "do a then b"}]
            )
            future = ed.client.protocol.send_request(
                types.WORKSPACE_EXECUTE_COMMAND, params, msg_id="team-1"
            )
            await _until(lambda: pid.exists())  # producer a's command runs in its worktree
            if how == "mcode.cancel":
                cancelled = await ed.command("mcode.cancel", {})
                assert len(cancelled["cancelled"]) == 1
            else:
                ed.client.cancel_request(types.CancelParams(id="team-1"))
            answer: Any
            try:
                answer = await asyncio.wait_for(asyncio.wrap_future(future), 30)
            except JsonRpcException as e:
                answer = e
            await _until(  # the team has wound up: its progress ended
                lambda: any(
                    isinstance(r, types.WorkDoneProgressEnd)
                    for reports in ed.client.progress_reports.values()
                    for r in reports
                )
            )
            assert await ed.command("mcode.cancel") == {"cancelled": []}  # nothing left running
            started = next(
                m.message for m in ed.client.log_messages if m.message.startswith("session ")
            )
            return answer, started.split()[1]

    answer, session_id = run(scenario(), timeout=120)
    if how == "mcode.cancel":  # the command answers its summary
        assert answer["reason"] == "cancelled", answer
        assert {t["id"]: t["status"] for t in answer["tasks"]} == {
            "a": "cancelled",
            "b": "cancelled",
        }
    else:  # the request itself was cancelled: JSON-RPC's RequestCancelled
        assert isinstance(answer, JsonRpcException) and answer.code == -32800
    events = stored_events(tmp_path / "home", session_id)
    done = [e["data"] for e in events if e["type"] == "team.finished"][-1]
    assert done["reason"] == "cancelled"
    assert {t["id"]: t["status"] for t in done["tasks"]} == {"a": "cancelled", "b": "cancelled"}
    assert [e for e in events if e["type"] == "session.finished"][-1]["data"]["exit_code"] == 130
    assert gone(pid)  # the producer's command died with the cancel
    assert ("producer", "b") not in model.calls
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert git(repo, "worktree", "list").count("\n") == 1  # the team's worktrees are gone


def test_a_steer_during_a_team_task_reaches_the_team(tmp_path: Path, model_server: Any) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    pid = tmp_path / "sleep.pid"

    def producer(req: Req) -> dict[str, Any]:
        if req.task_id == "a" and req.after_user == 0 and not pid.exists():
            return call("bash", {"command": f"echo $$ > {pid}; sleep 2"})
        return writer(req)

    model = TeamModel(
        planner=planner_giving(
            plan(task("a", "write a.txt", [("test -f a.txt", 0)])),
            plan(
                task("a", "write a.txt", [("test -f a.txt", 0)]),
                task("c", "write c.txt", [("test -f c.txt", 0)]),
            ),
        ),
        producer=producer,
        verifier=verifier_running("cat *.txt"),
    )
    server = model_server([model] * 80)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with Editor(tmp_path / "home", repo, server, *FULL_AUTO) as ed:
            running = asyncio.ensure_future(ed.command("mcode.teamTask", {"prompt": "make a"}))
            await _until(lambda: pid.exists())
            steered = await ed.command("mcode.steer", {"text": "also write c.txt"})
            summary = await asyncio.wait_for(running, 90)
            return steered, summary

    steered, summary = run(scenario(), timeout=150)
    assert steered["steered"] is True and steered["session"] == summary["session"]
    assert summary["reason"] == "completed", summary
    assert sorted(t["id"] for t in summary["tasks"]) == ["a", "c"]
    assert (repo / "c.txt").read_text() == "made by c\n"
    events = stored_events(tmp_path / "home", summary["session"])
    (receipt,) = [e["data"] for e in events if e["type"] == "team.steer"]
    assert receipt["text"] == "also write c.txt" and receipt["replan"] is True


def test_an_unsaved_buffer_of_a_tracked_file_refuses_the_team_and_names_it(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n", "calc.py": "x = 1\n"})
    (repo / "notes.txt").write_text("untracked\n")
    server = model_server([])

    async def scenario() -> JsonRpcException:
        async with Editor(tmp_path / "home", repo, server, *FULL_AUTO) as ed:
            ed.open("README.md")  # saved: fine
            ed.open("notes.txt", "untracked, edited\n")  # not tracked: a merge never touches it
            uri = ed.open("calc.py")
            ed.type(uri, 0, 0, "# not saved\n")
            with pytest.raises(JsonRpcException) as info:
                await ed.command("mcode.teamTask", {"prompt": "refactor calc"})
            return info.value

    error = run(scenario())
    assert error.code == -32602
    assert "calc.py has unsaved changes in the editor" in error.message
    assert "README.md" not in error.message and "notes.txt" not in error.message
    assert server.requests == []  # no agent started
    assert (repo / "calc.py").read_text() == "x = 1\n"
    assert not (tmp_path / "home" / "data" / "mcode" / "worktrees").exists()
