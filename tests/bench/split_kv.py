"""GPU benchmark of the split-KV dense decode kernel (``kernels/split_kv.py``): one query per
sequence at M3's attention shape (64 query heads, 4 KV heads, head dim 128, pages of 128, bf16),
against torch SDPA (flash decode, ``enable_gqa``) on contiguous K/V of the same length, over a
few launch settings. The floor is the K/V bytes read once (``B * N * 4 * 128 * 2 * 2``) over
the copy bandwidth measured here.

Run on a CUDA machine: ``python tests/bench/split_kv.py`` (prints a markdown table).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton.testing
from mcode.kernels.split_kv import dense_decode_forward, split_count

HQ, HKV, D, PAGE = 64, 4, 128, 128


def bandwidth() -> float:
    """Bytes/s of a large device-to-device copy, read + written."""
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    ms = triton.testing.do_bench(lambda: y.copy_(x), return_mode="median")
    return 2 * x.numel() / (ms * 1e-3)


def main() -> None:
    bw = bandwidth()
    print(f"card: {torch.cuda.get_device_name()}; copy bandwidth {bw / 1e12:.2f} TB/s")
    print()
    print("| B | N | splits | warps | stages | split-KV (ms) | SDPA (ms) | floor (ms) | of floor |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for b, n in ((1, 131072), (1, 1048576), (8, 131072), (8, 1048576), (32, 131072)):
        rows(b, n, bw)
        torch.cuda.empty_cache()


def rows(b: int, n: int, bw: float) -> None:
    """The table's rows for batch ``b`` at context ``n``."""
    pages = b * n // PAGE
    k = torch.randn(pages, HKV, PAGE, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    pt = torch.arange(pages, device="cuda", dtype=torch.int32).view(b, -1)
    lk = torch.full((b,), n, device="cuda", dtype=torch.int32)
    q = torch.randn(b, HQ, D, device="cuda", dtype=torch.bfloat16)
    kk = k.view(b, -1, HKV, PAGE, D).permute(0, 2, 1, 3, 4).reshape(b, HKV, n, D)
    vv = v.view(b, -1, HKV, PAGE, D).permute(0, 2, 1, 3, 4).reshape(b, HKV, n, D)
    qq = q.view(b, HQ, 1, D)
    sdpa = triton.testing.do_bench(
        lambda: F.scaled_dot_product_attention(qq, kk, vv, enable_gqa=True),
        return_mode="median",
    )
    floor = 2 * k.numel() * k.element_size() / bw * 1e3
    base = max(1, split_count(b, HKV, pt.shape[1], q.device) // 4)  # 2 per SM, as at first
    for splits in (base, 2 * base, 4 * base):
        for warps, stages in ((4, 2), (4, 3), (8, 2)):
            ms = triton.testing.do_bench(
                lambda s=splits, w=warps, st=stages: dense_decode_forward(
                    q, k, v, pt, lk, D**-0.5, s, num_warps=w, num_stages=st
                ),
                return_mode="median",
            )
            print(
                f"| {b} | {n} | {splits} | {warps} | {stages} | {ms:.3f} | {sdpa:.3f} | "
                f"{floor:.3f} | {floor / ms:.0%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
