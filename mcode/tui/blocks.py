"""The conversation's plain blocks: the user's line, the answer (live, then finished), the
model's thinking, and one-line notes (steers, compactions, turn ends, undo).

An answer is Rich ``Markdown`` rendered into lines once per width and drawn from them: no
widget tree per paragraph and no parser kept alive, so a long session costs a list of lines
per message. The streaming one (:class:`LiveAnswer`) re-renders only its tail as it grows.
"""

from __future__ import annotations

import bisect

from rich.text import Text
from textual.geometry import Region, Size
from textual.selection import Selection
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Collapsible, Static

from mcode.tui.selection import drawn, selected_text


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


class MarkdownLines(Widget):
    """Markdown drawn from lines (strips) rendered once per width, so a layout asks it for a
    number, not for another Markdown render (a Static of Rich Markdown re-rendered it for
    every layout: seconds at a thousand messages).

    The text is held as parts cut between blocks (:func:`split_parts`; a streamed answer is
    cut as it comes, see :class:`LiveAnswer`), each rendered on its own, and only when it
    comes into view: until then its height is an estimate from its text. So a megabyte answer
    is never parsed whole, a thousand messages cost a few renders a page, and scrolling up
    onto a part whose real height differs from its estimate keeps what was shown in place
    (the view moves by the difference)::

        parts    [ p0 ][ p1 ][ p2 ][ p3 ]        the view shows p2 and the top of p3
        lines    est   est   real  real          p0, p1 rendered when scrolled to
    """

    DEFAULT_CSS = """
    MarkdownLines {
        height: auto;
        margin: 1 0 0 0;
        padding: 0 1;
    }
    """

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.parts: list[str] = split_parts(text) if text else []
        self._width = -1
        # Per part, at ``_width``: its lines once rendered (None until then) and its height
        # (an estimate until rendered); ``_starts[i]`` is where part i's first line is.
        self._lines: list[list[Strip] | None] = []
        self._heights: list[int] = []
        self._starts: list[int] = []

    def _render_markdown(self, text: str, width: int) -> list[Strip]:
        # Imported with the first answer drawn, not before the first frame: Rich's Markdown
        # brings markdown-it and Pygments (~50 ms here).
        from rich.markdown import Markdown as RichMarkdown

        console = self.app.console
        options = console.options.update_width(max(1, width))
        markdown = RichMarkdown(text, code_theme="monokai")
        lines = console.render_lines(markdown, options, style=self.rich_style, pad=False)
        return [Strip(line).simplify() for line in lines]

    def _changed(self, index: int) -> None:
        """Part ``index`` is new or its text changed: its lines are to be rendered again."""
        if index < len(self._lines):
            del self._lines[index:], self._heights[index:], self._starts[index:]

    def _layout(self, width: int) -> int:
        """The parts' heights at ``width`` (estimates for parts not rendered); the total."""
        if width != self._width:
            self._width = width
            self._lines, self._heights, self._starts = [], [], []
        while len(self._lines) < len(self.parts):
            i = len(self._lines)
            self._starts.append(self._starts[-1] + self._heights[-1] + 1 if i else 0)
            self._lines.append(None)
            self._heights.append(estimate_height(self.parts[i], width))
        return self._starts[-1] + self._heights[-1] if self.parts else 0

    def _draw(self, top: int, bottom: int) -> int:
        """Render the parts that lines ``top``..``bottom`` show; how many lines the parts
        above ``top`` grew by (0: the estimates held, or nothing was rendered)."""
        width = self._width
        first = max(0, bisect.bisect_right(self._starts, top) - 1)
        grown = 0
        resized = False
        for i in range(first, len(self.parts)):
            start = self._starts[i] + grown
            if start >= bottom:
                break
            if self._lines[i] is None:
                lines = self._render_markdown(self.parts[i], width)
                self._lines[i] = lines
                change = len(lines) - self._heights[i]
                if change:
                    self._heights[i] = len(lines)
                    resized = True
                    if start < top:  # a part the view enters from its bottom: keep it put
                        grown += change
        if resized:
            for i in range(first + 1, len(self.parts)):
                self._starts[i] = self._starts[i - 1] + self._heights[i - 1] + 1
        return grown if resized else 0

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self._layout(width)

    def render_lines(self, crop: Region) -> list[Strip]:
        self._layout(self.size.width)
        height = self._starts[-1] + self._heights[-1] if self.parts else 0
        grown = self._draw(crop.y, crop.bottom)
        if self.parts and self._starts[-1] + self._heights[-1] != height:
            self.refresh(layout=True)
            scrolls = (
                w for w in self.ancestors if isinstance(w, Widget) and w.allow_vertical_scroll
            )
            view = next(scrolls, None)
            if grown and view is not None:
                self.call_after_refresh(_scroll_by, view, grown)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if not self.parts:
            return Strip.blank(width)
        i = max(0, bisect.bisect_right(self._starts, y) - 1)
        lines = self._lines[i] if i < len(self._lines) else None
        row = y - self._starts[i] if i < len(self._starts) else -1
        if lines is None or not 0 <= row < len(lines):
            return drawn(self, Strip.blank(width), y)  # a gap line, or a part not drawn yet
        return drawn(self, lines[row].extend_cell_length(width), y)

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        if self._width < 0:
            return None
        lines: list[Strip | str] = []
        for i, part in enumerate(self.parts):
            drawn_lines = self._lines[i] if i < len(self._lines) else None
            # A part selected without being drawn (a drag that scrolled past it) is read at
            # this width: what it would show.
            lines.extend(drawn_lines or self._render_markdown(part, self._width))
            lines.append("")  # the gap line between parts
        return selected_text(lines, selection)


