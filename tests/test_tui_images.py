"""Images into the TUI's next message without ``/image PATH``: ``/screenshot`` (the screen the
computer tool would see, on a real Xvfb with the Tk app of tests/computer_app.py) and a pasted
file path (what a terminal pastes for a dropped file). Each test checks what the user reads
and what the scripted model server received: the image in the user message's wire content,
or no image at all."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from computer_fixtures import RED, needs_x, x_apps
from helpers import make_repo
from textual import events
from tui_helpers import ask, command, pilot_test, screen_text, type_text, until

from mcode.computer.display import VirtualDisplay
from mcode.store import Store
from mcode.tui.app import McodeApp
from mcode.tui.cards import ErrorCard
from mcode.tui.launch import Launcher

SIZE = (100, 32)
x_app = pytest.fixture(x_apps)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})


def launcher(
    server: Any, repo: Path, home: Path, *, display: str | None = None, model: str = "m"
) -> Launcher:
    """tui_helpers.launcher with ``DISPLAY`` in (or out of) the environment mcode reads."""
    env = {"XDG_CONFIG_HOME": str(home / "cfg"), "HOME": str(home)}
    if display is not None:
        env["DISPLAY"] = display
    flags = {"provider": "openai", "base_url": server.base_url, "model": model}
    return Launcher(repo, Store(home / "sessions.db"), flags, env=env, data_dir=home / "data")


def png(path: Path, width: int = 3, height: int = 2) -> bytes:
    """Write a real (red) PNG at ``path``; its bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def images_sent(body: dict[str, Any]) -> list[bytes]:
    """The images of the request's user messages (Chat Completions ``image_url``), decoded."""
    found = []
    for message in body["messages"]:
        content = message.get("content")
        if message["role"] != "user" or not isinstance(content, list):
            continue
        for block in content:
            if block.get("type") == "image_url":
                found.append(base64.b64decode(block["image_url"]["url"].split(",", 1)[1]))
    return found


# -- /screenshot ------------------------------------------------------------------------------


