"""GPU benchmark of the torch engine's decoder: dense vs MSA attention at long context.

A stack of random-weight decoder layers with M3's attention shape (64 query heads, 4 KV heads,
head dim 128, pages/blocks of 128, top-16, one index query head per KV group and one shared
index-key head of dim 128), hidden 4096 and a SwiGLU MLP of 12288, bf16. The KV cache is filled
with random keys and values (no model prefill of 1M tokens: what a step costs depends on the
cache's size, not its content; selections come from the index heads on random data), then:

* **prefill**: one chunk of ``--chunk`` new tokens at the end of a context of N (bottom-right
  causal), through the whole stack (projections, MLP, attention, cache writes);
* **decode**: one token per sequence for a batch of B sequences of context N;
* **attention only**: the same calls without the rest of the layer, for the gap's why.

Prints markdown tables (and writes them to ``--out``/torch_gpu.md). Run on the device:
``PYTHONPATH=$PWD python3 tests/bench/torch_gpu.py --out $OUT``; ``--smoke`` runs tiny shapes
on the CPU (torch references) to check the script itself.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from mcode.local_backend.torch_engine.model import AttentionPlan, Batch, LlamaModel
from mcode.local_backend.torch_engine.paged_cache import PagedKVCache
from mcode.local_backend.torch_engine.weights import ModelConfig


def random_model(cfg: ModelConfig, index_dim: int, device: str) -> LlamaModel:
    g = torch.Generator(device=device).manual_seed(0)

    def rnd(*shape: int) -> torch.Tensor:
        w = torch.randn(*shape, generator=g, device=device, dtype=torch.bfloat16)
        return w * (shape[-1] ** -0.5) if len(shape) > 1 else w.abs() + 0.5

    d, hq, hkv, h = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads, cfg.hidden
    t: dict[str, torch.Tensor] = {
        "token_embd.weight": rnd(cfg.vocab, h),
        "output_norm.weight": rnd(h),
    }
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        t |= {
            p + "attn_norm.weight": rnd(h),
            p + "attn_q.weight": rnd(hq * d, h),
            p + "attn_k.weight": rnd(hkv * d, h),
            p + "attn_v.weight": rnd(hkv * d, h),
            p + "attn_output.weight": rnd(h, hq * d),
            p + "ffn_norm.weight": rnd(h),
            p + "ffn_gate.weight": rnd(cfg.intermediate, h),
            p + "ffn_up.weight": rnd(cfg.intermediate, h),
            p + "ffn_down.weight": rnd(h, cfg.intermediate),
            p + "index.weight": rnd((hkv + 1) * index_dim, h),
        }
    return LlamaModel(cfg, t, device=device, dtype=torch.bfloat16, index_dim=index_dim)


def timed(fn, reps: int) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    sync()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def graphed(fn):
    """``fn`` captured in a CUDA graph (decode has fixed shapes and no host sync), or ``fn``
    itself where capture fails (say which)."""
    if not torch.cuda.is_available():
        return fn, "eager"
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph.replay, "graph"
    except Exception as e:
        print(f"  (CUDA graph capture failed: {type(e).__name__}: {e}; eager)", file=sys.stderr)
        torch.cuda.synchronize()
        return fn, "eager"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--skip-prefill", action="store_true")
    args = ap.parse_args()
    dev = "cpu" if args.smoke else "cuda"
    if args.smoke:
        cfg = ModelConfig(2, 64, 128, 8, 2, 32, 64, 1 << 20, tied_embeddings=True)
        di, page, topk, chunk = 32, 16, 4, 32
        contexts, batches, tput_ctx = [128, 256], [1, 2], [128]
        backend = "torch"
    else:
        cfg = ModelConfig(args.layers, 4096, 12288, 64, 4, 128, 1024, 1 << 21, tied_embeddings=True)
        di, page, topk, chunk = 128, 128, 16, 16384
        contexts = [32768, 131072, 524288, 1048576]
        batches, tput_ctx = [1, 8, 32], [32768, 131072]
        backend = "auto"
    model = random_model(cfg, di, dev)
    max_tokens = max(
        max(contexts) * 8 if not args.smoke else max(contexts) * 2, max(tput_ctx) * max(batches)
    )
    cache = PagedKVCache(
        n_layers=cfg.n_layers,
        n_kv_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim,
        num_pages=max_tokens // page + 8,
        page=page,
        index_dim=di,
        dtype=torch.bfloat16,
        device=dev,
        index_dtype=torch.bfloat16,  # the fp8 default is timed in its own table below
    )
    for t in (cache.k, cache.v, cache.index_k):
        assert t is not None
        for layer in t:  # per layer: randn of the whole pool at once would need a copy
            layer.normal_()
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    name = torch.cuda.get_device_name() if dev == "cuda" else "cpu (smoke)"
    say(
        f"card: {name}; torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    say(
        f"stack: {cfg.n_layers} layers, hidden {cfg.hidden}, SwiGLU MLP {cfg.intermediate}, "
        f"{cfg.n_heads} q heads / {cfg.n_kv_heads} kv heads x {cfg.head_dim}, page {page}, "
        f"top-{topk}, index dim {di}, bf16"
    )
    per_tok = cache.bytes_per_token()
    say(
        f"KV bytes per token: {per_tok} ({per_tok // cfg.n_layers} per layer: K+V "
        f"{2 * cfg.n_kv_heads * cfg.head_dim * 2} + index key {di * 2})"
    )
    dense = AttentionPlan(frozenset(), topk, backend)
    msa = AttentionPlan(frozenset(range(cfg.n_layers)), topk, backend)
    pages = list(range(cache.num_pages))

    def chunk_batch(n: int) -> Batch:
        need = -(-n // page)
        return Batch.build(
            [([t % cfg.vocab for t in range(chunk)], n - chunk, pages[:need])],
            page,
            torch.device(dev),
        )

    def decode_batch(b: int, n: int) -> Batch:
        need = -(-n // page)
        return Batch.build(
            [([1], n - 1, pages[i * need : (i + 1) * need]) for i in range(b)],
            page,
            torch.device(dev),
        )

    say()
    say(f"## Prefill: one {chunk}-token chunk at the end of a context of N ({cfg.n_layers} layers)")
    say()
    say(
        "| N | dense stack (ms) | msa stack (ms) | speedup | attn: dense ours | "
        "attn: dense SDPA | attn: msa | attn speedup vs SDPA |"
    )
    say("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in [] if args.skip_prefill else contexts:
        batch = chunk_batch(n)
        reps = 3 if n <= 131072 else 1
        td = timed(lambda b=batch: model.forward(b, cache, dense), reps)
        tm = timed(lambda b=batch: model.forward(b, cache, msa), reps)
        ad, asd, am = attention_only(model, batch, cache, dense, msa, reps, n, chunk)
        say(
            f"| {n} | {td * 1e3:.1f} | {tm * 1e3:.1f} | {td / tm:.1f}x | {ad * 1e3:.1f} | "
            f"{fmt(asd)} | {am * 1e3:.1f} | {ratio(asd, am)} |"
        )
        free()
    say()
    say(
        "## Decode: one token for each of B sequences of context N; whole stack, and the "
        "attention alone (x layers)"
    )
    say()
    say(
        "| B | N | dense stack (ms) | msa stack (ms) | speedup | attn: dense ours (split-KV) | "
        "attn: dense, prefill kernel | attn: dense SDPA | attn: msa | "
        "stack speedup, dense on SDPA | msa tok/s | how |"
    )
    say("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    combos = [(1, n) for n in contexts] + [(b, n) for n in tput_ctx for b in batches if b > 1]
    if not args.smoke:
        combos.append((8, 1048576))
    tps: dict[tuple[str, int, int], float] = {}
    fp8_rows: list[str] = []
    reps = 20 if not args.smoke else 2
    for b, n in combos:
        batch = decode_batch(b, n)
        res = {}
        hows = []
        for label, plan in (("dense", dense), ("msa", msa)):
            fn, how = graphed(lambda plan=plan, b=batch: model.forward(b, cache, plan))
            res[label] = timed(fn, reps)
            hows.append(how)
            del fn
        ad, asd, am = attention_only(model, batch, cache, dense, msa, reps, n, 1, graph=True)
        aold = prefill_kernel_decode(batch, cache, cfg, reps)
        fair = res["dense"] - ad + asd if asd == asd else float("nan")
        tps[("dense", b, n)] = b / res["dense"]
        tps[("msa", b, n)] = b / res["msa"]
        tps[("dense_sdpa", b, n)] = b / fair
        say(
            f"| {b} | {n} | {res['dense'] * 1e3:.3f} | {res['msa'] * 1e3:.3f} | "
            f"{res['dense'] / res['msa']:.1f}x | {ad * 1e3:.3f} | {fmt(aold, 3)} | {fmt(asd, 3)} | "
            f"{am * 1e3:.3f} | "
            f"{ratio(fair, res['msa'])} | {b / res['msa']:.0f} | {'/'.join(hows)} |"
        )
        fp8 = getattr(torch, "float8_e4m3fn", None)
        if dev == "cuda" and n == max(contexts) and fp8 is not None:
            # The index keys are nearly all the bytes MSA decode reads: try them in fp8.
            saved = cache.index_k
            try:
                cache.index_k = saved.to(fp8)
                fn, _ = graphed(lambda bt=batch: model.forward(bt, cache, msa))
                t8 = timed(fn, reps)
                del fn
                q = torch.randn(b, cfg.n_heads, cfg.head_dim, device=dev, dtype=torch.bfloat16)
                hh = torch.randn(b, cfg.hidden, device=dev, dtype=torch.bfloat16)
                fn, _ = graphed(
                    lambda bt=batch, q=q, hh=hh: model._msa(
                        0, q, hh, model.layers[0], bt, cache, msa
                    )
                )
                a8 = timed(fn, reps) * cfg.n_layers
                del fn
                cache.index_k = saved
                fp8_rows.append(
                    f"| {b} | {n} | {t8 * 1e3:.3f} | {ratio(fair, t8)} | {a8 * 1e3:.3f} | "
                    f"{ratio(asd, a8)} |"
                )
            except Exception as e:
                cache.index_k = saved
                fp8_rows.append(f"| {b} | {n} | failed: {type(e).__name__}: {e} | | | |")
        free()
    if fp8_rows:
        say()
        say(
            "## Decode with fp8 (e4m3) index keys (the default on CUDA): msa stack, and vs dense "
            "on SDPA"
        )
        say()
        say("| B | N | msa stack (ms) | stack speedup | attn: msa (ms) | attn speedup vs SDPA |")
        say("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in fp8_rows:
            say(r)
    if dev == "cuda":
        say()
        say("## Block selection with fp8 index keys against bf16 (decode, top-16)")
        say()
        say("| N | B | keys | same block set | blocks in common | fp8's picks by bf16 score |")
        say("| ---: | ---: | --- | ---: | ---: | --- |")
        for n, b in ((131072, 8), (1048576, 8)):
            for mode in ("random", "planted"):
                say(selection_agreement(cache, cfg, di, topk, n, b, mode))
        free()
    say()
    say("## Batched decode: tokens/s of batch B over batch 1 (same context)")
    say()
    say("| N | attention | B=8 / B=1 | B=32 / B=1 |")
    say("| ---: | --- | ---: | ---: |")
    for n in tput_ctx:
        for label in ("dense", "dense_sdpa", "msa"):
            r = [tps.get((label, bb, n), float("nan")) / tps[(label, 1, n)] for bb in (8, 32)]
            say(f"| {n} | {label} | {r[0]:.1f}x | {r[1]:.1f}x |")
    if dev == "cuda":
        say()
        say(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "torch_gpu.md").write_text("\n".join(lines) + "\n")


def fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x != x else f"{x * 1e3:.{digits}f}"


def ratio(a: float, b: float) -> str:
    return "n/a" if a != a else f"{a / b:.1f}x"


def free() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def prefill_kernel_decode(batch, cache, cfg, reps):
    """Seconds of a decode step's dense attention through the prefill kernel (what the dense
    stack ran before the split-KV decode kernel), times the layer count; nan on the CPU."""
    if not cache.k.is_cuda:
        return float("nan")
    from mcode.kernels.dense import dense_forward

    T = batch.tokens.shape[0]
    q = torch.randn(T, cfg.n_heads, cfg.head_dim, device=cache.k.device, dtype=cache.k.dtype)
    meta = (batch.page_table, batch.cu_seqlens_q, batch.seqlens_k)
    fn, _ = graphed(lambda: dense_forward(q, cache.k[0], cache.v[0], *meta, 1, cfg.head_dim**-0.5))
    t = timed(fn, reps) * cfg.n_layers
    del fn
    return t


def selection_agreement(cache, cfg, di, topk, n, b, mode):
    """One table row: how often MSA's decode selection over fp8 (e4m3) index keys is the one
    over the same keys in bf16. ``random``: unit-normal keys and queries (no structure: block
    scores are maxima of 128 Gaussians, the hardest case for a rounding to keep order);
    ``planted``: 15 blocks per sequence hold keys aligned with the query (signal half the
    noise), as in a context where a few blocks matter."""
    from mcode.kernels.select import block_scores

    from mcode import kernels

    need = -(-n // cache.page)
    dev = cache.k.device
    g = torch.Generator(device=dev).manual_seed(n + b)
    iq = torch.randn(b, cfg.n_kv_heads, di, device=dev, generator=g).to(torch.bfloat16)
    pt = torch.arange(b * need, device=dev, dtype=torch.int32).view(b, need)
    cu = torch.arange(b + 1, device=dev, dtype=torch.int32)
    lk = torch.full((b,), n, device=dev, dtype=torch.int32)
    ik = torch.randn(b * need, cache.page, di, device=dev, generator=g)
    if mode == "planted":
        for s in range(b):
            blocks = torch.randperm(need - 1, device=dev, generator=g)[:15]
            direction = iq[s].float().mean(0)
            ik[pt[s, blocks].long()] += 0.5 * direction / direction.norm() * di**0.5
    ik16 = ik.to(torch.bfloat16)
    big = torch.finfo(torch.float8_e4m3fn).max
    ik8 = ik.clamp(-big, big).to(torch.float8_e4m3fn)
    del ik
    sel16 = kernels.msa_select(iq, ik16, pt, cu, lk, topk, max_seqlen_q=1)
    sel8 = kernels.msa_select(iq, ik8, pt, cu, lk, topk, max_seqlen_q=1)
    same = (torch.sort(sel16, -1).values == torch.sort(sel8, -1).values).all(-1)
    common = (sel16[..., :, None] == sel8[..., None, :]).any(-1).float().mean(-1)
    # The bf16 score rank (1 = best) of each non-local block fp8 chose.
    sc = block_scores(iq, ik16, pt, cu, lk, 1).permute(1, 0, 2)  # [H, T, nb], local at -inf
    order = torch.argsort(sc, dim=-1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(1, order.shape[-1] + 1, device=dev).expand_as(order))
    picked = sel8[..., : topk - 1].long()
    r = rank.gather(-1, picked.clamp(min=0))[picked >= 0]
    within = (r <= topk - 1).float().mean().item()
    return (
        f"| {n} | {b} | {mode} | {same.float().mean().item():.1%} | "
        f"{common.mean().item():.1%} | {within:.1%} in bf16's top-{topk - 1}; worst rank "
        f"{int(r.max().item())} |"
    )


def attention_only(model, batch, cache, dense, msa, reps, n, lq, graph=False):
    """Seconds of the attention calls alone, one layer's call times the layer count: our dense
    paged kernel, torch SDPA on contiguous K/V of the same length (nan where it fails), MSA."""
    from mcode import kernels

    cfg = model.cfg
    L = cfg.n_layers
    T = batch.tokens.shape[0]
    B = batch.seqlens_k.shape[0]
    dev = cache.k.device
    q = torch.randn(T, cfg.n_heads, cfg.head_dim, device=dev, dtype=cache.k.dtype)
    h = torch.randn(T, cfg.hidden, device=dev, dtype=model.dtype)
    layer = model.layers[0]

    def d():
        kernels.dense_attention(
            q,
            cache.k[0],
            cache.v[0],
            batch.page_table,
            batch.cu_seqlens_q,
            batch.seqlens_k,
            max_seqlen_q=batch.max_seqlen_q,
            backend=dense.backend,
        )

    def m():
        model._msa(0, q, h, layer, batch, cache, msa)

    wrap = graphed if graph else (lambda f: (f, "eager"))
    out = []
    for f in (d, m):
        g, _ = wrap(f)
        out.append(timed(g, reps) * L)
        del g
    sdpa = float("nan")
    try:
        import torch.nn.functional as F

        kk = torch.randn(B, cfg.n_kv_heads, n, cfg.head_dim, device=dev, dtype=cache.k.dtype)
        vv = torch.randn_like(kk)
        qq = q.view(B, lq, cfg.n_heads, cfg.head_dim).transpose(1, 2)
        if lq > 1:
            from torch.nn.attention.bias import causal_lower_right

            mask = causal_lower_right(lq, n)
        else:
            mask = None

        def s():
            F.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask, enable_gqa=True)

        g, _ = wrap(s)
        sdpa = timed(g, reps) * L
        del g
    except Exception as e:
        print(f"  (SDPA failed: {type(e).__name__}: {e})", file=sys.stderr)
    free()
    return out[0], sdpa, out[1]


if __name__ == "__main__":
    main()
