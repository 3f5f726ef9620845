"""Triton kernels against the fp32 references.

Without a GPU these run on the CPU through Triton's interpreter (``TRITON_INTERPRET=1``, set by
conftest) at small shapes; with one they run compiled, and the ``gpu`` tests add real sizes.
Outputs and partial buffers are poisoned with NaN, caches hold NaN past every sequence's end,
inputs are fresh random numbers each run.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from _msa_cases import make_case, random_selection, rel_err, shuffle_valid  # noqa: E402
from mcode.kernels import api  # noqa: E402
from mcode.kernels import reference as ref  # noqa: E402
from mcode.kernels._util import token_meta  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# (D, block) pairs cycled over the G sweep, so each G meets a different combination cheaply
_DB = [(64, 64), (128, 128), (64, 128), (128, 64), (64, 64)]
_GS = [1, 3, 4, 8, 16]


def _run_sparse(c, sel, method, gen_poison=True):
    """Run one sparse method with NaN-poisoned outputs (and partials) through the modules."""
    from mcode.kernels.invert import build_worklist
    from mcode.kernels.prefill import combine, kv_outer_forward, tokens_per_work
    from mcode.kernels.query_outer import query_outer_forward

    T, Hq, D = c.q.shape
    Hkv = c.k_cache.shape[1]
    G = Hq // Hkv
    k = sel.shape[-1]
    scale = 1.0 / math.sqrt(D)
    seq, pos = token_meta(c.cu_seqlens_q, c.seqlens_k, T)
    out = torch.full_like(c.q, float("nan"))
    lse = torch.full((T, Hq), float("nan"), device=c.q.device)
    if method == "query_outer":
        query_outer_forward(
            c.q, c.k_cache, c.v_cache, sel, c.page_table, seq, pos, scale, out=out, lse=lse
        )
    else:
        wl = build_worklist(
            sel, seq, c.page_table.shape[0], c.page_table.shape[1], tokens_per_work(G), pos
        )
        po = torch.full((T, Hkv, k, G, D), float("nan"), dtype=c.q.dtype, device=c.q.device)
        pl = torch.full((T, Hkv, k, G), float("nan"), device=c.q.device)
        kv_outer_forward(
            c.q,
            c.k_cache,
            c.v_cache,
            c.page_table,
            c.seqlens_k,
            wl,
            k,
            scale,
            part_o=po,
            part_lse=pl,
        )
        combine(po, pl, sel, out=out, lse=lse)
    return out, lse


def _check_vs(out, lse, ref_out, ref_lse, finite_rows=None):
    assert not torch.isnan(out).any(), "NaN in output (unwritten element or leaked poison)"
    assert not torch.isnan(lse).any(), "NaN in lse"
    err = rel_err(out, ref_out)
    assert err < 1e-2, f"relative error {err:.3e}"
    fin = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), fin), "lse finiteness differs from the reference"
    if fin.any():
        d = (lse[fin] - ref_lse[fin]).abs().max().item()
        assert d < 1e-3, f"lse max abs diff {d:.3e}"


@pytest.mark.parametrize("method", ["kv_outer", "query_outer"])
@pytest.mark.parametrize("G", _GS)
def test_sparse_uniform_varlen_chunked(G, method, gen):
    D, bs = _DB[_GS.index(G)]
    # two sequences: a chunk with a cached prefix (not a block multiple) and a short full one
    c = make_case(
        [(40, 3 * bs + 17), (bs // 2 + 9, bs // 2 + 9)],
        G=G,
        Hkv=2,
        D=D,
        block=bs,
        device=DEV,
        generator=gen,
    )
    sel = random_selection(c.tok_pos, 2, bs, topk=3, generator=gen).to(DEV)
    out, lse = _run_sparse(c, sel, method)
    ro, rl = ref.sparse_attention_ref(
        c.q, c.k_cache, c.v_cache, sel, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    _check_vs(out, lse, ro, rl)


@pytest.mark.parametrize("D,bs", [(64, 64), (128, 128)])
@pytest.mark.parametrize("method", ["kv_outer", "query_outer"])
def test_all_blocks_equals_dense(D, bs, method, gen):
    c = make_case(
        [(30, 2 * bs + 5), (20, 20)], G=4, Hkv=1, D=D, block=bs, device=DEV, generator=gen
    )
    sel = random_selection(c.tok_pos, 1, bs, topk=4, generator=gen).to(DEV)  # k > #blocks
    out, lse = _run_sparse(c, shuffle_valid(sel, gen), method)
    do, dl = ref.dense_attention_ref(
        c.q, c.k_cache, c.v_cache, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    _check_vs(out, lse, do, dl)


@pytest.mark.parametrize("method", ["kv_outer", "query_outer"])
def test_order_padding_prefix_and_empty_rows(method, gen):
    bs = 64
    c = make_case([(50, 5 * bs + 3)], G=2, Hkv=2, D=64, block=bs, device=DEV, generator=gen)
    # dense prefix: the first blocks (block 0 chosen by every query), -1 padding (k=6 > 4+local)
    sel = random_selection(c.tok_pos, 2, bs, topk=6, mode="prefix").to(DEV)
    sel[..., 4:] = -1
    sel[..., 3] = (c.tok_pos // bs).to(DEV).to(torch.int32)  # local block last valid entry
    sel[1, 7:12] = -1  # empty rows
    o1, l1 = _run_sparse(c, sel, method)
    ro, rl = ref.sparse_attention_ref(
        c.q, c.k_cache, c.v_cache, sel, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    _check_vs(o1, l1, ro, rl)
    assert (o1.view(50, 2, 2, 64)[7:12, 1] == 0).all()
    assert torch.isneginf(l1.view(50, 2, 2)[7:12, 1]).all()
    o2, l2 = _run_sparse(c, shuffle_valid(sel, gen), method)  # unordered lists
    assert rel_err(o2, o1) < 1e-2
    fin = torch.isfinite(l1)
    assert (l2[fin] - l1[fin]).abs().max() < 1e-3


@pytest.mark.parametrize("G,D,bs", [(1, 64, 64), (3, 128, 128), (16, 64, 64)])
def test_dense_kernel(G, D, bs, gen):
    c = make_case(
        [(45, 2 * bs + 11), (bs + 3, bs + 3)], G=G, Hkv=2, D=D, block=bs, device=DEV, generator=gen
    )
    from mcode.kernels.dense import dense_forward

    out = torch.full_like(c.q, float("nan"))
    lse = torch.full(c.q.shape[:2], float("nan"), device=c.q.device)
    dense_forward(
        c.q,
        c.k_cache,
        c.v_cache,
        c.page_table,
        c.cu_seqlens_q,
        c.seqlens_k,
        c.max_seqlen_q,
        1.0 / math.sqrt(D),
        out=out,
        lse=lse,
    )
    do, dl = ref.dense_attention_ref(
        c.q, c.k_cache, c.v_cache, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    _check_vs(out, lse, do, dl)


def check_selection_contract(sel, scores, tok_pos, bs, topk, tol):
    """Local block last, ids unique and visible, count = min(k, visible), and every selected
    non-local block scores >= the (k-1)-th best non-local score minus ``tol``."""
    Hkv, T, k = sel.shape
    sel, scores, tok_pos = sel.cpu().long(), scores.cpu(), tok_pos.cpu().long()
    local = tok_pos // bs
    nvalid = (sel >= 0).sum(-1)
    ar = torch.arange(k)
    assert ((sel >= 0) == (ar < nvalid[..., None])).all(), "valid entries must come first"
    assert (nvalid == torch.clamp(local + 1, max=k)[None]).all(), "wrong number of blocks"
    last = sel.gather(-1, (nvalid - 1).clamp(min=0)[..., None])[..., 0]
    assert (last == local[None]).all(), "local block must be the last valid entry"
    v = torch.where(sel >= 0, sel, torch.full_like(sel, -1))
    srt = v.sort(-1).values
    dup = (srt[..., 1:] == srt[..., :-1]) & (srt[..., 1:] >= 0)
    assert not dup.any(), "duplicate block ids"
    assert (v <= local[None, :, None]).all(), "invisible block selected"
    s = scores.clone()
    s.scatter_(-1, local.view(1, T, 1).expand(Hkv, T, 1), float("-inf"))
    m = min(topk - 1, s.shape[-1])
    if m > 0:
        kth = s.topk(m, dim=-1).values[..., -1]  # (k-1)-th best non-local (may be -inf)
        chosen = s.gather(-1, v.clamp(min=0))
        is_nonlocal = (v >= 0) & (v != local[None, :, None])
        bad = is_nonlocal & (chosen < kth[..., None] - tol)
        assert not bad.any(), f"{int(bad.sum())} selected blocks score below the k-th best"


@pytest.mark.parametrize("bs,di,topk", [(64, 64, 3), (128, 128, 4), (64, 128, 8)])
def test_select_contract(bs, di, topk, gen):
    c = make_case(
        [(70, 5 * bs + 7), (bs + 9, bs + 9)],
        G=1,
        Hkv=4,
        D=64,
        block=bs,
        di=di,
        device=DEV,
        generator=gen,
    )
    sel = api.msa_select(
        c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k, topk, backend="triton"
    )
    assert sel.dtype == torch.int32 and sel.shape == (4, c.q.shape[0], topk)
    scores = ref.index_scores_ref(c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k)
    check_selection_contract(sel, scores, c.tok_pos, bs, topk, tol=0.05 * math.sqrt(di))
    rsel = ref.msa_select_ref(c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k, topk)
    same = (sel.sort(-1).values.cpu() == rsel.sort(-1).values.cpu()).all(-1).float().mean()
    assert same > 0.9, f"only {same:.2%} of rows select the reference's blocks"


@pytest.mark.parametrize("S,G", [(1, 4), (3, 3), (8, 16)])
def test_decode(S, G, gen):
    bs, topk, B, Hkv, D = 64, 4, 2, 2, 64
    c = make_case(
        [(S, 3 * bs + 20), (S, 8 * bs + 1)], G=G, Hkv=Hkv, D=D, block=bs, device=DEV, generator=gen
    )
    from mcode.kernels.decode import decode_forward

    q = c.q.view(B, S, G * Hkv, D)
    iq = c.index_q.view(B, S, Hkv, -1)
    out = torch.full_like(q, float("nan"))
    lse = torch.full((B, S, G * Hkv), float("nan"), device=q.device)
    _, _, sel = decode_forward(
        q,
        c.k_cache,
        c.v_cache,
        iq,
        c.index_k,
        c.page_table,
        c.seqlens_k,
        topk,
        1.0 / math.sqrt(D),
        out=out,
        lse=lse,
    )
    scores = ref.index_scores_ref(c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k)
    check_selection_contract(sel, scores, c.tok_pos, bs, topk, tol=0.05 * 8)
    ro, rl = ref.sparse_attention_ref(
        c.q, c.k_cache, c.v_cache, sel, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    _check_vs(out.view(-1, G * Hkv, D), lse.view(-1, G * Hkv), ro, rl)


def test_api_triton_paths(gen):
    bs = 64
    c = make_case([(20, 2 * bs + 3)], G=2, Hkv=2, D=64, block=bs, device=DEV, generator=gen)
    sel = random_selection(c.tok_pos, 2, bs, 3, generator=gen).to(DEV)
    ro, rl = ref.sparse_attention_ref(
        c.q, c.k_cache, c.v_cache, sel, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    for method in ("kv_outer", "query_outer"):
        o, lse = api.msa_prefill(
            c.q,
            c.k_cache,
            c.v_cache,
            sel,
            c.page_table,
            c.cu_seqlens_q,
            c.seqlens_k,
            method=method,
            return_lse=True,
            backend="triton",
        )
        _check_vs(o, lse, ro, rl)
    o = api.msa_attention(
        c.q,
        c.k_cache,
        c.v_cache,
        c.index_q,
        c.index_k,
        c.page_table,
        c.cu_seqlens_q,
        c.seqlens_k,
        3,
        backend="triton",
    )
    assert torch.isfinite(o).all()


# ---------------------------------------------------------------- real sizes, GPU only
def _m3_case(gen, seqs, G=16, Hkv=4, D=128, bs=128):
    return make_case(seqs, G=G, Hkv=Hkv, D=D, block=bs, di=128, device="cuda", generator=gen)


def _sample_rows(c, n, gen):
    """A few whole sequences' worth of rows is too slow for the reference at real sizes: compare
    a random subset of tokens (the reference on those tokens only)."""
    T = c.q.shape[0]
    return torch.randperm(T, generator=gen)[:n].sort().values


def _ref_rows(c, sel, rows):
    """Reference output for a subset of query rows of a single-sequence case."""
    lq = c.q.shape[0]
    lk = int(c.seqlens_k[0])
    outs, lses = [], []
    for t in rows.tolist():
        # one-token "chunk" at position lk - lq + t
        cu = torch.tensor([0, 1], dtype=torch.int32, device="cuda")
        skl = torch.tensor([lk - lq + t + 1], dtype=torch.int32, device="cuda")
        o, lse_c = ref.sparse_attention_ref(
            c.q[t : t + 1], c.k_cache, c.v_cache, sel[:, t : t + 1], c.page_table, cu, skl
        )
        outs.append(o)
        lses.append(lse_c)
    return torch.cat(outs), torch.cat(lses)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["uniform", "skewed"])
def test_gpu_m3_chunked_prefill(mode, gen):
    c = _m3_case(gen, [(4096, 20000 + 77)])
    sel = random_selection(c.tok_pos, 4, 128, 16, mode=mode, generator=gen).cuda()
    rows = _sample_rows(c, 48, gen)
    ro, rl = _ref_rows(c, sel, rows)
    for method in ("kv_outer", "query_outer"):
        out, lse = _run_sparse(c, sel, method)
        assert not torch.isnan(out).any() and not torch.isnan(lse).any()
        _check_vs(out[rows.cuda()], lse[rows.cuda()], ro, rl)


@gpu
@pytest.mark.gpu
def test_gpu_full_prefill_varlen_select_and_dense(gen):
    c = _m3_case(gen, [(3000, 3000), (1500, 1500)], G=8, Hkv=4)
    sel = api.msa_select(c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k, 16)
    scores = ref.index_scores_ref(c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k)
    check_selection_contract(sel, scores, c.tok_pos, 128, 16, tol=0.05 * math.sqrt(128))
    full = random_selection(c.tok_pos, 4, 128, 32, generator=gen).cuda()  # 32 >= 24 blocks
    do, dl = ref.dense_attention_ref(
        c.q, c.k_cache, c.v_cache, c.page_table, c.cu_seqlens_q, c.seqlens_k, chunk=256
    )
    for method in ("kv_outer", "query_outer"):
        out, lse = _run_sparse(c, full, method)
        _check_vs(out, lse, do, dl)
    o, lse = api.dense_attention(
        c.q, c.k_cache, c.v_cache, c.page_table, c.cu_seqlens_q, c.seqlens_k, return_lse=True
    )
    _check_vs(o, lse, do, dl)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("S", [1, 8])
def test_gpu_decode_cuda_graph(S, gen):
    B, Hkv, G, D, bs = 4, 4, 16, 128, 128
    c = _m3_case(gen, [(S, 30000 + 13 * b) for b in range(B)])
    q = c.q.view(B, S, G * Hkv, D)
    iq = c.index_q.view(B, S, Hkv, 128)
    args = (q, c.k_cache, c.v_cache, iq, c.index_k, c.page_table, c.seqlens_k, 16)
    api.msa_decode(*args, return_lse=True, return_sel=True)  # warm-up / compile
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        gout, glse, gsel = api.msa_decode(*args, return_lse=True, return_sel=True)
    q.copy_(torch.randn(q.shape, generator=gen).to(q))  # new inputs, replay
    g.replay()
    torch.cuda.synchronize()
    scores = ref.index_scores_ref(c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k)
    check_selection_contract(gsel, scores, c.tok_pos, bs, 16, tol=0.05 * math.sqrt(128))
    ro, rl = ref.sparse_attention_ref(
        c.q, c.k_cache, c.v_cache, gsel, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    _check_vs(gout.view(-1, G * Hkv, D), glse.view(-1, G * Hkv), ro, rl)


@gpu
@pytest.mark.gpu
def test_gpu_fp8_index_keys(gen):
    c = _m3_case(gen, [(512, 9000)], G=16, Hkv=4)
    ik8 = c.index_k.to(torch.float8_e4m3fn)
    sel = api.msa_select(c.index_q, ik8, c.page_table, c.cu_seqlens_q, c.seqlens_k, 16)
    scores = ref.index_scores_ref(
        c.index_q, ik8.to(torch.bfloat16), c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    check_selection_contract(sel, scores, c.tok_pos, 128, 16, tol=0.05 * math.sqrt(128))


def test_union_blocks_fallback(gen):
    """The torch union used past 16384 pages: unique blocks per (request, head) + token masks."""
    from mcode.kernels.decode import union_blocks

    B, S, Hkv, k = 3, 4, 2, 5
    pos = torch.tensor([900 + 7 * b + s for b in range(B) for s in range(S)])
    sel = random_selection(pos, Hkv, 64, k, generator=gen)
    sel[1, 2] = -1  # an empty row
    ublk, ubits = union_blocks(sel, B, S)
    for b in range(B):
        for h in range(Hkv):
            want: dict[int, int] = {}
            for s in range(S):
                for x in sel[h, b * S + s].tolist():
                    if x >= 0:
                        want[x] = want.get(x, 0) | (1 << s)
            got = {
                int(x): int(m)
                for x, m in zip(ublk[b, h].tolist(), ubits[b, h].tolist(), strict=True)
                if x >= 0
            }
            assert got == want
            n = len(want)
            assert (ublk[b, h, n:] == -1).all() and (ublk[b, h, :n] >= 0).all()
