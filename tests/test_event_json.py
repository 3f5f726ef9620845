"""Event.to_json writes the envelope by hand (it runs for every event, text deltas included): the
line must be exactly what ``json.dumps`` of ``to_dict()`` writes, and always UTF-8-encodable.

The payload classes must write the bytes mcode wrote before they existed: the lines below were
captured from real runs of the dict-based emitters (one per event type and per set of optional
fields), and each must come back byte for byte from its typed payload. A reordered field, or an
optional field written when it used to be left out, fails here."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from helpers import clean_env, exec_args, make_repo, mcode

from mcode import events as ev
from mcode.config import load_settings
from mcode.events import Event
from mcode.messages import Message, TextPart, ToolCall, Usage, clean_text, user_message
from mcode.runtime.build import open_session
from mcode.store import Store


@pytest.mark.parametrize(
    "event",
    [
        Event("text.delta", {"text": 'hé "q"\n\t\\ \u2028 \ud800'}, 7, "abc", None, 1764140000.125),
        Event("turn.started", {}, 1, "s", "t", 12),
        Event("usage", {"a": [1, 2.5, None, True, {"k": "v"}]}, 10**20, "s", "t", 1764140000.0),
        Event("error", {"n": float("nan")}, 3, "s\ud800", "t\u00e9", float("inf")),
        Event("retry", {"wait": 0.1 + 0.2}, 3, "s", "t", 0.1 + 0.2),
        Event("turn.started", {"resumed": False}, 4, "s", "t", 12.5, "task-1\u00e9"),
    ],
)
def test_the_line_is_json_dumps_of_the_dict(event: Event) -> None:
    line = event.to_json()
    expected = clean_text(json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":")))
    assert line == expected
    line.encode()  # no lone surrogate survives
    back = Event.from_json(line)
    assert (back.type, back.seq, back.session_id.replace("\ufffd", "\ud800")) == (
        event.type,
        event.seq,
        event.session_id,
    )


def test_the_agent_field_is_there_only_for_another_conversation() -> None:
    # The main conversation's events are byte-for-byte what they were before agents existed.
    main = Event("turn.started", {"resumed": False}, 1, "s", "t", 12.5)
    assert main.to_json() == (
        '{"v":1,"seq":1,"ts":12.5,"session_id":"s","turn_id":"t","type":"turn.started",'
        '"data":{"resumed":false}}'
    )
    child = Event("turn.started", {"resumed": False}, 2, "s", "t", 12.5, "task-1")
    line = child.to_json()
    assert line == (
        '{"v":1,"seq":2,"ts":12.5,"session_id":"s","turn_id":"t","agent":"task-1",'
        '"type":"turn.started","data":{"resumed":false}}'
    )
    assert Event.from_json(line) == child and Event.from_json(main.to_json()).agent is None


_S = '"v":1,"seq":7,"ts":1796166415.1458378,"session_id":"677bb4f9","turn_id":"d7cb2a73"'
_M = '{"role":"user","parts":[{"type":"text","text":"go on"}]}'
_LEDGER = (
    '{"goal":"Build the report.","requests":[],"files":{},"read":[],"commands":["$ seq 1 9 -> ok"]'
    ',"failures":[],"sections":{"Decisions":"- generate with seq"}}'
)
# As the dict-based emitters wrote them (captured from the test suite's runs, texts shortened).
TODAY = [
    '"type":"session.started","data":{"cwd":"/tmp/repo","provider":"openai","model":"m",'
    '"provider_reason":"test","context_window":128000,"permission_mode":"full-auto",'
    '"thinking":"unavailable","resumed":false,"schema_version":1}',
    '"type":"session.started","data":{"cwd":"/tmp/repo","provider":"anthropic","model":"t",'
    '"provider_reason":"named in the configuration or on the command line","context_window":9000,'
    '"permission_mode":"ask","thinking":"unavailable","resumed":true,"schema_version":1,'
    '"approvals":"denied","permission_note":"permission mode ask: edits will be denied",'
    '"trusted":false,"project_ignored":[]}',
    '"type":"session.started","data":{"cwd":"/tmp/repo","provider":"openai","model":"t",'
    '"provider_reason":"named in the configuration or on the command line","context_window":60000,'
    '"permission_mode":"full-auto","thinking":"unavailable","resumed":false,"schema_version":1,'
    '"approvals":"stdin","permission_note":null,"trusted":false,"project_ignored":["AGENTS.md"]}',
    '"type":"turn.started","data":{"resumed":false}',
    '"type":"message.user","data":{"message":' + _M + "}",
    '"type":"text.delta","data":{"text":"resumed"}',
    '"type":"thinking.delta","data":{"text":"let me see"}',
    '"type":"message.assistant","data":{"message":{"role":"assistant","parts":[{"type":"thinking",'
    '"text":"hm","signature":"sig"},{"type":"text","text":"ok"}],"tool_calls":[{"id":"c1",'
    '"name":"read","arguments":"{\\"path\\": \\"a\\"}"}]},"finish_reason":"tool_calls"}',
    '"type":"usage","data":{"input_tokens":10,"output_tokens":5,"cached_tokens":0,'
    '"cache_write_tokens":0,"total":{"input_tokens":10,"output_tokens":5,"cached_tokens":0,'
    '"cache_write_tokens":0},"context_tokens":15,"context_window":9000}',
    '"type":"usage","data":{"input_tokens":0,"output_tokens":0,"cached_tokens":0,'
    '"cache_write_tokens":0,"total":{"input_tokens":0,"output_tokens":0,"cached_tokens":0,'
    '"cache_write_tokens":0},"context_tokens":null,"context_window":9000}',
    '"type":"usage","data":{"input_tokens":2496,"output_tokens":20,"cached_tokens":0,'
    '"cache_write_tokens":0,"total":{"input_tokens":11298,"output_tokens":80,"cached_tokens":0,'
    '"cache_write_tokens":0},"purpose":"compaction"}',
    '"type":"compaction","data":{"reason":"overflow","tokens_before":5903,"tokens_after":1620,'
    '"window":128000,"messages_before":7,"messages_after":1,"kept":0,"summarised":true,'
    '"message":' + _M + ',"ledger":' + _LEDGER + "}",
    '"type":"retry","data":{"attempt":1,"reason":"model API error: HTTP 429 rate limited: slow '
    'down","wait":1.0,"kind":"rate_limit"}',
    '"type":"tool.requested","data":{"id":"c1","name":"bash","arguments":"{\\"command\\": \\"seq '
    '1 6\\"}"}',
    '"type":"permission.asked","data":{"request_id":"3bf0843d6e71","id":"c1","name":"write",'
    '"subject":"new.txt","permission":"edit","reason":"write needs approval in ask mode"}',
    '"type":"permission.decided","data":{"id":"call_17","name":"edit","subject":"calc.py",'
    '"allowed":false,"by":"headless","reason":"edit needs approval in ask mode"}',
    '"type":"tool.started","data":{"id":"c1","name":"bash"}',
    '"type":"tool.output","data":{"id":"c1","text":"10000\\n10001\\n"}',
    '"type":"tool.finished","data":{"message":{"role":"tool","parts":[{"type":"text","text":'
    '"10000\\n"}],"tool_call_id":"c1","name":"bash","is_error":true},"id":"c1","name":"bash",'
    '"ok":false,"summary":"$ seq 10000 10600 -> exit 1","duration":0.012}',
    '"type":"file.changed","data":{"path":"calc.py","tool_call_id":"e1","checkpoint":1}',
    '"type":"file.changed","data":{"path":"calc.py","tool_call_id":"e1","checkpoint":null}',
    '"type":"undo","data":{"restored":["calc.py"],"deleted":["notes/todo.txt"],"unchanged":[],'
    '"skipped":[{"path":"b.py","reason":"changed since the turn"}],"forced":false}',
    '"type":"steer.received","data":{"text":"also: use tabs"}',
    '"type":"steer.delivered","data":{"message":' + _M + ',"text":"go on"}',
    '"type":"error","data":{"kind":"compaction","message":"the model could not summarise the '
    'conversation","hint":"the work goes on","recoverable":true}',
    '"type":"error","data":{"kind":"leftover","message":"a command from the killed run (pid '
    '4242, `sleep 60`) was still running: killed","hint":"its effects may be partial","recoverable"'
    ':true,"pid":4242,"command":"sleep 60","killed":true}',
    '"type":"turn.finished","data":{"reason":"completed"}',
    '"type":"session.finished","data":{"result":"resumed","reason":"completed","exit_code":0,'
    '"usage":{"input_tokens":10,"output_tokens":5,"cached_tokens":0,"cache_write_tokens":0},'
    '"model_calls":1,"tool_calls":0,"compactions":0,"denials":0}',
    '"type":"session.finished","data":{"result":null,"reason":"no_input","exit_code":2,'
    '"usage":{"input_tokens":0,"output_tokens":0,"cached_tokens":0,"cache_write_tokens":0},'
    '"model_calls":0,"tool_calls":0,"compactions":0,"denials":0}',
    # Added after payloads (a fork, mcode/runtime/fork.py): its line as first written.
    '"type":"session.forked","data":{"source":"9c0f","at_turn":2,"turn_id":"d7cb2a73",'
    '"undone":["d7cb2a73"]}',
    '"type":"model.changed","data":{"provider":"anthropic","model":"claude-opus-4-1",'
    '"context_window":200000,"thinking":"on"}',
    # Plugins, hooks and MCP (mcode/plugin_host): their lines as first written.
    '"type":"plugins.loaded","data":{"plugins":["git"],"commands":["commit"],"skills":["lint"],'
    '"roles":["review"],"tools":["mcp__fs__read"],"mcp_servers":["fs"],"hooks":2,"problems":[],'
    '"ignored":[]}',
    '"type":"plugins.reloaded","data":{"paths":[".mcode/commands/fix.md"],"what":["commands"],'
    '"problems":[]}',
    '"type":"hook.finished","data":{"hook_event":"PreToolUse","command":"./block-rm.sh",'
    '"outcome":"blocked","exit_code":2,"duration":0.05,"message":"rm -rf is not allowed",'
    '"tool":"bash"}',
    '"type":"mcp.server","data":{"server":"fs","state":"started","message":"","tools":3}',
    '"type":"computer.action","data":{"id":"call_1","action":"left_click","size":"1280x720",'
    '"coordinate":[126,146],"screen":[189,219]}',
    '"type":"computer.action","data":{"id":"call_1","action":"screenshot","size":"1280x720",'
    '"screenshot":"/home/u/.local/share/mcode/screenshots/s/00001.png"}',
    # The agent team (mcode/team).
    '"type":"team.started","data":{"task":"make a and b","parallel":2,"rounds":3,'
    '"base_branch":"main","base_commit":"9f1c2e0","resumed":false}',
    '"type":"team.plan","data":{"revision":1,"reason":"initial","stages":[{"name":"work",'
    '"tasks":[{"id":"a","title":"a","instructions":"write a.txt","depends_on":[],"checks":'
    '[{"command":"test -f a.txt","expect":{"exit_code":0}}]}]}]}',
    '"type":"team.replan","data":{"revision":2,"steer":"also b","added":["b"],"changed":[],'
    '"removed":[],"reopened":["a"],"kept":[]}',
    '"type":"team.worktree","data":{"task_id":"a","path":"/d/worktrees/677bb4f9/a",'
    '"branch":"mcode/team/677bb4f9/a","confined":true,"reason":""}',
    '"type":"team.task.started","data":{"task_id":"a","round":1,"agent":"producer:a",'
    '"branch":"mcode/team/677bb4f9/a","worktree":"/d/worktrees/677bb4f9/a"}',
    '"type":"team.verdict","data":{"task_id":"a","round":1,"agent":"verifier:a:1",'
    '"verdict":"PASS","evidence":[{"command":"cat a.txt","exit_code":0,"output":"a"}],'
    '"findings":[],"checks":[{"command":"test -f a.txt","exit_code":0,"passed":true,"why":""}],'
    '"accepted":true,"refused":""}',
    '"type":"team.task.finished","data":{"task_id":"a","status":"passed","rounds":1,'
    '"reason":"verified and merged"}',
    '"type":"team.merge","data":{"task_id":"a","branch":"mcode/team/677bb4f9/a","ok":true,'
    '"commit":"5b2d","conflicts":[],"message":"merged"}',
    '"type":"team.plan.asked","data":{"request_id":"plan-1","revision":1,"timeout":300.0,'
    '"steer":null}',
    '"type":"team.plan.decided","data":{"request_id":"plan-1","decision":"rejected","by":"user",'
    '"reason":"too broad","steer":null}',
    '"type":"team.resolve.started","data":{"task_id":"b","agent":"resolver:b",'
    '"branch":"mcode/resolve/677bb4f9/b","worktree":"/d/worktrees/677bb4f9/.resolve/b",'
    '"conflicts":["a.txt"]}',
    '"type":"team.resolve.finished","data":{"task_id":"b","agent":"resolver:b",'
    '"outcome":"resolved","reason":"","checks":[{"command":"test -f a.txt","exit_code":0,'
    '"passed":true,"why":""}]}',
    '"type":"team.budget","data":{"scope":"team","task_id":null,"limit":"turns","allowed":4,'
    '"used":4}',
    '"type":"team.steer","data":{"text":"also b","to":["planner","producer:a"],"replan":true}',
    '"type":"team.finished","data":{"tasks":[{"id":"a","status":"passed","rounds":1}],'
    '"reason":"completed"}',
    # A message given with --resume, recorded before its turn (mcode/exec.py): as first written.
    '"type":"message.queued","data":{"text":"Also add a README line."}',
]


def _type(body: str) -> str:
    return body.split('"')[3]


def _today(type_: str) -> Event:
    """The first line of ``type_`` in TODAY, read."""
    return Event.from_json("{" + _S + "," + next(b for b in TODAY if _type(b) == type_) + "}")


@pytest.mark.parametrize("body", TODAY, ids=_type)
def test_a_typed_payload_writes_the_bytes_the_dict_emitters_wrote(body: str) -> None:
    line = "{" + _S + "," + body + "}"
    read = Event.from_json(line)
    payload = read.payload
    assert type(payload) is ev.PAYLOADS[read.type], f"{read.type} did not type: {payload}"
    again = Event.of(payload, read.seq, read.session_id, read.turn_id, read.ts)
    assert again.to_json() == line
    assert again.data == read.data


def test_every_event_type_has_a_line_from_before_payloads() -> None:
    assert {_type(body) for body in TODAY} == ev.ALL_TYPES


def test_a_payload_built_by_its_emitter_writes_the_line_of_before() -> None:
    # The spellings the call sites use, against the dicts they passed before.
    call, total = Usage(10, 5, 0, 0), Usage(10, 5, 0, 0)
    before = _today("usage")
    typed = ev.Usage.of(call, total=total, context_tokens=15, context_window=9000)
    assert Event.of(typed, 7, "677bb4f9", "d7cb2a73", before.ts).to_json() == before.to_json()
    total.input_tokens += 1  # the session's totals grow in place; what was said stays said
    assert typed.total == Usage(10, 5, 0, 0)
    message = user_message("go on")
    assert ev.SteerDelivered(message=message, text="go on").to_data() == {
        "message": message.to_dict(),
        "text": "go on",
    }
    assert ev.SessionStarted(
        cwd="/",
        provider="p",
        model="m",
        provider_reason="r",
        context_window=1,
        permission_mode="ask",
        thinking="on",
        resumed=False,
        approvals="denied",
    ).to_data() == {
        "cwd": "/",
        "provider": "p",
        "model": "m",
        "provider_reason": "r",
        "context_window": 1,
        "permission_mode": "ask",
        "thinking": "on",
        "resumed": False,
        "schema_version": 1,
        "approvals": "denied",
        "permission_note": None,
        "trusted": None,
        "project_ignored": None,
    }


def test_lines_of_earlier_versions_still_read_and_keep_what_they_hold() -> None:
    def read(body: str) -> Event:
        return Event.from_json("{" + _S + "," + body + "}")

    # Fields added since version 1 began read as their defaults.
    assert read('"type":"turn.started","data":{}').payload == ev.TurnStarted(resumed=False)
    changed = read('"type":"file.changed","data":{"path":"a","tool_call_id":"c"}').payload
    assert changed == ev.FileChanged(path="a", tool_call_id="c", checkpoint=None)
    usage = read(
        '"type":"usage","data":{"input_tokens":1,"output_tokens":2,"cached_tokens":0,'
        '"cache_write_tokens":0,"total":{"input_tokens":1,"output_tokens":2}}'
    ).payload
    assert (
        isinstance(usage, ev.Usage) and usage.total == Usage(1, 2) and usage.context_window is None
    )
    # A key this version does not know is kept in data and written back as it was.
    body = '"type":"tool.started","data":{"id":"c1","name":"bash","pid":4242}'
    started = read(body)
    assert started.payload == ev.ToolStarted(id="c1", name="bash")
    assert started.data["pid"] == 4242 and started.to_json() == "{" + _S + "," + body + "}"
    # A line lacking a field, or of a type this version does not know: kept, not typed.
    for body in (
        '"type":"session.started","data":{"cwd":"/w","provider":"p","model":"m"}',
        '"type":"team.stage","data":{"stage":2}',
        '"type":"message.user","data":{"message":{"parts":[]}}',
    ):
        event = read(body)
        assert event.payload == ev.Unknown(type=event.type, data=event.data)
        assert event.to_json() == "{" + _S + "," + body + "}"


def test_message_fields_are_messages_and_sequences_are_tuples() -> None:
    event = _today("message.assistant")
    assert isinstance(event.payload, ev.MessageAssistant)
    message = event.payload.message
    assert isinstance(message, Message) and message.tool_calls[0].name == "read"
    undo = _today("undo").payload
    assert isinstance(undo, ev.Undo)
    assert undo.restored == ("calc.py",) and undo.skipped[0]["reason"] == "changed since the turn"


def test_every_event_of_a_real_run_is_typed_and_written_back_byte_for_byte(
    model_server, tmp_path: Path
) -> None:
    # A run that retries, thinks, reads, edits, is denied a command, answers; then `mcode undo`.
    repo = make_repo(tmp_path / "repo", {"calc.py": "def add(a, b):\n    return a - b\n"})
    env = clean_env(tmp_path / "home")
    edit = {"path": "calc.py", "old_string": "a - b", "new_string": "a + b"}
    server = model_server(
        [
            {"status": 429, "headers": {"retry-after": "0"}},
            {"thinking": "read it first", "tool_calls": [_call("c1", "read", path="calc.py")]},
            {"tool_calls": [_call("c2", "edit", **edit), _call("c3", "bash", command="true")]},
            {"text": "Fixed the sign; I could not run the test."},
        ]
    )
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--permission-mode", "auto-edit"),
        "Fix add().",
        cwd=repo,
        env=env,
    )
    assert run.code == 4, run.stderr  # completed with a denial
    assert mcode("undo", cwd=repo, env=env).code == 0
    printed = run.stdout.splitlines()
    stored = stored_lines(tmp_path / "home", json.loads(printed[0])["session_id"])
    for line in [*printed, *stored]:
        read = Event.from_json(line)
        assert type(read.payload) is ev.PAYLOADS[read.type], line
        again = Event.of(read.payload, read.seq, read.session_id, read.turn_id, read.ts)
        assert again.to_json() == line
    types = {Event.from_json(line).type for line in [*printed, *stored]}
    assert types >= {
        "session.started",
        "retry",
        "thinking.delta",
        "text.delta",
        "message.assistant",
        "usage",
        "tool.requested",
        "tool.started",
        "tool.finished",
        "file.changed",
        "permission.decided",
        "undo",
        "session.finished",
    }, types


def _call(call_id: str, name: str, **arguments: str) -> dict:
    return {"id": call_id, "name": name, "arguments": arguments}


def stored_lines(home: Path, session_id: str) -> list[str]:
    db = sqlite3.connect(home / "data" / "mcode" / "sessions.db")
    try:
        query = "SELECT body FROM events WHERE session_id=? ORDER BY seq"
        return [body for (body,) in db.execute(query, (session_id,))]
    finally:
        db.close()


def test_a_session_stored_by_an_earlier_version_resumes(model_server, tmp_path: Path) -> None:
    # As the first version 1 wrote them: no turn.started resumed, no file.changed checkpoint, no
    # usage context fields, no session.finished compactions, no exec fields; and a key no
    # version of mcode wrote, which must not stop anything.
    repo = make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    env = clean_env(tmp_path / "home")
    sid = "0ld5e55104aaaaaaaaaaaaaaaaaaaaaa"
    user = user_message("read a.txt")
    call = Message("assistant", (), (ToolCall("c1", "read", '{"path": "a.txt"}'),))
    result = Message("tool", (TextPart("alpha"),), tool_call_id="c1", name="read")
    answer = Message("assistant", (TextPart("It says alpha."),))
    usage = {"input_tokens": 9, "output_tokens": 3, "cached_tokens": 0, "cache_write_tokens": 0}
    old = [
        ("session.started", None, {"cwd": str(repo), "provider": "openai", "model": "test-model",
         "provider_reason": "flag", "context_window": 128000, "permission_mode": "ask",
         "thinking": "unavailable", "resumed": False, "schema_version": 1}),
        ("turn.started", "t1", {}),
        ("message.user", "t1", {"message": user.to_dict()}),
        ("message.assistant", "t1", {"message": call.to_dict(), "finish_reason": "tool_calls"}),
        ("usage", "t1", {**usage, "total": usage}),
        ("tool.finished", "t1", {"message": result.to_dict(), "id": "c1", "name": "read",
         "ok": True, "summary": "read a.txt", "duration": 0.001, "lines": 1}),
        ("message.assistant", "t1", {"message": answer.to_dict(), "finish_reason": "stop"}),
        ("usage", "t1", {**usage, "total": usage}),
        ("turn.finished", "t1", {"reason": "completed"}),
        ("session.finished", None, {"result": "It says alpha.", "reason": "completed",
         "exit_code": 0, "usage": usage, "model_calls": 2, "tool_calls": 1, "denials": 0}),
    ]  # fmt: skip
    (tmp_path / "home" / "data" / "mcode").mkdir(parents=True)
    store = Store(tmp_path / "home" / "data" / "mcode" / "sessions.db")
    for seq, (type_, turn_id, data) in enumerate(old, 1):
        event = Event(type_, data, seq, sid, turn_id, 1764140000.0 + seq)
        store.write(event, event.to_json())
    store.close()

    server = model_server([{"text": "Still alpha."}])
    run = mcode(
        *exec_args(server, "--output-format", "stream-json", "--resume", sid[:12]),
        "and now?",
        cwd=repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    sent = [(m["role"], m.get("content")) for m in server.requests[0].body["messages"][1:]]
    assert sent[0] == ("user", "read a.txt") and sent[2] == ("tool", "alpha")
    assert sent[3:] == [("assistant", "It says alpha."), ("user", "and now?")]
    events = run.events()
    assert events[0]["seq"] == len(old) + 1 and events[-1]["data"]["exit_code"] == 0
    # The old lines read back typed (with the later fields' defaults), the unknown key kept.
    lines = stored_lines(tmp_path / "home", sid)
    finished = Event.from_json(lines[5])
    assert isinstance(finished.payload, ev.ToolFinished) and finished.data["lines"] == 1
    assert Event.from_json(lines[1]).payload == ev.TurnStarted(resumed=False)
    assert Event.from_json(lines[9]).payload == ev.SessionFinished(
        result="It says alpha.",
        reason="completed",
        exit_code=0,
        usage=Usage(9, 3),
        model_calls=2,
        tool_calls=1,
        compactions=0,
        denials=0,
    )


def test_a_subscriber_gets_the_payload_it_was_emitted_with_and_never_a_key(tmp_path: Path) -> None:
    key = "sk-test-PLANTED-PAYLOAD-0123456789"
    settings = load_settings(
        tmp_path,
        flags={"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        env={
            "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
            "HOME": str(tmp_path),
            "OPENAI_API_KEY": key,
        },
    )
    session = open_session(settings, Store(tmp_path / "sessions.db"), interactive=False)
    seen: list[tuple[Event, str]] = []
    session.subscribe(lambda event, line: seen.append((event, line)))
    said = ev.Error(kind="input", message="line 3 was skipped", hint="fix it", recoverable=True)
    leaked = ev.Error(kind="input", message=f"the key {key}", hint="", recoverable=True)
    session.emit(said)
    session.emit(leaked)
    (first, first_line), (second, second_line) = seen
    assert first.payload is said and first_line == first.to_json()
    assert first.data == {"kind": "input", "message": "line 3 was skipped", "hint": "fix it",
                          "recoverable": True}  # fmt: skip
    assert isinstance(second.payload, ev.Error)
    assert second.payload.message == "the key [REDACTED]" and key not in second_line
