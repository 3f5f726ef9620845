"""One line per step on stderr for ``mcode exec`` in text mode, so a person sees the agent work
(which model, each tool call and its outcome, retries, denials) while stdout keeps only the
answer for scripts. Built on the event stream like every other front end.

Quiet (``-q``, and the ``json`` format, whose stdout is one object at the end) still says why
a run is waiting once the wait gets long: retries of one model call from the second on, or
once they have waited :data:`QUIET_RETRY_AFTER` seconds, so a dead server is never a silent
hang; and, on resume, what the killed run left running."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from mcode import events as ev
from mcode.events import Event

MAX_ARGS = 120
QUIET_RETRY_AFTER = 3.0  # seconds of backoff, within one model call, before -q says so


class Progress:
    def __init__(self, out: TextIO | None = None, *, quiet: bool = False) -> None:
        self.out = out or sys.stderr
        self.quiet = quiet
        self._waited = 0.0  # backoff so far in the current model call's retries

    def __call__(self, event: Event, line: str) -> None:
        if event.type in ev.TRANSIENT_TYPES:
            return  # none is shown, and they are the many
        # The session hands subscribers events already scrubbed.
        text = self._quiet(event) if self.quiet else self._describe(event)
        if text is None or self.out is None:  # stderr closed at start: nowhere to show it
            return
        try:
            print(text, file=self.out, flush=True)
        except (BrokenPipeError, ValueError):
            pass  # stderr closed: progress is a courtesy, never a reason to fail the run

    def _quiet(self, event: Event) -> str | None:
        d = event.data
        if event.type == ev.ERROR and d["kind"] == "leftover":
            return f"mcode: {d['message']}"  # something was killed on your behalf: always said
        if event.type != ev.RETRY:
            return None
        if d["attempt"] == 1:
            self._waited = 0.0  # a new model call's first retry
        long_wait = d["attempt"] >= 2 or self._waited + d["wait"] >= QUIET_RETRY_AFTER
        self._waited += d["wait"]
        return f"mcode: {_retry_line(d)}" if long_wait else None

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
            return f"  {_retry_line(d)}"
        if t == ev.ERROR:
            return f"  {d['kind']}: {d['message']}"
        return None


def _retry_line(d: dict[str, Any]) -> str:
    return f"retrying in {d['wait']:.1f} s (attempt {d['attempt']}): {d['reason']}"


def _short_args(raw: str) -> str:
    try:
        text = json.dumps(json.loads(raw), ensure_ascii=False) if raw.strip() else "{}"
    except json.JSONDecodeError:
        text = raw
    return _short(text)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ARGS else text[: MAX_ARGS - 1] + "…"
