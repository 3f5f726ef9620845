"""The plain REPL's slash commands: each a name, one line of help and a handler that calls
Session verbs (never the model or the tools)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mcode.errors import MCodeError, UsageError

if TYPE_CHECKING:
    from mcode.repl.app import Repl

Handler = Callable[["Repl", str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    handler: Handler


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = Command(name, help, handler)
        return handler

    return register


async def run_command(repl: Repl, line: str) -> None:
    name, _, arg = line[1:].partition(" ")
    found = COMMANDS.get(name.lower())
    if found is None:
        repl.render.say(f"unknown command /{name}; /help lists them")
        return
    try:
        await found.handler(repl, arg.strip())
    except MCodeError as e:
        repl.render.say(f"/{found.name}: {e.message}" + (f"\n  {e.hint}" if e.hint else ""))


@command("help", "list the commands")
async def _help(repl: Repl, arg: str) -> None:
    lines = [f"/{c.name:<10} {c.help}" for c in COMMANDS.values()]
    lines.append("Enter sends (while a turn runs it steers it); Ctrl-C interrupts; Ctrl-D quits")
    repl.render.say("\n".join(lines))


@command("quit", "finish the running turn's cancel and leave")
async def _quit(repl: Repl, arg: str) -> None:
    repl.quit()


COMMANDS["exit"] = Command("exit", "the same as /quit", _quit)


@command("cost", "tokens used so far in this session")
async def _cost(repl: Repl, arg: str) -> None:
    t = repl.session.totals
    u = t.usage
    repl.render.say(
        f"{u.input_tokens:,} in ({u.cached_tokens:,} cached), {u.output_tokens:,} out; "
        f"{t.model_calls} model calls, {t.tool_calls} tool calls, {t.compactions} compactions"
    )


@command("model", "the model this session talks to")
async def _model(repl: Repl, arg: str) -> None:
    info = repl.session.model_info
    repl.render.say(f"{info.provider}/{info.model}, a window of {info.context_window:,} tokens")


@command("thinking", "on | off: model thinking for the next turns, where switchable")
async def _thinking(repl: Repl, arg: str) -> None:
    if arg not in ("on", "off"):
        repl.render.say("usage: /thinking on|off")
        return
    repl.session.set_thinking(arg == "on")
    repl.render.say(f"thinking {arg} from the next model call")


@command("mode", "read-only | ask | auto-edit | full-auto: what tools may do unasked")
async def _mode(repl: Repl, arg: str) -> None:
    if not arg:
        repl.render.say(f"permission mode: {repl.session.permission_mode}")
        return
    repl.session.set_permission_mode(arg)
    repl.render.say(f"permission mode {arg}")


@command("compact", "[focus]: fold older turns into a summary now")
async def _compact(repl: Repl, arg: str) -> None:
    repl.start()

    async def compact() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            if await repl.session.compact(arg or None):
                repl.render.say("compacted")

    # In the background: a compaction asked for during a turn waits for its next step, and
    # the prompt must stay live meanwhile.
    task = asyncio.ensure_future(compact())
    repl.background.add(task)
    task.add_done_callback(repl.background.discard)


@command("image", "PATH: attach an image file to your next message")
async def _image(repl: Repl, arg: str) -> None:
    from mcode.exec_input import load_image

    if not arg:
        raise UsageError("/image needs a file", hint="/image screenshot.png")
    if not repl.session.model_info.supports_images:
        info = repl.session.model_info
        raise UsageError(
            f"{info.provider}/{info.model} takes no images",
            hint="switch to a model that does (mcode chat --plain --model ...)",
        )
    path = Path(repl.cwd or ".", os.path.expanduser(arg))
    repl.pending_images.append(load_image(str(path)))
    repl.render.say(f"attached {arg}: it goes with your next message")


@command("screenshot", "attach the screen (DISPLAY) to your next message")
async def _screenshot(repl: Repl, arg: str) -> None:
    from mcode.computer import attach_screenshot

    if arg:
        raise UsageError("/screenshot takes no arguments", hint="/image PATH attaches a file")
    store = repl.store
    part = await attach_screenshot(
        repl.session.model_info,
        os.environ,
        monitor=repl.monitor,
        folder=store.path.parent / "screenshots" / repl.session.id if store else None,
    )
    repl.pending_images.append(part)
    repl.render.say(f"attached a {part.source}: it goes with your next message")


@command("btw", "QUESTION: a side question, answered beside the running turn")
async def _btw(repl: Repl, arg: str) -> None:
    if not arg:
        raise UsageError("/btw needs a question", hint="/btw what does this flag do?")
    repl.start()

    async def answer() -> None:
        try:
            text = await repl.session.ask_aside(arg)
        except MCodeError as e:
            repl.render.say(f"btw: {e.message}" + (f"\n  {e.hint}" if e.hint else ""))
            return
        repl.render.say(f"btw: {text.strip()}")

    # In the background, as /compact: the running turn and the prompt go on meanwhile.
    task = asyncio.ensure_future(answer())
    repl.background.add(task)
    task.add_done_callback(repl.background.discard)


@command("sessions", "the latest sessions in this folder")
async def _sessions(repl: Repl, arg: str) -> None:
    if repl.store is None:
        repl.render.say("no session store in this run")
        return
    rows = repl.store.sessions(cwd=repl.cwd, limit=10)
    if not rows:
        repl.render.say("no sessions in this folder yet")
        return
    repl.render.say(
        "\n".join(f"{r.id[:12]}  {r.title[:60]}" for r in rows)
        + "\n(mcode chat --plain --resume ID continues one)"
    )
