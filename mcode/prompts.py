"""The system prompt: static text plus the project's AGENTS.md.

Static on purpose: no timestamps, no absolute paths, nothing that changes between requests, so the
request prefix (tools -> system -> messages) stays byte-identical and prompt caches hit. It is
short on purpose too: the embedded model has an 8K window, and remote models do not need 40 KB of
instructions to read, edit and run code.
"""

from __future__ import annotations

from pathlib import Path

BASE_PROMPT = """\
You are mcode, a coding agent working in the user's repository. The current directory is the \
repository root; use paths relative to it.

How to work:
- Look before you act: read the files you will change, search with grep and glob.
- Change code with edit (exact, unique old_string) or write; read a file before editing it.
- Run commands with bash to build, test and check your work; fix what fails.
- Make the smallest change that does the task; keep the project's style.
- Use todo to plan work with several steps.
- If a tool call fails, read the error and change the call; do not repeat it unchanged.
- When done, answer briefly: what you changed and how you checked it."""

AGENTS_FILES = ("AGENTS.md",)
# The base prompt and the tool schemas take ~4.5 KB on the wire; with AGENTS.md capped here every
# request's system prompt plus tools stays under 15 KB (the leading agents send 30-50 KB).
MAX_AGENTS_BYTES = 10_000


def system_prompt(workspace: Path, *, trusted: bool = True) -> str:
    """The base prompt plus AGENTS.md from the workspace root (truncated if huge); without it
    when the folder is not trusted (mcode/trust.py): a cloned repo must not instruct the model."""
    parts = [BASE_PROMPT]
    for name in AGENTS_FILES if trusted else ():
        path = workspace / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            if len(text.encode()) > MAX_AGENTS_BYTES:
                text = text.encode()[:MAX_AGENTS_BYTES].decode(errors="ignore")
                cap = f"{MAX_AGENTS_BYTES:,}"
                text += f"\n[AGENTS.md truncated at {cap} bytes: read the file for the rest]"
            parts.append(f"Project instructions ({name}):\n{text.strip()}")
    return "\n\n".join(parts)
