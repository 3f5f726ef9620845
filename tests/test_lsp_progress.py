"""mcode lsp: work-done progress, cancelling a task (from the progress and with $/cancelRequest),
steering it, and the questions a client cannot or does not answer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from helpers import gone, make_repo, sleeper, stored_events
from lsp_client import Editor, editor_capabilities, run
from lsprotocol import types
from pygls.exceptions import JsonRpcException


async def _until(predicate: Any, seconds: float = 20) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting")


def _bash(command: str, call_id: str = "b1") -> dict[str, Any]:
    return {"tool_calls": [{"id": call_id, "name": "bash", "arguments": {"command": command}}]}


def test_a_task_reports_progress_and_the_progress_cancel_stops_its_command(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    pid = tmp_path / "sleep.pid"
    server = model_server([_bash(sleeper(pid)), {"text": "not reached"}])

    async def scenario() -> tuple[Any, Editor]:
        async with Editor(tmp_path / "home", repo, server, "--permission-mode", "full-auto") as ed:
            running = asyncio.ensure_future(ed.command("mcode.task", {"prompt": "sleep a while"}))
            await _until(lambda: "bash…" in ed.progress_messages() and pid.exists())
            (token,) = ed.client.progress_reports
            ed.client.window_work_done_progress_cancel(
                types.WorkDoneProgressCancelParams(token=token)
            )
            summary = await asyncio.wait_for(running, 20)
            return summary, ed

    summary, ed = run(scenario())
    assert summary["reason"] == "cancelled"
    assert summary["answer"] is None
    assert gone(pid)  # the command's process group died with the cancel
    (reports,) = ed.client.progress_reports.values()
    begin, *middle, end = reports
    assert isinstance(begin, types.WorkDoneProgressBegin)
    assert begin.title == "mcode: sleep a while" and begin.cancellable
    assert isinstance(end, types.WorkDoneProgressEnd) and end.message == "cancelled"
    assert [r.message for r in middle][:2] == ["working", "bash…"]
    assert len(server.requests) == 1  # nothing ran after the cancel


def test_cancel_request_for_a_running_task_cancels_its_session(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    pid = tmp_path / "sleep.pid"
    server = model_server([_bash(sleeper(pid)), {"text": "not reached"}])
    home = tmp_path / "home"

    async def scenario() -> tuple[BaseException | None, str]:
        async with Editor(home, repo, server, "--permission-mode", "full-auto") as ed:
            params = types.ExecuteCommandParams(
                command="mcode.task", arguments=[{"prompt": "sleep a while"}]
            )
            future = ed.client.protocol.send_request(
                types.WORKSPACE_EXECUTE_COMMAND, params, msg_id="task-1"
            )
            await _until(lambda: pid.exists())
            ed.client.cancel_request(types.CancelParams(id="task-1"))
            error = None
            try:
                await asyncio.wait_for(asyncio.wrap_future(future), 20)
            except JsonRpcException as e:
                error = e
            await _until(lambda: gone(pid, 0))
            await _until(
                lambda: any(
                    isinstance(r, types.WorkDoneProgressEnd)
                    for reports in ed.client.progress_reports.values()
                    for r in reports
                )
            )
            session = await ed.command("mcode.cancel")  # nothing left running
            assert session == {"cancelled": []}
            started = next(
                m.message for m in ed.client.log_messages if m.message.startswith("session ")
            )
            return error, started.split()[1]

    error, session_id = run(scenario())
    assert isinstance(error, JsonRpcException) and error.code == -32800  # RequestCancelled
    events = stored_events(home, session_id)
    reasons = [e["data"]["reason"] for e in events if e["type"] == "turn.finished"]
    assert reasons == ["cancelled"]


def test_a_steer_reaches_the_running_task_at_its_next_step(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"notes.md": "# notes\n"})
    server = model_server(
        [
            {
                "delay": 1.0,
                "tool_calls": [{"id": "r1", "name": "read", "arguments": {"path": "notes.md"}}],
            },
            {"text": "done, and in French."},
        ]
    )

    async def scenario() -> tuple[Any, Any]:
        async with Editor(tmp_path / "home", repo, server) as ed:
            running = asyncio.ensure_future(ed.command("mcode.task", {"prompt": "sum up notes"}))
            await _until(lambda: len(server.requests) == 1)
            steered = await ed.command("mcode.steer", {"text": "answer in French"})
            return steered, await asyncio.wait_for(running, 20)

    steered, summary = run(scenario())
    assert steered["steered"] is True and steered["session"] == summary["session"]
    assert summary["reason"] == "completed"
    assert "answer in French" in str(server.requests[1].body["messages"])


def test_commands_without_a_task_or_a_team_answer_json_rpc_errors(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    server = model_server([])

    async def scenario() -> list[JsonRpcException]:
        errors = []
        async with Editor(tmp_path / "home", repo, server) as ed:
            for name, args in [
                ("mcode.teamTask", [{"prompt": " "}]),
                ("mcode.steer", [{"text": "faster"}]),
                ("mcode.task", [{"prompt": ""}]),
                ("mcode.task", ["not an object"]),
                ("mcode.resume", [{"session": "nosuchsession"}]),
                ("mcode.nope", []),
            ]:
                with pytest.raises(JsonRpcException) as info:
                    await ed.command(name, *args)
                errors.append(info.value)
        return errors

    team, steer, empty, wrong, resume, unknown = run(scenario())
    assert team.code == -32602 and "mcode.teamTask needs a non-empty 'prompt'" in team.message
    assert steer.code == -32602 and "no mcode task is running" in steer.message
    assert empty.code == -32602 and "non-empty 'prompt'" in empty.message
    assert wrong.code == -32602 and "one JSON object" in wrong.message
    assert resume.code == -32602 and "nosuchsession" in resume.message
    assert unknown.code == -32602 and "mcode.nope" in unknown.message
    assert server.requests == []  # none of them reached the model


def test_a_client_that_cannot_ask_gets_the_headless_policy(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    server = model_server([_bash("echo hi"), {"text": "could not run it"}])
    home = tmp_path / "home"

    async def scenario() -> tuple[Any, Editor]:
        caps = editor_capabilities(ask=False)
        async with Editor(home, repo, server, capabilities=caps) as ed:
            return await ed.command("mcode.task", {"prompt": "say hi"}), ed

    summary, ed = run(scenario())
    assert summary["reason"] == "completed"
    assert ed.questions == []
    result = server.requests[1].body["messages"][-1]["content"]
    assert "denied" in result.lower()
    events = stored_events(home, summary["session"])
    assert events[0]["data"]["approvals"] == "denied"


def test_a_question_nobody_answers_is_denied_after_the_approval_timeout(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    server = model_server([_bash("echo hi"), {"text": "it was not allowed"}])

    async def scenario() -> tuple[Any, Editor]:
        async with Editor(
            tmp_path / "home", repo, server, "--approval-timeout", "0.5", answer=None
        ) as ed:
            return await ed.command("mcode.task", {"prompt": "say hi"}), ed

    summary, ed = run(scenario())
    assert summary["reason"] == "completed"
    assert len(ed.questions) == 1
    result = server.requests[1].body["messages"][-1]["content"]
    assert "no answer came within 0.5 s" in result


@pytest.mark.parametrize("token", ["editor-7", 7])
def test_progress_goes_to_the_work_done_token_the_command_came_with(
    tmp_path: Path, model_server: Any, token: int | str
) -> None:
    import warnings

    from pytest_lsp import LspSpecificationWarning

    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    pid = tmp_path / "sleep.pid"
    server = model_server([_bash(sleeper(pid)), {"text": "not reached"}])
    # A client that made the token itself need not offer window.workDoneProgress at all.
    caps = editor_capabilities(progress=False)

    async def scenario() -> tuple[Any, Editor]:
        async with Editor(
            tmp_path / "home", repo, server, "--permission-mode", "full-auto", capabilities=caps
        ) as ed:
            ed.client.progress_reports[token] = []  # the editor's own token, made before
            params = types.ExecuteCommandParams(
                command="mcode.task",
                arguments=[{"prompt": "sleep a while"}],
                work_done_token=token,
            )
            running = asyncio.ensure_future(ed.client.workspace_execute_command_async(params))
            await _until(lambda: "bash…" in ed.progress_messages() and pid.exists())
            ed.client.window_work_done_progress_cancel(
                types.WorkDoneProgressCancelParams(token=token)
            )
            return await asyncio.wait_for(running, 20), ed

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        summary, ed = run(scenario())
    # No window/workDoneProgress/create came (pytest-lsp warns of a duplicate token), nor a
    # report on a token the editor did not know.
    assert [w for w in warned if issubclass(w.category, LspSpecificationWarning)] == []
    assert list(ed.client.progress_reports) == [token]
    begin, *middle, end = ed.client.progress_reports[token]
    assert isinstance(begin, types.WorkDoneProgressBegin) and begin.cancellable
    assert [r.message for r in middle][:2] == ["working", "bash…"]
    # the cancel on the editor's token stopped the task
    assert isinstance(end, types.WorkDoneProgressEnd) and end.message == "cancelled"
    assert summary["reason"] == "cancelled" and gone(pid)


def test_resuming_the_session_of_a_running_task_is_refused(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    pid = tmp_path / "sleep.pid"
    server = model_server([_bash(sleeper(pid)), {"text": "not reached"}])

    async def scenario() -> tuple[JsonRpcException, Any, str]:
        async with Editor(tmp_path / "home", repo, server, "--permission-mode", "full-auto") as ed:
            running = asyncio.ensure_future(ed.command("mcode.task", {"prompt": "sleep a while"}))
            await _until(lambda: pid.exists())
            (begin, *_) = next(iter(ed.client.progress_reports.values()))
            sid = begin.message.removeprefix("session ")
            with pytest.raises(JsonRpcException) as refused:
                await ed.command("mcode.resume", {"session": sid, "prompt": "again"})
            await ed.command("mcode.cancel", {})
            return refused.value, await asyncio.wait_for(running, 20), sid

    refused, summary, sid = run(scenario())
    assert refused.code == -32602 and "is running a task in this editor" in refused.message
    assert summary["reason"] == "cancelled" and summary["session"].startswith(sid)
    # one run of the session in the store: the refused resume wrote nothing
    stored = stored_events(tmp_path / "home", summary["session"])
    assert [e["type"] for e in stored].count("session.started") == 1
    assert len(server.requests) == 1
