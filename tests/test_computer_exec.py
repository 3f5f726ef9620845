"""Computer use end to end: ``mcode exec`` on its own Xvfb with the Tk app inside, against the
scripted model server on both wire formats. The server looks at the screenshot it received
(pixel by pixel), then clicks and types; the app's output file proves the actions landed."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from computer_fixtures import BLUE, BUTTON_CENTRE, ENTRY_CENTRE, RED, app_command, needs_x
from helpers import Live, clean_env, make_repo, mcode, stored_events
from model_server import ScriptedServer

from mcode.computer.display import VirtualDisplay

PIL = pytest.importorskip("PIL.Image")

pytestmark = needs_x
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5"}  # models that take images


def args(server: ScriptedServer, wire: str, *extra: str) -> list[str]:
    base = server.base_url if wire == "openai" else server.anthropic_base_url
    return ["exec", "--provider", wire, "--base-url", base, "--model", MODELS[wire], *extra]


def images_sent(body: dict[str, Any], wire: str) -> list[Any]:
    """The images of a request body, decoded, in order."""
    found: list[str] = []
    for message in body["messages"]:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if wire == "openai" and block.get("type") == "image_url":
                found.append(block["image_url"]["url"].split(",", 1)[1])
            for inner in block.get("content", []) if block.get("type") == "tool_result" else []:
                if inner.get("type") == "image":
                    found.append(inner["source"]["data"])
            if block.get("type") == "image":
                found.append(block["source"]["data"])
    return [PIL.open(io.BytesIO(base64.b64decode(data))).convert("RGB") for data in found]


def wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def call(id_: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": [{"id": id_, "name": "computer", "arguments": arguments}]}


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_exec_looks_at_the_screen_then_clicks_and_types_into_the_app(
    tmp_path: Path, wire: str
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    out, ready = tmp_path / "out.txt", tmp_path / "ready"
    seen: dict[str, Any] = {}

    def look(body: dict[str, Any]) -> dict[str, Any]:
        wait_for(ready)  # the app is drawn before the model asks to see it
        return call("call_shot", {"action": "screenshot"})

    def act(body: dict[str, Any]) -> dict[str, Any]:
        (image,) = images_sent(body, wire)
        seen["size"] = image.size
        seen["red"] = image.getpixel(((RED[0] + RED[2]) // 2, (RED[1] + RED[3]) // 2))
        seen["blue"] = image.getpixel(((BLUE[0] + BLUE[2]) // 2, (BLUE[1] + BLUE[3]) // 2))
        return call(
            "call_act",
            {
                "actions": [
                    {"action": "left_click", "coordinate": list(ENTRY_CENTRE)},
                    {"action": "type", "text": "ACME GmbH 1234.00"},
                    {"action": "left_click", "coordinate": list(BUTTON_CENTRE)},
                ]
            },
        )

    with ScriptedServer([look, act, {"text": "Entered the invoice."}]) as server:
        run = mcode(
            *args(server, wire, "--output-format", "stream-json", "--allow-computer"),
            "--virtual-display", "--virtual-display-size", "1024x768",
            "--virtual-display-app", app_command(out, ready),
            "enter the invoice into the app",
            cwd=repo,
            env=clean_env(tmp_path, MCODE_COMPUTER_SETTLE_DELAY="0.2"),
        )  # fmt: skip
        bodies = server.bodies

    assert run.code == 0, run.stderr
    assert seen == {"size": (1024, 768), "red": (255, 0, 0), "blue": (0, 0, 255)}
    assert out.read_text() == "ACME GmbH 1234.00"
    events = run.events()
    actions = [e["data"] for e in events if e["type"] == "computer.action"]
    assert [a["action"] for a in actions] == [
        "screenshot", "left_click", "type", "left_click", "screenshot",
    ]  # fmt: skip
    assert actions[1]["coordinate"] == list(ENTRY_CENTRE) == actions[1]["screen"]
    # The tool as each API expects it, stating the screen's size.
    if wire == "anthropic":
        tool = next(t for t in bodies[0]["tools"] if t["name"] == "computer")
        assert {k: tool[k] for k in ("type", "display_width_px", "display_height_px")} == {
            "type": "computer_20250124", "display_width_px": 1024, "display_height_px": 768,
        }  # fmt: skip
        assert "computer-use-2025-01-24" in server.requests[0].headers["anthropic-beta"]
    else:
        tool = next(t for t in bodies[0]["tools"] if t["function"]["name"] == "computer")
        assert "1024x768 pixels" in tool["function"]["description"]
    # Screenshots are files under the data dir; the store holds their path, not the image.
    session_id = events[0]["session_id"]
    stored = stored_events(tmp_path, session_id)
    results = [e for e in stored if e["type"] == "tool.finished"]
    parts = [p for e in results for p in e["data"]["message"]["parts"] if p["type"] == "image"]
    assert len(parts) == 2 and all("data" not in p for p in parts)
    shots = tmp_path / "data" / "mcode" / "screenshots" / session_id
    assert [p["ref"] for p in parts] == [str(shots / "00001.png"), str(shots / "00002.png")]
    assert all(Path(p["ref"]).stat().st_size > 1000 for p in parts)
    assert "1024x768" in results[0]["data"]["message"]["parts"][0]["text"]


def test_a_headless_run_without_permission_is_refused_and_the_screen_untouched(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    out, ready = tmp_path / "out.txt", tmp_path / "ready"
    type_it = call("c1", {"actions": [{"action": "left_click", "coordinate": list(ENTRY_CENTRE)},
                                      {"action": "type", "text": "nope"},
                                      {"action": "left_click", "coordinate": list(BUTTON_CENTRE)}]})  # fmt: skip
    with ScriptedServer([type_it, {"text": "I could not."}]) as server:
        run = mcode(
            *args(server, "openai", "--output-format", "stream-json"),
            "--virtual-display", "--virtual-display-app", app_command(out, ready),
            "type into the app",
            cwd=repo,
            env=clean_env(tmp_path),
        )  # fmt: skip

    assert run.code == 4, run.stderr
    decided = next(e["data"] for e in run.events() if e["type"] == "permission.decided")
    assert decided["name"] == "computer" and decided["allowed"] is False
    assert decided["by"] == "headless"
    assert "--allow-computer" in decided["reason"]
    assert not [e for e in run.events() if e["type"] == "computer.action"]
    assert not out.exists()


def test_without_a_display_exec_stops_before_the_model_and_says_why(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    env = clean_env(tmp_path)
    env.pop("DISPLAY", None)
    with ScriptedServer([{"text": "never asked"}]) as server:
        run = mcode(*args(server, "openai", "--allow-computer"), "look", cwd=repo, env=env)
        assert server.requests == []
    assert run.code == 2
    assert "DISPLAY is not set" in run.stderr
    assert "--virtual-display" in run.stderr


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_screenshot_attaches_the_screen_to_the_first_message(tmp_path: Path, wire: str) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    out, ready = tmp_path / "out.txt", tmp_path / "ready"
    with ScriptedServer([{"text": "A red and a blue square."}]) as server:
        run = mcode(
            *args(server, wire, "--virtual-display", "--virtual-display-size", "1920x1080"),
            "--virtual-display-app", app_command(out, ready), "--screenshot",
            "what is on the screen?",
            cwd=repo,
            env=clean_env(tmp_path),
        )  # fmt: skip
        body = server.bodies[0]
    assert run.code == 0, run.stderr
    (image,) = images_sent(body, wire)
    assert image.size == (1280, 720)
    # Kept by reference like the tool's: a file, its path in the stored user message.
    (started,) = [e for e in stored_events_of(tmp_path) if e["type"] == "message.user"]
    (part,) = [p for p in started["data"]["message"]["parts"] if p["type"] == "image"]
    assert "data" not in part and Path(part["ref"]).name == "attached-1.png"
    assert PIL.open(part["ref"]).convert("RGB").tobytes() == image.tobytes()
    # No computer tool unless it was allowed: --virtual-display alone offers it, asking.
    assert any("computer" in str(t) for t in body["tools"])


def test_the_computer_for_a_model_without_images_is_a_clear_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    with ScriptedServer([{"text": "never"}]) as server:
        run = mcode(
            "exec", "--provider", "openai", "--base-url", server.base_url, "--model",
            "MiniMax-M2.5", "--allow-computer", "--virtual-display", "click it",
            cwd=repo,
            env=clean_env(tmp_path),
        )  # fmt: skip
        assert server.requests == []
    assert run.code == 2
    assert "MiniMax-M2.5 does not take images, so it cannot see the screen" in run.stderr


def test_screenshot_of_the_users_display_for_a_model_without_images_is_refused(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    with VirtualDisplay((800, 600)) as display, ScriptedServer([{"text": "never"}]) as server:
        run = mcode(
            "exec", "--provider", "openai", "--base-url", server.base_url, "--model",
            "MiniMax-M2.5", "--screenshot", "look",
            cwd=repo,
            env=clean_env(tmp_path, DISPLAY=display.name),  # the user's own screen
        )  # fmt: skip
        assert server.requests == []
    assert run.code == 2
    assert "the model MiniMax-M2.5 does not take images" in run.stderr
    assert "drop --screenshot" in run.stderr


def test_a_long_run_sends_only_the_newest_screenshots_and_moves_the_cut_in_steps(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    out, ready = tmp_path / "out.txt", tmp_path / "ready"

    def first(body: dict[str, Any]) -> dict[str, Any]:
        wait_for(ready)
        return call("s1", {"action": "screenshot"})

    script: list[Any] = [first, *(call(f"s{i}", {"action": "screenshot"}) for i in range(2, 7))]
    with ScriptedServer([*script, {"text": "seen enough"}]) as server:
        run = mcode(
            *args(server, "openai", "--allow-computer", "--virtual-display"),
            "--virtual-display-app", app_command(out, ready), "watch the screen",
            cwd=repo,
            env=clean_env(tmp_path, MCODE_COMPUTER_KEEP_SCREENSHOTS="2",
                          MCODE_COMPUTER_SETTLE_DELAY="0"),
        )  # fmt: skip
        raws = [r.raw for r in server.requests]
        counts = [len(images_sent(b, "openai")) for b in server.bodies]

    assert run.code == 0, run.stderr
    # Keep 2, cut in steps of 2: between 2 and 3 images once there are more than 2.
    assert counts == [0, 1, 2, 3, 2, 3, 2]
    # The request bytes stay prefix-stable except where the cut moved (before 4 and 6 shots).
    stable = [raws[i + 1].startswith(raws[i][:-2]) for i in range(len(raws) - 1)]
    assert stable == [True, True, True, False, True, False]
    omitted = [m for m in server.bodies[-1]["messages"] if "omitted" in str(m.get("content"))]
    assert len(omitted) == 4


def test_in_ask_mode_the_computer_waits_for_an_approve_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    out, ready = tmp_path / "out.txt", tmp_path / "ready"
    type_it = call("c1", {"actions": [{"action": "left_click", "coordinate": list(ENTRY_CENTRE)},
                                      {"action": "type", "text": "approved"},
                                      {"action": "left_click", "coordinate": list(BUTTON_CENTRE)}]})  # fmt: skip
    with ScriptedServer([type_it, {"text": "typed"}]) as server:
        run = Live(
            [*args(server, "openai", "--input-format", "stream-json", "--output-format",
                   "stream-json", "--virtual-display", "--virtual-display-app",
                   app_command(out, ready))],
            cwd=repo,
            env=clean_env(tmp_path, MCODE_COMPUTER_SETTLE_DELAY="0"),
        )  # fmt: skip
        try:
            wait_for(ready)
            run.send(json.dumps({"type": "user", "text": "type approved"}))
            asked = run.until("permission.asked")["data"]
            assert (asked["permission"], asked["subject"]) == (
                "computer",
                "left_click,type,left_click",
            )
            assert not out.exists()  # nothing happened on the screen before the answer
            line = {"type": "approve", "request_id": asked["request_id"], "decision": "allow"}
            run.send(json.dumps(line))
            run.until("turn.finished")
            run.close()
            assert run.wait() == 0, run.stderr
        finally:
            run.kill()
    assert out.read_text() == "approved"


def test_a_resumed_session_sends_its_screenshots_read_back_from_their_files(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    out, ready = tmp_path / "out.txt", tmp_path / "ready"
    env = clean_env(tmp_path, MCODE_COMPUTER_SETTLE_DELAY="0")

    def look(body: dict[str, Any]) -> dict[str, Any]:
        wait_for(ready)
        return call("c1", {"action": "screenshot"})

    flags = ("--allow-computer", "--virtual-display", "--virtual-display-app",
             app_command(out, ready))  # fmt: skip
    with ScriptedServer([look, {"text": "I see two squares."}]) as server:
        first = mcode(*args(server, "openai", "--output-format", "json", *flags), "look",
                      cwd=repo, env=env)  # fmt: skip
        sent = server.bodies[-1]
    assert first.code == 0, first.stderr
    session_id = json.loads(first.stdout)["session_id"]
    (shot,) = (tmp_path / "data" / "mcode" / "screenshots" / session_id).iterdir()

    first_bytes = shot.read_bytes()
    script = [call("c2", {"action": "screenshot"}), {"text": "Still two."}]
    with ScriptedServer(script) as server:
        again = mcode(*args(server, "openai", "--resume", session_id, *flags), "and now?",
                      cwd=repo, env=env)  # fmt: skip
        resumed = server.bodies[0]
    assert again.code == 0, again.stderr
    # The resumed run numbers its screenshots on: the first one is still the history's.
    assert sorted(p.name for p in shot.parent.iterdir()) == ["00001.png", "00002.png"]
    assert shot.read_bytes() == first_bytes
    # The history's screenshot, read from its file, is the same image the first run sent.
    assert images_sent(resumed, "openai")[0].tobytes() == images_sent(sent, "openai")[0].tobytes()
    assert images_sent(resumed, "openai")[0].tobytes() == PIL.open(shot).convert("RGB").tobytes()


def test_the_virtual_display_and_its_app_die_with_a_killed_mcode(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    out, ready = tmp_path / "out.txt", tmp_path / "ready"
    with ScriptedServer([]) as server:
        run = Live(
            [*args(server, "openai", "--input-format", "stream-json", "--virtual-display",
                   "--virtual-display-app", app_command(out, ready))],
            cwd=repo,
            env=clean_env(tmp_path),
        )  # fmt: skip
        try:
            wait_for(ready)
            app_pid = ready.read_text().split()[0]
            (xvfb_pid,) = children(run.proc.pid, "Xvfb")
            os.kill(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
        finally:
            run.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (alive(int(app_pid)) or alive(xvfb_pid)):
        time.sleep(0.05)
    assert not alive(int(app_pid)), "the app outlived mcode"
    assert not alive(xvfb_pid), "Xvfb outlived mcode"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(parent: int, name: str) -> list[int]:
    """The pids of ``parent``'s children called ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if comm == name and ppid == parent:
            found.append(int(entry.name))
    return found


def stored_events_of(home: Path) -> list[dict[str, Any]]:
    """The stored events of the one session under ``home``."""
    (folder,) = (home / "data" / "mcode" / "screenshots").iterdir()
    return stored_events(home, folder.name)


def test_an_untrusted_projects_computer_setting_is_ignored(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo", {".mcode/config.toml": "[computer]\nenabled = true\n", "a.txt": "a\n"}
    )
    with ScriptedServer([{"text": "ok"}]) as server:
        run = mcode(*args(server, "openai"), "hi", cwd=repo, env=clean_env(tmp_path))
        tools = [t["function"]["name"] for t in server.bodies[0]["tools"]]
    assert run.code == 0, run.stderr
    assert "computer" not in tools
    assert "computer.enabled" in run.stderr
