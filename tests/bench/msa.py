#!/usr/bin/env python3
# Timed lambdas run inside the loop that defines them, and big tensors are deleted after timing
# to free GPU memory for the next stage: B023/F821 are false alarms here.
# ruff: noqa: B023, F821, E731
"""MSA benchmark on one GPU (a script printing tables, not a test).

    python3 tests/bench/msa.py [--quick] [--sections ceil,tune,prefill,varlen,modes,chunked,decode,flex]
                               [--out DIR]

``--sections topk`` times the prefill top-k stage alone (before/after exact tie-breaking).

Protocol (shared/KERNELS.md): M3 shape (64 query heads, 4 KV heads, head dim 128, bf16, pages of
128 tokens, k = 16, index head dim 128). Medians of ``triton.testing.do_bench`` (it clears L2
before every run); runs over ~100 ms use 1 warm-up + 3 timed runs with CUDA events. Decode is
timed as CUDA-graph replays. Useful TFLOP/s counts ``4 * G * D`` per key actually visible in
each selected block; bytes are the design's minimum traffic (stated per row) over the time,
compared with the card's own copy bandwidth measured in the same run. Each row names the card.
Results are also written as JSON lines and markdown to ``--out`` (default ``$OUT`` or ``.``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import pathlib
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import torch
import triton

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _import_kernels():
    """``mcode.kernels`` from this source tree, whether or not mcode is installed."""
    try:
        import mcode  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT))
    try:
        import mcode.kernels as mk

        return mk
    except ImportError:
        kdir = ROOT / "kernels"
        spec = importlib.util.spec_from_file_location(
            "mcode.kernels", kdir / "__init__.py", submodule_search_locations=[str(kdir)]
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules["mcode.kernels"] = mod
        spec.loader.exec_module(mod)
        return mod


mk = _import_kernels()
warnings.filterwarnings("ignore", message=".*kernel not used because.*")
warnings.filterwarnings("ignore", message=".*has been runtime disabled.*")
warnings.filterwarnings("ignore", message=".*fused kernels require query.*")
from mcode.kernels import api  # noqa: E402
from mcode.kernels._util import token_meta  # noqa: E402
from mcode.kernels.decode import decode_forward  # noqa: E402
from mcode.kernels.dense import dense_forward  # noqa: E402
from mcode.kernels.invert import build_worklist  # noqa: E402
from mcode.kernels.prefill import combine, kv_outer_forward, tokens_per_work  # noqa: E402
from mcode.kernels.query_outer import query_outer_forward  # noqa: E402
from mcode.kernels.reference import assemble_selection  # noqa: E402
from mcode.kernels.select import block_scores, topk_from_scores  # noqa: E402

K_ = 1024
HQ, HKV, D, BS, DI, TOPK = 64, 4, 128, 128, 128, 16
G = HQ // HKV
DEV = "cuda"
CARD = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def smoke_mode() -> None:
    """Tiny shapes on the CPU through TRITON_INTERPRET=1: checks the script's logic only."""
    global K_, HQ, HKV, D, BS, DI, TOPK, G, DEV
    K_, HQ, HKV, D, BS, DI, TOPK, DEV = 8, 8, 2, 64, 64, 64, 4, "cpu"
    G = HQ // HKV


ROWS: list[dict[str, Any]] = []
DENSE_DECODE: dict[tuple[int, int, int], float] = {}
OUT = pathlib.Path(os.environ.get("OUT", "."))
CEIL = {"bw": float("nan"), "tflops": float("nan")}
CFG: dict[str, dict[str, int]] = {
    "kv": dict(block_m=64, num_warps=4, num_stages=3, programs_per_sm=2),
    "tiles": dict(tiles=32),
    "qo": dict(block_n=128, num_warps=4, num_stages=2),
    "score": dict(block_m=128, num_warps=4, num_stages=3, blocks_per_prog=32),
}


def log(msg: str) -> None:
    print(msg, flush=True)


def row(
    section: str,
    name: str,
    ms: float,
    flop: float | None = None,
    nbytes: float | None = None,
    note: str = "",
    **extra: Any,
) -> None:
    r = dict(section=section, name=name, card=CARD, ms=ms, note=note, **extra)
    if flop:
        r["tflops"] = flop / ms / 1e9
    if nbytes:
        r["gbps"] = nbytes / ms / 1e6
        r["bw_frac"] = r["gbps"] / CEIL["bw"] if CEIL["bw"] == CEIL["bw"] else None
    ROWS.append(r)
    s = f"[{section}] {name}: {ms:.3f} ms"
    if flop:
        s += f"  {r['tflops']:.1f} TFLOP/s"
    if nbytes:
        s += f"  {r['gbps']:.0f} GB/s ({nbytes / 1e9:.2f} GB)"
    log(s + (f"  {note}" if note else ""))
    with open(OUT / "bench.jsonl", "a") as f:
        f.write(json.dumps(r) + "\n")


def tm(fn: Callable[[], Any], heavy: bool = False, warm: bool = True) -> float:
    """Median milliseconds."""
    if DEV == "cpu":
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    if heavy:
        if warm:
            fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(3):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b))
        return sorted(ts)[1]
    return triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median")


def tm_auto(fn: Callable[[], Any]) -> float:
    t0 = time.time()
    fn()
    sync()
    return tm(fn, heavy=(time.time() - t0) > 0.08, warm=False)


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def free() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak() -> str:
    return f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if DEV == "cuda" else ""


