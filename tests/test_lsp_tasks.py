"""mcode lsp end to end: an editor (pytest-lsp) drives tasks against the scripted model server.

What the user would check: the edit the editor received (workspace/applyEdit), the buffer's and
the file's text afterwards, what the model was shown (the request bodies), the command's
answer, and the session in the store (resumable with ``mcode exec --resume``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from helpers import clean_env, exec_args, make_repo, mcode, stored_events, tool_messages
from lsp_client import Editor, editor_capabilities, run
from lsprotocol import types

CALC = "def add(a, b):\n    return a - b\n"


def _fix_script() -> list[dict[str, Any]]:
    return [
        {"tool_calls": [{"id": "r1", "name": "read", "arguments": {"path": "calc.py"}}]},
        {
            "tool_calls": [
                {
                    "id": "e1",
                    "name": "edit",
                    "arguments": {
                        "path": "calc.py",
                        "old_string": "return a - b",
                        "new_string": "return a + b",
                    },
                }
            ]
        },
        {"text": "add now adds."},
    ]


def test_fix_this_code_action_arrives_as_an_apply_edit_and_the_session_is_stored(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": CALC})
    server = model_server(_fix_script())
    home = tmp_path / "home"

    async def scenario() -> tuple[Any, list[Any], Editor]:
        async with Editor(home, repo, server) as ed:
            uri = ed.open("calc.py")
            diagnostic = types.Diagnostic(
                range=types.Range(
                    start=types.Position(line=1, character=4),
                    end=types.Position(line=1, character=16),
                ),
                message="add subtracts",
                source="pytest",
            )
            offered = await ed.client.text_document_code_action_async(
                types.CodeActionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    range=diagnostic.range,
                    context=types.CodeActionContext(diagnostics=[diagnostic]),
                )
            )
            titles = [a.title for a in offered]
            fix = next(a for a in offered if a.title == "mcode: Fix this")
            assert fix.command is None  # resolved into its command, as the client can resolve
            resolved = await ed.client.code_action_resolve_async(fix)
            assert resolved.command is not None
            summary = await ed.client.workspace_execute_command_async(
                types.ExecuteCommandParams(
                    command=resolved.command.command, arguments=resolved.command.arguments
                )
            )
            return summary, titles, ed

    summary, titles, ed = run(scenario())
    assert titles == [
        "mcode: Explain",
        "mcode: Fix this",
        "mcode: Refactor…",
        "mcode: Add tests",
        "mcode: Ask mcode…",
    ]
    assert summary["reason"] == "completed"
    assert summary["answer"] == "add now adds."
    assert summary["changed_files"] == ["calc.py"]
    # One edit, through the editor, on the one line that changed, at the buffer's version.
    assert len(ed.edits) == 1
    (change,) = ed.edits[0].edit.document_changes or []
    assert isinstance(change, types.TextDocumentEdit)
    assert change.text_document.uri == (repo / "calc.py").as_uri()
    assert change.text_document.version == 1
    (edit,) = change.edits
    assert isinstance(edit, types.TextEdit)
    assert (edit.range.start.line, edit.range.start.character) == (1, 0)
    assert (edit.range.end.line, edit.range.end.character) == (1, 16)
    assert edit.new_text == "    return a + b"
    fixed = "def add(a, b):\n    return a + b\n"
    assert ed.text((repo / "calc.py").as_uri()) == fixed
    assert (repo / "calc.py").read_text() == fixed  # written through to disk
    # The model was told the diagnostic's message, with thinking off for a quick action.
    first = server.requests[0].body
    assert "add subtracts" in first["messages"][-1]["content"]
    # The session is stored like any other and resumes from mcode exec.
    events = stored_events(home, summary["session"])
    started = events[0]
    assert started["type"] == "session.started"
    assert started["data"]["approvals"] == "editor"
    assert events[-1]["type"] == "session.finished"
    # mcode undo takes the edit back on disk, from the checkpoint the write-through kept.
    undone = mcode("undo", cwd=repo, env=clean_env(home))
    assert undone.code == 0, undone.stderr
    assert (repo / "calc.py").read_text() == CALC
    server.push({"text": "still adds."})
    again = mcode(
        *exec_args(server, "--resume", summary["session"][:12], "--output-format", "json"),
        "is it right now?",
        cwd=repo,
        env=clean_env(home),
    )
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["result"] == "still adds."
    history = server.requests[-1].body["messages"]
    assert any("add subtracts" in str(m.get("content")) for m in history)


def test_the_agent_reads_and_edits_the_unsaved_buffer_and_commands_see_the_edit(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"config.py": "retries = 1\n"})
    unsaved = "retries = 2  # not saved yet\ntimeout = 5\n"
    server = model_server(
        [
            {"tool_calls": [{"id": "r1", "name": "read", "arguments": {"path": "config.py"}}]},
            {
                "tool_calls": [
                    {
                        "id": "e1",
                        "name": "edit",
                        "arguments": {
                            "path": "config.py",
                            "old_string": "timeout = 5",
                            "new_string": "timeout = 30",
                        },
                    }
                ]
            },
            {
                "tool_calls": [
                    {"id": "b1", "name": "bash", "arguments": {"command": "cat config.py"}}
                ]
            },
            {"text": "timeout is 30 now."},
        ]
    )

    async def scenario() -> tuple[Any, Editor]:
        async with Editor(tmp_path / "home", repo, server) as ed:
            uri = ed.open("config.py", unsaved)
            summary = await ed.command(
                "mcode.task", {"prompt": "raise the timeout to 30", "uri": uri}
            )
            return summary, ed

    summary, ed = run(scenario())
    assert summary["reason"] == "completed", summary
    read_result = tool_messages(server.requests[1].body)[0]["content"]
    assert "retries = 2  # not saved yet" in read_result  # the buffer, not the disk
    assert "retries = 1" not in read_result
    edit_result = tool_messages(server.requests[2].body)[-1]["content"]
    assert edit_result.startswith("edited config.py"), edit_result
    after = "retries = 2  # not saved yet\ntimeout = 30\n"
    assert ed.text((repo / "config.py").as_uri()) == after
    # Before the command ran, what the editor shows was on disk: cat printed it.
    cat_result = tool_messages(server.requests[3].body)[-1]["content"]
    assert "timeout = 30" in cat_result and "retries = 2  # not saved yet" in cat_result
    assert (repo / "config.py").read_text() == after
    # In the default mode (ask) the edit and the command were asked in the editor, and allowed.
    asked = [q.message for q in ed.questions]
    assert len(asked) == 2 and "edit: config.py" in asked[0] and "bash: cat config.py" in asked[1]


def test_quick_actions_and_completions_run_with_thinking_off_larger_ones_with_it_on(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": CALC})
    server = model_server(
        [
            {"text": "It subtracts."},
            {"text": "Nothing to refactor."},
            {"text": "Because it subtracts."},
            {"text": "1"},
        ]
    )

    async def scenario() -> None:
        env = {"MINIMAX_API_KEY": "sk-test-key"}
        async with Editor(tmp_path / "home", repo, server, provider="minimax", env=env) as ed:
            uri = ed.open("calc.py")
            rng = {"start": {"line": 0, "character": 0}, "end": {"line": 2, "character": 0}}
            for action, more in (("explain", {}), ("refactor", {}), ("ask", {"prompt": "Why?"})):
                summary = await ed.command(
                    "mcode.codeAction", {"action": action, "uri": uri, "range": rng, **more}
                )
                assert summary["reason"] == "completed", summary
            await ed.client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(line=1, character=4),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked
                    ),
                )
            )

    run(scenario())
    explain, refactor, ask, inline = (r.body for r in server.requests)
    assert explain["thinking"] == {"type": "disabled"}
    assert refactor["thinking"] == {"type": "adaptive"}
    assert ask["thinking"] == {"type": "adaptive"}
    assert ask["messages"][-1]["content"].startswith(
        "Why?\n\nAbout this code in calc.py (lines 1-2)"
    )
    assert inline["thinking"] == {"type": "disabled"}
    assert "Explain what this code in calc.py (lines 1-2)" in explain["messages"][-1]["content"]
    assert "Refactor this code in calc.py (lines 1-2)" in refactor["messages"][-1]["content"]


def test_edits_in_a_row_name_the_buffer_version_the_editor_reported(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": CALC})

    def edit(call_id: str, old: str, new: str) -> dict[str, Any]:
        args = {"path": "calc.py", "old_string": old, "new_string": new}
        return {"tool_calls": [{"id": call_id, "name": "edit", "arguments": args}]}

    server = model_server(
        [
            {"tool_calls": [{"id": "r1", "name": "read", "arguments": {"path": "calc.py"}}]},
            edit("e1", "a - b", "a + b"),
            edit("e2", "def add(a, b):", "def add(a: int, b: int) -> int:"),
            {"text": "typed and fixed."},
        ]
    )

    async def scenario() -> Editor:
        # The editor reports each applied edit 0.3 s after it answered, as Neovim may.
        async with Editor(
            tmp_path / "home", repo, server, "--permission-mode", "auto-edit", late_changes=0.3
        ) as ed:
            ed.open("calc.py")
            summary = await ed.command("mcode.task", {"prompt": "fix and type add"})
            assert summary["reason"] == "completed", summary
            return ed

    ed = run(scenario())
    versions = [c.text_document.version for e in ed.edits for c in e.edit.document_changes or []]
    assert versions == [1, 2]  # the second waited for the first's didChange
    expected = "def add(a: int, b: int) -> int:\n    return a + b\n"
    assert ed.text((repo / "calc.py").as_uri()) == expected
    assert (repo / "calc.py").read_text() == expected
    second = tool_messages(server.requests[3].body)[-1]["content"]
    assert second.startswith("edited calc.py"), second


def test_a_long_answer_opens_as_a_document_and_resume_continues_the_session(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": CALC})
    long_answer = "The module has one function.\n\n" + "It subtracts. " * 200
    server = model_server([{"text": long_answer}, {"text": "Yes, still one."}])

    async def scenario() -> tuple[Any, Any, Editor]:
        async with Editor(tmp_path / "home", repo, server) as ed:
            first = await ed.command("mcode.task", {"prompt": "describe calc.py"})
            again = await ed.command(
                "mcode.resume", {"session": first["session"][:12], "prompt": "still one?"}
            )
            return first, again, ed

    first, again, ed = run(scenario())
    (shown,) = ed.client.shown_documents
    path = Path(shown.uri.removeprefix("file://"))
    assert path.read_text().endswith(long_answer + "\n")
    assert [m.message for m in ed.client.messages] == ["Yes, still one."]  # a short one
    assert again["session"] == first["session"] and again["reason"] == "completed"
    history = server.requests[1].body["messages"]
    assert [m["role"] for m in history[-3:]] == ["user", "assistant", "user"]
    assert history[-3]["content"].startswith("describe calc.py")


def test_a_client_that_cannot_apply_edits_gets_them_on_disk(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": CALC})
    server = model_server(_fix_script())

    async def scenario() -> tuple[Any, Editor]:
        caps = editor_capabilities(apply=False)
        async with Editor(
            tmp_path / "home", repo, server, "--permission-mode", "auto-edit", capabilities=caps
        ) as ed:
            ed.open("calc.py")
            return await ed.command("mcode.task", {"prompt": "fix add"}), ed

    summary, ed = run(scenario())
    assert summary["reason"] == "completed" and summary["changed_files"] == ["calc.py"]
    assert ed.edits == []  # never asked to apply what it cannot
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"


def test_a_finished_task_resumes_in_exec_while_the_server_runs_and_the_editor_sees_it(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": CALC})
    server = model_server([{"text": "one"}, {"text": "from exec"}, {"text": "three"}])
    home = tmp_path / "home"

    async def scenario() -> tuple[Any, Any, Any]:
        async with Editor(home, repo, server) as ed:
            first = await ed.command("mcode.task", {"prompt": "first"})
            # The task ended: its session is free to continue in a terminal meanwhile.
            resume = exec_args(server, "--resume", first["session"][:12], "from the terminal")
            done = await asyncio.to_thread(mcode, *resume, cwd=repo, env=clean_env(home))
            again = await ed.command(
                "mcode.resume", {"session": first["session"][:12], "prompt": "and now?"}
            )
            return first, done, again

    first, done, again = run(scenario())
    assert done.code == 0, done.stderr
    assert done.stdout.strip() == "from exec"
    assert again["session"] == first["session"] and again["answer"] == "three"
    # The editor's next request carries the terminal's turn.
    history = [m for m in server.requests[2].body["messages"] if m["role"] != "system"]
    assert [m["content"].splitlines()[0] for m in history] == [
        "first",
        "one",
        "from the terminal",
        "from exec",
        "and now?",
    ]
    stored = stored_events(home, first["session"])
    seqs = [e["seq"] for e in stored]
    assert seqs == sorted(set(seqs))
    assert [e["type"] for e in stored].count("session.finished") == 3
