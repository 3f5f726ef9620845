"""The decode paths (one query per sequence) against the references they stand in for.

- Triton's split-KV dense decode (:mod:`mcode.kernels.split_kv`, through the interpreter on
  a CPU) equals :func:`dense_attention_ref`, whatever the number of splits (splits past a
  sequence's end included), and ``dense_attention`` routes decode batches to it.
- The CPU's batched torch paths (:mod:`mcode.kernels.torch_decode`): dense decode, MSA block
  selection (shared index head, and a layer's own per-head keys) and sparse attention over the
  selection equal the per-sequence references.

Caches are poisoned with NaN past each sequence's end (see ``make_case``): a path that reads or
weighs a slot it should not leaks NaN.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from _msa_cases import make_case, rel_err  # noqa: E402
from mcode.kernels import reference as ref  # noqa: E402
from mcode.kernels import torch_decode as td  # noqa: E402

from mcode import kernels  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"  # for the Triton paths
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# (Lq=1, Lk) per sequence: a one-token context, a partial page, several pages, a long one.
SEQS = [(1, 1), (1, 37), (1, 100), (1, 260)]


def _case(G: int, gen, dtype=torch.bfloat16, D: int = 32, device: str = "cpu"):  # type: ignore[no-untyped-def]
    return make_case(
        SEQS, G=G, Hkv=2, D=D, block=16, di=32, dtype=dtype, device=device, generator=gen
    )


def _dense_ref(c):  # type: ignore[no-untyped-def]
    return ref.dense_attention_ref(
        c.q, c.k_cache, c.v_cache, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )


# Splits: the default, one (no merge), three (a split ends mid-sequence), more than any
# sequence has pages (splits that read nothing).
@pytest.mark.parametrize("G, n_split", [(1, 1), (4, 3), (16, None), (4, 64)])
def test_split_kv_dense_decode_equals_the_reference(G, n_split, gen):
    from mcode.kernels.split_kv import dense_decode_forward

    c = _case(G, gen, device=DEV)
    out, lse = dense_decode_forward(
        c.q, c.k_cache, c.v_cache, c.page_table, c.seqlens_k, c.q.shape[2] ** -0.5, n_split
    )
    want, want_lse = _dense_ref(c)
    assert rel_err(out, want) < 1e-2
    assert torch.allclose(lse, want_lse, atol=1e-3, rtol=1e-3)


def test_dense_attention_sends_a_decode_batch_to_the_split_kernel(gen, monkeypatch):
    from mcode.kernels import split_kv

    calls = []
    real = split_kv.dense_decode_forward
    monkeypatch.setattr(split_kv, "dense_decode_forward", lambda *a: calls.append(1) or real(*a))
    c = _case(4, gen, device=DEV)
    meta = (c.page_table, c.cu_seqlens_q, c.seqlens_k)
    out = kernels.dense_attention(
        c.q, c.k_cache, c.v_cache, *meta, max_seqlen_q=1, backend="triton"
    )
    assert calls == [1]
    assert rel_err(out, _dense_ref(c)[0]) < 1e-2
    public = kernels.dense_decode(
        c.q, c.k_cache, c.v_cache, c.page_table, c.seqlens_k, backend="triton"
    )
    assert torch.equal(public, out)


@pytest.mark.parametrize("G", [1, 3, 8])
def test_the_cpu_dense_decode_equals_the_reference(G, gen):
    c = _case(G, gen, dtype=torch.float16, D=64)
    out, lse = td.dense_decode_torch(c.q, c.k_cache, c.v_cache, c.page_table, c.seqlens_k)
    want, want_lse = _dense_ref(c)
    assert rel_err(out, want) < 2e-3
    assert torch.allclose(lse, want_lse, atol=1e-4, rtol=1e-4)
    public = kernels.dense_decode(
        c.q, c.k_cache, c.v_cache, c.page_table, c.seqlens_k, backend="torch"
    )
    assert torch.equal(public, out)


@pytest.mark.parametrize("topk", [2, 4, 32])
def test_the_cpu_msa_selection_is_the_reference_s(topk, gen):
    c = _case(4, gen, dtype=torch.float16)
    meta = (c.page_table, c.cu_seqlens_q, c.seqlens_k)
    # A shared index-key head [P, page, d] (a model with index heads).
    got = td.msa_select_decode_torch(c.index_q, c.index_k, c.page_table, c.seqlens_k, topk)
    want = ref.msa_select_ref(c.index_q, c.index_k, *meta, topk)
    assert torch.equal(_sorted(got), _sorted(want))
    # The layer's own keys, one index head per KV head [P, Hkv, page, D] (SmolLM2's MSA).
    mean_q = c.q.view(len(SEQS), 2, 4, -1).mean(2)
    got = td.msa_select_decode_torch(mean_q, c.k_cache, c.page_table, c.seqlens_k, topk)
    want = torch.cat(
        [ref.msa_select_ref(mean_q[:, j : j + 1], c.k_cache[:, j], *meta, topk) for j in range(2)]
    )
    assert torch.equal(_sorted(got), _sorted(want))


@pytest.mark.parametrize("topk", [1, 3, 32])
def test_the_cpu_sparse_decode_equals_the_reference(topk, gen):
    c = _case(4, gen, dtype=torch.float16, D=64)
    meta = (c.page_table, c.cu_seqlens_q, c.seqlens_k)
    sel = ref.msa_select_ref(c.index_q, c.index_k, *meta, topk)
    out, lse = td.sparse_decode_torch(c.q, c.k_cache, c.v_cache, sel, c.page_table, c.seqlens_k)
    want, want_lse = ref.sparse_attention_ref(c.q, c.k_cache, c.v_cache, sel, *meta)
    assert rel_err(out, want) < 2e-3
    assert torch.allclose(lse, want_lse, atol=1e-4, rtol=1e-4)
    if topk >= 32:  # every block: dense
        assert rel_err(out, _dense_ref(c)[0]) < 2e-3


def _sorted(sel: torch.Tensor) -> torch.Tensor:
    """Selections compare as sets per row (the contract leaves non-local order open)."""
    return torch.sort(sel, dim=-1).values


@gpu
@pytest.mark.gpu
def test_gpu_split_kv_dense_decode_at_m3_s_shape_replays_in_a_cuda_graph(gen):
    from mcode.kernels.split_kv import dense_decode_forward

    seqs = [(1, 30000 + 977 * b) for b in range(4)]
    c = make_case(seqs, G=16, Hkv=4, D=128, block=128, di=128, device="cuda", generator=gen)
    args = (c.k_cache, c.v_cache, c.page_table, c.seqlens_k, 128**-0.5)
    q = c.q.clone()
    dense_decode_forward(q, *args)  # compile
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out, lse = dense_decode_forward(q, *args)
    q.copy_(torch.randn(q.shape, generator=gen).to(q))  # new inputs, replay
    g.replay()
    torch.cuda.synchronize()
    want, want_lse = ref.dense_attention_ref(
        q, c.k_cache, c.v_cache, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    assert rel_err(out, want) < 1e-2
    assert torch.allclose(lse, want_lse, atol=1e-2, rtol=1e-3)
