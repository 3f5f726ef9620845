"""Stop strings in the chat layer (``local_backend.chat.generate``) over a scripted engine: an
engine that streams fixed pieces and ends where a stop string appears, as both real engines do
(``stops.find_stop`` in their decode loops). What it checks is the half the engines cannot do:
text handed out as it streams never contains any part of a stop string, however the pieces
split it, and what was held back and is not a stop string still arrives.

The real engines, with the official client, are in ``test_serve_stop_logprobs.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from mcode.local_backend.chat import ChatResult, TextPiece, generate
from mcode.local_backend.llama_engine import Generated, Sampling
from mcode.local_backend.logprobs import TokenLogprob
from mcode.local_backend.stops import find_stop, held_back


class ScriptedEngine:
    """Streams ``pieces`` (each with its log-probability first), ending at a stop string."""

    supports_grammar = False

    def __init__(self, pieces: Sequence[str]) -> None:
        self.pieces = pieces

    async def stream(self, prompt: object, sampling: Sampling) -> AsyncIterator[object]:
        said = ""
        for n, piece in enumerate(self.pieces, 1):
            yield TokenLogprob(piece, piece.encode(), -0.5)
            yield piece
            checked, said = len(said), said + piece
            cut = find_stop(said, sampling.stop, checked)
            if cut is not None:
                yield Generated(said[:cut], 3, 0, n, "stop", 0.0, 0.0)
                return
        yield Generated(said, 3, 0, len(self.pieces), "length", 0.0, 0.0)


def run(pieces: Sequence[str], stop: Sequence[str]) -> tuple[list[str], ChatResult, int]:
    async def go() -> list[object]:
        sampling = Sampling(max_tokens=64, stop=tuple(stop))
        return [item async for item in generate(ScriptedEngine(pieces), [], sampling)]  # type: ignore[arg-type]

    items = asyncio.run(go())
    result = items[-1]
    assert isinstance(result, ChatResult)
    texts = [i.text for i in items if isinstance(i, TextPiece)]
    return texts, result, sum(isinstance(i, TokenLogprob) for i in items)


@pytest.mark.parametrize(
    "pieces, stop, answer",
    [
        (["Hel", "lo wo", "rld!"], ["o w"], "Hell"),  # inside one piece
        (["ab", "c"], ["bc"], "a"),  # across two pieces
        (["x", "y", "z", "q"], ["yz", "xyzq"], "x"),  # the first to appear wins
        (["The ", "END", " of it"], ["END"], "The "),  # a whole piece
        (["E", "N", "D"], ["END"], ""),  # at the very start, one character a piece
    ],
)
def test_a_stop_string_is_cut_and_no_part_of_it_is_ever_handed_out(pieces, stop, answer):
    texts, result, logprobs = run(pieces, stop)
    assert "".join(texts) == answer == result.text
    assert result.generated.finish_reason == "stop"
    streamed = ""
    for t in texts:  # at no point did the text so far hold the start of the match
        streamed += t
        assert find_stop(streamed, stop) is None
    assert logprobs == result.generated.completion_tokens  # every generated token's entry


@pytest.mark.parametrize(
    "pieces, stop",
    [
        (["Hel", "lo wo", "rld"], ["world!"]),  # the tail looked like a stop string: held, sent
        (["a", "b"], ["bz"]),
    ],
)
def test_text_held_back_that_is_no_stop_string_still_arrives(pieces, stop):
    texts, result, _ = run(pieces, stop)
    assert "".join(texts) == "".join(pieces) == result.text
    assert result.generated.finish_reason == "length"


def test_held_back_is_the_longest_tail_that_may_start_a_stop_string():
    assert held_back("hello wo", ["world"]) == 2
    assert held_back("hello w", ["wx", "o wy"]) == 3
    assert held_back("abc", ["x"]) == 0
    assert find_stop("say hello world", ["o w", "lo"], 0) == 7
