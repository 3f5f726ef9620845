"""The Engine protocol: what the chat layer (and so ``mcode serve`` and the ``local`` provider)
needs from a model runtime. llama.cpp (:mod:`.llama_engine`) and the torch engine
(:mod:`.torch_engine`) implement it; :mod:`.engines` makes the one a setting names.

An engine owns one model; callers admit requests to it in order (the server's FIFO queue).
``stream`` yields text pieces as they decode, then one :class:`Generated`; a consumer that
stops iterating stops the generation. With ``Sampling.logprobs`` set, each generated token's
:class:`~.logprobs.TokenLogprob` comes just before its text (``supports_logprobs`` says the
engine can); ``Sampling.stop`` strings end the generation where one appears (:mod:`.stops`).

``chat_template``, ``bos_text`` and ``eos_text`` (read after ``load``) let the chat layer render a
conversation in the model's own format; ``supports_grammar`` says whether ``Sampling.grammar``
(GBNF) is honoured; an engine that says False gets tool calls only where another constraint
stands in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from .chat_template import Segment
from .llama_engine import Generated, Sampling
from .logprobs import TokenLogprob


class Engine(Protocol):
    model_id: str  # the name /v1/models lists
    n_ctx: int
    supports_grammar: bool

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None: ...

    def close(self) -> None: ...

    def tokenize(self, segments: Sequence[Segment]) -> list[int]: ...

    def count_tokens(self, text: str) -> int: ...

    def stream(
        self, prompt: Sequence[Segment], sampling: Sampling
    ) -> AsyncIterator[str | TokenLogprob | Generated]: ...

    @property
    def chat_template(self) -> str | None: ...

    @property
    def bos_text(self) -> str: ...

    @property
    def eos_text(self) -> str: ...


__all__ = ["Engine", "Generated", "Sampling", "Segment", "TokenLogprob"]
