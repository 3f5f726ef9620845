"""CPU benchmark of the torch engine on the embedded SmolLM2-135M (Q4_1 GGUF).

1. Agreement with llama.cpp: top-1 and mean KL(llama.cpp || torch) of the next-token
   distributions over every position of a few chat prompts.
2. Perplexity of a long text (README.md + ARCHITECTURE.md), dense vs MSA at top-k blocks.
3. Speed: prefill and decode tokens/s, llama.cpp vs the torch engine, one thread each.
4. Prefix cache: a 4K-token prompt cold, then again (warm).

5. Decode steps of the decoder alone (no tokenizer, no llama.cpp): milliseconds per step at a
   1K-token context, batch 1 and 4, dense and MSA top-4.

Run: ``python tests/bench/torch_cpu.py`` (prints markdown tables); ``--only speed`` (or
``agreement``, ``perplexity``, ``cache``, ``steps``, comma-separated) runs just those sections.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from mcode.local_backend.chat_template import Segment
from mcode.local_backend.embedded import embedded_model_path
from mcode.local_backend.llama_engine import Generated, LlamaEngine, Sampling
from mcode.local_backend.torch_engine import TorchEngine
from mcode.local_backend.torch_engine.model import AttentionPlan, Batch
from mcode.local_backend.torch_engine.paged_cache import PagedKVCache

ROOT = Path(__file__).resolve().parents[2]


def no_extra_bufts() -> None:
    """This machine's CPU has AMX; llama.cpp's extra buffer types crash on it."""
    import llama_cpp.llama_cpp as lc

    defaults = lc.llama_model_default_params

    def patched():
        p = defaults()
        p.use_extra_bufts = False
        return p

    lc.llama_model_default_params = patched


def chat(user: str) -> list[Segment]:
    return [
        Segment("<|im_start|>system\n", True),
        Segment("You are a helpful assistant."),
        Segment("<|im_end|>\n<|im_start|>user\n", True),
        Segment(user),
        Segment("<|im_end|>\n<|im_start|>assistant\n", True),
    ]


def all_logits(engine: TorchEngine, ids: list[int], plan: AttentionPlan) -> torch.Tensor:
    m = engine.model
    cache = PagedKVCache(
        n_layers=m.cfg.n_layers,
        n_kv_heads=m.cfg.n_kv_heads,
        head_dim=m.cfg.head_dim,
        num_pages=-(-len(ids) // 128),
        dtype=torch.float16,
    )
    seq, _ = cache.match_prefix(ids)
    cache.reserve(seq, len(ids))
    out = []
    for start in range(0, len(ids), 512):  # chunked prefill, every position's logits
        part = ids[start : start + 512]
        b = Batch.build([(part, start, seq.pages)], 128, m.device, all_logits=True)
        out.append(m.forward(b, cache, plan))
    return torch.cat(out)


def run(engine, prompt, sampling) -> Generated:
    async def go():
        async for item in engine.stream(prompt, sampling):
            if isinstance(item, Generated):
                return item

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="agreement,perplexity,speed,cache,steps")
    only = set(ap.parse_args().only.split(","))
    path = embedded_model_path()
    if only == {"steps"}:  # needs neither llama.cpp nor the engine
        torch.set_num_threads(1)
        print(
            f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}"
        )
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print()
        decode_steps(path)
        return
    no_extra_bufts()
    eng = TorchEngine(path, threads=1, num_pages=200)
    eng.load()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared)")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    text = (ROOT / "README.md").read_text() + (ROOT / "ARCHITECTURE.md").read_text()
    if "agreement" in only:
        agreement(eng, path)
    if "perplexity" in only:
        perplexity(eng, text)
    if "speed" in only:
        speed(eng, path, text)
    if "cache" in only:
        prefix_cache(eng, text)
    eng.close()
    if "steps" in only:
        decode_steps(path)


def decode_steps(path: Path, context: int = 1024, reps: int = 8) -> None:
    """Milliseconds per decode step of the decoder alone (SmolLM2's 30 layers, fp32 weights,
    fp16 KV cache filled with random keys and values), one thread."""
    from mcode.local_backend.torch_engine.model import LlamaModel
    from mcode.local_backend.torch_engine.weights import load_checkpoint

    cfg, tensors = load_checkpoint(path)
    model = LlamaModel(cfg, tensors)
    per = -(-context // 128)
    print(f"## Decode steps, the decoder alone ({context}-token context, 1 thread)")
    print()
    print("| attention | batch | ms per step | tokens/s |")
    print("| --- | ---: | ---: | ---: |")
    layers = frozenset(range(cfg.n_layers))
    for label, plan in (
        ("dense", AttentionPlan(backend="torch")),
        ("msa top-4", AttentionPlan(layers, topk=4, backend="torch")),
    ):
        for b in (1, 4):
            cache = PagedKVCache(
                n_layers=cfg.n_layers,
                n_kv_heads=cfg.n_kv_heads,
                head_dim=cfg.head_dim,
                num_pages=b * per,
                dtype=torch.float16,
            )
            cache.k.normal_()
            cache.v.normal_()
            pages = list(range(b * per))
            seqs = [([1], context - 1, pages[i * per : (i + 1) * per]) for i in range(b)]
            batch = Batch.build(seqs, 128, model.device)
            times = []
            for i in range(reps + 2):
                t0 = time.perf_counter()
                model.forward(batch, cache, plan)
                if i >= 2:
                    times.append(time.perf_counter() - t0)
            ms = float(np.median(times)) * 1e3
            print(f"| {label} | {b} | {ms:.1f} | {b / ms * 1e3:.1f} |", flush=True)
    print()


def agreement(eng: TorchEngine, path: Path) -> None:
    import llama_cpp

    prompts = [
        "Write a Python function that reverses a list, then explain how it works.",
        "What is the difference between a process and a thread? Answer in two sentences.",
        "List three uses of git rebase and one danger of it.",
        "Summarise this for a new user:\n" + (ROOT / "README.md").read_text()[:2500],
        "Explain this design:\n" + (ROOT / "ARCHITECTURE.md").read_text()[:2500],
    ]
    llm = llama_cpp.Llama(
        model_path=str(path), logits_all=True, n_ctx=4096, n_threads=1, verbose=False
    )
    n, agree, kls = 0, 0, []
    for p in prompts:
        ids = eng.tokenize(chat(p))
        ours = all_logits(eng, ids, AttentionPlan(backend="torch"))
        llm.reset()
        llm.eval(ids)
        ref = torch.tensor(np.array(llm.scores[: len(ids)]), dtype=torch.float32)
        n += len(ids)
        agree += int((ours.argmax(-1) == ref.argmax(-1)).sum())
        lr, lo = ref.log_softmax(-1), ours.log_softmax(-1)
        kls.append((lr.exp() * (lr - lo)).sum(-1))
    kl = torch.cat(kls)
    llm.close()
    print("## Agreement with llama.cpp (same GGUF, same token ids)")
    print()
    print("| positions | top-1 agreement | mean KL (nats) | max KL |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {n} | {agree / n:.3f} | {float(kl.mean()):.4f} | {float(kl.max()):.4f} |")
    print()


def perplexity(eng: TorchEngine, text: str) -> None:
    ids = eng.tokenize([Segment(text)])[:2048]
    target = torch.tensor(ids[1:])
    print(f"## Perplexity, {len(ids)} tokens of README.md + ARCHITECTURE.md, every layer")
    print()
    print("| attention | blocks attended at the end (of 16) | perplexity | seconds |")
    print("| --- | ---: | ---: | ---: |")
    layers = frozenset(range(eng.model.cfg.n_layers))
    for label, plan, k in (
        ("dense", AttentionPlan(backend="torch"), 16),
        ("msa top-8", AttentionPlan(layers, topk=8, backend="torch"), 8),
        ("msa top-4", AttentionPlan(layers, topk=4, backend="torch"), 4),
    ):
        t0 = time.perf_counter()
        lg = all_logits(eng, ids, plan)
        secs = time.perf_counter() - t0
        ppl = float(torch.nn.functional.cross_entropy(lg[:-1], target).exp())
        print(f"| {label} | {k} | {ppl:.2f} | {secs:.0f} |")
    print()


def speed(eng: TorchEngine, path: Path, text: str) -> None:
    print("## Speed, one thread each (prefill ~1K-token prompt; decode 64 tokens, greedy)")
    print()
    print("| engine | prefill tok/s | decode tok/s |")
    print("| --- | ---: | ---: |")
    prompt = chat("Summarise:\n" + text[:4000])
    greedy = Sampling(max_tokens=64, temperature=0, repeat_penalty=1.0)
    ll = LlamaEngine(path, n_threads=1)
    ll.load()
    msa = TorchEngine(path, threads=1, num_pages=40, attention="msa", topk=4)
    for label, e in (("llama.cpp", ll), ("torch (dense)", eng), ("torch (msa top-4)", msa)):
        g = run(e, prompt, greedy)
        print(
            f"| {label} | {g.prompt_tokens / g.prefill_seconds:.0f} | "
            f"{max(1, g.completion_tokens - 1) / g.decode_seconds:.1f} |"
        )
    ll.close()
    msa.close()
    print()


def prefix_cache(eng: TorchEngine, text: str) -> None:
    print("## Prefix cache: a 4K-token prompt, cold then warm (torch engine)")
    print()
    long_prompt = chat("Read this:\n" + (text * 3)[:16000])
    one = Sampling(max_tokens=1, temperature=0)
    cold = run(eng, long_prompt, one)
    warm = run(eng, long_prompt, one)
    print("| run | prompt tokens | cached | prefill s |")
    print("| --- | ---: | ---: | ---: |")
    for label, g in (("cold", cold), ("warm", warm)):
        print(f"| {label} | {g.prompt_tokens} | {g.cached_tokens} | {g.prefill_seconds:.2f} |")
    print(f"\nwarm / cold = {warm.prefill_seconds / cold.prefill_seconds:.1%}")


if __name__ == "__main__":
    main()
