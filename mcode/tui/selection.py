"""Mouse selection for the widgets that draw from cached lines (answers, card bodies).

Textual selects text by itself in widgets it renders (a Static: the user's line, notes, card
headers, error cards): a drag marks it, Ctrl+C copies it (OSC 52). A widget that draws its
own strips takes part by three things this module gives it:

- each line it draws carries its offsets (:func:`drawn`): the (column, line) a mouse position
  is at, so the screen knows where a drag starts and ends;
- the part of the line inside the selection is drawn in the screen's selection style;
- :func:`selected_text` says what the selection covers, from the lines as drawn: what is
  copied is what the user saw and marked, as a terminal's own selection would give (a code
  block without its fences, a list with its bullets), lines without their trailing padding.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.segment import Segment
from rich.style import Style
from textual.selection import Selection
from textual.strip import Strip
from textual.widget import Widget


def drawn(widget: Widget, strip: Strip, y: int) -> Strip:
    """Line ``y`` of ``widget`` as drawn: marked where the selection covers it, and carrying
    its offsets (so a drag over it selects)."""
    selection = widget.text_selection
    if selection is not None and (span := selection.get_span(y)) is not None:
        strip = _marked(strip, span, widget.screen.get_component_rich_style("screen--selection"))
    return strip.apply_offsets(0, y)


def _marked(strip: Strip, span: tuple[int, int], style: Style) -> Strip:
    length = strip.cell_length
    start, end = span
    end = length if end == -1 else min(end, length)
    if start >= end:
        return strip
    before, middle, after = strip.divide([start, end, length])
    # The selection's style over the line's own (a code block's background included).
    over = [Segment(text, (own or Style()) + style, c) for text, own, c in middle]
    middle = Strip(over, middle.cell_length)
    return Strip.join([before, middle, after])


def selected_text(lines: Iterable[Strip | str], selection: Selection) -> tuple[str, str]:
    """What ``selection`` covers of ``lines`` (strips as drawn, or text), as
    :meth:`Widget.get_selection` answers it."""
    text = "\n".join((line if isinstance(line, str) else line.text).rstrip() for line in lines)
    return selection.extract(text), "\n"