# --------------------------------------------------------------------------- inputs
class Case:
    def __init__(
        self,
        seqs: list[tuple[int, int]],
        ik_dtype: torch.dtype = torch.bfloat16,
        q_layout: bool = True,
    ):
        dev = DEV
        self.seqs = seqs
        B = len(seqs)
        nbs = [math.ceil(lk / BS) for _, lk in seqs]
        self.max_pages = max(nbs)
        P = sum(nbs)
        perm = torch.randperm(P, device=dev).to(torch.int32)
        pt = torch.zeros(B, self.max_pages, dtype=torch.int32, device=dev)
        off = 0
        for b, nb in enumerate(nbs):
            pt[b, :nb] = perm[off : off + nb]
            off += nb
        self.page_table = pt
        self.k_cache = torch.randn(P, HKV, BS, D, device=dev, dtype=torch.bfloat16)
        self.v_cache = torch.randn(P, HKV, BS, D, device=dev, dtype=torch.bfloat16)
        self.index_k = torch.randn(P, BS, DI, device=dev, dtype=torch.bfloat16).to(ik_dtype)
        T = sum(lq for lq, _ in seqs)
        self.T = T
        self.q = torch.randn(T, HQ, D, device=dev, dtype=torch.bfloat16)
        self.index_q = torch.randn(T, HKV, DI, device=dev, dtype=torch.bfloat16)
        self.cu = torch.tensor([0] + [lq for lq, _ in seqs], device=dev).cumsum(0).to(torch.int32)
        self.seqlens_k = torch.tensor([lk for _, lk in seqs], dtype=torch.int32, device=dev)
        self.tok_seq, self.tok_pos = token_meta(self.cu, self.seqlens_k, T)
        self.max_seqlen_q = max(lq for lq, _ in seqs)
        self.scale = 1.0 / math.sqrt(D)


def make_sel(c: Case, mode: str) -> torch.Tensor:
    """Selections ``[Hkv, T, k]`` on the GPU: uniform / skewed / shared / indexer."""
    if mode == "indexer":
        return api.msa_select(
            c.index_q, c.index_k, c.page_table, c.cu, c.seqlens_k, TOPK, max_seqlen_q=c.max_seqlen_q
        )
    T = c.T
    nb = c.max_pages
    local = c.tok_pos.long() // BS
    ids = torch.arange(nb, device=DEV)
    sels = []
    for _ in range(HKV):  # per head keeps the [T, nb] scratch at a few GB
        if mode == "uniform":
            s = torch.rand(T, nb, device=DEV)
        elif mode == "skewed":
            u = torch.rand(T, nb, device=DEV)
            z = 1.0 / (1.0 + torch.randperm(nb, device=DEV).float())  # Zipf popularity
            rec = (local[:, None] - ids[None]).float()
            s = u * z[None] + (ids[None] < 4).float() * 10 + ((rec >= 0) & (rec < 8)).float() * 5
        elif mode == "shared":
            qb = c.tok_pos.long() // 128
            base = torch.rand(int(qb.max()) + 1, nb, device=DEV)
            s = base[qb]
        else:
            raise ValueError(mode)
        s = torch.where(ids[None] < local[:, None], s, torch.full_like(s, float("-inf")))
        v, i = torch.topk(s, min(TOPK - 1, nb), dim=-1)
        sels.append(assemble_selection(i, v, local, TOPK))
        del s, v, i
    return torch.stack(sels).contiguous()


def sel_stats(c: Case, sel: torch.Tensor) -> dict[str, float]:
    valid = sel >= 0
    kpos0 = sel.long() * BS
    vis = (c.tok_pos.long()[None, :, None] - kpos0 + 1).clamp(0, BS)
    keys = torch.where(valid, vis, torch.zeros_like(vis)).sum().item()
    slots = valid.sum().item()
    return dict(keys=keys, slots=slots, flop=4.0 * G * D * keys)


def bytes_kv_outer(c: Case, st: dict[str, float], n_work: int) -> tuple[float, float]:
    slots = st["slots"]
    fwd = slots * (G * D * 2 * 2 + G * 4) + n_work * 2 * BS * D * 2 + slots * 8
    comb = slots * (G * D * 2 + G * 4) + c.T * HQ * (D * 2 + 4) + c.T * HKV * TOPK * 4
    return fwd, comb


def bytes_query_outer(c: Case, st: dict[str, float]) -> float:
    return st["slots"] * 2 * BS * D * 2 + c.T * HQ * D * 2 * 2


# --------------------------------------------------------------------------- pieces
def run_kv(c: Case, sel: torch.Tensor, wl=None, po=None, pl=None, out=None, lse=None):
    if wl is None:
        wl = build_worklist(
            sel,
            c.tok_seq,
            c.page_table.shape[0],
            c.max_pages,
            tokens_per_work(G, CFG["kv"]["block_m"], CFG["tiles"]["tiles"]),
            c.tok_pos,
        )
    kw = dict(CFG["kv"])
    po, pl = kv_outer_forward(
        c.q,
        c.k_cache,
        c.v_cache,
        c.page_table,
        c.seqlens_k,
        wl,
        TOPK,
        c.scale,
        part_o=po,
        part_lse=pl,
        **kw,
    )
    return combine(po, pl, sel, out=out, lse=lse)


def run_qo(c: Case, sel: torch.Tensor, out=None, lse=None, **over):
    kw = dict(CFG["qo"])
    kw.update(over)
    return query_outer_forward(
        c.q,
        c.k_cache,
        c.v_cache,
        sel,
        c.page_table,
        c.tok_seq,
        c.tok_pos,
        c.scale,
        out=out,
        lse=lse,
        **kw,
    )


def run_select(c: Case, **over) -> torch.Tensor:
    kw = dict(CFG["score"])
    kw.update(over)
    sc = block_scores(c.index_q, c.index_k, c.page_table, c.cu, c.seqlens_k, c.max_seqlen_q, **kw)
    return topk_from_scores(sc, c.tok_pos, BS, TOPK)


