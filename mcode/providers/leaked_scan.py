"""Finding a leaked tool call's markup in an answer's text, also while the text still grows.

Only markup at the top level counts: an opening tag (:data:`OPENERS`) outside code fences and
inline code spans, at the start of a line or directly followed by its form's inside
(``<invoke``, ``{`` or ``<function=``), so an answer that *talks about* the tags is left alone.
:class:`LeakScanner` scans a streamed answer once, line by line, and says where markup starts or
*might* start once more text arrives; :func:`find_leaked_call` does it for a complete text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "CLOSER",
    "MINIMAX_CLOSE",
    "MINIMAX_OPEN",
    "OPENERS",
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "LeakScanner",
    "find_leaked_call",
]

MINIMAX_OPEN, MINIMAX_CLOSE = "<minimax:tool_call>", "</minimax:tool_call>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
OPENERS = (MINIMAX_OPEN, TOOL_CALL_OPEN)
CLOSER = {MINIMAX_OPEN: MINIMAX_CLOSE, TOOL_CALL_OPEN: TOOL_CALL_CLOSE}
# What must follow an opening tag that is not at the start of a line for it to count as a call:
# "Use <tool_call> tags" in prose is not one, "Reading it now.<tool_call>{..." is.
_INNER_STARTS = {MINIMAX_OPEN: ("<invoke",), TOOL_CALL_OPEN: ("{", "<function=")}

_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")
_BACKTICKS = re.compile(r"`+")


class LeakScanner:
    """Finds the first top-level opening tag of a leaked call in a text that may still grow.

    Works line by line, keeping the code-fence state of the lines already passed, so a streamed
    answer is scanned once, not once per chunk. :meth:`scan` returns ``(found, pending)``:
    ``found`` is where a call's markup starts; ``pending`` is where text *might* become markup
    once more of it arrives (a partial tag at the end, a tag whose inside has not arrived yet).
    With ``final`` the text is complete and nothing is pending.
    """

    __slots__ = ("fence", "pos")

    def __init__(self) -> None:
        self.pos = 0  # start of the first line not yet passed
        self.fence = ""  # the open code fence ("```", "~~~~"), "" outside one

    def scan(self, text: str, *, final: bool) -> tuple[int | None, int | None]:
        n = len(text)
        while self.pos < n:
            start = self.pos
            nl = text.find("\n", start)
            end = nl if nl >= 0 else n
            complete = nl >= 0 or final
            line = text[start:end]
            fence = _FENCE.match(line)
            if self.fence:
                if not complete:
                    return None, None  # inside a fence nothing is a call, whatever follows
                if (
                    fence
                    and fence.group(1)[0] == self.fence[0]
                    and len(fence.group(1)) >= len(self.fence)
                    and not line[fence.end() :].strip()
                ):
                    self.fence = ""
            elif fence:
                if not complete:
                    return None, None
                self.fence = fence.group(1)
            else:
                found, pending = _scan_line(text, start, end, complete=complete, final=final)
                if found is not None or pending is not None:
                    return found, pending
            if nl < 0:
                return None, None  # the last line, not passed: it may still grow
            self.pos = nl + 1
        return None, None


def _scan_line(
    text: str, start: int, end: int, *, complete: bool, final: bool
) -> tuple[int | None, int | None]:
    line = text[start:end]
    if "<" not in line:
        return None, None
    spans, unclosed = _code_spans(line)
    hits = sorted((i, tag) for tag in OPENERS for i in _find_all(line, tag))
    for i, tag in hits:
        if any(a <= i < b for a, b in spans):
            continue
        p = start + i
        if unclosed is not None and unclosed < i and not complete:
            return None, p  # may be inside an inline code span that closes later
        if not line[:i].strip():
            return p, None
        inner = _inner_state(tag, text[p + len(tag) :], final=final)
        if inner == "yes":
            return p, None
        if inner == "maybe":
            return None, p
    if not complete:
        # A proper prefix of an opening tag at the very end: hold it until it is decided.
        for tag in OPENERS:
            for k in range(min(len(tag) - 1, len(line)), 0, -1):
                if line.endswith(tag[:k]):
                    i = len(line) - k
                    if not any(a <= i < b for a, b in spans):
                        return None, start + i
                    break
    return None, None


def _find_all(s: str, sub: str) -> Iterable[int]:
    i = s.find(sub)
    while i >= 0:
        yield i
        i = s.find(sub, i + 1)


def _code_spans(line: str) -> tuple[list[tuple[int, int]], int | None]:
    """Inline code spans of one line (a backtick run closed by the next run of the same length,
    as in CommonMark) and the position of the first run left unclosed, if any."""
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(line)]
    spans: list[tuple[int, int]] = []
    unclosed: int | None = None
    i = 0
    while i < len(runs):
        a, b = runs[i]
        for j in range(i + 1, len(runs)):
            if runs[j][1] - runs[j][0] == b - a:
                spans.append((a, runs[j][1]))
                i = j + 1
                break
        else:
            if unclosed is None:
                unclosed = a
            i += 1
    return spans, unclosed


def _inner_state(tag: str, rest: str, *, final: bool) -> str:
    """Whether what follows an opening tag looks like that form's call: yes, no, or maybe
    (not enough text yet)."""
    s = rest.lstrip()
    for head in _INNER_STARTS[tag]:
        if s.startswith(head):
            return "yes"
        if not final and head.startswith(s):
            return "maybe"
    return "no"


def find_leaked_call(text: str) -> int | None:
    """Where the first leaked tool call's markup starts in a complete answer ``text``, or None.

    Only markup at the top level counts: an opening tag outside code fences and inline code
    spans, at the start of a line or directly followed by the form's inside (``<invoke``, ``{``
    or ``<function=``)."""
    if "<" not in text:
        return None
    return LeakScanner().scan(text, final=True)[0]
