"""The computer tool on a real X server (Xvfb) with a known Tk app: what it captures, where it
clicks, what it types, and how it fails without a display or xdotool."""

from __future__ import annotations

import asyncio
import base64
import io
import subprocess
from pathlib import Path
from typing import Any

import pytest
from computer_fixtures import (
    BLUE,
    BUTTON_CENTRE,
    ENTRY_CENTRE,
    RED,
    needs_x,
    scaled,
    x_apps,
)

from mcode import events as ev
from mcode.computer.display import ComputerUnavailable, find_display
from mcode.computer.input import XdoTool
from mcode.computer.tool import ComputerTool
from mcode.errors import ToolError
from mcode.messages import ImagePart, Message, TextPart
from mcode.tools.base import ToolContext

PIL = pytest.importorskip("PIL.Image")

x_app = pytest.fixture(x_apps)
SIZES = {"1024x768": ((1024, 768), (1024, 768)), "1920x1080": ((1920, 1080), (1280, 720))}


def run(tool: ComputerTool, args: dict[str, Any], events: list[ev.Payload] | None = None) -> Any:
    ctx = ToolContext(
        workspace=None, call_id="call-1", emit_event=(events if events is not None else []).append
    )
    return asyncio.run(tool.run(args, ctx))


def pixels(part: ImagePart) -> Any:
    return PIL.open(io.BytesIO(base64.b64decode(part.data))).convert("RGB")


def centre(box: tuple[int, int, int, int]) -> tuple[int, int]:
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


@needs_x
@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_a_screenshot_shows_the_app_at_known_pixels_scaled_to_fit(x_app, size: str) -> None:
    screen, shown = SIZES[size]
    app = x_app(screen)
    tool = ComputerTool.open(app.name, settle=0)
    assert f"{shown[0]}x{shown[1]} pixels" in tool.spec().description
    assert tool.spec().display == shown

    result = run(tool, {"action": "screenshot"})

    assert not result.is_error, result.content
    image = pixels(result.images[0])
    assert image.size == shown
    assert f"Screenshot {shown[0]}x{shown[1]}" in result.content
    assert image.getpixel(scaled(centre(RED), screen, shown)) == (255, 0, 0)
    assert image.getpixel(scaled(centre(BLUE), screen, shown)) == (0, 0, 255)
    assert image.getpixel(scaled((500, 600), screen, shown)) == (255, 255, 255)


@needs_x
@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_click_type_and_click_in_screenshot_pixels_save_the_text(x_app, size: str) -> None:
    screen, shown = SIZES[size]
    app = x_app(screen)
    tool = ComputerTool.open(app.name, settle=0.1)
    run(tool, {"action": "screenshot"})
    events: list[ev.Payload] = []

    result = run(
        tool,
        {
            "actions": [
                {"action": "left_click", "coordinate": list(scaled(ENTRY_CENTRE, screen, shown))},
                {"action": "type", "text": "Invoice 4711: 99.50 EUR"},
                {"action": "left_click", "coordinate": list(scaled(BUTTON_CENTRE, screen, shown))},
            ]
        },
        events,
    )

    assert not result.is_error, result.content
    assert app.saved() == "Invoice 4711: 99.50 EUR"
    assert len(result.images) == 1  # a fresh screenshot after the actions
    actions = [e for e in events if isinstance(e, ev.ComputerAction)]
    assert [a.action for a in actions] == ["left_click", "type", "left_click", "screenshot"]
    assert actions[0].coordinate == scaled(ENTRY_CENTRE, screen, shown)
    assert actions[0].size == f"{shown[0]}x{shown[1]}"
    assert all(a.id == "call-1" for a in actions)


