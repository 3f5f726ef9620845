"""What a screenshot costs: capture, scale, encode, bytes; and what pruning saves over a run.

    python tests/bench/computer.py [--runs 20]

Part 1, on Xvfb (started here) showing tests/computer_app.py with ``--busy`` (its squares, entry
and button, and the rest of the screen full of lines of text: flat colours alone compress too
well to be typical): for screens of 1280x800 and 1920x1080, the median of N captures of each
stage — ``grab`` (mss), ``scale`` (Pillow, LANCZOS, to fit 1280x800), ``encode`` (PNG at level
1, the default, or JPEG at quality 80) — and the bytes of the image sent.

Part 2, arithmetic on the real pruner (mcode/agent/images.py): a 50-call run where every call
returns a 1280x800 screenshot; image tokens summed over all 50 requests, each image counted as
Anthropic bills it ((w*h)/750 = 1,365 tokens), with every screenshot kept and with the newest
3 kept (the cut moving in steps of 3), and how many requests broke the cached prefix.
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mcode.agent.images import ImagePruner
from mcode.computer.capture import encode, grab
from mcode.computer.display import VirtualDisplay
from mcode.messages import ImagePart, Message, TextPart, ToolCall, user_message

HERE = Path(__file__).resolve().parent
APP = HERE.parent / "computer_app.py"
SCREENS = ((1280, 800), (1920, 1080))
TOKENS_PER_IMAGE = 1280 * 800 // 750


def captures(runs: int) -> None:
    print("| screen | format | shown | grab ms | scale+encode ms | total ms | bytes |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for size in SCREENS:
        with tempfile.TemporaryDirectory() as tmp:
            ready = Path(tmp) / "ready"
            app = f"/usr/bin/python3 {APP} {tmp}/out {ready} --busy"
            with VirtualDisplay(size, app=app) as display:
                deadline = time.monotonic() + 20
                while not ready.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.5)  # the text is drawn after the window maps
                for fmt in ("png", "jpeg"):
                    grabs, encodes, sizes = [], [], []
                    shown = ""
                    for _ in range(runs):
                        t0 = time.perf_counter()
                        image, box = grab(display.name)
                        t1 = time.perf_counter()
                        shot = encode(image, box, image_format=fmt)  # type: ignore[arg-type]
                        t2 = time.perf_counter()
                        grabs.append((t1 - t0) * 1000)
                        encodes.append((t2 - t1) * 1000)
                        sizes.append(len(shot.data))
                        shown = shot.geometry.size_text
                    g, e = statistics.median(grabs), statistics.median(encodes)
                    print(
                        f"| {size[0]}x{size[1]} | {fmt} | {shown} | {g:.1f} | {e:.1f} | "
                        f"{g + e:.1f} | {statistics.median(sizes):,.0f} |"
                    )


def pruning(calls: int = 50, keep: int = 3) -> None:
    shot = ImagePart("image/png", "x" * 100, source="screenshot")
    history: list[Message] = [user_message("do the task")]
    rows = {"every screenshot": None, f"newest {keep} (steps of {keep})": ImagePruner(keep)}
    totals = dict.fromkeys(rows, 0)
    breaks = dict.fromkeys(rows, 0)
    last: dict[str, list[Message]] = {}
    for i in range(calls):
        call = ToolCall(f"c{i}", "computer", '{"action":"screenshot"}')
        history.append(Message("assistant", tool_calls=(call,)))
        history.append(
            Message("tool", (TextPart("Screenshot 1280x800"), shot), tool_call_id=call.id)
        )
        for name, pruner in rows.items():
            sent = history if pruner is None else pruner.prune(history)
            totals[name] += (
                sum(isinstance(p, ImagePart) for m in sent for p in m.parts) * TOKENS_PER_IMAGE
            )
            before = last.get(name, [])
            if any(a is not b for a, b in zip(before, sent, strict=False)):
                breaks[name] += 1  # an earlier message changed: the cached prefix ends there
            last[name] = list(sent)
    print(
        f"\n| {calls} screenshot calls | image tokens sent, all requests | saved | prefix breaks |"
    )
    print("| --- | ---: | ---: | ---: |")
    full = totals["every screenshot"]
    for name in rows:
        saved = f"{1 - totals[name] / full:.0%}" if name != "every screenshot" else "-"
        print(f"| {name} | {totals[name]:,} | {saved} | {breaks[name]} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    captures(args.runs)
    pruning()
    return 0


if __name__ == "__main__":
    sys.exit(main())
