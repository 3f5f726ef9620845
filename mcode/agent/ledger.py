"""The task ledger: what a compacted conversation keeps of the work.

When older turns are dropped to fit the window, the model must not lose the task. The ledger has
two kinds of sections:

- **Recorded by mcode** from the history itself, exact and never paraphrased: the goal and every
  later request or steer in the user's own words, the files read and changed, the commands run
  with their outcome, the tool calls that failed. A summary written by a model can drop a
  constraint the user added in passing; these sections cannot.
- **Written by the model** when it summarises: decisions, failed approaches (and why), key
  identifiers, progress, open items. The model sees the previous ledger in what it summarises, so
  it carries forward what still holds.

The ledger accumulates across compactions (recorded sections are merged, the model's sections
replaced by its newer summary) and is re-injected verbatim as the first message of the compacted
history, every time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from mcode.messages import Message

# The first line of the ledger message; also how a ledger is recognised in history.
LEDGER_HEADER = (
    "[mcode: the conversation was compacted to fit the context window. This task ledger "
    "replaces the earlier messages; it is complete and current. Continue the work from it and "
    "from the messages after it.]"
)

# Sections the model writes (heading -> what it is asked for), in ledger order.
MODEL_SECTIONS: dict[str, str] = {
    "Decisions": "choices made and why (design, approach, what the user agreed to)",
    "Failed approaches": "what was tried and did not work, and why, so it is not tried again",
    "Identifiers": "exact names that matter: functions, classes, variables, error messages, "
    "URLs, versions, test names",
    "Progress": "what is done and verified so far, and the state the work is in now",
    "Open items": "what remains to do, in order, including anything promised to the user",
}

# How the summary request's ask begins (tests and benchmarks recognise the request by it).
SUMMARY_ASK = "The conversation is about to be compacted"

MAX_READ = 30
FIT_FILES = 10  # files changed and read a ledger keeps when it must shrink to fit the window
MAX_COMMANDS = 25
MAX_FAILURES = 15
MAX_REQUEST_CHARS = 8_000  # per request; a pasted log keeps its head and tail
MAX_SECTION_CHARS = 4_000  # per model-written section


@dataclass(slots=True)
class Ledger:
    goal: str = ""
    requests: list[str] = field(default_factory=list)  # later requests and steers, verbatim
    files: dict[str, str] = field(default_factory=dict)  # path -> created/written/edited
    read: list[str] = field(default_factory=list)  # paths read, latest last
    commands: list[str] = field(default_factory=list)  # "$ cmd -> ok" / "-> failed: ..."
    failures: list[str] = field(default_factory=list)  # "read(src/x.py): no such file"
    sections: dict[str, str] = field(default_factory=dict)  # the model's, by heading

    def to_dict(self) -> dict[str, Any]:
        # Shallow copies, not dataclasses.asdict: asdict deep-copies every string of a ledger
        # that lists every file a long run wrote, twice per compaction (the soak's profile).
        return {
            "goal": self.goal,
            "requests": list(self.requests),
            "files": dict(self.files),
            "read": list(self.read),
            "commands": list(self.commands),
            "failures": list(self.failures),
            "sections": dict(self.sections),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ledger:
        return cls(
            goal=d.get("goal", ""),
            requests=list(d.get("requests", [])),
            files=dict(d.get("files", {})),
            read=list(d.get("read", [])),
            commands=list(d.get("commands", [])),
            failures=list(d.get("failures", [])),
            sections=dict(d.get("sections", {})),
        )

    def record(self, messages: list[Message]) -> None:
        """Add what ``messages`` (the part of history being compacted away, without the
        previous ledger message) show."""
        results = {m.tool_call_id: m for m in messages if m.role == "tool"}
        for m in messages:
            if m.role == "user":
                text = m.text.strip()
                if not text:
                    continue
                text = _clip(text, MAX_REQUEST_CHARS)
                if not self.goal:
                    self.goal = text
                else:
                    self.requests.append(text)
            elif m.role == "assistant":
                for call in m.tool_calls:
                    result = results.get(call.id)
                    if result is not None:
                        self._record_call(call.name, call.arguments, result)
        del self.read[:-MAX_READ]
        del self.commands[:-MAX_COMMANDS]
        del self.failures[:-MAX_FAILURES]

    def _record_call(self, name: str, arguments: str, result: Message) -> None:
        args = _parse(arguments)
        failed = result.is_error
        error = _first_line(result.text.removeprefix("Error: "))
        if name == "bash":
            command = _one_line(str(args.get("command", arguments)), 200)
            outcome = f"failed: {_last_line(result.text)}" if failed else "ok"
            self.commands = [c for c in self.commands if not c.startswith(f"$ {command} ->")]
            self.commands.append(f"$ {command} -> {outcome}")
            return
        path = args.get("path") or args.get("file_path")
        if name == "read" and isinstance(path, str) and not failed:
            self.read = [p for p in self.read if p != path] + [path]
            return
        if name in ("write", "edit") and isinstance(path, str) and not failed:
            if self.files.get(path) != "created":  # created, then edited: still new
                how = "written" if name == "write" else "edited"
                self.files[path] = "created" if result.text.startswith("created ") else how
            return
        if failed:
            subject = path if isinstance(path, str) else _one_line(arguments, 80)
            entry = f"{name}({subject}): {_one_line(error, 200)}"
            if entry not in self.failures:
                self.failures.append(entry)

    def take_summary(self, text: str) -> bool:
        """Adopt the model's summary (Markdown with the MODEL_SECTIONS headings). A summary
        without the headings is kept whole under Progress. False if it was empty."""
        text = text.strip()
        if not text:
            return False
        found = _split_sections(text)
        self.sections = {
            name: _clip(body, MAX_SECTION_CHARS) for name, body in found.items() if body
        } or {"Progress": _clip(text, MAX_SECTION_CHARS * 2)}
        return True

    def render(self, max_chars: int | None = None) -> str:
        """The ledger as the user message that heads the compacted history, at most
        ``max_chars`` long (a small window must not be filled by its own ledger). To fit, it
        gives up, in this order: old commands and failures, the model's sections (clipped),
        all but the newest files changed and read (git and the disk still know them), the
        oldest later requests (counted in a note: the goal and the newest stay verbatim), and
        last the goal's middle. The user's words go last: a long run changes hundreds of files,
        and that list must not push out a requirement the user gave (tests/bench/soak.py)."""
        text = self._render(self.requests, self.commands, self.failures, self.sections)
        if max_chars is None or len(text) <= max_chars:
            return text
        commands, failures = self.commands[-5:], self.failures[-3:]
        sections = {k: _clip(v, 600) for k, v in self.sections.items()}
        requests = list(self.requests)
        text = self._render(requests, commands, failures, sections)
        if len(text) > max_chars:
            files = dict(list(self.files.items())[-FIT_FILES:])
            text = self._render(requests, commands, failures, sections, 0, files)
        else:
            files = self.files
        dropped = 0
        while len(text) > max_chars and requests:
            requests.pop(0)
            dropped += 1
            text = self._render(requests, commands, failures, sections, dropped, files)
        if len(text) > max_chars:
            text = _clip(text, max_chars)
        return text

    def _render(
        self,
        requests: list[str],
        commands: list[str],
        failures: list[str],
        sections: dict[str, str],
        dropped: int = 0,
        files: dict[str, str] | None = None,
    ) -> str:
        files = self.files if files is None else files
        read = self.read if files is self.files else self.read[-FIT_FILES:]
        out = [LEDGER_HEADER, "", "## Goal (the user's words)", self.goal or "(none recorded)"]
        if requests or dropped:
            out += ["", "## Later requests and amendments (the user's words, in order)"]
            if dropped:
                out.append(f"[{dropped} earlier requests left out to fit the context window]")
            out += [f"{i}. {_indent(r)}" for i, r in enumerate(requests, dropped + 1)]
        for name in MODEL_SECTIONS:
            body = sections.get(name)
            if body:
                out += ["", f"## {name}", body]
        if files:
            out += ["", "## Files changed"]
            if len(files) < len(self.files):
                out.append(
                    f"[{len(self.files) - len(files)} earlier files left out: see git status]"
                )
            out += [f"- {path} ({how})" for path, how in files.items()]
        if read:
            out += ["", "## Files read (their content is gone from the context: read again)"]
            out.append(", ".join(read))
        if commands:
            out += ["", "## Commands run (latest last)"]
            out += [f"- {c}" for c in commands]
        if failures:
            out += ["", "## Tool calls that failed"]
            out += [f"- {f}" for f in failures]
        return "\n".join(out)


def summary_instruction(extra: str | None = None) -> str:
    """The user message that asks the model for its part of the ledger."""
    headings = "\n".join(f"## {name}\n<{what}>" for name, what in MODEL_SECTIONS.items())
    text = (
        f"{SUMMARY_ASK}: the messages above will be replaced by a "
        "task ledger. mcode records the user's requests word for word, the files changed and "
        "the commands run by itself; write the rest. Answer with exactly these Markdown "
        "sections, terse bullet points, no tool calls, nothing before or after:\n\n"
        f"{headings}\n\n"
        "Carry forward what still holds from any earlier ledger above. Keep exact names, paths, "
        "commands and error messages. Leave a section empty rather than guess."
    )
    if extra:
        text += f"\n\nThe user asks the summary to focus on: {extra}"
    return text


_HEADING = re.compile(r"^#{1,3}\s*(.+?)\s*:?\s*$", re.MULTILINE)


def _split_sections(text: str) -> dict[str, str]:
    known = {name.lower(): name for name in MODEL_SECTIONS}
    found: dict[str, str] = {}
    marks = [(m, known.get(m.group(1).strip("*").lower())) for m in _HEADING.finditer(text)]
    marks = [(m, name) for m, name in marks if name is not None]
    for i, (m, name) in enumerate(marks):
        end = marks[i + 1][0].start() if i + 1 < len(marks) else len(text)
        assert name is not None
        body = text[m.end() : end].strip()
        if body and not re.fullmatch(r"[-*\s]*(none|n/a|<[^>]*>)?[.\s]*", body, re.IGNORECASE):
            found[name] = body
    return found


def _parse(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[… {len(text) - 2 * half} characters left out …]\n{text[-half:]}"


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return _one_line(lines[-1], 120) if lines else "no output"


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _indent(text: str) -> str:
    return text.replace("\n", "\n   ")
