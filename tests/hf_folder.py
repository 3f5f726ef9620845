"""A tiny random-weight Llama written as a Hugging Face folder, built offline for tests.

    config.json             a 2-layer Llama (GQA, head dim 16), SmolLM2's vocabulary size
    model.safetensors       random weights in Hugging Face's names and layout
    tokenizer.json          SmolLM2's byte-level BPE, rebuilt with ``tokenizers`` from the
                            embedded GGUF's tokens and merges (no download)
    tokenizer_config.json   a non-ChatML Jinja chat template, BOS / EOS

:func:`reference_logits` runs the same weights the way Hugging Face's ``LlamaForCausalLM`` does
(fp64, rotate-half RoPE, ``repeat_kv``), written out here so the engine is checked against
something that is not itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Not ChatML (no <|im_start|>), so the chat layer renders it with Jinja; bos/eos texts are used.
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}{{ eos_token }}"
    "\n{% endfor %}{% if add_generation_prompt %}### assistant:\n{% endif %}"
)
BOS, EOS = "<|im_start|>", "<|im_end|>"


def write_tiny_llama(folder: Path, *, seed: int = 0) -> dict[str, Any]:
    """Write the folder; returns its config.json as a dict."""
    import gguf
    import torch
    from mcode.local_backend.embedded import embedded_model_path
    from safetensors.torch import save_file
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(str(embedded_model_path()))
    tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
    merges = list(reader.fields["tokenizer.ggml.merges"].contents())
    types = list(reader.fields["tokenizer.ggml.token_type"].contents())
    bpe = models.BPE(
        vocab={t: i for i, t in enumerate(tokens)},
        merges=[tuple(m.split(" ", 1)) for m in merges],
    )
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, k in zip(tokens, types, strict=True)
            if k == 3
        ]
    )
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": BOS,
                "eos_token": EOS,
                "add_bos_token": False,
                "chat_template": TEMPLATE,
            }
        )
    )
    conf = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": len(tokens),
        "max_position_embeddings": 2048,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    }
    (folder / "config.json").write_text(json.dumps(conf))
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, std: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * std).to(torch.bfloat16)

    h, inter, d = conf["hidden_size"], conf["intermediate_size"], conf["head_dim"]
    nq, nkv, vocab = conf["num_attention_heads"], conf["num_key_value_heads"], len(tokens)
    w: dict[str, torch.Tensor] = {
        "model.embed_tokens.weight": rand(vocab, h, std=1.0),
        "model.norm.weight": 1 + rand(h, std=0.1),
        # Large output weights: sharp next-token distributions, so greedy decoding has no near
        # ties for rounding to flip.
        "lm_head.weight": rand(vocab, h, std=1.0),
    }
    for i in range(conf["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w |= {
            p + "input_layernorm.weight": 1 + rand(h, std=0.1),
            p + "post_attention_layernorm.weight": 1 + rand(h, std=0.1),
            p + "self_attn.q_proj.weight": rand(nq * d, h, std=0.3),
            p + "self_attn.k_proj.weight": rand(nkv * d, h, std=0.3),
            p + "self_attn.v_proj.weight": rand(nkv * d, h, std=0.3),
            p + "self_attn.o_proj.weight": rand(h, nq * d, std=0.1),
            p + "mlp.gate_proj.weight": rand(inter, h, std=0.1),
            p + "mlp.up_proj.weight": rand(inter, h, std=0.1),
            p + "mlp.down_proj.weight": rand(h, inter, std=0.1),
        }
    save_file(w, str(folder / "model.safetensors"))
    return conf


def reference_logits(folder: Path, ids: list[int]) -> Any:
    """Logits ``[len(ids), vocab]`` (fp64) of the folder's model on ``ids``, causal, as
    Hugging Face computes them."""
    import torch
    from safetensors.torch import load_file

    conf = json.loads((folder / "config.json").read_text())
    w = {k: v.double() for k, v in load_file(str(folder / "model.safetensors")).items()}
    nq, nkv, d = conf["num_attention_heads"], conf["num_key_value_heads"], conf["head_dim"]
    T = len(ids)
    pos = torch.arange(T, dtype=torch.float64)
    inv = 1.0 / conf["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.cat([pos[:, None] * inv] * 2, dim=-1)  # [T, d], HF's cat((freqs, freqs))
    cos, sin = ang.cos()[:, None], ang.sin()[:, None]

    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-x[..., d // 2 :], x[..., : d // 2]], dim=-1)

    def rms(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + conf["rms_norm_eps"]) * weight

    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(conf["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(T, nq, d)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(T, nkv, d)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(T, nkv, d)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(nq // nkv, dim=1), v.repeat_interleave(nq // nkv, dim=1)
        s = torch.einsum("thd,shd->hts", q, k) / d**0.5
        a = torch.einsum("hts,shd->thd", s.masked_fill(~mask, float("-inf")).softmax(-1), v)
        x = x + a.reshape(T, nq * d) @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    return rms(x, w["model.norm.weight"]) @ w["lm_head.weight"].T


def greedy(folder: Path, ids: list[int], n: int) -> tuple[list[int], float]:
    """``n`` greedy tokens after ``ids`` by :func:`reference_logits` (no stop tokens), and the
    smallest gap between the best and second-best logit on the way (a near tie is a choice
    rounding may flip)."""
    out: list[int] = []
    gap = float("inf")
    for _ in range(n):
        last = reference_logits(folder, ids + out)[-1]
        top2 = last.topk(2).values
        gap = min(gap, float(top2[0] - top2[1]))
        out.append(int(last.argmax()))
    return out, gap