@needs_x
@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_a_point_of_the_screenshot_is_the_same_point_on_the_screen(x_app, size: str) -> None:
    screen, shown = SIZES[size]
    app = x_app(screen)
    tool = ComputerTool.open(app.name, settle=0)
    model_point = (shown[0] * 3 // 4, shown[1] // 3)

    run(tool, {"action": "mouse_move", "coordinate": list(model_point)})
    where = subprocess.run(
        ["xdotool", "getmouselocation", "--shell"],
        env={"DISPLAY": app.name, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = dict(line.split("=") for line in where.split())
    x, y = int(values["X"]), int(values["Y"])
    # The screen pixel under the centre of the shown pixel.
    assert (x, y) == (
        int((model_point[0] + 0.5) * screen[0] / shown[0]),
        int((model_point[1] + 0.5) * screen[1] / shown[1]),
    )
    answer = run(tool, {"action": "cursor_position"})
    assert answer.content == f"The mouse is at [{model_point[0]}, {model_point[1]}]."
    assert answer.images == []


@needs_x
def test_a_coordinate_outside_the_screenshot_is_refused_with_its_size(x_app) -> None:
    app = x_app((1920, 1080))
    tool = ComputerTool.open(app.name, settle=0)
    with pytest.raises(ToolError) as e:
        run(tool, {"action": "left_click", "coordinate": [1500, 100]})
    assert "outside the 1280x720 screenshot" in e.value.message
    with pytest.raises(ToolError, match="unknown action 'click'"):
        run(tool, {"action": "click", "coordinate": [10, 10]})
    with pytest.raises(ToolError, match="type needs text"):
        run(tool, {"action": "type"})


@needs_x
def test_screenshots_are_files_and_the_transcript_holds_their_path(x_app, tmp_path: Path) -> None:
    app = x_app((1024, 768))
    shots = tmp_path / "screenshots" / "session"
    tool = ComputerTool.open(app.name, settle=0, shots_dir=shots)

    part = run(tool, {"action": "screenshot"}).images[0]

    assert part.ref == str(shots / "00001.png")
    assert Path(part.ref).read_bytes() == base64.b64decode(part.data)
    stored = Message("tool", (TextPart("shot"), part), tool_call_id="c").to_dict()
    assert "data" not in stored["parts"][1] and stored["parts"][1]["ref"] == part.ref
    assert Message.from_dict(stored).parts[1] == part  # read back from the file
    Path(part.ref).unlink()
    gone = Message.from_dict(stored).parts[1]
    assert isinstance(gone, TextPart) and "no longer there" in gone.text


def test_without_a_display_the_error_names_display_and_virtual_display() -> None:
    with pytest.raises(ComputerUnavailable) as e:
        find_display({})
    assert "DISPLAY is not set" in e.value.message
    assert "--virtual-display" in e.value.hint


def test_without_xdotool_the_error_names_it_and_its_package(tmp_path: Path) -> None:
    with pytest.raises(ComputerUnavailable) as e:
        XdoTool(":0", env={"PATH": str(tmp_path)})
    assert "needs xdotool" in e.value.message
    assert "apt-get install xdotool" in e.value.hint


@needs_x
def test_a_display_that_is_not_there_is_a_clear_error() -> None:
    with pytest.raises(ComputerUnavailable) as e:
        ComputerTool.open(":87")
    assert ":87" in e.value.message


def test_pruning_keeps_the_users_images_and_reuses_pruned_messages() -> None:
    from mcode.agent.images import ImagePruner

    shot = ImagePart("image/png", "AAAA", source="screenshot")
    mine = user_message_with_image()
    history = [mine] + [
        Message("tool", (TextPart(f"shot {i}"), shot), tool_call_id=f"c{i}") for i in range(5)
    ]
    pruner = ImagePruner(keep=2, step=2)

    sent = pruner.prune(history)

    assert sent[0] is mine  # the user's own image always goes
    assert [sum(isinstance(p, ImagePart) for p in m.parts) for m in sent[1:]] == [0, 0, 1, 1, 1]
    assert "omitted" in sent[1].parts[1].text  # type: ignore[union-attr]
    again = pruner.prune(history)
    assert again[1] is sent[1]  # the same object: the request builders' memo serves its bytes
    assert history[1].parts[1] is shot  # history itself is untouched


def user_message_with_image() -> Message:
    from mcode.messages import user_message

    return user_message("look", (ImagePart("image/png", "BBBB", source="mine.png"),))


@needs_x
def test_key_presses_xdotool_keysyms_in_the_focused_entry(x_app) -> None:
    app = x_app((1024, 768))
    tool = ComputerTool.open(app.name, settle=0)
    result = run(
        tool,
        {
            "actions": [
                {"action": "triple_click", "coordinate": list(ENTRY_CENTRE)},
                {"action": "type", "text": "abcd"},
                {"action": "key", "text": "BackSpace"},
                {"action": "key", "text": "Home"},
                {"action": "type", "text": ">"},
                {"action": "left_click", "coordinate": list(BUTTON_CENTRE)},
            ]
        },
    )
    assert not result.is_error, result.content
    assert app.saved() == ">abc"
    with pytest.raises(ToolError) as e:
        run(tool, {"action": "key", "text": "NoSuchKeyAnywhere"})
    assert "no key named 'NoSuchKeyAnywhere'" in e.value.message and "keysyms" in e.value.hint


@needs_x
def test_a_region_is_captured_alone(x_app) -> None:
    from mcode.computer.capture import capture

    app = x_app((1024, 768))
    shot = capture(app.name, region=(RED[0], RED[1], 80, 80))
    image = PIL.open(io.BytesIO(shot.data)).convert("RGB")
    assert image.size == (80, 80)
    assert image.getcolors() == [(80 * 80, (255, 0, 0))]  # one colour, every pixel
    g = shot.geometry
    assert (g.left, g.top, g.to_screen(0, 0)) == (40, 40, (40, 40))


def test_an_image_over_the_byte_limit_becomes_a_jpeg_then_smaller() -> None:
    from mcode.computer.capture import encode

    noise = PIL.effect_noise((1920, 1080), 100).convert("RGB")  # compresses badly, like a photo
    as_png = encode(noise, (0, 0, 1920, 1080))
    assert as_png.media_type == "image/png" and as_png.geometry.shown == (1280, 720)

    limit = len(as_png.data) // 2
    jpeg = encode(noise, (0, 0, 1920, 1080), max_bytes=limit)
    assert jpeg.media_type == "image/jpeg" and len(jpeg.data) <= limit
    assert jpeg.geometry.shown == (1280, 720)

    tiny = encode(noise, (0, 0, 1920, 1080), max_bytes=len(jpeg.data) // 3)
    assert len(tiny.data) <= len(jpeg.data) // 3
    assert tiny.geometry.shown[0] < 1280
    w, h = tiny.geometry.shown
    assert abs(w / h - 16 / 9) < 0.02  # the aspect ratio is kept
    sx, sy = tiny.geometry.to_screen(w - 1, h - 1)  # the last shown pixel: the screen's corner
    assert 1920 - 1920 / w <= sx <= 1919 and 1080 - 1080 / h <= sy <= 1079


@needs_x
def test_scroll_moves_the_list_and_a_drag_moves_the_slider(x_app) -> None:
    app = x_app((1024, 768))
    tool = ComputerTool.open(app.name, settle=0.2)
    top_row = (450, 45)  # the list's first row is red until it scrolls away
    assert pixels(run(tool, {"action": "screenshot"}).images[0]).getpixel(top_row) == (255, 0, 0)

    scrolled = run(
        tool,
        {"action": "scroll", "coordinate": [500, 140], "scroll_direction": "down",
         "scroll_amount": 3},
    )  # fmt: skip
    assert not scrolled.is_error, scrolled.content
    assert pixels(scrolled.images[0]).getpixel(top_row) != (255, 0, 0)

    # The slider's knob starts at the left of its trough (value 0); drag it to the right end.
    run(
        tool, {"action": "left_click_drag", "start_coordinate": [60, 430], "coordinate": [435, 430]}
    )
    value = app.out.with_name(app.out.name + ".scale")
    assert value.exists() and int(value.read_text()) >= 90


def test_an_allow_rule_can_let_the_computer_look_but_not_act() -> None:
    from mcode.computer.capture import Geometry
    from mcode.permissions import Permissions

    tool = ComputerTool(":0", xdo=None, screen=Geometry(0, 0, 1024, 768, (1024, 768)))  # type: ignore[arg-type]
    rules = Permissions("ask", allow=["computer(screenshot)"])

    look = rules.check(tool, {"action": "screenshot"})
    click = rules.check(tool, {"action": "left_click", "coordinate": [1, 1]})
    both = rules.check(
        tool, {"actions": [{"action": "screenshot"}, {"action": "type", "text": "x"}]}
    )

    assert look.action == "allow"
    assert (click.action, both.action) == ("ask", "ask")
    assert "--allow-computer" in click.reason
