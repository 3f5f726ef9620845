"""Inline completion (``textDocument/inlineCompletion``, LSP 3.18): fill in the middle.

The fast path: the text before and after the cursor becomes one prompt for
:meth:`mcode.runtime.session.Session.complete` (one model call, no tools, thinking off, nothing
in any history) on a session kept for completions alone (not stored: a completion is not a
task). The handler is async, so the server goes on reading while the model answers:

- a request the editor cancels (``$/cancelRequest``, sent as the user types on) is dropped: pygls
  cancels its task, which cancels the model call, and the answer is RequestCancelled;
- requests are debounced per document, leading and trailing: one after a pause goes to the
  model at once (a single completion costs no wait); one that comes within ``debounce`` seconds
  of the one before supersedes it (the older answers null; its model call, if in flight, is
  cut) and waits that long first, answering null if a newer one came meanwhile. A burst of
  typing thus costs at most two model calls, the first cut short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from lsprotocol import types

from .editor import offset_of

if TYPE_CHECKING:
    from mcode.runtime.session import Session

# Characters of context on each side of the cursor.
BEFORE = 4000
AFTER = 1500
MAX_TOKENS = 128

SYSTEM = (
    "You complete code. You are shown a file with the marker <CURSOR> where the user's cursor "
    "is. Answer with only the text to insert at the cursor: no explanation, no code fence, "
    "nothing that is already before or after the cursor."
)


def _cancelling() -> bool:
    """Whether the running task itself is being cancelled (not only what it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def fim_prompt(before: str, after: str, path: str) -> str:
    return f"File: {path}\n\n{before}<CURSOR>{after}"


def clean(answer: str) -> str:
    """The insertion from a model's answer (a model may still wrap it in a code fence)."""
    text = answer
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and stripped.count("\n") >= 1:
        text = stripped.split("\n", 1)[1].rsplit("```", 1)[0]
        text = text.removesuffix("\n")
    return text.replace("<CURSOR>", "")


class InlineCompleter:
    """Completions for every document of one server, on one completion session made by
    ``session_factory`` when the first is asked for."""

    def __init__(self, session_factory: Callable[[], Session], debounce: float = 0.075) -> None:
        self._factory = session_factory
        self._session: Session | None = None
        self.debounce = debounce
        self._last: dict[str, float] = {}
        self._generation: dict[str, int] = {}
        self._calls: dict[str, asyncio.Future[str]] = {}

    async def session(self) -> Session:
        if self._session is None:
            self._session = self._factory()
        return self._session

    async def complete(
        self, text: str, uri: str, path: str, pos: types.Position, encoding: str
    ) -> types.InlineCompletionList | None:
        now = time.monotonic()
        last = self._last.get(uri)
        self._last[uri] = now
        mine = self._generation.get(uri, 0) + 1
        self._generation[uri] = mine
        older = self._calls.pop(uri, None)
        if older is not None:
            older.cancel()  # superseded: its request answers null
        if last is not None and now - last < self.debounce:
            await asyncio.sleep(self.debounce)
            if self._generation[uri] != mine:
                return None  # superseded by a newer request while the user typed
        offset = offset_of(text, pos, encoding)
        before, after = text[max(0, offset - BEFORE) : offset], text[offset : offset + AFTER]
        session = await self.session()
        call = asyncio.ensure_future(
            session.complete(
                fim_prompt(before, after, path), system=SYSTEM, max_output_tokens=MAX_TOKENS
            )
        )
        self._calls[uri] = call
        try:
            answer = await call
        except asyncio.CancelledError:
            if self._generation[uri] != mine and not _cancelling():
                return None  # a newer request cut this one's model call
            raise  # the editor cancelled this request
        finally:
            if self._calls.get(uri) is call:
                del self._calls[uri]
        insert = clean(answer)
        if not insert.strip():
            return types.InlineCompletionList(items=[])
        return types.InlineCompletionList(
            items=[
                types.InlineCompletionItem(
                    insert_text=insert, range=types.Range(start=pos, end=pos)
                )
            ]
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
