"""The tokenizer of a Hugging Face model folder (``tokenizer.json`` + ``tokenizer_config.json``).

A safetensors folder carries its vocabulary as ``tokenizer.json``, which only the ``tokenizers``
package reads exactly (its pre-tokenizer regex, normaliser and added tokens are the model's
own). So text becomes ids there, and everything else comes from the vocabulary itself:

    text ──tokenizers (tokenizer.json)──> ids              exact, the model's own
    id   ──vocab──> piece bytes (byte-level BPE: GPT-2's byte alphabet; SentencePiece-style: ▁
                    for a space, <0xNN> for a byte), stop tokens (the special added tokens)
    tool grammar ──llama.cpp over a vocab-only GGUF written from tokenizer.json──> the mask

llama.cpp is needed only for tool calls (its GBNF sampler wants a ``llama_vocab``): the GGUF
holds the tokens as the folder spells them, their types (special added tokens are control
tokens) and the merges, and is written into a temporary folder the first time a request asks
for a grammar. Its pre-tokenizer never runs, since llama.cpp never tokenizes here.

``tokenizer_config.json`` gives the chat template (Jinja) and the BOS / EOS texts it uses.
"""

from __future__ import annotations

import codecs
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcode.errors import ConfigError

from ..chat_template import Segment
from .weights import ModelConfig

if TYPE_CHECKING:
    from .constrain import GrammarMask

# llama.cpp's token types (llama_token_type): normal, control, byte.
_NORMAL, _CONTROL, _BYTE = 1, 3, 6


