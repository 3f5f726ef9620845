"""The TUI's slash commands, completion and history driven by Textual's Pilot against the
scripted model server: each test types what a user types and checks what the user would, on
the screen and in the next request the model receives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import make_repo
from tui_helpers import ask, command, launcher, pilot_test, screen_text, type_text, until

from mcode.tui.app import McodeApp
from mcode.tui.blocks import AnswerBlock, UserBlock

SIZE = (100, 32)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n", "src/main.py": "print(1)\n"})


def status(app: McodeApp) -> str:
    return app.status.state.render(now=0.0).plain


def history(body: dict[str, Any]) -> list[str]:
    """The request's conversation as its texts, system prompt left out."""
    return [str(m.get("content")) for m in body["messages"] if m["role"] != "system"]


@pilot_test
async def test_model_switches_the_next_request_and_the_status_bar(model_server, repo, tmp_path):
    server = model_server([{"text": "one"}, {"text": "two"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, app, "first", 1)
        assert status(app).startswith("m ·")
        await command(pilot, app, "/model other-model", "now on other-model")
        assert status(app).startswith("other-model ·")
        await ask(pilot, app, "second", 2)
        session_id = app.session.id
    assert [b["model"] for b in server.bodies] == ["m", "other-model"]
    # The same session, continued: the history is kept.
    assert history(server.bodies[1]) == ["first", "one", "second"]
    assert session_id == app.session.id


def _write(path: str, content: str, call_id: str = "w1") -> dict[str, Any]:
    call = {"id": call_id, "name": "write", "arguments": {"path": path, "content": content}}
    return {"tool_calls": [call]}


@pilot_test
async def test_thinking_off_goes_out_in_the_next_request(model_server, repo, tmp_path):
    from mcode.store import Store
    from mcode.tui.launch import Launcher

    server = model_server([{"text": "one"}, {"text": "two"}])
    home = tmp_path / "home"
    env = {"XDG_CONFIG_HOME": str(home / "cfg"), "HOME": str(home), "ANTHROPIC_API_KEY": "k"}
    flags = {
        "provider": "anthropic",
        "base_url": server.anthropic_base_url,
        "model": "claude-sonnet-4-5",
        "thinking": "on",
        "permission_mode": "ask",
    }
    lnch = Launcher(repo, Store(home / "sessions.db"), flags, env=env, data_dir=home / "data")
    app = McodeApp(lnch)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.ready)  # opened behind the first frame
        assert "thinking on" in status(app)
        await ask(pilot, app, "first", 1)
        await command(pilot, app, "/thinking off", "thinking off")
        assert "thinking off" in status(app)
        await ask(pilot, app, "second", 2)
    assert server.bodies[0]["thinking"]["type"] == "enabled"
    assert server.bodies[1]["thinking"] == {"type": "disabled"}


@pilot_test
async def test_thinking_says_when_the_model_has_no_switch(model_server, repo, tmp_path):
    server = model_server([{"text": "one"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        assert "thinking" not in status(app)  # a model without the switch
        await command(pilot, app, "/thinking off", "m has no thinking switch")
        await command(pilot, app, "/thinking maybe", "/thinking takes on or off")
        await ask(pilot, app, "hi", 1)
    assert "thinking" not in server.bodies[0]


@pilot_test
async def test_mode_changes_what_gets_asked(model_server, repo, tmp_path):
    server = model_server(
        [
            _write("one.txt", "1\n"),
            {"text": "wrote one"},
            _write("two.txt", "2\n", "w2"),
            {"text": "wrote two"},
        ]
    )
    app = McodeApp(launcher(server, repo, tmp_path / "home", mode="ask"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "write one")
        await pilot.press("enter")
        await until(pilot, lambda: app.asking)  # ask mode: the write waits for a yes
        await pilot.press("y")
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        await command(pilot, app, "/mode auto-edit", "permission mode auto-edit")
        assert "· auto-edit ·" in status(app)
        await type_text(pilot, "write two")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and len(app.query(AnswerBlock)) == 2)
        assert not app.asking
        await command(pilot, app, "/mode sideways", "unknown permission mode 'sideways'")
    assert (repo / "two.txt").read_text() == "2\n"  # written without a question


@pilot_test
async def test_clear_starts_a_session_without_the_earlier_history(model_server, repo, tmp_path):
    usage = {"prompt_tokens": 5000, "completion_tokens": 100}
    server = model_server([{"text": "one", "usage": usage}, {"text": "two"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, app, "first", 1)
        first_id = app.session.id
        assert "in 5k" in status(app)
        await command(pilot, app, "/clear", "new session")
        assert not app.query(UserBlock)  # the old conversation left the screen
        assert "in 0 out 0" in status(app)  # and its tokens the status bar
        await type_text(pilot, "second")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and app.query(AnswerBlock))
        assert app.session.id != first_id
    assert history(server.bodies[1]) == ["second"]
    # The old session stays stored.
    assert app.launcher.store is not None
    assert any(s.id == first_id for s in app.launcher.store.sessions(limit=10))


USAGE = {"prompt_tokens": 10_000, "completion_tokens": 1_000, "cached_tokens": 4_000}


@pilot_test
async def test_the_status_bar_and_cost_count_each_call_at_its_models_price(
    model_server, repo, tmp_path
):
    server = model_server([{"text": f"answer {i}", "usage": USAGE} for i in range(3)])
    home = tmp_path / "home"
    app = McodeApp(launcher(server, repo, home, model="gpt-4o"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.ready)  # opened behind the first frame
        assert "$0.00" in status(app)  # a priced model: the cost is shown from the start
        await ask(pilot, app, "first", 1)
        # gpt-4o: 6,000 fresh input at $2.5/M, 4,000 cached at $1.25/M, 1,000 out at $10/M.
        assert "in 10k out 1k cached 4k · $0.03 ·" in status(app)
        await command(pilot, app, "/model gpt-4o-mini", "now on gpt-4o-mini")
        await ask(pilot, app, "second", 2)
        assert app.status.state.cost == pytest.approx(0.03 + 0.0018)  # each at its own price
        assert "in 20k out 2k cached 8k · $0.03 ·" in status(app)
        await command(
            pilot,
            app,
            "/cost",
            "2 model calls; tokens in 20,000 (cached 8,000), out 2,000; cost $0.03",
        )
        session_id = app.session.id
    app.launcher.store.close()

    # Resumed, the stored calls are counted again, each at its model's price.
    again = launcher(server, repo, home, model="gpt-4o-mini")
    app = McodeApp(again, first=again.open(resume_id=session_id), resumed=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.status.state.cost == pytest.approx(0.0318)
        assert status(app).startswith("gpt-4o-mini ·")
        # A call to a model without a price: the cost is unknown from then on, not guessed.
        await command(pilot, app, "/model m", "now on m")
        await ask(pilot, app, "third", 3)
        assert "in 30k out 3k cached 12k ·" in status(app)
        assert "$" not in status(app)
        await command(
            pilot, app, "/cost", "cost unknown: 1 of them went to a model without a price"
        )


@pilot_test
async def test_no_cost_is_shown_for_a_model_without_a_price(model_server, repo, tmp_path):
    server = model_server([{"text": "one", "usage": USAGE}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, app, "first", 1)
        assert "in 10k out 1k cached 4k" in status(app)
        assert "$" not in status(app)
        await command(
            pilot,
            app,
            "/cost",
            "1 model call; tokens in 10,000 (cached 4,000), out 1,000; cost unknown: no price is known for openai/m",
        )


@pilot_test
async def test_plan_runs_read_only_then_carries_the_plan_out_when_confirmed(
    model_server, repo, tmp_path
):
    server = model_server(
        [
            _write("early.txt", "too soon\n"),  # the planning turn tries to change something
            {"text": "1. write plan.txt", "chunk_size": 4, "stall_after": 2, "stall": 2},
            _write("plan.txt", "done\n", "w2"),
            {"text": "carried out"},
        ]
    )
    app = McodeApp(launcher(server, repo, tmp_path / "home", mode="full-auto"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "/plan make plan.txt")
        await pilot.press("enter")
        # The plan streams while it is made: the app is not held up waiting for it.
        await until(pilot, lambda: app.query("LiveAnswer"))
        assert "· read-only ·" in status(app)
        await until(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        assert "1. write plan.txt" in screen_text(app)
        assert not (repo / "early.txt").exists()  # read-only: the write was refused
        assert app.query("ToolCard").first().status == "denied"
        await pilot.press("y")
        await until(pilot, lambda: app.session.idle and len(app.query(AnswerBlock)) == 2)
        assert "· full-auto ·" in status(app)
    assert (repo / "plan.txt").read_text() == "done\n"
    assert "make plan.txt" in server.bodies[0]["messages"][-1]["content"]
    assert server.bodies[2]["messages"][-1]["content"] == "Carry out the plan."
    # The carrying out continues the planning conversation: the plan is in its history.
    assert "1. write plan.txt" in history(server.bodies[2])


@pilot_test
async def test_plan_declined_keeps_the_plan_and_the_mode(model_server, repo, tmp_path):
    server = model_server([{"text": "1. do nothing rash"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home", mode="auto-edit"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "/plan tidy up")
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("n")
        await until(
            pilot, lambda: "plan kept; permission mode back to auto-edit" in screen_text(app)
        )
        assert "· auto-edit ·" in status(app)
    assert len(server.bodies) == 1


@pilot_test
async def test_rewind_forks_before_the_picked_turn(model_server, repo, tmp_path):
    server = model_server([{"text": f"answer {i}"} for i in (1, 2, 3)])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, app, "turn one", 1)
        await ask(pilot, app, "turn two", 2)
        source = app.session.id
        await type_text(pilot, "/rewind")
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.__class__.__name__ == "TurnPicker")
        options = app.screen.query_one("OptionList")
        labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert [label.split()[0] for label in labels] == ["2", "1"]  # newest first
        assert "turn two" in labels[0]
        await pilot.press("enter")  # the highlighted one: before turn 2
        await until(pilot, lambda: "rewound to before turn 2" in screen_text(app))
        assert app.session.id != source
        # The fork shows turn 1 only, and turn 2's message is back in the prompt to edit.
        assert [u.text for u in app.query(UserBlock)] == ["turn one"]
        assert app.prompt.text == "turn two"
        app.prompt.set_text("turn two, again")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.idle and len(app.query(AnswerBlock)) == 2)
        await command(pilot, app, "/rewind 7", "/rewind 7: this session has 2 user turns")
        await command(pilot, app, "/rewind two", "/rewind takes a turn number")
    assert history(server.bodies[2]) == ["turn one", "answer 1", "turn two, again"]
    # The source is kept as it was.
    assert len([e for e in app.launcher.store.events(source) if e["type"] == "message.user"]) == 2


@pilot_test
async def test_esc_stops_a_plan_and_the_mode_comes_back(model_server, repo, tmp_path):
    server = model_server([{"text": "1. never", "chunk_size": 2, "stall_after": 2, "stall": 30}])
    app = McodeApp(launcher(server, repo, tmp_path / "home", mode="auto-edit"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "/plan tidy up")
        await pilot.press("enter")
        await until(pilot, lambda: app.query("LiveAnswer"))
        await pilot.press("escape")
        await until(pilot, lambda: app.session.idle and "interrupted" in screen_text(app))
        await until(pilot, lambda: "· auto-edit ·" in status(app))
        assert app.screen.__class__.__name__ != "ConfirmScreen"


@pilot_test
async def test_btw_answers_beside_a_running_turn(model_server, repo, tmp_path):
    server = model_server(
        [
            {"text": "the long answer", "chunk_size": 2, "stall_after": 2, "stall": 60},
            {"text": "seq -n does nothing", "delay": 8},
        ]
    )
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "long task")
        await pilot.press("enter")
        await until(pilot, lambda: app.query("LiveAnswer"))
        await type_text(pilot, "/btw what is seq -n")
        await pilot.press("enter")
        await type_text(pilot, "typed meanwhile")  # the app takes keys while the aside waits
        assert app.prompt.text == "typed meanwhile" and "btw (" not in screen_text(app)
        await until(pilot, lambda: "btw (" in screen_text(app))
        assert "seq -n does nothing" in screen_text(app)
        assert app.session.running  # answered while the turn still runs
        # Said once, as the btw note: the side question and its answer are not drawn as turns
        # of the main conversation (nor inside the running turn's cards).
        assert [u.text for u in app.query(UserBlock)] == ["long task"]
        assert screen_text(app).count("seq -n does nothing") == 1
        await pilot.press("escape")
        await until(pilot, lambda: app.session.idle)
    aside = server.bodies[1]["messages"]
    assert aside[-1]["content"] == "what is seq -n"
    assert history(server.bodies[0]) == ["long task"]


@pilot_test
async def test_sessions_picker_lists_the_stored_sessions_and_opens_the_chosen_one(
    model_server, repo, tmp_path
):
    server = model_server([{"text": "about alpha"}, {"text": "about beta"}, {"text": "more"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, app, "alpha question", 1)
        alpha = app.session.id
        await command(pilot, app, "/clear", "new session")
        await ask(pilot, app, "beta question", 1)
        await type_text(pilot, "/sessions")
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.__class__.__name__ == "SessionPicker")
        options = app.screen.query_one("OptionList")
        labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert len(labels) == 1 and alpha[:12] in labels[0]  # the one shown is left out
        assert "alpha question" in labels[0]
        await pilot.press("enter")
        await until(pilot, lambda: app.session.id == alpha)
        await until(pilot, lambda: [u.text for u in app.query(UserBlock)] == ["alpha question"])
        assert [a.text for a in app.query(AnswerBlock)] == ["about alpha"]
        await ask(pilot, app, "and more", 2)
    assert history(server.bodies[2]) == ["alpha question", "about alpha", "and more"]


@pilot_test
async def test_at_completes_files_of_the_git_repository(model_server, repo, tmp_path):
    (repo / "src" / "util.py").write_text("")  # untracked, not ignored: offered too
    (repo / ".gitignore").write_text("build/\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.py").write_text("")  # ignored: not offered
    server = model_server([{"text": "read it"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.files.ready)
        await type_text(pilot, "look at @src/")
        completions = app.query_one("#completions")
        await until(pilot, lambda: completions.shown)
        offered = [completions.get_option_at_index(i).id for i in range(completions.option_count)]
        assert offered == ["@src/main.py ", "@src/util.py "]
        await pilot.press("down", "tab")
        assert app.prompt.text == "look at @src/util.py "
        assert not completions.shown
        await type_text(pilot, "@bui")
        await until(pilot, lambda: not completions.shown)  # nothing matches an ignored path
        await type_text(pilot, " /")  # a / after the start is a path, not a command
        assert not completions.shown


@pilot_test
async def test_slash_completes_commands_and_enter_takes_one(model_server, repo, tmp_path):
    server = model_server([])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "/co")
        completions = app.query_one("#completions")
        await until(pilot, lambda: completions.shown)
        offered = [completions.get_option_at_index(i).id for i in range(completions.option_count)]
        assert offered == ["/compact ", "/copy ", "/cost "]
        await pilot.press("down", "down", "enter")
        assert app.prompt.text == "/cost "
        await pilot.press("enter")
        await until(pilot, lambda: "0 model calls" in screen_text(app))


@pilot_test
async def test_enter_acts_on_what_is_typed_not_on_a_list_left_from_fewer_keys(
    model_server, repo, tmp_path
):
    # Keys that arrive together (a fast typist, a paste, tmux's send-keys under load) reach
    # the prompt before the list is redrawn for them: Enter must not take "/compact", offered
    # for "/co", when "/copy" is typed out.
    from textual.widgets import TextArea

    server = model_server([])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "/co")
        completions = app.query_one("#completions")
        await until(pilot, lambda: completions.shown)
        with app.prompt.prevent(TextArea.Changed):  # "py" typed, the list not redrawn yet
            app.prompt.insert("py")
        await pilot.press("enter")
        await until(pilot, lambda: "no answer to copy yet" in screen_text(app))
        assert app.prompt.text == ""
        # Tab, too, completes what is typed: "/cos" offers "/cost" alone.
        await type_text(pilot, "/co")
        await until(pilot, lambda: completions.shown)
        with app.prompt.prevent(TextArea.Changed):
            app.prompt.insert("s")
        await pilot.press("tab")
        assert app.prompt.text == "/cost "


@pilot_test
async def test_up_brings_back_a_line_typed_in_an_earlier_run(model_server, repo, tmp_path):
    server = model_server([{"text": "one"}, {"text": "two"}])
    home = tmp_path / "home"
    app = McodeApp(launcher(server, repo, home))
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, app, "from the first run", 1)
        await ask(pilot, app, "and its second line", 2)
    app.launcher.store.close()

    app = McodeApp(launcher(server, repo, home))
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "draft")
        await pilot.press("up")
        assert app.prompt.text == "and its second line"
        await pilot.press("up")
        assert app.prompt.text == "from the first run"
        await pilot.press("up")  # the oldest: it stays
        assert app.prompt.text == "from the first run"
        await pilot.press("down", "down")
        assert app.prompt.text == "draft"  # what was being typed is not lost


def _ranked_plainly(paths: list[str], query: str, limit: int) -> list[str]:
    """The ranking FileIndex.match promises, written the slow, obvious way."""
    q = query.lower()
    ranked = []
    for path in paths:
        low = path.lower()
        if q not in low or low == q:
            continue
        name = low.rstrip("/").rsplit("/", 1)[-1]
        rank = 0 if name.startswith(q) else 1 if low.startswith(q) else 2
        ranked.append((rank, len(path), path))
    return [p for _, _, p in sorted(ranked)[:limit]]


def test_file_matching_ranks_as_promised_while_typing_and_deleting(tmp_path):
    import random

    from mcode.tui import completion

    rng = random.Random(7)
    words = ["src", "Main", "test", "util", "io", "a", "readme", "s", "x_y"]
    files = sorted(
        {
            "/".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
            + rng.choice([".py", ".md", ""])
            for _ in range(3000)
        }
    )
    repo = make_repo(
        tmp_path / "r", {f: "" for f in files if not any(f.startswith(g + "/") for g in files)}
    )
    index = completion.FileIndex(repo)
    paths = index.load()
    typed = "src/main/ut"
    queries = [typed[:i] for i in range(len(typed) + 1)] + [
        typed[:i] for i in range(len(typed), -1, -1)
    ]
    queries += ["S", "MAIN", "io/", "a.md", "zzz", "x_y/s"]
    for q in queries:
        assert index.match(q) == _ranked_plainly(paths, q, completion.SHOWN), q
    assert "src/" not in index.match("src/")  # the folder as typed is not offered again


def test_a_name_starting_with_the_query_comes_before_a_path_starting_with_it(tmp_path):
    from mcode.tui.completion import FileIndex

    repo = make_repo(tmp_path / "r", {"src/util.py": "", "lib/src.py": "", "lib/a_src": ""})
    index = FileIndex(repo)
    index.load()
    assert index.match("src") == ["src/", "lib/src.py", "src/util.py", "lib/a_src"]


def test_a_model_changed_by_an_editor_prices_the_calls_after_it_at_its_own_price():
    from mcode import events as ev
    from mcode.messages import Usage
    from mcode.tui.status import StatusState

    def call(state: StatusState) -> None:
        tokens = Usage(input_tokens=10_000, output_tokens=1_000, cached_tokens=4_000)
        state.take(ev.Usage.of(tokens, total=tokens))

    state = StatusState(model="gpt-4o", provider="openai")
    call(state)
    state.take(
        ev.ModelChanged(
            provider="openai", model="gpt-4o-mini", context_window=1, thinking="unavailable"
        )
    )
    call(state)
    assert state.cost == pytest.approx(0.03 + 0.0018)
    state.take(
        ev.ModelChanged(provider="openai", model="m", context_window=1, thinking="unavailable")
    )
    call(state)
    assert state.cost is None and "$" not in state.render(now=0).plain
    state.new_session()
    state.model = "gpt-4o"
    call(state)
    assert state.cost == pytest.approx(0.03)
    state.other_models = True  # /team with roles on models of their own
    assert state.cost is None and "a team ran roles" in state.usage_text()


def test_a_file_made_later_is_offered_once_the_list_is_read_again(tmp_path):
    from mcode.tui.completion import FileIndex

    repo = make_repo(tmp_path / "r", {"old.py": ""})
    index = FileIndex(repo)
    assert index.match("py") == []  # not read yet: nothing, and no wait for git
    index.refresh()
    index._reading.join(10)
    assert index.match("py") == ["old.py"]
    (repo / "made_later.py").write_text("")
    index.refresh(older_than=10)  # read a moment ago: kept
    assert index._reading is not None
    index._reading.join(10)
    assert index.match("made") == []
    index.refresh()
    index._reading.join(10)
    assert index.match("made") == ["made_later.py"]