def check_close(name: str, out: torch.Tensor, ref: torch.Tensor) -> float:
    err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
    ok = err < 1e-2 and not torch.isnan(out).any().item()
    log(f"  check {name}: rel err {err:.2e} {'OK' if ok else 'FAIL'}")
    if not ok:
        ROWS.append(
            dict(section="check", name=name, card=CARD, ms=float("nan"), note=f"FAIL {err}")
        )
    return err


def dense_sdpa(c: Case, backend: str) -> Callable[[], Any] | None:
    """SDPA over the (single) sequence's contiguous K/V, bottom-right causal."""
    if DEV != "cuda":
        return None
    from torch.nn.attention import SDPBackend, sdpa_kernel

    ((lq, lk),) = c.seqs
    kc = c.k_cache[c.page_table[0, : math.ceil(lk / BS)].long()]  # [nb, Hkv, BS, D]
    k = kc.permute(1, 0, 2, 3).reshape(1, HKV, -1, D)[:, :, :lk]
    vc = c.v_cache[c.page_table[0, : math.ceil(lk / BS)].long()]
    v = vc.permute(1, 0, 2, 3).reshape(1, HKV, -1, D)[:, :, :lk]
    k, v = k.contiguous(), v.contiguous()
    q = c.q.view(1, lq, HQ, D).transpose(1, 2)
    be = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }[backend]
    F = torch.nn.functional.scaled_dot_product_attention
    if lq == lk:
        mask, causal = None, True
    elif lq == 1:
        mask, causal = None, False
    else:
        from torch.nn.attention.bias import causal_lower_right

        mask, causal = causal_lower_right(lq, lk), False

    def fn():
        with sdpa_kernel(be):
            return F(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True)

    try:
        fn()
        torch.cuda.synchronize()
        return fn
    except Exception as e:
        log(f"  sdpa {backend}: unavailable ({type(e).__name__}: {str(e)[:160]})")
        return None


# --------------------------------------------------------------------------- sections
def sec_ceil() -> None:
    n = 2 * K_**3  # 2 GiB
    a = torch.empty(n, dtype=torch.uint8, device=DEV)
    b = torch.empty_like(a)
    ms = tm(lambda: b.copy_(a))
    ms = max(ms, 1e-6)
    CEIL["bw"] = 2 * n / ms / 1e6
    row("ceil", "device copy 2 GiB (read+write)", ms, nbytes=2 * n)
    del a, b
    x = torch.randn(8192, 8192, device=DEV, dtype=torch.bfloat16)
    y = torch.randn(8192, 8192, device=DEV, dtype=torch.bfloat16)
    ms = tm(lambda: x @ y)
    CEIL["tflops"] = 2 * 8192**3 / ms / 1e9
    row("ceil", "bf16 matmul 8192^3 (random data)", ms, flop=2 * 8192**3)
    del x, y
    free()


def kv_fwd(c, wl, cfg):
    """A timed-call closure for the KV-outer forward into preallocated partials, and them."""
    po = torch.empty(c.T, HKV, TOPK, G, D, dtype=torch.bfloat16, device=DEV)
    pl = torch.empty(c.T, HKV, TOPK, G, device=DEV)

    def fwd():
        return kv_outer_forward(
            c.q, c.k_cache, c.v_cache, c.page_table, c.seqlens_k, wl, TOPK, c.scale,
            part_o=po, part_lse=pl, **cfg,
        )  # fmt: skip

    return fwd, po, pl


