"""The prompt's history across sessions: one JSON string per line in the data dir
(``prompt_history.jsonl``), newest last; the last :data:`KEEP` are read back."""

from __future__ import annotations

import json
from pathlib import Path

KEEP = 1000


class PromptHistory:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: list[str] = self._read()
        self._at: int | None = None  # index while browsing with Up/Down
        self._draft = ""

    def _read(self) -> list[str]:
        if self.path is None or not self.path.exists():
            return []
        entries = []
        try:
            for line in self.path.read_text(encoding="utf-8").splitlines()[-KEEP:]:
                try:
                    value = json.loads(line)
                except ValueError:
                    continue  # a torn last line (a crash while appending) is skipped
                if isinstance(value, str):
                    entries.append(value)
        except (OSError, UnicodeDecodeError):
            return []
        return entries

    def add(self, text: str) -> None:
        self._at = None
        if not text.strip() or (self.entries and self.entries[-1] == text):
            return
        self.entries.append(text)
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(text, ensure_ascii=False) + "\n")
        except OSError:
            pass  # history is a convenience: a full disk must not lose the message itself

    def back(self, current: str) -> str | None:
        """The entry before the one shown (``current`` is kept as the draft); None at the
        oldest."""
        if not self.entries:
            return None
        if self._at is None:
            self._draft, self._at = current, len(self.entries)
        if self._at == 0:
            return None
        self._at -= 1
        return self.entries[self._at]

    def forward(self) -> str | None:
        """The entry after the one shown, the draft after the newest; None when not browsing."""
        if self._at is None:
            return None
        self._at += 1
        if self._at >= len(self.entries):
            self._at = None
            return self._draft
        return self.entries[self._at]
