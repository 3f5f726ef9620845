"""The TUI driven by Textual's Pilot, as a user would: keys in, the screen and the model's
requests out, against the scripted model server on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from helpers import make_repo
from textual.geometry import Region
from tui_helpers import launcher, pilot_test, screen_text, type_text, until

from mcode.tui.app import McodeApp
from mcode.tui.blocks import AnswerBlock, UserBlock

SIZE = (100, 32)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n", "src/main.py": "print(1)\n"})


@pilot_test
async def test_a_typed_prompt_is_sent_and_its_answer_shown(model_server, repo, tmp_path):
    server = model_server([{"text": "Hello **there**, from the model"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "say hi")
        await pilot.press("enter")
        answer = await until(pilot, lambda: list(app.query(AnswerBlock)))
        assert "Hello **there**" in answer[-1].text
        assert [u.text for u in app.query(UserBlock)] == ["say hi"]
        assert app.prompt.text == ""  # sent, so cleared
    assert server.bodies[0]["messages"][-1]["content"] == "say hi"


def _bash(command: str, call_id: str = "c1") -> dict:
    return {"tool_calls": [{"id": call_id, "name": "bash", "arguments": {"command": command}}]}


def _write(path: str, content: str, call_id: str = "w1") -> dict:
    call = {"id": call_id, "name": "write", "arguments": {"path": path, "content": content}}
    return {"tool_calls": [call]}


@pilot_test
async def test_enter_while_a_turn_runs_steers_it(model_server, repo, tmp_path):
    # The first answer stalls mid-stream, so the turn is running when the steer is typed.
    server = model_server(
        [
            {**_bash("echo one"), "delay": 0.0},
            {
                "text": "partial answer that goes on",
                "chunk_size": 4,
                "stall_after": 2,
                "stall": 1.0,
            },
            {"text": "done, in tabs"},
        ]
    )
    app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "do it")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.running and app.query("LiveAnswer"))
        await type_text(pilot, "use tabs")
        await pilot.press("enter")
        await until(pilot, lambda: "steer delivered: use tabs" in screen_text(app))
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        assert "done, in tabs" in app.query(AnswerBlock).last().text
        assert len(app.query(UserBlock)) == 1  # a steer is not a turn of its own
    last = server.bodies[-1]["messages"]
    assert any(m["role"] == "user" and "use tabs" in str(m["content"]) for m in last)


@pilot_test
async def test_alt_enter_queues_a_follow_up_turn(model_server, repo, tmp_path):
    server = model_server(
        [
            {"text": "first answer, slowly", "chunk_size": 4, "stall_after": 1, "stall": 1.0},
            {"text": "second answer"},
        ]
    )
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "one")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.running)
        await type_text(pilot, "two")
        await pilot.press("alt+enter")
        await until(pilot, lambda: "queued: two" in str(app.query_one("#queue").render()))
        await until(pilot, lambda: len(app.query(AnswerBlock)) == 2 and app.session.idle)
        assert [u.text for u in app.query(UserBlock)] == ["one", "two"]
        assert not app.queued
    assert [b["messages"][-1]["content"] for b in server.bodies] == ["one", "two"]


@pilot_test
async def test_esc_interrupts_and_a_dropped_follow_up_comes_back_to_the_prompt(
    model_server, repo, tmp_path
):
    server = model_server(
        [{"text": "never finished", "chunk_size": 2, "stall_after": 3, "stall": 30}]
    )
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "long task")
        await pilot.press("enter")
        await until(pilot, lambda: app.query("LiveAnswer"))
        await type_text(pilot, "later")
        await pilot.press("ctrl+t")
        await until(pilot, lambda: app.queued)
        await pilot.press("escape")
        await until(pilot, lambda: app.session.idle and "interrupted" in screen_text(app))
        assert app.prompt.text == "later"  # nothing typed is lost
    assert len(server.bodies) == 1


@pilot_test
async def test_approving_a_write_runs_it(model_server, repo, tmp_path):
    server = model_server([_write("new.txt", "hello\n"), {"text": "wrote it"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "write new.txt")
        await pilot.press("enter")
        await until(pilot, lambda: app.asking)
        assert not (repo / "new.txt").exists()  # it waits for the answer
        await pilot.press("y")
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        card = app.query_one("ToolCard")
        assert card.status == "ok"
    assert (repo / "new.txt").read_text() == "hello\n"


@pilot_test
async def test_a_denial_with_a_reason_reaches_the_model(model_server, repo, tmp_path):
    server = model_server([_write("new.txt", "hello\n"), {"text": "ok, not writing"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "write new.txt")
        await pilot.press("enter")
        await until(pilot, lambda: app.asking)
        await pilot.press("n")
        await type_text(pilot, "use a.txt instead")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        assert app.query_one("ToolCard").status == "denied"
    assert not (repo / "new.txt").exists()
    tool = next(m for m in server.bodies[1]["messages"] if m["role"] == "tool")
    assert "use a.txt instead" in tool["content"]


@pilot_test
async def test_always_allow_writes_the_rule_and_answers_the_next_question(
    model_server, repo, tmp_path
):
    config = repo / ".mcode" / "config.toml"
    config.parent.mkdir()
    config.write_text('# mine\nmodel = "m"\n\n[permissions]\ndeny = ["bash(rm *)"]\n')
    server = model_server(
        [_bash("git status"), _bash("git status --short", "c2"), {"text": "clean"}]
    )
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "status?")
        await pilot.press("enter")
        await until(pilot, lambda: app.asking)
        await pilot.press("a")
        assert app.screen.query_one("#rule").value == "bash(git status*)"
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        cards = list(app.query("ToolCard"))
        assert [c.status for c in cards] == ["ok", "ok"]  # the second was not asked about
    text = config.read_text()
    assert text.startswith('# mine\nmodel = "m"\n')  # what was there is kept
    import tomllib

    values = tomllib.loads(text)
    assert values["permissions"] == {"deny": ["bash(rm *)"], "allow": ["bash(git status*)"]}


@pilot_test
async def test_a_long_answer_streams_into_cheap_blocks_and_thinking_stays_folded(
    model_server, repo, tmp_path
):
    paragraphs = [f"Paragraph {i}: " + "words " * 40 for i in range(60)]
    paragraphs.insert(30, "```python\n" + "x = 1\n\n" * 30 + "```")  # blank lines inside a fence
    answer = "\n\n".join(paragraphs)
    server = model_server([{"thinking": "let me think about it", "text": answer}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "write a lot")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and not app.query("LiveAnswer"))
        (block,) = app.query(AnswerBlock)  # one widget, however long the answer
        assert len(block.parts) > 1  # finished paragraphs left the live tail as it grew
        assert "".join(block.parts) == answer  # nothing lost or doubled
        assert not any(p.count("```") % 2 for p in block.parts)  # never cut inside a fence
        whole = block.render_lines(Region(0, 0, block.size.width, block.size.height))
        drawn = "\n".join(line.text for line in whole)  # every part, rendered
        assert drawn.index("Paragraph 0:") < drawn.index("x = 1") < drawn.index("Paragraph 59:")
        thinking = app.query_one("ThinkingBlock")
        assert thinking.collapsed and thinking.text == "let me think about it"
        assert "Thought" in thinking.title


@pilot_test
async def test_a_sub_agent_is_drawn_inside_its_task_card(model_server, repo, tmp_path):
    task = {
        "id": "t1",
        "name": "task",
        "arguments": {"description": "look around", "prompt": "list the files"},
    }
    server = model_server(
        [
            {"tool_calls": [task]},
            {"tool_calls": [{"id": "l1", "name": "ls", "arguments": {"path": "."}}]},
            {"text": "there is a.txt"},
            {"text": "the helper found a.txt"},
        ]
    )
    app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "what is here?")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and len(app.query(AnswerBlock)) == 2)
        card = next(c for c in app.query("ToolCard") if c.name_ == "task")
        nested = list(card.lane.query("ToolCard"))
        assert [c.name_ for c in nested] == ["ls"]
        await pilot.pause()
        assert nested[0].region.height == 1  # a call with no output is its header line alone
        assert [a.text for a in card.lane.query(AnswerBlock)] == ["there is a.txt"]
        top = [w for w in app.view.children if isinstance(w, AnswerBlock)]
        assert [a.text for a in top] == ["the helper found a.txt"]


@pilot_test
async def test_a_burst_of_deltas_arrives_whole_in_order_and_a_key_does_not_wait_for_it(
    model_server, repo, tmp_path
):
    from textual import events

    from mcode import events as ev
    from mcode.tui.adapter import SessionEvent

    app = McodeApp(launcher(model_server([]), repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.ready)  # opened behind the first frame
        posted: list[SessionEvent] = []
        post = app.post_message

        def spy(message: Any) -> bool:
            if isinstance(message, SessionEvent):
                posted.append(message)
            return post(message)

        app.post_message = spy
        app.start_session()
        session = app.session
        session.emit(ev.TurnStarted())
        deltas = [f"<{i:04d}>" + ("\n\n" if i % 7 == 0 else " ") for i in range(5000)]
        key_seen_at = None
        for i, delta in enumerate(deltas):
            if i == 2500:  # a key pressed in the middle of the burst
                app.post_message(events.Key("x", "x"))
            session.emit(ev.TextDelta(text=delta))
            if i % 50 == 49:  # a provider's stream yields to the loop between reads
                await asyncio.sleep(0)
                if key_seen_at is None and app.prompt.text == "x":
                    key_seen_at = i
        answer = app.lanes[None].answer
        assert answer is not None
        whole = "".join(deltas)
        # Drawn: every delta, in order, none twice, in what the live answer renders.
        await until(pilot, lambda: "".join(answer.parts) == whole)
        assert key_seen_at is not None and key_seen_at < len(deltas) - 1
        kinds = [m.event.type for m in posted]
        started = kinds.index(ev.TURN_STARTED)  # the turn's start stays before its text
        assert set(kinds[started + 1 :]) == {ev.TEXT_DELTA}
        assert len(posted) < len(deltas) / 10  # a burst is one message, not one per delta
