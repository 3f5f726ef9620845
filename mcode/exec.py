"""``mcode exec``: one task, no UI, a result and an exit code (scripts and CI).

Output formats: ``text`` prints the final answer; ``json`` prints one result object at the end;
``stream-json`` prints every event as a JSON line as it happens (the schema is in README.md).
Diagnostics go to stderr. Nothing here waits on a question: a tool call that would ask for
permission is denied, and the denial is an event.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import mimetypes
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from mcode.errors import MCodeError, UsageError
from mcode.messages import ImagePart, clean_text

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_LIMIT, EXIT_DENIED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
MAX_IMAGE_BYTES = 10 * 1024 * 1024


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except MCodeError as e:
        _complain(e)
        return e.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _complain(e: MCodeError) -> None:
    print(f"mcode: error: {e.message}", file=sys.stderr)
    if e.hint:
        print(f"mcode: {e.hint}", file=sys.stderr)


def _print(line: str) -> bool:
    """Print ``line`` to stdout. False when the reader has gone (``| head -1``): stdout then
    points at /dev/null, so later output and the flush at exit are silent, not tracebacks."""
    try:
        print(line, flush=True)
        return True
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "provider": args.provider,
        "model": args.model,
        "base_url": args.base_url,
        "thinking": args.thinking,
        "permission_mode": args.permission_mode,
        "max_turns": args.max_turns,
        "context_window": args.context_window,
        "permissions.add_dirs": args.add_dir or None,
    }


def _read_prompt(args: argparse.Namespace) -> str:
    # sys.stdin is None when the process was started with standard input closed (cron, CI).
    piped = sys.stdin is not None and not sys.stdin.isatty()
    if args.prompt == "-" and sys.stdin is None:
        raise UsageError("'-' reads the prompt from standard input, which is closed")
    if args.prompt == "-" or (args.prompt is None and piped):
        # Bytes, not sys.stdin's locale codec: piped text that is not UTF-8 (a diff of a
        # Latin-1 file) must not end the run.
        text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    else:
        text = clean_text(args.prompt or "")
    if not text.strip():
        raise UsageError(
            "no prompt given", hint="mcode exec 'what to do', or pipe it: ... | mcode exec -"
        )
    return text


def _load_image(path_text: str) -> ImagePart:
    path = Path(path_text).expanduser()
    media_type = mimetypes.guess_type(path.name)[0] or ""
    if media_type not in ("image/png", "image/jpeg", "image/gif", "image/webp"):
        raise UsageError(f"--image {path_text}: not a PNG, JPEG, GIF or WEBP file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"--image {path_text}: cannot read it ({e.strerror})") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise UsageError(
            f"--image {path_text}: {len(data)} bytes is over the 10 MB limit",
            hint="scale it down first",
        )
    return ImagePart(media_type, base64.b64encode(data).decode("ascii"), source=path.name)


async def _run(args: argparse.Namespace) -> int:
    from mcode.config import data_home, load_settings
    from mcode.runtime.build import open_session
    from mcode.runtime.session import TurnOutcome
    from mcode.store import Store

    workspace = Path(args.cwd or os.getcwd()).expanduser().resolve()
    if not workspace.is_dir():
        raise UsageError(f"--cwd {workspace}: no such folder")
    prompt = _read_prompt(args)
    images = tuple(_load_image(p) for p in args.image)
    settings = load_settings(workspace, _flags(args))
    store = Store(data_home() / "sessions.db")
    started = time.monotonic()
    try:
        session = open_session(
            settings, store, interactive=False, resume_id=args.resume, continue_last=args.continue_
        )
        if images and not session.provider.info.supports_images:
            raise UsageError(
                f"the model {session.provider.info.model} does not take images",
                hint="choose a model with image input, or drop --image",
            )
        if args.output_format == "stream-json":

            def show(event: Any, line: str) -> None:
                if not _print(line):
                    session.cancel()  # nobody reads the events any more: stop, as on SIGPIPE

            session.subscribe(show)
        elif args.output_format == "text" and not args.quiet:
            from mcode.progress import Progress

            session.subscribe(Progress())
        session.start(
            cwd=str(workspace),
            provider_reason=settings.provider_reason,
            permission_mode=settings.permission_mode,
            resumed=bool(args.resume or args.continue_),
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, session.cancel)
        try:
            if session.cancel_requested:  # stdout closed before the turn began
                outcome = TurnOutcome("cancelled")
            else:
                outcome = await session.submit(prompt, images)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await session.provider.aclose()

        code = {
            "completed": EXIT_DENIED if session.totals.denials else EXIT_OK,
            "max_turns": EXIT_LIMIT,
            "cancelled": EXIT_INTERRUPTED,
            "error": EXIT_ERROR,
        }[outcome.reason]
        session.finish(result=outcome.text, exit_code=code, reason=outcome.reason)
    finally:
        store.close()

    if outcome.error is not None:
        _complain(outcome.error)
    if code == EXIT_DENIED:
        for d in session.totals.denials:
            print(f"mcode: denied: {d['name']}({d['subject']})", file=sys.stderr)
    if args.output_format == "text":
        if outcome.text:
            _print(clean_text(outcome.text))
    elif args.output_format == "json":
        result = {
            "session_id": session.id,
            "result": outcome.text,
            "reason": outcome.reason,
            "exit_code": code,
            "error": None
            if outcome.error is None
            else {"message": outcome.error.message, "hint": outcome.error.hint},
            "provider": session.provider.info.provider,
            "model": session.provider.info.model,
            "usage": session.totals.usage.to_dict(),
            "model_calls": session.totals.model_calls,
            "tool_calls": session.totals.tool_calls,
            "denials": session.totals.denials,
            "duration_s": round(time.monotonic() - started, 3),
        }
        _print(clean_text(json.dumps(result, ensure_ascii=False)))
    return code


def list_sessions(args: argparse.Namespace) -> int:
    from mcode.config import data_home
    from mcode.store import Store

    try:
        store = Store(data_home() / "sessions.db")
    except MCodeError as e:
        _complain(e)
        return e.exit_code
    cwd = None if args.all else str(Path(args.cwd or os.getcwd()).resolve())
    rows = store.sessions(cwd=cwd, limit=args.limit)
    store.close()
    if not rows:
        print("no sessions" + ("" if args.all else " in this folder (try --all)"))
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.updated_at))
        title = r.title.replace("\n", " ")[:60]
        where = f"  {r.cwd}" if args.all else ""
        if not _print(f"{r.id[:12]}  {when}  {r.provider}/{r.model}  {title}{where}"):
            break
    return 0