def _scroll_by(view: Widget, lines: int) -> None:
    view.scroll_to(y=view.scroll_offset.y + lines, animate=False, immediate=True)


class AnswerBlock(MarkdownLines):
    """A finished answer."""

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @classmethod
    def finishing(cls, live: LiveAnswer, rest: str) -> AnswerBlock:
        """The finished block of ``live``: its finished parts, their lines kept, then
        ``rest`` (what the message says came after them)."""
        block = cls()
        done = live.done
        block.parts = [*done, *split_parts(rest)] if rest.strip() else list(done)
        block._width = live._width
        kept = min(len(done), len(live._lines))
        block._lines, block._heights = live._lines[:kept], live._heights[:kept]
        block._starts = live._starts[:kept]
        return block


class LiveAnswer(MarkdownLines):
    """The answer being streamed. Fragments are gathered and drawn at most every
    :data:`FLUSH_S` seconds (given each 64-character delta as it came, a Markdown document
    re-parsed once per delta: under 200 tokens/s on a loaded machine). The last part, the
    tail, is what came after the last finished block; only it is re-rendered per hand-over,
    and once it passes :data:`LIVE_CHARS` its finished blocks become parts of their own. So a
    hand-over costs at most a few thousand characters of Markdown however long the answer
    has grown, and the answer stays one widget for the layout, not one per paragraph."""

    FLUSH_S = 1 / 30
    LIVE_CHARS = 3000

    def __init__(self) -> None:
        super().__init__()
        self._unsent: list[str] = []
        self._flushing = False

    @property
    def tail(self) -> str:
        return self.parts[-1] if self.parts else ""

    @property
    def done(self) -> list[str]:
        """The parts before the tail: finished blocks, never to change."""
        return self.parts[:-1]

    @property
    def text(self) -> str:
        return "".join([*self.parts, *self._unsent])

    def add_fragment(self, fragment: str) -> None:
        self._unsent.append(fragment)
        if not self._flushing:
            self._flushing = True
            self.set_timer(self.FLUSH_S, self._flush)

    def _flush(self) -> None:
        self._flushing = False
        if not self._unsent:
            return
        tail = "".join([self.tail, *self._unsent])
        self._unsent = []
        last = max(0, len(self.parts) - 1)
        self._changed(last)
        self.parts[last:] = split_parts(tail, self.LIVE_CHARS)
        self.refresh(layout=True)

    def finish(self, rest: str) -> AnswerBlock:
        """The finished block that replaces this one, ``rest`` its text after the finished
        parts; what was not drawn yet is dropped (the finished block draws it)."""
        self._unsent.clear()
        return AnswerBlock.finishing(self, rest)

    def _layout(self, width: int) -> int:
        # The tail is drawn for real at once: it is the end of what streams, where the view
        # is (an estimate would be corrected a frame later, every hand-over).
        total = super()._layout(width)
        tail = len(self.parts) - 1
        if tail >= 0 and self._lines[tail] is None:
            lines = self._render_markdown(self.parts[tail], width)
            total += len(lines) - self._heights[tail]
            self._lines[tail], self._heights[tail] = lines, len(lines)
        return total


def split_parts(text: str, size: int = 3000) -> list[str]:
    """``text`` cut into parts of about ``size`` characters, each cut at a blank line outside
    a code fence (a part may be longer: a long paragraph or code block is never cut); the
    last part is what follows the last cut."""
    parts = []
    while len(text) > size:
        cut = split_point(text[:size], size // 2) or split_point(text, size // 2)
        if not cut:
            break
        parts.append(text[:cut])
        text = text[cut:]
    parts.append(text)
    return parts


def split_point(text: str, at_least: int) -> int:
    """Where ``text`` can be cut into a finished head and a live tail: the last blank line
    past ``at_least`` characters that is outside a code fence; 0 when there is none."""
    cut = text.rfind("\n\n")
    while cut >= at_least:
        if text.count("```", 0, cut) % 2 == 0:
            return cut + 2
        cut = text.rfind("\n\n", 0, cut)
    return 0


def estimate_height(text: str, width: int) -> int:
    """About how many lines Rich draws ``text``'s Markdown in at ``width``, without rendering
    it: a line per wrapped line of text, one between blocks, a code block's two padding lines.
    Only a placeholder: the part's real height replaces it when the part comes into view."""
    height, fenced, gap = 0, False, False
    width = max(1, width)
    for line in text.strip("\n").split("\n"):
        if line.lstrip().startswith("```"):
            height += 1 + (gap and not fenced)  # the fences' lines are the block's padding
            fenced, gap = not fenced, False
        elif fenced:
            height += 1
        elif not line.strip():
            gap = True
        else:
            height += (len(line) - 1) // width + 1 + gap
            gap = False
    return max(1, height)


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
