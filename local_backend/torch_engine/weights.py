"""Reading a Llama-family checkpoint into a :class:`ModelConfig` and a dict of float tensors.

Two formats:

* **GGUF** (llama.cpp's file): hyper-parameters from the ``<arch>.*`` metadata, tensors
  dequantised to fp32 with the ``gguf`` package (Q4_1, Q8_0, F16, ... whatever it knows). The
  converter that writes GGUF permutes the rows of ``attn_q``/``attn_k`` so that llama.cpp can
  rotate adjacent pairs; we undo that permutation here, so the model has one RoPE (the
  half-split one of the Hugging Face checkpoints) whatever file it came from.
* **safetensors** (a Hugging Face folder with ``config.json``): names mapped to the GGUF ones.

Tensors are named as in GGUF (``blk.3.attn_q.weight``), shaped ``[out, in]`` like
``torch.nn.Linear``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mcode.errors import ConfigError

_ARCHES = ("llama", "smollm", "mistral")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The shape of a Llama-family decoder."""

    n_layers: int
    hidden: int
    intermediate: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    n_ctx: int
    rope_theta: float = 10000.0
    rope_linear_factor: float = 1.0
    rms_eps: float = 1e-5
    tied_embeddings: bool = False


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.contents()
    return value


def load_gguf(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and fp32 tensors of a GGUF file. Raises ConfigError for an architecture this
    decoder does not implement."""
    try:
        import gguf
    except ImportError:
        raise ConfigError(
            "the torch engine reads GGUF files with the gguf package, which is not installed",
            hint="run: pip install 'mcode[torch]'",
        ) from None
    reader = gguf.GGUFReader(str(path))
    arch = str(_field(reader, "general.architecture", ""))
    if arch not in _ARCHES:
        raise ConfigError(
            f"{path.name} is a {arch or 'unknown'} model; the torch engine runs Llama-family "
            "decoders only",
            hint="use --engine llama_cpp for this model",
        )
    n_heads = int(_field(reader, f"{arch}.attention.head_count"))
    hidden = int(_field(reader, f"{arch}.embedding_length"))
    tensors: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        shape = [int(x) for x in reversed(t.shape.tolist())]
        data = gguf.quants.dequantize(t.data, t.tensor_type)
        tensors[t.name] = torch.from_numpy(data.reshape(shape).astype("float32"))
    scaling = str(_field(reader, f"{arch}.rope.scaling.type", "none"))
    factor = float(_field(reader, f"{arch}.rope.scaling.factor", 1.0) or 1.0)
    cfg = ModelConfig(
        n_layers=int(_field(reader, f"{arch}.block_count")),
        hidden=hidden,
        intermediate=int(_field(reader, f"{arch}.feed_forward_length")),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", n_heads)),
        head_dim=int(_field(reader, f"{arch}.rope.dimension_count", hidden // n_heads)),
        vocab=int(tensors["token_embd.weight"].shape[0]),
        n_ctx=int(_field(reader, f"{arch}.context_length", 2048)),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        rope_linear_factor=factor if scaling == "linear" else 1.0,
        rms_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        tied_embeddings="output.weight" not in tensors,
    )
    for i in range(cfg.n_layers):
        for name, heads in (("attn_q", cfg.n_heads), ("attn_k", cfg.n_kv_heads)):
            key = f"blk.{i}.{name}.weight"
            tensors[key] = _unpermute(tensors[key], heads)
    return cfg, tensors


def _unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of the GGUF converter's ``permute``: adjacent-pair rows back to half-split."""
    out, rest = w.shape[0], w.shape[1:]
    return w.reshape(n_heads, out // n_heads // 2, 2, *rest).transpose(1, 2).reshape(w.shape)


_HF_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def load_safetensors(folder: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and fp32 tensors of a Hugging Face Llama folder (``config.json`` +
    ``*.safetensors``)."""
    from safetensors.torch import load_file

    conf_path = folder / "config.json"
    if not conf_path.is_file():
        raise ConfigError(f"{folder} has no config.json", hint="point --model at a HF model folder")
    conf = json.loads(conf_path.read_text())
    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        for name, t in load_file(str(f)).items():
            tensors[_gguf_name(name)] = t.float()
    n_heads = int(conf["num_attention_heads"])
    scaling = conf.get("rope_scaling") or {}
    cfg = ModelConfig(
        n_layers=int(conf["num_hidden_layers"]),
        hidden=int(conf["hidden_size"]),
        intermediate=int(conf["intermediate_size"]),
        n_heads=n_heads,
        n_kv_heads=int(conf.get("num_key_value_heads", n_heads)),
        head_dim=int(conf.get("head_dim") or conf["hidden_size"] // n_heads),
        vocab=int(conf["vocab_size"]),
        n_ctx=int(conf.get("max_position_embeddings", 2048)),
        rope_theta=float(conf.get("rope_theta", 10000.0)),
        rope_linear_factor=float(scaling.get("factor", 1.0))
        if scaling.get("type", scaling.get("rope_type")) == "linear"
        else 1.0,
        rms_eps=float(conf.get("rms_norm_eps", 1e-5)),
        tied_embeddings="output.weight" not in tensors,
    )
    return cfg, tensors


def _gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    if parts[:2] == ["model", "layers"]:
        layer, rest = parts[2], ".".join(parts[3:-1])
        return f"blk.{layer}.{_HF_NAMES.get(rest, rest)}.{parts[-1]}"
    return hf


def load_checkpoint(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """A GGUF file or a safetensors folder."""
    if path.is_dir():
        return load_safetensors(path)
    return load_gguf(path)
