"""The conversation's plain blocks: the user's line, the answer (live, then finished), the
model's thinking, and one-line notes (steers, compactions, turn ends, undo).

A finished answer is a :class:`Static` holding a Rich ``Markdown`` parsed once: no widget tree
per paragraph and no parser kept alive, so a long session costs a renderable per message, not
a live Markdown document (the live one is :class:`LiveAnswer`, the single one streaming).
"""

from __future__ import annotations

from rich.markdown import Markdown as RichMarkdown
from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Collapsible, Markdown, Static
from textual.widgets._markdown import MarkdownStream


class UserBlock(Static):
    DEFAULT_CSS = """
    UserBlock {
        margin: 1 0 0 0;
        padding: 0 1;
        border-left: thick $accent;
        background: $boost;
    }
    """

    def __init__(self, text: str, *, images: int = 0) -> None:
        shown = Text(text)
        if images:
            shown.append(f"  [{images} image{'s' * (images != 1)}]", style="dim")
        super().__init__(shown)
        self.text = text


class AnswerBlock(Widget):
    """A finished answer: its Markdown rendered once per width into lines (strips) and drawn
    from them, so a layout asks it for a number, not for another Markdown render (a Static
    of Rich Markdown re-rendered it for every layout: seconds at a thousand messages)."""

    DEFAULT_CSS = """
    AnswerBlock {
        height: auto;
        margin: 1 0 0 0;
        padding: 0 1;
    }
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self._width = -1
        self._lines: list[Strip] = []

    def _strips(self, width: int) -> list[Strip]:
        if width != self._width:
            console = self.app.console
            options = console.options.update_width(max(1, width))
            markdown = RichMarkdown(self.text, code_theme="monokai")
            lines = console.render_lines(markdown, options, style=self.rich_style, pad=False)
            self._lines = [Strip(line).simplify() for line in lines]
            self._width = width
        return self._lines

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._strips(width))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        lines = self._strips(width)
        return lines[y].extend_cell_length(width) if y < len(lines) else Strip.blank(width)


class LiveAnswer(Markdown):
    """The answer being streamed, through Textual's :class:`MarkdownStream`. Fragments are
    gathered here and handed to the stream at most every :data:`FLUSH_S` seconds: given each
    64-character delta as it came, the stream re-parsed and re-laid-out its last block once
    per delta (under 200 tokens/s on a loaded machine)."""

    DEFAULT_CSS = """
    LiveAnswer {
        margin: 1 0 0 0;
        padding: 0 1;
    }
    """

    FLUSH_S = 1 / 30

    def __init__(self) -> None:
        super().__init__()
        self.text = ""
        self._stream: MarkdownStream | None = None
        self._unsent: list[str] = []
        self._flushing = False

    def add_fragment(self, fragment: str) -> None:
        self.text += fragment
        self._unsent.append(fragment)
        if not self._flushing:
            self._flushing = True
            self.set_timer(self.FLUSH_S, self._flush)

    async def _flush(self) -> None:
        self._flushing = False
        if not self._unsent:
            return
        text, self._unsent = "".join(self._unsent), []
        if self._stream is None:
            self._stream = Markdown.get_stream(self)
        await self._stream.write(text)

    async def stop(self) -> None:
        """Stop streaming; what was not handed to the stream yet is dropped (the finished
        answer replaces this widget, so rendering it here would be wasted)."""
        self._unsent.clear()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None


def split_point(text: str, at_least: int) -> int:
    """Where ``text`` can be cut into a finished head and a live tail: the last blank line
    past ``at_least`` characters that is outside a code fence; 0 when there is none."""
    cut = text.rfind("\n\n")
    while cut >= at_least:
        if text.count("```", 0, cut) % 2 == 0:
            return cut + 2
        cut = text.rfind("\n\n", 0, cut)
    return 0


class ThinkingBlock(Collapsible):
    """The model's reasoning, collapsed; its title says how much there is."""

    DEFAULT_CSS = """
    ThinkingBlock {
        margin: 1 0 0 0;
        border: none;
        padding: 0;
        color: $text-muted;
    }
    ThinkingBlock Static { color: $text-muted; }
    """

    def __init__(self, text: str = "", *, done: bool = False) -> None:
        self._body = Static(Text(text))
        super().__init__(self._body, title="", collapsed=True)
        self.text = text
        self.done = done
        self._retitle()

    def append(self, fragment: str) -> None:
        self.text += fragment
        self._body.update(Text(self.text))
        self._retitle()

    def finish(self) -> None:
        self.done = True
        self._retitle()

    def _retitle(self) -> None:
        words = len(self.text.split())
        self.title = f"{'Thought' if self.done else 'Thinking…'} ({words} words)"


class Note(Static):
    """A one-line remark in the conversation (a steer, a compaction, why a turn ended)."""

    DEFAULT_CSS = """
    Note {
        margin: 1 0 0 0;
        padding: 0 1;
        color: $text-muted;
    }
    Note.-warning { color: $warning; }
    """

    def __init__(self, text: str, *, warning: bool = False) -> None:
        super().__init__(Text(text))
        self.text = text
        if warning:
            self.add_class("-warning")

    def say(self, text: str) -> None:
        self.text = text
        self.update(Text(text))
