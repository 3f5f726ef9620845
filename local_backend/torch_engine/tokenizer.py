"""Tokens for the torch engine, from llama.cpp's tokenizer on the same GGUF.

llama.cpp opened with ``vocab_only=True`` reads only the vocabulary (no weights, no compute), so
the torch engine tokenizes exactly as the llama.cpp engine does: same ids for the same prompt,
which the correctness check and the prefix cache across engines rely on. Markup segments may
hold control tokens; content never does.

A Hugging Face folder has the other reader, :mod:`.hf_tokenizer` (its ``tokenizer.json``
through the ``tokenizers`` package): each format is tokenized exactly only by its own
implementation (llama.cpp's pre-tokenizer is not the folder's, nor the other way round), so
the two stay apart behind one surface (``encode``, ``tokenize``, ``piece``, ``decoder``,
``grammar``, ``stop_ids``, ``close``). The agent's token *estimates* are neither: they are
mcode/agent/tokens.py's, with no vocabulary at all.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcode.errors import ConfigError

from ..chat_template import Segment
from ..llama_engine import end_tokens

if TYPE_CHECKING:
    from .constrain import GrammarMask


class Tokenizer:
    """Text to ids and back, with the model's stop tokens."""

    def __init__(self, gguf_path: Path) -> None:
        try:
            import llama_cpp
        except ImportError:
            raise ConfigError(
                "the torch engine tokenizes with llama-cpp-python, which is not installed",
                hint="run: pip install 'mcode[local]'",
            ) from None
        self._llm: Any = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self.bos = int(self._llm.token_bos())
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        n = int(self._llm.n_vocab())
        self._vocab, self.n_vocab = vocab, n
        # The end of turn (what Sampling.end_after favours), and everything that stops: the
        # end, or a control token such as <|im_start|> beginning a fake turn.
        self.end_ids = tuple(end_tokens(vocab))
        self.stop_ids = frozenset(
            t
            for t in range(n)
            if llama_cpp.llama_vocab_is_eog(vocab, t) or llama_cpp.llama_vocab_is_control(vocab, t)
        )

    def encode(self, text: str, *, special: bool = False) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def tokenize(self, segments: Sequence[Segment]) -> list[int]:
        ids: list[int] = []
        for seg in segments:
            if seg.text:
                ids.extend(self.encode(seg.text, special=seg.special))
        if self.add_bos and self.bos >= 0 and (not ids or ids[0] != self.bos):
            ids.insert(0, self.bos)
        return ids

    def grammar(self, gbnf: str) -> GrammarMask:
        """A fresh grammar state over this vocabulary (see :mod:`.constrain`)."""
        from .constrain import GrammarMask

        return GrammarMask(self._vocab, self.n_vocab, gbnf)

    def piece(self, token: int) -> bytes:
        return bytes(self._llm.detokenize([token]))

    def decoder(self) -> codecs.IncrementalDecoder:
        return codecs.getincrementaldecoder("utf-8")(errors="replace")

    def close(self) -> None:
        self._llm.close()
