"""Prefill top-k: exact, ties to the lower block id, like the reference.

Exact score ties are planted two ways: synthetic score tensors drawn from a handful of values
(with -0.0 / +0.0, -inf and extreme magnitudes), and index-key caches whose blocks are copies of
a few template blocks, so several blocks score bit-identically through the real scoring kernel.
The chosen ids must equal the reference's (``torch.sort(stable=True)``) on every row. The CPU
tests run through Triton's interpreter; the ``gpu`` ones repeat this at M3 sizes.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from _msa_cases import make_case  # noqa: E402
from mcode.kernels import api  # noqa: E402
from mcode.kernels import reference as ref  # noqa: E402
from mcode.kernels.select import topk_from_scores  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tied_scores(T, H, nb, bs, gen, device=DEV):
    """``[T, H, nb]`` scores from a few values (many exact ties) and positions ``[T]``; blocks
    at or past each row's local block are ``-inf`` (the scoring kernel's contract)."""
    pos = torch.randint(0, nb * bs, (T,), generator=gen)
    pick = torch.randint(0, 7, (T, H, nb), generator=gen)
    table = torch.tensor([-2.0, -1.0, -0.0, 0.0, 1.0, 2.5, float("-inf")])
    mag = torch.tensor([1.0, 1e30, 1e-30])[torch.randint(0, 3, (T, H, nb), generator=gen)]
    sc = table[pick] * mag
    local = pos // bs
    sc = torch.where(torch.arange(nb)[None, None, :] < local[:, None, None], sc, float("-inf"))
    return sc.to(device), pos.to(device)


def assert_same_as_reference(sel, scores_thn, pos, bs, topk):
    """``sel [H, T, k]`` vs the reference top-k of ``scores_thn [T, H, nb]``: identical id sets
    on every row, valid entries first, local block last, -1 padding."""
    want = ref.topk_select_ref(scores_thn.permute(1, 0, 2).contiguous(), pos, bs, topk)
    sel, want, local = sel.cpu().long(), want.cpu().long(), (pos.cpu().long() // bs)
    nvalid = (sel >= 0).sum(-1)
    assert ((sel >= 0) == (torch.arange(topk) < nvalid[..., None])).all(), "valid entries first"
    last = sel.gather(-1, (nvalid - 1).clamp(min=0)[..., None])[..., 0]
    assert (last == local[None]).all(), "local block must be the last valid entry"
    bad = (sel.sort(-1).values != want.sort(-1).values).any(-1)
    assert not bad.any(), f"{int(bad.sum())} of {bad.numel()} rows differ from the reference"


def boundary_ties(scores_thn, pos, bs, topk):
    """Rows whose (k-1)-th and k-th best candidate scores are equal and finite (a tie that the
    selection has to break)."""
    m = topk - 1
    s = scores_thn.float()
    nb = s.shape[-1]
    if nb <= m:
        return 0
    v = s.topk(m + 1, dim=-1).values
    return int(((v[..., m - 1] == v[..., m]) & torch.isfinite(v[..., m])).sum())


@pytest.mark.parametrize("method", ["triton", "packed"])
@pytest.mark.parametrize(
    "T,H,nb,bs,topk",
    [(40, 4, 20, 16, 5), (33, 2, 7, 16, 16), (24, 3, 64, 8, 1), (48, 2, 130, 4, 9)],
)
def test_topk_exact_ties_synthetic(method, T, H, nb, bs, topk, gen):
    sc, pos = tied_scores(T, H, nb, bs, gen)
    if 2 < topk < nb:
        assert boundary_ties(sc, pos, bs, topk) > 0, "the case plants no tie at the boundary"
    sel = topk_from_scores(sc, pos, bs, topk, method=method)
    assert sel.dtype == torch.int32 and sel.shape == (H, T, topk)
    assert_same_as_reference(sel, sc, pos, bs, topk)


def plant_tied_blocks(c, bs, n_templates, gen, keep=0.3):
    """Make most full index-key blocks of each sequence copies of one of its first
    ``n_templates`` blocks (a fraction ``keep`` stays random), so blocks score identically."""
    ik = c.index_k.clone()
    for b, lk in enumerate(c.seqlens_k.tolist()):
        full = lk // bs
        for n in range(n_templates, full):
            if torch.rand((), generator=gen).item() < keep:
                continue
            src = int(torch.randint(0, n_templates, (), generator=gen))
            ik[int(c.page_table[b, n])] = ik[int(c.page_table[b, src])]
    c.index_k = ik
    return c


def _check_select_with_planted_ties(c, bs, topk, min_ties):
    sel = api.msa_select(
        c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k, topk, backend="triton"
    )
    scores = ref.index_scores_ref(c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k)
    s = scores.permute(1, 0, 2).clone()  # [T, H, nb]
    local = c.tok_pos.long() // bs
    s.scatter_(-1, local.view(-1, 1, 1).expand(-1, s.shape[1], 1), float("-inf"))
    ties = boundary_ties(s, c.tok_pos, bs, topk)
    assert ties >= min_ties, f"only {ties} rows tie at the boundary"
    assert_same_as_reference(sel, s, c.tok_pos, bs, topk)
    rsel = ref.msa_select_ref(c.index_q, c.index_k, c.page_table, c.cu_seqlens_q, c.seqlens_k, topk)
    assert torch.equal(sel.cpu().sort(-1).values, rsel.cpu().sort(-1).values)


def test_select_planted_ties(gen):
    bs, topk = 16, 5
    c = make_case(
        [(40, 24 * bs + 5), (20, 12 * bs)],
        G=1,
        Hkv=2,
        D=32,
        block=bs,
        di=32,
        device=DEV,
        generator=gen,
    )
    plant_tied_blocks(c, bs, 3, gen)
    _check_select_with_planted_ties(c, bs, topk, min_ties=10)


# ---------------------------------------------------------------- real sizes, GPU only
@gpu
@pytest.mark.gpu
def test_gpu_select_planted_ties_m3(gen):
    bs, topk = 128, 16
    c = make_case(
        [(4096, 40000 + 77), (1500, 1500)],
        G=1,
        Hkv=4,
        D=64,
        block=bs,
        di=128,
        device="cuda",
        generator=gen,
    )
    plant_tied_blocks(c, bs, 4, gen)
    _check_select_with_planted_ties(c, bs, topk, min_ties=1000)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize(
    "T,nb,method",
    [(4096, 1024, "triton"), (512, 8192, "triton"), (256, 16384, "triton"), (64, 20000, "auto")],
)
def test_gpu_topk_exact_ties_large(T, nb, method, gen):
    sc, pos = tied_scores(T, 4, nb, 128, gen, device="cuda")
    assert boundary_ties(sc, pos, 128, 16) > T  # of 4T rows
    sel = topk_from_scores(sc, pos, 128, 16, method=method)
    assert_same_as_reference(sel, sc, pos, 128, 16)