@needs_x
@pilot_test
async def test_screenshot_goes_with_the_next_message_and_is_kept(
    model_server, repo, tmp_path, x_app
):
    PIL = pytest.importorskip("PIL.Image")
    screen = x_app((800, 600))
    server = model_server([{"text": "a red square"}])
    home = tmp_path / "home"
    app = McodeApp(launcher(server, repo, home, display=screen.name))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.ready)
        await command(pilot, app, "/screenshot", "attached a screenshot (800x600)")
        assert "it goes with your next message" in screen_text(app)
        await ask(pilot, app, "what is on the screen", 1)
        session_id = app.session.id
    (sent,) = images_sent(server.bodies[0])
    # Kept in the session's screenshots folder, as exec --screenshot keeps it.
    (kept,) = (home / "screenshots" / session_id).glob("attached-*")
    assert kept.name == "attached-1.png" and kept.read_bytes() == sent
    image = PIL.open(io.BytesIO(sent)).convert("RGB")
    assert image.size == (800, 600)
    left, top, right, bottom = RED  # the Tk app's red square: this screen, not another
    assert image.getpixel(((left + right) // 2, (top + bottom) // 2)) == (255, 0, 0)
    # The message text went in the same user message.
    (user,) = [m for m in server.bodies[0]["messages"] if m["role"] == "user"]
    assert any(b.get("text") == "what is on the screen" for b in user["content"])


@pytest.mark.parametrize(
    ("display", "said"),
    [(None, "DISPLAY is not set"), (":987", "cannot capture X display :987")],
    ids=["no-DISPLAY", "bogus-DISPLAY"],
)
@pilot_test
async def test_screenshot_without_a_display_says_why_and_attaches_nothing(
    model_server, repo, tmp_path, display, said
):
    server = model_server([{"text": "fine"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home", display=display))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.ready)
        await command(pilot, app, "/screenshot", said)
        (card,) = app.query(ErrorCard)
        assert card.hint  # what to do about it
        assert app.pending_images == []
        await ask(pilot, app, "go on", 1)  # the app goes on
    assert images_sent(server.bodies[0]) == []
    assert not (tmp_path / "home" / "screenshots").exists()


@needs_x
@pilot_test
async def test_screenshot_for_a_model_without_images_is_refused(model_server, repo, tmp_path):
    server = model_server([{"text": "fine"}])
    home = tmp_path / "home"
    with VirtualDisplay((320, 240)) as screen:  # a screen to capture: refused all the same
        app = McodeApp(launcher(server, repo, home, display=screen.name, model="MiniMax-M2.5"))
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.ready)
            await command(pilot, app, "/screenshot", "MiniMax-M2.5 does not take images")
            assert app.pending_images == []
            await ask(pilot, app, "go on", 1)
    assert images_sent(server.bodies[0]) == []
    assert not (home / "screenshots").exists()


@pilot_test
async def test_screenshot_is_listed_and_completed(model_server, repo, tmp_path):
    server = model_server([])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.ready)
        await command(pilot, app, "/help", "/screenshot  attach a capture of the screen")
        await type_text(pilot, "/scr")
        completions = app.query_one("#completions")
        await until(pilot, lambda: completions.shown)
        offered = [completions.get_option_at_index(i).id for i in range(completions.option_count)]
        assert offered == ["/screenshot "]


# -- a pasted path ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pasted",
    [
        "'{dir}/Shot 1.png'",
        '"{dir}/Shot 1.png"\n',
        "{dir}/Shot\\ 1.png ",
        "file://{dir}/Shot%201.png",
        "shots/Shot 1.png",  # relative: to the workspace, not the test's folder
    ],
    ids=["single-quoted", "double-quoted", "backslash-escaped", "file-url", "relative"],
)
@pilot_test
async def test_a_pasted_image_path_attaches_the_image(model_server, repo, tmp_path, pasted):
    data = png(repo / "shots" / "Shot 1.png")
    server = model_server([{"text": "red"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.ready)
        app.post_message(events.Paste(pasted.format(dir=repo / "shots")))
        await until(pilot, lambda: "attached Shot 1.png" in screen_text(app))
        assert app.prompt.text == ""  # the path is not typed in as well
        await ask(pilot, app, "what colour", 1)
    assert images_sent(server.bodies[0]) == [data]


@pytest.mark.parametrize(
    "pasted",
    ["{dir}/a.txt", "'{dir}/missing.png'", "look at {dir}/pic.png", "{dir}/pic.png\nand this"],
    ids=["not-an-image-name", "missing", "a-sentence", "several-lines"],
)
@pilot_test
async def test_anything_else_pastes_as_text(model_server, repo, tmp_path, pasted):
    png(repo / "pic.png")
    server = model_server([])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    text = pasted.format(dir=repo)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.ready)
        app.post_message(events.Paste(text))
        await until(pilot, lambda: app.prompt.text == text)
        assert app.pending_images == []
        assert "attached" not in screen_text(app)


@pilot_test
async def test_a_pasted_path_to_a_file_that_is_no_image_is_said_and_not_inserted(
    model_server, repo, tmp_path
):
    (repo / "page.png").write_text("<html>saved from a browser</html>\n")
    server = model_server([{"text": "fine"}])
    app = McodeApp(launcher(server, repo, tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.ready)
        app.post_message(events.Paste(str(repo / "page.png")))
        await until(pilot, lambda: "not a PNG, JPEG, GIF or WebP image" in screen_text(app))
        assert app.prompt.text == "" and app.pending_images == []
        await ask(pilot, app, "go on", 1)
    assert images_sent(server.bodies[0]) == []


@pilot_test
async def test_a_pasted_image_path_for_a_model_without_images_stays_a_path(
    model_server, repo, tmp_path
):
    png(repo / "pic.png")
    server = model_server([])
    app = McodeApp(launcher(server, repo, tmp_path / "home", model="MiniMax-M2.5"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.ready)
        app.post_message(events.Paste(str(repo / "pic.png")))
        await until(pilot, lambda: app.prompt.text == str(repo / "pic.png"))
        assert "MiniMax-M2.5 does not take images" in screen_text(app)
        assert app.pending_images == []


@pilot_test
async def test_images_for_a_model_without_images_are_refused_and_kept(model_server, repo, tmp_path):
    """`mcode --image shot.png "what is this"` on a text-only model: nothing is sent, the text
    is back in the prompt and the image still attached (nothing lost); /image is refused
    before it attaches anything."""
    server = model_server([{"text": "fine"}])
    shot = png(repo / "shot.png")
    from mcode.exec_input import load_image

    app = McodeApp(
        launcher(server, repo, tmp_path / "home", model="MiniMax-M2.5"),
        opening={},
        prompt="what is this",
        images=(load_image(str(repo / "shot.png")),),
    )
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "does not take images" in screen_text(app))
        assert app.prompt.text == "what is this"
        assert [base64.b64decode(p.data) for p in app.pending_images] == [shot]
        app.prompt.clear()
        await command(pilot, app, "/image shot.png", "/model NAME")
        assert len(app.pending_images) == 1  # the one kept; /image added none
    assert server.requests == []
