"""The PyTorch references and the CPU fallback of the API (needs torch only)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from _msa_cases import make_case, random_selection, rel_err  # noqa: E402
from mcode.kernels import api  # noqa: E402
from mcode.kernels import reference as ref  # noqa: E402


def _naive_dense(c, scale=None):
    """Per-sequence SDPA on contiguous fp32 K/V with an explicit bottom-right causal mask."""
    outs = []
    Hq = c.q.shape[1]
    Hkv = c.k_cache.shape[1]
    cu = c.cu_seqlens_q.tolist()
    for b, lk in enumerate(c.seqlens_k.tolist()):
        lq = cu[b + 1] - cu[b]
        kb = ref.gather_paged(c.k_cache, c.page_table[b], lk).float()
        vb = ref.gather_paged(c.v_cache, c.page_table[b], lk).float()
        qb = c.q[cu[b] : cu[b + 1]].float().transpose(0, 1)  # [Hq, Lq, D]
        kb = kb.transpose(0, 1).repeat_interleave(Hq // Hkv, 0)
        vb = vb.transpose(0, 1).repeat_interleave(Hq // Hkv, 0)
        mask = torch.arange(lk)[None, :] <= (lk - lq + torch.arange(lq))[:, None]
        o = torch.nn.functional.scaled_dot_product_attention(
            qb, kb, vb, attn_mask=mask, scale=scale
        )
        outs.append(o.transpose(0, 1))
    return torch.cat(outs)


def test_dense_ref_matches_sdpa(gen):
    c = make_case(
        [(37, 150), (20, 20)], G=3, Hkv=2, D=32, block=16, generator=gen, dtype=torch.float32
    )
    out, lse = ref.dense_attention_ref(
        c.q, c.k_cache, c.v_cache, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    assert rel_err(out, _naive_dense(c)) < 1e-5
    assert torch.isfinite(lse).all()


def test_sparse_ref_all_blocks_equals_dense(gen):
    c = make_case(
        [(50, 200), (33, 33)], G=4, Hkv=2, D=32, block=16, generator=gen, dtype=torch.float32
    )
    sel = random_selection(c.tok_pos, 2, 16, topk=16, generator=gen)  # >= every visible block
    o1, l1 = ref.sparse_attention_ref(
        c.q, c.k_cache, c.v_cache, sel, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    o2, l2 = ref.dense_attention_ref(
        c.q, c.k_cache, c.v_cache, c.page_table, c.cu_seqlens_q, c.seqlens_k
    )
    assert rel_err(o1, o2) < 1e-5
    assert (l1 - l2).abs().max() < 1e-4


def test_select_ref_ties_to_lower_id_and_local_last():
    # every index key identical -> every block scores the same -> lower ids win
    bs, di = 16, 16
    lk = 16 * 6 + 5
    pt = torch.arange(7, dtype=torch.int32).view(1, 7)
    ik = torch.ones(7, bs, di)
    iq = torch.ones(3, 1, di)
    cu = torch.tensor([0, 3], dtype=torch.int32)
    sel = ref.msa_select_ref(iq, ik, pt, cu, torch.tensor([lk], dtype=torch.int32), topk=4)
    assert sel.shape == (1, 3, 4)
    assert sel[0].tolist() == [[0, 1, 2, 6]] * 3


def test_select_ref_short_history_takes_all_visible(gen):
    c = make_case([(40, 40)], G=1, Hkv=2, D=16, block=16, di=16, generator=gen, dtype=torch.float32)
    sel = ref.msa_select_ref(c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k, 8)
    local = c.tok_pos // 16
    for t in range(40):
        row = sel[0, t].tolist()
        nvis = int(local[t]) + 1
        assert sorted(row[: nvis - 1]) == list(range(nvis - 1))
        assert row[nvis - 1] == local[t]
        assert row[nvis:] == [-1] * (8 - nvis)


def test_api_torch_backend_runs_everything(gen):
    c = make_case([(20, 90)], G=2, Hkv=2, D=16, block=16, di=16, generator=gen)
    sel = api.msa_select(
        c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k, 3, backend="torch"
    )
    out = api.msa_prefill(
        c.q, c.k_cache, c.v_cache, sel, c.page_table, c.cu_seqlens_q, c.seqlens_k, backend="torch"
    )
    assert out.shape == c.q.shape and out.dtype == c.q.dtype and torch.isfinite(out).all()
    d = api.dense_attention(
        c.q, c.k_cache, c.v_cache, c.page_table, c.cu_seqlens_q, c.seqlens_k, backend="torch"
    )
    assert torch.isfinite(d).all()
    o = api.msa_decode(
        c.q[:2].view(1, 2, 4, 16),
        c.k_cache,
        c.v_cache,
        c.index_q[:2].view(1, 2, 2, 16),
        c.index_k,
        c.page_table,
        c.seqlens_k,
        3,
        backend="torch",
    )
    assert o.shape == (1, 2, 4, 16) and torch.isfinite(o).all()


def test_api_rejects_bad_inputs(gen):
    c = make_case([(8, 40)], G=2, Hkv=2, D=16, block=16, di=16, generator=gen)
    sel = random_selection(c.tok_pos, 2, 16, 3)
    args = (c.page_table, c.cu_seqlens_q, c.seqlens_k)
    with pytest.raises(ValueError, match="bf16 or fp16"):
        api.msa_prefill(c.q.float(), c.k_cache, c.v_cache, sel, *args)
    with pytest.raises(ValueError, match="multiple of Hkv"):
        api.msa_prefill(c.q[:, :3], c.k_cache, c.v_cache, sel, *args)
    with pytest.raises(ValueError, match="must match q"):
        api.msa_prefill(c.q, c.k_cache.half(), c.v_cache, sel, *args)
    with pytest.raises(ValueError, match="int32"):
        api.msa_prefill(c.q, c.k_cache, c.v_cache, sel.long(), *args)
    with pytest.raises(ValueError, match="sel must be"):
        api.msa_prefill(c.q, c.k_cache, c.v_cache, sel[:, :4], *args)
    with pytest.raises(ValueError, match="head dim"):
        api.msa_prefill(c.q[..., :12], c.k_cache[..., :12], c.v_cache[..., :12], sel, *args)
    with pytest.raises(ValueError, match="cu_seqlens_q"):
        api.dense_attention(
            c.q,
            c.k_cache,
            c.v_cache,
            c.page_table,
            torch.tensor([0, 5], dtype=torch.int32),
            c.seqlens_k,
        )
    with pytest.raises(ValueError, match=r"1\.\.8"):
        api.msa_decode(
            c.q.view(1, 8, 4, 16).repeat(1, 2, 1, 1),
            c.k_cache,
            c.v_cache,
            c.index_q.view(1, 8, 2, 16).repeat(1, 2, 1, 1),
            c.index_k,
            c.page_table,
            c.seqlens_k,
            3,
        )
    with pytest.raises(ValueError, match="method"):
        api.msa_prefill(c.q, c.k_cache, c.v_cache, sel, *args, method="magic")
    assert math.isfinite(1.0)
