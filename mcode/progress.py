"""One line per step on stderr for ``mcode exec`` in text mode, so a person sees the agent work
(which model, each tool call and its outcome, retries, denials) while stdout keeps only the
answer for scripts. Built on the event stream like every other front end."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from mcode import events as ev
from mcode.events import Event

MAX_ARGS = 120


class Progress:
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr

    def __call__(self, event: Event, line: str) -> None:
        if event.type in ev.TRANSIENT_TYPES:
            return  # none is shown, and they are the many
        text = self._describe(event)  # the session hands subscribers events already scrubbed
        if text is None or self.out is None:  # stderr closed at start: nowhere to show it
            return
        try:
            print(text, file=self.out, flush=True)
        except (BrokenPipeError, ValueError):
            pass  # stderr closed: progress is a courtesy, never a reason to fail the run

    def _describe(self, event: Event) -> str | None:
        d = event.data
        t = event.type
        if t == ev.SESSION_STARTED:
            how = "resumed session" if d["resumed"] else "session"
            text = (
                f"mcode: {how} {event.session_id[:12]}, {d['provider']}/{d['model']} "
                f"({d['provider_reason']}), permission mode {d['permission_mode']}"
            )
            note = d.get("permission_note")  # what the mode denies, said before any denial
            return f"{text}\nmcode: {note}" if note else text
        if t == ev.TURN_STARTED and d.get("resumed"):
            return "mcode: continuing the interrupted turn"
        if t == ev.STEER_DELIVERED:
            return f"→ steer: {_short(d['text'])}"
        if t == ev.TOOL_REQUESTED:
            return f"→ {d['name']} {_short_args(d['arguments'])}"
        if t == ev.TOOL_FINISHED:
            mark = "✓" if d["ok"] else "✗"
            return f"  {mark} {d['summary'] or d['name']} ({d['duration']:.1f} s)"
        if t == ev.PERMISSION_DECIDED and not d["allowed"]:
            return f"  denied: {d.get('reason', '')}"
        if t == ev.COMPACTION:
            return (
                f"mcode: compacted the conversation ({d['reason']}): "
                f"~{d['tokens_before']:,} → ~{d['tokens_after']:,} tokens of {d['window']:,}, "
                f"{d['kept']} recent messages kept"
            )
        if t == ev.RETRY:
            return f"  retrying in {d['wait']:.1f} s (attempt {d['attempt']}): {d['reason']}"
        if t == ev.ERROR:
            return f"  {d['kind']}: {d['message']}"
        return None


def _short_args(raw: str) -> str:
    try:
        text = json.dumps(json.loads(raw), ensure_ascii=False) if raw.strip() else "{}"
    except json.JSONDecodeError:
        text = raw
    return _short(text)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ARGS else text[: MAX_ARGS - 1] + "…"