class HFTokenizer:
    """Text to ids and back for a Hugging Face folder, with the model's stop tokens (the same
    surface as :class:`.tokenizer.Tokenizer`, llama.cpp's)."""

    def __init__(self, folder: Path, cfg: ModelConfig) -> None:
        try:
            from tokenizers import Tokenizer as HFTokenizerImpl
        except ImportError:
            raise ConfigError(
                "the torch engine reads a model folder's tokenizer.json with the tokenizers "
                "package, which is not installed",
                hint="run: pip install 'mcode[torch]'",
            ) from None
        spec_path = folder / "tokenizer.json"
        if not spec_path.is_file():
            raise ConfigError(
                f"{folder} has no tokenizer.json",
                hint="copy the model's tokenizer.json (and tokenizer_config.json) into the folder",
            )
        self._spec: dict[str, Any] = json.loads(spec_path.read_text(encoding="utf-8"))
        conf_path = folder / "tokenizer_config.json"
        self._conf: dict[str, Any] = (
            json.loads(conf_path.read_text(encoding="utf-8")) if conf_path.is_file() else {}
        )
        self._cfg = cfg
        self._hf: Any = HFTokenizerImpl.from_file(str(spec_path))
        self.template: str | None = _template(self._conf.get("chat_template"))
        self.bos_text = _token_text(self._conf.get("bos_token")) or ""
        self.eos_text = _token_text(self._conf.get("eos_token")) or "<|im_end|>"
        self.add_bos = bool(self._conf.get("add_bos_token", False))
        bos = self._hf.token_to_id(self.bos_text) if self.bos_text else None
        self.bos = int(bos) if bos is not None else -1
        self._pieces, special = _pieces(self._spec, cfg.vocab)
        self.n_vocab = len(self._pieces)
        eos = self._hf.token_to_id(self.eos_text)
        self.end_ids = (int(eos),) if eos is not None else ()  # what Sampling.end_after favours
        # End of turn, or any special token (a control token such as <|im_start|> beginning a
        # fake turn), as llama.cpp's eog + control tokens for a GGUF.
        self.stop_ids = frozenset(special | ({int(eos)} if eos is not None else set()))
        self._vocab_tok: Any = None  # llama.cpp's view of the vocabulary, for grammars
        self._tmp: Path | None = None

    def encode(self, text: str, *, special: bool = False) -> list[int]:
        # Content never becomes a control token: with encode_special_tokens the added tokens'
        # texts are split like any other text.
        self._hf.encode_special_tokens = not special
        return list(self._hf.encode(text, add_special_tokens=False).ids)

    def tokenize(self, segments: Sequence[Segment]) -> list[int]:
        ids: list[int] = []
        for seg in segments:
            if seg.text:
                ids.extend(self.encode(seg.text, special=seg.special))
        if self.add_bos and self.bos >= 0 and (not ids or ids[0] != self.bos):
            ids.insert(0, self.bos)
        return ids

    def piece(self, token: int) -> bytes:
        return self._pieces[token] if 0 <= token < self.n_vocab else b""

    def decoder(self) -> codecs.IncrementalDecoder:
        return codecs.getincrementaldecoder("utf-8")(errors="replace")

    def grammar(self, gbnf: str) -> GrammarMask:
        """A fresh grammar state over this vocabulary, by llama.cpp (see :mod:`.constrain`)."""
        if self._vocab_tok is None:
            from mcode.local_backend.embedded import require_llama_cpp

            from .tokenizer import Tokenizer

            require_llama_cpp()
            self._tmp = Path(tempfile.mkdtemp(prefix="mcode-vocab-"))
            vocab = self._tmp / "vocab.gguf"
            write_vocab_gguf(vocab, self._spec, self._conf, self._cfg)
            self._vocab_tok = Tokenizer(vocab)
        grammar: GrammarMask = self._vocab_tok.grammar(gbnf)
        return grammar

    def close(self) -> None:
        if self._vocab_tok is not None:
            self._vocab_tok.close()
            self._vocab_tok = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _pieces(spec: dict[str, Any], n_model: int) -> tuple[list[bytes], set[int]]:
    """Every id's bytes (``n_model`` ids at least: a model may have rows past the tokenizer's
    vocabulary, which decode to nothing) and the ids of the special added tokens."""
    model = spec.get("model") or {}
    vocab: dict[str, int] = dict(model.get("vocab") or {})
    added = spec.get("added_tokens") or []
    n = max([n_model, *(i + 1 for i in vocab.values()), *(int(t["id"]) + 1 for t in added)])
    pieces = [b""] * n
    if _is_byte_level(spec):
        byte_of = {c: b for b, c in _byte_alphabet().items()}
        for text, i in vocab.items():
            pieces[i] = bytes(byte_of.get(c, 0) for c in text)
    else:
        for text, i in vocab.items():
            if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
                pieces[i] = bytes([int(text[3:5], 16)])
            else:
                pieces[i] = text.replace("\u2581", " ").encode("utf-8")
    special: set[int] = set()
    for t in added:
        pieces[int(t["id"])] = str(t["content"]).encode("utf-8")
        if t.get("special", False):
            special.add(int(t["id"]))
    return pieces, special


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte as the printable character its BPE spells it."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    out = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def _token_text(value: Any) -> str | None:
    """``bos_token`` / ``eos_token``: a string, or an AddedToken object with ``content``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _template(value: Any) -> str | None:
    """``chat_template``: one Jinja string, or a list of named ones (the ``default`` wins)."""
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default") or next(iter(named.values()), None)
    return value if isinstance(value, str) else None


def write_vocab_gguf(
    path: Path, spec: dict[str, Any], conf: dict[str, Any], cfg: ModelConfig
) -> None:
    """A vocab-only GGUF of ``tokenizer.json`` (``spec``) at ``path``, for llama.cpp's pieces,
    stop tokens and grammar. Raises ConfigError for a tokenizer model llama.cpp cannot hold."""
    import gguf

    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ConfigError(
            f"the tokenizer.json is a {model.get('type') or 'unknown'} model; the torch engine "
            "reads BPE tokenizers (byte-level or SentencePiece-style)",
            hint="convert the model to GGUF and pass the .gguf",
        )
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in spec.get("added_tokens") or []}
    for text, t in added.items():
        vocab[text] = int(t["id"])
    n = max(max(vocab.values()) + 1, cfg.vocab)
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [_CONTROL] * n  # padding ids the model has rows for but the tokenizer never writes
    byte_level = _is_byte_level(spec)
    for text, i in vocab.items():
        tokens[i] = text
        if text in added and added[text].get("special", False):
            types[i] = _CONTROL
        elif not byte_level and len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            types[i] = _BYTE
        else:
            types[i] = _NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.n_ctx)
    w.add_embedding_length(cfg.hidden)
    w.add_block_count(cfg.n_layers)
    w.add_feed_forward_length(cfg.intermediate)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_layer_norm_rms_eps(cfg.rms_eps)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_tokenizer_model("gpt2" if byte_level else "llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    if not byte_level:
        w.add_token_scores([0.0] * n)
    if merges:
        w.add_token_merges(merges)
    for text, setter in (
        (_token_text(conf.get("bos_token")), w.add_bos_token_id),
        (_token_text(conf.get("eos_token")), w.add_eos_token_id),
    ):
        if text is not None and text in vocab:
            setter(vocab[text])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _is_byte_level(spec: dict[str, Any]) -> bool:
    """GPT-2 style byte-level BPE (SmolLM2, Llama 3, Qwen) rather than SentencePiece-style
    (Llama 2, Mistral: ``▁`` for spaces, ``<0xNN>`` byte fallback)."""

    def kinds(node: Any) -> list[str]:
        if not isinstance(node, dict):
            return []
        inner = node.get("pretokenizers") or node.get("decoders") or []
        return [str(node.get("type"))] + [k for n in inner for k in kinds(n)]

    return "ByteLevel" in kinds(spec.get("pre_tokenizer")) + kinds(spec.get("decoder"))
