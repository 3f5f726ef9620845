"""A lane: one agent's events drawn as widgets, in order, into one container.

The main conversation's lane draws into the conversation view; a ``task`` sub-agent's lane
draws inside the card of the ``task`` call that started it (its events carry its agent id,
and it runs inside that call, so the call still running when its first event comes is the
one). A lane keeps only what is still open: the streaming answer, the thinking being
written, the cards of calls not yet finished.

``batch`` lanes (a resumed session's history) collect their widgets and hand them over in
one mount: a thousand messages are one layout, not a thousand.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.widget import Widget

from mcode import events as ev
from mcode.progress import team_line
from mcode.tui.blocks import AnswerBlock, LiveAnswer, Note, ThinkingBlock, UserBlock
from mcode.tui.cards import ErrorCard, ToolCard

_ENDINGS = {
    "cancelled": "interrupted",
    "error": "ended by an error",
    "max_turns": "stopped at the max-turns limit",
    "output_limit": "the answer was cut at the model's output cap",
    "loop": "stopped: the model kept repeating a failing call",
}


class Lane:
    def __init__(
        self,
        container: Widget,
        *,
        agent: str | None = None,
        batch: list[Widget] | None = None,
        on_mount: Callable[[Widget], None] | None = None,
    ) -> None:
        self.container = container
        self.agent = agent
        self.batch = batch
        self.answer: LiveAnswer | None = None
        self.thinking: ThinkingBlock | None = None
        self.cards: dict[str, ToolCard] = {}
        self.steers: list[Note] = []
        self._on_mount = on_mount

    async def mount(self, widget: Widget) -> None:
        # Awaited: a sub-agent's first event may come right after its task card is mounted,
        # and its lane mounts into that card.
        if self.batch is not None:
            self.batch.append(widget)
        else:
            await self.container.mount(widget)
        if self._on_mount is not None:
            self._on_mount(widget)

    def running_task_card(self) -> ToolCard | None:
        """The ``task`` call running now, whose card a new sub-agent's lane goes into."""
        running = [c for c in self.cards.values() if c.name_ == "task" and c.status == "running"]
        return running[-1] if running else None

    async def show(self, payload: ev.Payload) -> None:
        match payload:
            case ev.MessageUser(message=message):
                images = sum(1 for p in message.parts if p.type == "image")
                await self.mount(UserBlock(message.text, images=images))
            case ev.TextDelta(text=text):
                if self.thinking is not None:
                    self.thinking.finish()
                if self.answer is None:
                    self.answer = LiveAnswer()
                    await self.mount(self.answer)
                self.answer.add_fragment(text)
            case ev.ThinkingDelta(text=text):
                if self.thinking is None:
                    self.thinking = ThinkingBlock()
                    await self.mount(self.thinking)
                self.thinking.append(text)
            case ev.MessageAssistant(message=message):
                await self._finish_answer(message.text, message.thinking)
            case ev.Retry(attempt=attempt, reason=reason, wait=wait):
                await self._void_answer()
                await self.mount(
                    Note(f"retrying ({attempt}) in {wait:.1f}s: {reason}", warning=True)
                )
            case ev.ToolRequested(id=call_id, name=name, arguments=arguments):
                card = ToolCard(call_id, name, arguments)
                self.cards[call_id] = card
                await self.mount(card)
            case ev.PermissionAsked(id=call_id):
                if call_id in self.cards:
                    self.cards[call_id].asked()
            case ev.PermissionDecided(id=call_id, allowed=allowed, reason=reason):
                if call_id in self.cards:
                    self.cards[call_id].decided(allowed, reason)
            case ev.ToolStarted(id=call_id):
                if call_id in self.cards:
                    self.cards[call_id].started()
            case ev.ToolOutput(id=call_id, text=text):
                if call_id in self.cards:
                    self.cards[call_id].add_output(text)
            case ev.ToolFinished(id=call_id, ok=ok, summary=summary, duration=d, message=m):
                if call_id in self.cards:
                    self.cards.pop(call_id).finished(ok, summary, d, m.text)
            case ev.SteerReceived(text=text):
                note = Note(f"↳ steer (at the next step): {text}")
                self.steers.append(note)
                await self.mount(note)
            case ev.SteerDelivered(text=text):
                pending = next((n for n in self.steers if n.text.endswith(": " + text)), None)
                if pending is not None:
                    self.steers.remove(pending)
                    pending.say(f"↳ steer delivered: {text}")
                else:
                    await self.mount(Note(f"↳ steer delivered: {text}"))
            case ev.Compaction(tokens_before=before, tokens_after=after, reason=reason):
                await self.mount(
                    Note(f"context compacted ({reason}): {before:,} → {after:,} tokens")
                )
            case ev.Error(message=message, hint=hint, recoverable=recoverable):
                await self.mount(ErrorCard(message, hint, recoverable=recoverable))
            case ev.Undo(restored=restored, deleted=deleted, skipped=skipped):
                parts = [f"{len(restored)} restored", f"{len(deleted)} deleted"]
                if skipped:
                    parts.append(f"{len(skipped)} skipped")
                await self.mount(Note("undo: " + ", ".join(parts)))
            case ev.TurnFinished(reason=reason):
                await self._finish_answer(None, None)
                if reason in _ENDINGS:
                    await self.mount(Note(f"turn {_ENDINGS[reason]}", warning=True))
            case _:
                line = team_line(payload)  # a team run's steps (/team), one note each
                if line is not None:
                    await self.mount(Note(line))

    async def _finish_answer(self, text: str | None, thinking: str | None) -> None:
        """The streamed answer becomes a cheap block; ``text`` (the message's, None when the
        turn ended without one) wins over what was streamed."""
        if self.thinking is not None:
            self.thinking.finish()
        elif thinking:
            await self.mount(ThinkingBlock(thinking, done=True))
        self.thinking = None
        live, self.answer = self.answer, None
        final = text if text is not None else (live.text if live is not None else "")
        if live is None:
            if final.strip():
                await self.mount(AnswerBlock(final))
            return
        shown = "".join(live.done)
        if final.startswith(shown):  # the finished parts stand; the block adds what follows
            block = live.finish(final[len(shown) :])
        else:  # the message says otherwise than what streamed: it wins
            live.finish("")
            block = AnswerBlock(final if final.strip() else "")
        if block.parts:
            await self.container.mount(block, before=live)
        await live.remove()

    async def _void_answer(self) -> None:
        """A retry: what the failed attempt streamed is void."""
        for widget in (self.answer, self.thinking):
            if widget is not None:
                await widget.remove()
        self.answer = self.thinking = None
