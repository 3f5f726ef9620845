"""The TUI: ``mcode`` with no subcommand. A Textual front end of the Session.

    mcode/tui/launch.py     argv -> settings, store -> McodeApp; the transcript printed on exit
    mcode/tui/app.py        the app: conversation, prompt, status bar; keys -> Session verbs
    mcode/tui/adapter.py    Session.subscribe -> a Textual message per event (in the app's loop)
    mcode/tui/lanes.py      one agent's stream of events -> widgets (sub-agents nest in a card)
    mcode/tui/blocks.py     the widgets: user line, live answer, finished answer, thinking, notes
    mcode/tui/cards.py      tool cards (arguments, status, duration, diffs, output tail), errors
    mcode/tui/approval.py   the permission dialog: allow once / always (a rule) / deny with reason
    mcode/tui/prompt.py     the input: multi-line, history across sessions, @ and / completion
    mcode/tui/paste.py      a pasted path to an image file (a dropped file): attached, not typed
    mcode/tui/commands.py   the built-in slash commands, in a mcode.commands registry
    mcode/tui/status.py     model, thinking, mode, context use, tokens and cost, elapsed
    mcode/tui/transcript.py the session as plain text, for the terminal's scrollback on exit

The app never calls the model or a tool: it calls ``send`` (Enter: steers a running turn,
else starts one), ``send(steer=False)`` (Alt+Enter: a follow-up turn), ``cancel`` (Esc),
``approve`` and ``compact``, and renders the typed events it is sent. Textual is imported only
here, never on the way to ``mcode --version`` or ``mcode exec``.
"""

from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    try:
        from mcode.tui.launch import main as launch

        return launch(args)
    except KeyboardInterrupt:  # Ctrl-C before the app had the terminal (a key once it has)
        return 130
