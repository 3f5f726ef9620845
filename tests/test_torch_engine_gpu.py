"""The torch engine's decoder on CUDA (Triton kernels): MSA with every block selected equals
dense, with trained index heads and with the layer's own keys; a decode step (``msa_decode``)
gives the logits a prefill of the same tokens gives. Random weights, M3-like head layout at a
small width. Skipped without a CUDA GPU."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch"),
]

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from bench.torch_gpu import random_model  # noqa: E402
from mcode.local_backend.torch_engine.model import AttentionPlan, Batch  # noqa: E402
from mcode.local_backend.torch_engine.paged_cache import PagedKVCache  # noqa: E402
from mcode.local_backend.torch_engine.weights import ModelConfig  # noqa: E402

CFG = ModelConfig(2, 512, 1024, 16, 4, 128, 256, 1 << 16, tied_embeddings=True)


def prefill(model, ids, plan, index_dim):
    cache = PagedKVCache(
        n_layers=CFG.n_layers,
        n_kv_heads=CFG.n_kv_heads,
        head_dim=CFG.head_dim,
        num_pages=-(-len(ids) // 128) + 1,
        index_dim=index_dim,
        device="cuda",
    )
    pages = list(range(cache.num_pages))
    b = Batch.build([(ids, 0, pages)], 128, torch.device("cuda"), all_logits=True)
    return model.forward(b, cache, plan), cache, pages


@pytest.mark.parametrize("index_dim", [128, None], ids=["index-heads", "own-keys"])
def test_msa_over_every_block_equals_dense_on_cuda(index_dim):
    model = random_model(CFG, index_dim or 128, "cuda")
    if index_dim is None:
        model.index_dim = None
    ids = [int(t) for t in torch.randint(0, CFG.vocab, (1000,))]  # 8 blocks, the last partial
    dense, _, _ = prefill(model, ids, AttentionPlan(backend="triton"), index_dim)
    every = AttentionPlan(frozenset(range(CFG.n_layers)), topk=16, backend="triton")
    msa, _, _ = prefill(model, ids, every, index_dim)
    assert torch.isfinite(msa).all()
    err = (dense - msa).abs().max() / dense.abs().max()
    assert err < 2e-2, float(err)
    few = AttentionPlan(frozenset(range(CFG.n_layers)), topk=2, backend="triton")
    sparse, _, _ = prefill(model, ids, few, index_dim)
    assert (dense[-200:] - sparse[-200:]).abs().max() / dense.abs().max() > 1e-2


def test_a_decode_step_gives_the_logits_of_a_prefill():
    model = random_model(CFG, 128, "cuda")
    plan = AttentionPlan(frozenset(range(CFG.n_layers)), topk=4, backend="triton")
    ids = [int(t) for t in torch.randint(0, CFG.vocab, (700,))]
    full, _, _ = prefill(model, ids, plan, 128)
    _, cache, pages = prefill(model, ids[:-1], plan, 128)
    step = Batch.build([([ids[-1]], len(ids) - 1, pages)], 128, torch.device("cuda"))
    assert step.max_seqlen_q == 1  # the msa_decode path
    last = model.forward(step, cache, plan)[0]
    err = (last - full[-1]).abs().max() / full[-1].abs().max()
    assert err < 2e-2, float(err)
