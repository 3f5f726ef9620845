"""What an event costs: serialising it, building it, and emitting it through a Session.

    python tests/bench/events.py [--number 200000]

Rows (µs of CPU time per event, the best of 7 repeats of ``--number`` calls; CPU time, not wall
time, so that other work on a shared machine counts less): ``Event.to_json`` of a text
delta built beforehand; building that event and its line (from a payload where this version has
payloads, else from a dict); ``Session.emit`` of a text delta and of a ``usage`` event (stored)
with the store on and a stream-json-like printer subscribed, as ``mcode exec`` runs. The session
is opened as ``mcode exec`` opens it, against a loopback URL that is never called; its store
lives in a temp dir. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import io
import platform
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from mcode import events as ev
from mcode.config import load_settings
from mcode.events import Event
from mcode.messages import Usage
from mcode.runtime.build import open_session
from mcode.store import Store

TEXT = "a piece of the answer, "
TYPED = hasattr(ev, "TextDelta")


def best(fn: Callable[[], object], number: int) -> float:
    """µs of CPU time per call, the best of 7 repeats."""
    times = timeit.repeat(fn, number=number, repeat=7, timer=time.process_time)
    return min(times) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--number", type=int, default=200_000)
    n = ap.parse_args().number
    rows: list[tuple[str, float]] = []

    built = Event("text.delta", {"text": TEXT}, 7, "9c0f" * 8, "a1b2c3d4e5f6", 1764140000.125)
    rows.append(("Event.to_json, text delta", best(built.to_json, n)))

    if TYPED:

        def build() -> str:
            return Event.of(ev.TextDelta(text=TEXT), 7, "s", "t", 1764140000.125).to_json()

        label = "payload -> Event -> line, text delta"
    else:

        def build() -> str:
            return Event("text.delta", {"text": TEXT}, 7, "s", "t", 1764140000.125).to_json()

        label = "dict -> Event -> line, text delta"
    rows.append((label, best(build, n)))

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        settings = load_settings(
            home,
            flags={"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
            env={"XDG_CONFIG_HOME": str(home / "cfg"), "HOME": str(home)},
        )
        session = open_session(settings, Store(home / "sessions.db"), interactive=False)
        out = io.StringIO()

        def printer(event: Event, line: str) -> None:
            out.write(line + "\n")
            if out.tell() > 1 << 20:
                out.seek(0)
                out.truncate()

        session.subscribe(printer)
        session.start(cwd=tmp, provider_reason="bench", permission_mode="ask", resumed=False)
        session.turn_id = "a1b2c3d4e5f6"
        call = Usage(1000, 20, 900, 0)
        if TYPED:

            def delta() -> object:
                return session.emit(ev.TextDelta(text=TEXT))

            def usage() -> object:
                return session.emit(
                    ev.Usage.of(call, total=call, context_tokens=1020, context_window=204800)
                )
        else:

            def delta() -> object:
                return session.emit("text.delta", text=TEXT)

            def usage() -> object:
                return session.emit(
                    "usage",
                    **call.to_dict(),
                    total=call.to_dict(),
                    context_tokens=1020,
                    context_window=204800,
                )

        rows.append(("Session.emit, text delta (printed, not stored)", best(delta, n)))
        rows.append(("Session.emit, usage (printed and stored)", best(usage, max(1, n // 20))))

    print(f"machine: {platform.machine()}, Python {platform.python_version()}, payloads: {TYPED}")
    print("\n| what | µs per event |\n| --- | ---: |")
    for what, us in rows:
        print(f"| {what} | {us:.2f} |")


if __name__ == "__main__":
    main()