def sec_tune(L: int) -> None:
    c = Case([(L, L)])
    sel = make_sel(c, "uniform")
    st = sel_stats(c, sel)
    ref_out, _ = run_qo(c, sel, block_n=64, num_warps=4, num_stages=2)
    ref_out = ref_out.clone()
    best = None
    for bm, nw, ns, pps, tiles in [
        (64, 4, 3, 2, 8),
        (64, 4, 3, 2, 16),
        (64, 4, 3, 2, 32),
        (64, 4, 3, 3, 16),
        (64, 4, 4, 2, 16),
        (64, 4, 2, 4, 16),
        (128, 8, 3, 1, 16),
        (32, 4, 3, 4, 16),
    ]:
        CFG["kv"] = dict(block_m=bm, num_warps=nw, num_stages=ns, programs_per_sm=pps)
        try:
            wl = build_worklist(
                sel, c.tok_seq, 1, c.max_pages, tokens_per_work(G, bm, tiles), c.tok_pos
            )
            fwd, po, pl = kv_fwd(c, wl, CFG["kv"])
            ms = tm(fwd)
            o, _ = combine(po, pl, sel)
            check_close(f"kv {CFG['kv']}", o, ref_out)
            row(
                "tune",
                f"kv_outer fwd {L // K_}K bm={bm} w={nw} s={ns} pps={pps} tiles={tiles}",
                ms,
                st["flop"],
            )
            if best is None or ms < best[0]:
                best = (ms, dict(CFG["kv"]), tiles)
            del fwd, po, pl, wl
        except Exception as e:
            log(f"  kv variant failed: {type(e).__name__}: {str(e)[:200]}")
    CFG["kv"] = best[1]
    CFG["tiles"] = dict(tiles=best[2])
    best = None
    for bn, nw, ns in [(64, 4, 3), (64, 4, 2), (128, 4, 2), (128, 8, 2), (64, 8, 3), (32, 4, 4)]:
        try:
            ms = tm(lambda: run_qo(c, sel, block_n=bn, num_warps=nw, num_stages=ns))
            o, _ = run_qo(c, sel, block_n=bn, num_warps=nw, num_stages=ns)
            check_close(f"qo bn={bn} w={nw} s={ns}", o, ref_out)
            row("tune", f"query_outer {L // K_}K bn={bn} w={nw} s={ns}", ms, st["flop"])
            if best is None or ms < best[0]:
                best = (ms, dict(block_n=bn, num_warps=nw, num_stages=ns))
        except Exception as e:
            log(f"  qo variant failed: {type(e).__name__}: {str(e)[:200]}")
    CFG["qo"] = best[1]
    best = None
    sflop = 2.0 * HKV * DI * (c.tok_pos.long() // BS + 1).sum().item() * BS
    for bm, nw, ns, bpp in [
        (128, 8, 3, 32),
        (128, 4, 3, 32),
        (64, 4, 3, 32),
        (128, 8, 2, 64),
        (256, 8, 3, 32),
    ]:
        try:
            kw = dict(block_m=bm, num_warps=nw, num_stages=ns, blocks_per_prog=bpp)
            ms = tm(
                lambda: block_scores(
                    c.index_q, c.index_k, c.page_table, c.cu, c.seqlens_k, c.max_seqlen_q, **kw
                )
            )
            row("tune", f"score {L // K_}K bm={bm} w={nw} s={ns} bpp={bpp}", ms, sflop)
            if best is None or ms < best[0]:
                best = (ms, kw)
        except Exception as e:
            log(f"  score variant failed: {type(e).__name__}: {str(e)[:200]}")
    CFG["score"] = best[1]
    log(f"  chosen configs: {CFG}")
    del c, sel
    free()


def sec_prefill(L: int, dense: bool = True) -> None:
    sec = f"prefill {L // K_}K"
    c = Case([(L, L)])
    sel = make_sel(c, "uniform")
    st = sel_stats(c, sel)
    sflop = 2.0 * HKV * DI * (c.tok_pos.long() // BS + 1).sum().item() * BS
    # stages
    sc_kw = dict(CFG["score"])
    ms_score = tm(
        lambda: block_scores(
            c.index_q, c.index_k, c.page_table, c.cu, c.seqlens_k, c.max_seqlen_q, **sc_kw
        )
    )
    row(sec, "score (block max, matmul)", ms_score, sflop)
    scores = block_scores(
        c.index_q, c.index_k, c.page_table, c.cu, c.seqlens_k, c.max_seqlen_q, **sc_kw
    )
    ms_topk = tm(lambda: topk_from_scores(scores, c.tok_pos, BS, TOPK))
    row(sec, "top-k (exact, Triton)", ms_topk, nbytes=scores.numel() * 4)
    del scores
    chunk = tokens_per_work(G, CFG["kv"]["block_m"], CFG["tiles"]["tiles"])
    ms_inv = tm(lambda: build_worklist(sel, c.tok_seq, 1, c.max_pages, chunk, c.tok_pos))
    row(sec, "inversion + work list (torch sort)", ms_inv)
    wl = build_worklist(sel, c.tok_seq, 1, c.max_pages, chunk, c.tok_pos)
    n_work = int(wl.num_work.item())
    fb, cb = bytes_kv_outer(c, st, n_work)
    fwd, po, pl = kv_fwd(c, wl, dict(CFG["kv"]))
    ms_f = tm(fwd)
    row(sec, "kv_outer forward", ms_f, st["flop"], fb, note=f"{n_work} work items")
    out = torch.empty_like(c.q)
    lse = torch.empty(c.T, HQ, device=DEV)
    ms_c = tm(lambda: combine(po, pl, sel, out=out, lse=lse))
    row(sec, "combine", ms_c, nbytes=cb)
    row(
        sec,
        "kv_outer forward + combine",
        ms_f + ms_c,
        st["flop"],
        fb + cb,
        note=f"floor {(fb + cb) / CEIL['bw'] / 1e6:.1f} ms at measured copy BW",
    )
    kv_out = out.clone()
    del fwd, po, pl, out, lse
    free()
    qo_out = torch.empty_like(c.q)
    qo_lse = torch.empty(c.T, HQ, device=DEV)
    ms_q = tm(lambda: run_qo(c, sel, out=qo_out, lse=qo_lse))
    row(
        sec,
        "query_outer (baseline)",
        ms_q,
        st["flop"],
        bytes_query_outer(c, st),
        note="bytes if no K/V reuse",
    )
    check_close(f"{sec} kv_outer vs query_outer", kv_out, qo_out)
    del qo_out, qo_lse, kv_out
    free()
    ms_layer = tm_auto(
        lambda: api.msa_attention(
            c.q,
            c.k_cache,
            c.v_cache,
            c.index_q,
            c.index_k,
            c.page_table,
            c.cu,
            c.seqlens_k,
            TOPK,
            max_seqlen_q=c.max_seqlen_q,
        )
    )
    row(
        sec,
        "whole layer (API: select+invert+fwd+combine)",
        ms_layer,
        st["flop"] + sflop,
        note=peak(),
    )
    free()
    if dense:
        dflop = 4.0 * HQ * D * (c.tok_pos.long() + 1).sum().item()
        for be in ("flash", "cudnn"):
            fn = dense_sdpa(c, be)
            if fn is not None:
                row(sec, f"dense SDPA {be}", tm_auto(fn), dflop)
            free()
        ms_d = tm_auto(
            lambda: dense_forward(
                c.q, c.k_cache, c.v_cache, c.page_table, c.cu, c.seqlens_k, c.max_seqlen_q, c.scale
            )
        )
        row(sec, "dense (our Triton kernel, paged)", ms_d, dflop)
    del c, sel
    free()


def sec_varlen() -> None:
    sec = "varlen 4x<=32K"
    lens = [32 * K_, 27 * K_ + 311, 19 * K_ + 77, 9 * K_ + 5]
    c = Case([(x, x) for x in lens])
    sel = make_sel(c, "uniform")
    st = sel_stats(c, sel)
    wl = build_worklist(
        sel,
        c.tok_seq,
        4,
        c.max_pages,
        tokens_per_work(G, CFG["kv"]["block_m"], CFG["tiles"]["tiles"]),
        c.tok_pos,
    )
    fb, cb = bytes_kv_outer(c, st, int(wl.num_work.item()))
    ms = tm(lambda: run_kv(c, sel, wl))
    row(sec, "kv_outer forward + combine", ms, st["flop"], fb + cb)
    ms = tm(lambda: run_qo(c, sel))
    row(sec, "query_outer", ms, st["flop"])
    ms = tm_auto(
        lambda: api.msa_attention(
            c.q,
            c.k_cache,
            c.v_cache,
            c.index_q,
            c.index_k,
            c.page_table,
            c.cu,
            c.seqlens_k,
            TOPK,
            max_seqlen_q=c.max_seqlen_q,
        )
    )
    row(sec, "whole layer (API)", ms)
    del c, sel, wl
    free()


def sec_modes(L: int) -> None:
    c = Case([(L, L)])
    for mode in ("uniform", "skewed", "shared", "indexer"):
        sec = f"modes {L // K_}K"
        sel = make_sel(c, mode)
        st = sel_stats(c, sel)
        wl = build_worklist(
            sel,
            c.tok_seq,
            1,
            c.max_pages,
            tokens_per_work(G, CFG["kv"]["block_m"], CFG["tiles"]["tiles"]),
            c.tok_pos,
        )
        fb, cb = bytes_kv_outer(c, st, int(wl.num_work.item()))
        ms = tm(lambda: run_kv(c, sel, wl))
        row(sec, f"{mode}: kv_outer fwd+combine", ms, st["flop"], fb + cb)
        ms = tm(lambda: run_qo(c, sel))
        row(sec, f"{mode}: query_outer", ms, st["flop"])
        del sel, wl
        free()
    del c
    free()


def sec_chunked(ctx: int, chunk: int, dense: bool = True) -> None:
    sec = f"chunked {chunk // K_}K@{ctx // K_}K"
    c = Case([(chunk, ctx)])
    sflop = 2.0 * HKV * DI * (c.tok_pos.long() // BS + 1).sum().item() * BS
    sc_kw = dict(CFG["score"])
    ms_s = tm(
        lambda: block_scores(
            c.index_q, c.index_k, c.page_table, c.cu, c.seqlens_k, c.max_seqlen_q, **sc_kw
        )
    )
    row(sec, "score", ms_s, sflop)
    scores = block_scores(
        c.index_q, c.index_k, c.page_table, c.cu, c.seqlens_k, c.max_seqlen_q, **sc_kw
    )
    row(
        sec,
        "top-k",
        tm(lambda: topk_from_scores(scores, c.tok_pos, BS, TOPK)),
        nbytes=scores.numel() * 4,
    )
    sel = topk_from_scores(scores, c.tok_pos, BS, TOPK)
    del scores
    st = sel_stats(c, sel)
    ch = tokens_per_work(G, CFG["kv"]["block_m"], CFG["tiles"]["tiles"])
    row(sec, "inversion", tm(lambda: build_worklist(sel, c.tok_seq, 1, c.max_pages, ch, c.tok_pos)))
    wl = build_worklist(sel, c.tok_seq, 1, c.max_pages, ch, c.tok_pos)
    fb, cb = bytes_kv_outer(c, st, int(wl.num_work.item()))
    row(sec, "kv_outer fwd + combine", tm(lambda: run_kv(c, sel, wl)), st["flop"], fb + cb)
    row(sec, "query_outer", tm(lambda: run_qo(c, sel)), st["flop"])
    free()
    layer = lambda: api.msa_attention(
        c.q,
        c.k_cache,
        c.v_cache,
        c.index_q,
        c.index_k,
        c.page_table,
        c.cu,
        c.seqlens_k,
        TOPK,
        max_seqlen_q=c.max_seqlen_q,
    )
    ms_layer = tm_auto(layer)
    row(sec, "whole layer (API)", ms_layer, st["flop"] + sflop, note=peak())
    free()
    if dense:
        dflop = 4.0 * HQ * D * (c.tok_pos.long() + 1).sum().item()
        for be in ("flash", "cudnn"):
            fn = dense_sdpa(c, be)
            if fn is not None:
                ms = tm_auto(fn)
                row(sec, f"dense SDPA {be}", ms, dflop, note=f"layer speedup {ms / ms_layer:.1f}x")
            free()
    del c, sel, wl
    free()


def sec_decode(B: int, ctx: int, S: int, fp8: bool, dense: bool = True, tune: bool = False) -> None:
    sec = f"decode B={B} ctx={ctx // K_}K S={S}"
    ikd = torch.float8_e4m3fn if fp8 else torch.bfloat16
    ikn = "fp8" if fp8 else "bf16"
    c = Case([(S, ctx)] * B, ik_dtype=ikd)
    q = c.q.view(B, S, HQ, D)
    iq = c.index_q.view(B, S, HKV, DI)
    args = (q, c.k_cache, c.v_cache, iq, c.index_k, c.page_table, c.seqlens_k, TOPK, c.scale)
    ik_bytes = B * ctx * DI * (1 if fp8 else 2)
    kv_bytes = B * HKV * min(S * TOPK, math.ceil(ctx / BS)) * 2 * BS * D * 2
    variants = [dict()]  # the defaults (auto blocks per program, 4 warps, 6 stages)
    if tune:
        variants += [
            dict(score_blocks_per_prog=16, score_num_warps=4, score_num_stages=4),
            dict(score_blocks_per_prog=32, score_num_warps=4, score_num_stages=4),
            dict(score_blocks_per_prog=32, score_num_warps=4, score_num_stages=8),
            dict(score_blocks_per_prog=16, score_num_warps=8, score_num_stages=6),
        ]
    ms = None
    for kw in variants:
        decode_forward(*args, **kw)
        sync()
        if DEV == "cuda":
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                decode_forward(*args, **kw)
            m = tm(lambda: g.replay())
            del g
        else:
            m = tm(lambda: decode_forward(*args, **kw))
        tag = (
            ""
            if not kw
            else f" bpp={kw['score_blocks_per_prog']} w={kw['score_num_warps']} s={kw['score_num_stages']}"
        )
        row(
            sec,
            f"msa_decode graph ({ikn} index keys){tag}",
            m,
            nbytes=ik_bytes + kv_bytes,
            note="bytes: index keys + union K/V (upper bound)",
        )
        ms = m if ms is None else min(ms, m)
    iq3 = iq.reshape(B * S, HKV, DI)
    cu = torch.arange(0, (B + 1) * S, S, dtype=torch.int32, device=DEV)
    bpp = min(64, max(4, 1 << max(0, (-(-B * c.max_pages // (4 * 132)) - 1).bit_length())))
    ms_s = tm(
        lambda: block_scores(
            iq3,
            c.index_k,
            c.page_table,
            cu,
            c.seqlens_k,
            S,
            blocks_per_prog=bpp,
            num_warps=4,
            num_stages=6,
        )
    )
    row(
        sec,
        f"  of which score kernel ({ikn})",
        ms_s,
        nbytes=ik_bytes,
        note=f"rest (select+union, split, merge, launches) {max(ms - ms_s, 0) * 1e3:.0f} us",
    )
    free()
    if dense and DEV == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        # timing only: the dense baseline reads the same bytes in a contiguous layout
        nb = math.ceil(ctx / BS)
        kd = c.k_cache.view(B, nb, HKV, BS, D).permute(0, 2, 1, 3, 4).reshape(B, HKV, nb * BS, D)
        vd = c.v_cache.view(B, nb, HKV, BS, D).permute(0, 2, 1, 3, 4).reshape(B, HKV, nb * BS, D)
        del c
        free()
        qd = q.transpose(1, 2)
        mask = None
        if S > 1:
            from torch.nn.attention.bias import causal_lower_right

            mask = causal_lower_right(S, nb * BS)
        best = None
        for name, be in (
            ("flash", SDPBackend.FLASH_ATTENTION),
            ("cudnn", SDPBackend.CUDNN_ATTENTION),
        ):

            def fn(be=be):
                with sdpa_kernel(be):
                    return torch.nn.functional.scaled_dot_product_attention(
                        qd, kd, vd, attn_mask=mask, enable_gqa=True
                    )

            try:
                fn()
                torch.cuda.synchronize()
                gd = torch.cuda.CUDAGraph()
                with torch.cuda.graph(gd):
                    fn()
                msd = tm(lambda: gd.replay())
                row(sec, f"dense SDPA {name} (graph)", msd, nbytes=2 * B * HKV * nb * BS * D * 2)
                best = msd if best is None else min(best, msd)
                del gd
            except Exception as e:
                log(f"  dense decode {name}: unavailable ({type(e).__name__}: {str(e)[:160]})")
            free()
        if best:
            DENSE_DECODE[(B, ctx, S)] = best
        del kd, vd
    if (B, ctx, S) in DENSE_DECODE:
        row(
            sec,
            f"msa ({ikn}) speedup vs fastest dense",
            ms,
            note=f"{DENSE_DECODE[(B, ctx, S)] / ms:.1f}x",
        )
    free()


def sec_flex(L: int) -> None:
    """FlexAttention with a block mask equal to the selection: 'shared' (one choice per 128-token
    query block: exact at block granularity) and 'uniform' (per-token choices: the block mask is
    the union over each query block, refined per token by a mask_mod lookup)."""
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    sec = f"flex {L // K_}K"
    c = Case([(L, L)])
    nq, nbk = L // 128, L // BS
    q = c.q.view(1, L, HQ, D).transpose(1, 2)
    k = c.k_cache[c.page_table[0, :nbk].long()].permute(1, 0, 2, 3).reshape(1, HKV, L, D)
    v = c.v_cache[c.page_table[0, :nbk].long()].permute(1, 0, 2, 3).reshape(1, HKV, L, D)
    fx = torch.compile(flex_attention)
    for mode in ("shared", "uniform"):
        sel = make_sel(c, mode)
        st = sel_stats(c, sel)
        selmask = torch.zeros(HKV, L, nbk, dtype=torch.bool, device=DEV)
        selmask.scatter_(-1, sel.long().clamp(min=0), sel >= 0)
        qblk = selmask.view(HKV, nq, 128, nbk).any(2)  # [Hkv, nq, nbk]
        cnt = qblk.sum(-1).to(torch.int32)
        idx = torch.argsort(qblk.to(torch.int8), dim=-1, descending=True, stable=True).to(
            torch.int32
        )
        kv_num = cnt.repeat_interleave(G, 0)[None].contiguous()
        kv_idx = idx.repeat_interleave(G, 0)[None].contiguous()
        if mode == "shared":

            def mm(b, h, qi, ki):
                return qi >= ki
        else:

            def mm(b, h, qi, ki, selmask=selmask):
                return (qi >= ki) & selmask[h // G, qi, ki // BS]

        bm = BlockMask.from_kv_blocks(
            kv_num, kv_idx, BLOCK_SIZE=128, mask_mod=mm, seq_lengths=(L, L)
        )
        t0 = time.time()
        o = fx(q, k, v, block_mask=bm, enable_gqa=True)
        torch.cuda.synchronize()
        log(
            f"  flex {mode}: compile+first run {time.time() - t0:.1f} s; "
            f"{cnt.float().mean().item():.0f} of {nbk} kv blocks per query block"
        )
        ms = tm(lambda: fx(q, k, v, block_mask=bm, enable_gqa=True))
        row(sec, f"FlexAttention, block mask = selection ({mode})", ms, st["flop"])
        ours = run_kv(c, sel)[0]
        check_close(f"flex vs kv_outer ({mode})", o.transpose(1, 2).reshape(L, HQ, D), ours)
        row(sec, f"kv_outer fwd+combine ({mode})", tm(lambda: run_kv(c, sel)), st["flop"])
        row(sec, f"query_outer ({mode})", tm(lambda: run_qo(c, sel)), st["flop"])
        del sel, selmask, bm, o, ours
        free()
    del c
    free()


def topk_legacy(scores: torch.Tensor, tok_pos: torch.Tensor, bs: int, topk: int) -> torch.Tensor:
    """The top-k before exact tie-breaking (fp32 ``torch.topk``, ties left to it), for timing."""
    T, H, nb = scores.shape
    local = (tok_pos.to(torch.int64) // bs).view(T, 1).expand(T, H)
    vals, idx = torch.topk(scores, min(topk - 1, nb), dim=-1, largest=True, sorted=True)
    return assemble_selection(idx, vals, local, topk).permute(1, 0, 2).contiguous()


def sec_topk() -> None:
    """Prefill top-k stage alone on real block scores: the old fp32 ``torch.topk`` against the
    exact Triton kernel (and a sweep of its program shape) and the exact int64 ``torch.topk``."""
    shapes = (
        [("prefill 32K", [(32 * K_, 32 * K_)])]
        if DEV == "cpu"
        else [
            ("prefill 32K", [(32 * K_, 32 * K_)]),
            ("prefill 128K", [(128 * K_, 128 * K_)]),
            ("chunked 16K@1024K", [(16 * K_, 1024 * K_)]),
        ]
    )
    for name, seqs in shapes:
        sec = f"topk {name}"
        c = Case(seqs)
        scores = block_scores(
            c.index_q, c.index_k, c.page_table, c.cu, c.seqlens_k, c.max_seqlen_q, **CFG["score"]
        )
        nbytes = scores.numel() * 4
        old = topk_legacy(scores, c.tok_pos, BS, TOPK)
        new = topk_from_scores(scores, c.tok_pos, BS, TOPK)
        pk = topk_from_scores(scores, c.tok_pos, BS, TOPK, method="packed")
        srt = lambda x: x.sort(-1).values
        diff_pk = int((srt(new) != srt(pk)).any(-1).sum())
        diff_old = int((srt(new) != srt(old)).any(-1).sum())
        row(
            sec,
            "before: fp32 torch.topk + assemble (ties unspecified)",
            tm(lambda: topk_legacy(scores, c.tok_pos, BS, TOPK)),
            nbytes=nbytes,
        )
        row(
            sec,
            "exact: int64 torch.topk on (key<<32) + (nb-1-id)",
            tm(lambda: topk_from_scores(scores, c.tok_pos, BS, TOPK, method="packed")),
            nbytes=nbytes,
            note=f"rows differing from Triton: {diff_pk}",
        )
        row(
            sec,
            "exact: Triton kernel (default)",
            tm(lambda: topk_from_scores(scores, c.tok_pos, BS, TOPK)),
            nbytes=nbytes,
            note=f"rows differing from the fp32 torch.topk: {diff_old} of {new.shape[0] * new.shape[1]}",
        )
        nbp = 1 << (scores.shape[-1] - 1).bit_length()
        seen = set()
        for elems in (2048, 4096, 8192):
            for warps in (4, 8, 16):
                rows_pp = max(1, elems // nbp)
                if rows_pp * nbp < 32 * warps or rows_pp * nbp > 64 * 32 * warps:
                    continue
                if (rows_pp, warps) in seen or rows_pp > 64:
                    continue
                seen.add((rows_pp, warps))
                kw = dict(rows_per_prog=rows_pp, num_warps=warps)
                got = topk_from_scores(scores, c.tok_pos, BS, TOPK, **kw)
                ok = torch.equal(got, new)
                row(
                    sec,
                    f"exact: Triton rows={rows_pp} warps={warps}",
                    tm(lambda: topk_from_scores(scores, c.tok_pos, BS, TOPK, **kw)),
                    nbytes=nbytes,
                    note="" if ok else "MISMATCH",
                )
        del c, scores, old, new, pk
        free()


def sec_isa() -> None:
    """Registers, spills, shared memory and MMA flavour (wgmma vs mma.sync) of each kernel as
    compiled in this run (from Triton's in-memory cache; internal API, best effort)."""
    import mcode.kernels.decode as kd
    import mcode.kernels.dense as kden
    import mcode.kernels.prefill as kp
    import mcode.kernels.query_outer as kq
    import mcode.kernels.select as ks

    for name, jf in [
        ("score", ks._score_kernel),
        ("topk", ks._topk_kernel),
        ("kv_outer_fwd", kp._kv_outer_fwd_kernel),
        ("combine", kp._combine_kernel),
        ("query_outer", kq._query_outer_kernel),
        ("decode_split", kd._decode_split_kernel),
        ("dense", kden._dense_kernel),
    ]:
        try:
            for _, entry in jf.device_caches.items():
                for ck in entry[0].values():
                    ptx = ck.asm.get("ptx", "")
                    md = ck.metadata
                    log(
                        f"  isa {name}: warps={md.num_warps} stages={md.num_stages} "
                        f"regs={ck.n_regs} spills={ck.n_spills} smem={md.shared} "
                        f"wgmma={ptx.count('wgmma.mma_async')} mma.sync={ptx.count('mma.sync')}"
                    )
        except Exception as e:
            log(f"  isa {name}: n/a ({type(e).__name__}: {e})")


def sec_ncu_target() -> None:
    """One decode step (B=8, 1M, fp8 index keys) and one 32K kv_outer forward + combine, run
    plainly (no graphs) so that ``ncu`` can profile the kernels."""
    c = Case([(1, 1024 * K_)] * 8, ik_dtype=torch.float8_e4m3fn)
    args = (
        c.q.view(8, 1, HQ, D),
        c.k_cache,
        c.v_cache,
        c.index_q.view(8, 1, HKV, DI),
        c.index_k,
        c.page_table,
        c.seqlens_k,
        TOPK,
        c.scale,
    )
    decode_forward(*args)
    sync()
    del c, args
    free()
    c = Case([(32 * K_, 32 * K_)])
    sel = make_sel(c, "uniform")
    run_kv(c, sel)
    sync()


def write_md() -> None:
    lines = [
        f"Card: {CARD}; torch {torch.__version__}; triton {triton.__version__}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "| section | what | card | ms | TFLOP/s | GB/s | % copy BW | note |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in ROWS:
        tf = f"{r['tflops']:.1f}" if r.get("tflops") else ""
        gb = f"{r['gbps']:.0f}" if r.get("gbps") else ""
        fr = f"{100 * r['bw_frac']:.0f}%" if r.get("bw_frac") else ""
        lines.append(
            f"| {r['section']} | {r['name']} | {r['card']} | {r['ms']:.3f} | {tf} | {gb} "
            f"| {fr} | {r.get('note', '')} |"
        )
    text = "\n".join(lines)
    (OUT / "bench.md").write_text(text + "\n")
    print(text, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sections", default="ceil,tune,prefill,varlen,modes,chunked,decode,flex")
    ap.add_argument("--quick", action="store_true", help="fewer sizes")
    ap.add_argument("--out", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU interpreter")
    ap.add_argument("--budget-s", type=float, default=1e9, help="skip sections past this time")
    a = ap.parse_args()
    if a.smoke:
        smoke_mode()
    global OUT
    if a.out:
        OUT = pathlib.Path(a.out)
    OUT.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    secs = a.sections.split(",")
    log(f"card {CARD}, torch {torch.__version__}, triton {triton.__version__}")
    plan: list[tuple[str, Callable[[], None]]] = []
    if "ceil" in secs:
        plan.append(("ceil", sec_ceil))
    if "tune" in secs:
        plan.append(("tune", lambda: sec_tune(32 * K_)))
    if "prefill" in secs:
        for L in (
            [32 * K_]
            if a.smoke
            else [32 * K_, 128 * K_]
            if a.quick
            else [32 * K_, 64 * K_, 128 * K_]
        ):
            plan.append((f"prefill {L}", lambda L=L: sec_prefill(L)))
    if "varlen" in secs:
        plan.append(("varlen", sec_varlen))
    if "modes" in secs:
        plan.append(("modes", lambda: sec_modes(32 * K_)))
    if "chunked" in secs:
        combos = (
            [(1024 * K_, 16 * K_)]
            if a.quick
            else [
                (128 * K_, 4 * K_),
                (128 * K_, 16 * K_),
                (512 * K_, 8 * K_),
                (1024 * K_, 4 * K_),
                (1024 * K_, 8 * K_),
                (1024 * K_, 16 * K_),
            ]
        )
        for ctx, ch in combos:
            plan.append((f"chunked {ch}@{ctx}", lambda ctx=ctx, ch=ch: sec_chunked(ctx, ch)))
    if "decode" in secs:
        combos = (
            [(1, 1024 * K_, 1), (8, 1024 * K_, 1), (8, 1024 * K_, 8)]
            if a.quick
            else [
                (1, 128 * K_, 1),
                (1, 1024 * K_, 1),
                (8, 128 * K_, 1),
                (8, 1024 * K_, 1),
                (8, 1024 * K_, 8),
                (64, 128 * K_, 1),
                (128, 32 * K_, 1),
            ]
        )
        for B, ctx, S in combos:
            for fp8 in (False, True):
                tune = B == 8 and ctx == 1024 * K_ and S == 1
                plan.append(
                    (
                        f"decode {B} {ctx} {S} {fp8}",
                        lambda B=B, ctx=ctx, S=S, fp8=fp8, tune=tune: sec_decode(
                            B, ctx, S, fp8, dense=not fp8, tune=tune
                        ),
                    )
                )
    if "topk" in secs:
        plan.append(("topk", sec_topk))
    if "ncu" in secs:
        plan.append(("ncu", sec_ncu_target))
    if "flex" in secs:
        plan.append(("flex", lambda: sec_flex(32 * K_)))
    if DEV == "cuda" and "ncu" not in secs:
        plan.append(("isa", sec_isa))
    for name, fn in plan:
        if time.time() - t_start > a.budget_s:
            log(f"== skip {name}: over the time budget")
            continue
        log(f"== {name} (t={time.time() - t_start:.0f}s)")
        try:
            fn()
        except Exception:
            log(traceback.format_exc())
            free()
    write_md()


if __name__ == "__main__":
    main()
