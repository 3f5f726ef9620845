"""A small Tk app at known places, for the computer tests (run with Debian's /usr/bin/python3,
whose python3-tk this is; mcode's Python need not have tkinter).

    python3 tests/computer_app.py OUT_FILE [READY_FILE [--busy]]

The window fills the screen from (0, 0) on a white background (Xvfb runs no window manager, so
nothing moves it). At known screen pixels:

    red square      (40, 40)   to (120, 120)        pixel checks of the capture
    blue square     (160, 40)  to (240, 120)
    entry           (40, 200)  300x40               click it, type
    "Save" button   (40, 300)  160x50               writes the entry's text to OUT_FILE
    list            (400, 40)  200x200              100 rows, the first on red (scroll it)
    slider          (40, 400)  400x60, 0..100       writes its value to OUT_FILE.scale (drag it)

READY_FILE is written once the window is mapped and drawn: "PID DISPLAY". ``--busy`` fills the right of the
screen with lines of text (what a benchmark should capture: flat colours compress too well).
"""

from __future__ import annotations

import os
import sys
import tkinter as tk
from pathlib import Path

RED = (40, 40, 120, 120)
BLUE = (160, 40, 240, 120)
ENTRY = (40, 200, 300, 40)  # x, y, width, height
BUTTON = (40, 300, 160, 50)
LIST = (400, 40, 200, 200)
SLIDER = (40, 400, 400, 60)


def main() -> None:
    out = Path(sys.argv[1])
    ready = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    root = tk.Tk()
    width, height = root.winfo_screenwidth(), root.winfo_screenheight()
    root.geometry(f"{width}x{height}+0+0")
    root.overrideredirect(True)  # no decorations: the client area starts at (0, 0)
    root.configure(background="white")
    for box, colour in ((RED, "#ff0000"), (BLUE, "#0000ff")):
        x0, y0, x1, y1 = box
        tk.Frame(root, background=colour, width=x1 - x0, height=y1 - y0).place(x=x0, y=y0)
    entry = tk.Entry(root, font=("TkFixedFont", 14))
    x, y, w, h = ENTRY
    entry.place(x=x, y=y, width=w, height=h)

    def save() -> None:
        out.write_text(entry.get(), encoding="utf-8")

    button = tk.Button(root, text="Save", command=save)
    x, y, w, h = BUTTON
    button.place(x=x, y=y, width=w, height=h)

    if len(sys.argv) > 3 and sys.argv[3] == "--busy":  # a screen full of text (the benchmark)
        text = tk.Text(root, font=("TkFixedFont", 11), wrap="char", borderwidth=0)
        text.place(x=380, y=0, width=width - 380, height=height)
        words = [
            "invoice",
            "total",
            "amount",
            "due",
            "VAT",
            "19%",
            "net",
            "1234.50",
            "EUR",
            "ACME",
            "GmbH",
            "order",
            "4711",
        ]
        for i in range(height // 14):
            line = " ".join(words[(i * 7 + j) % len(words)] for j in range(width // 60))
            text.insert("end", f"{i:04d} {line}\n", ("odd" if i % 2 else "even",))
        text.tag_configure("odd", foreground="#204080", background="#f4f4ff")

    rows = tk.Listbox(root, font=("TkFixedFont", 12), borderwidth=0, highlightthickness=0)
    for i in range(100):
        rows.insert("end", f"row {i}")
    rows.itemconfig(0, background="#ff0000")
    x, y, w, h = LIST
    rows.place(x=x, y=y, width=w, height=h)

    def slid(value: str) -> None:
        out.with_name(out.name + ".scale").write_text(value)

    slider = tk.Scale(root, from_=0, to=100, orient="horizontal", command=slid)
    x, y, w, h = SLIDER
    slider.place(x=x, y=y, width=w, height=h)

    def mapped() -> None:
        root.update_idletasks()
        if ready is not None:
            ready.write_text(f"{os.getpid()} {os.environ.get('DISPLAY', '')}")

    root.after(300, mapped)
    root.mainloop()


if __name__ == "__main__":
    main()
