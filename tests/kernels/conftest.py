"""Kernel tests: run Triton through its CPU interpreter when there is no GPU, and import
``mcode.kernels`` from this source tree (``kernels/``) even when mcode is not installed."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import random
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

try:
    import torch
except ImportError:  # pragma: no cover - CI installs torch
    torch = None

if torch is not None and not torch.cuda.is_available():
    # must happen before triton is imported by the kernel modules
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _load_source_kernels() -> None:
    try:
        import mcode
    except ImportError:
        sys.path.insert(0, str(ROOT))
    kdir = ROOT / "kernels"
    try:
        import mcode.kernels as mk

        if pathlib.Path(mk.__file__).resolve().parent == kdir:
            return
    except ImportError:
        pass
    for name in list(sys.modules):
        if name == "mcode.kernels" or name.startswith("mcode.kernels."):
            del sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        "mcode.kernels", kdir / "__init__.py", submodule_search_locations=[str(kdir)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mcode.kernels"] = mod
    spec.loader.exec_module(mod)
    import mcode

    mcode.kernels = mod


_load_source_kernels()


@pytest.fixture
def gen():
    """A generator with a fresh random seed per test (printed on failure for reproduction)."""
    seed = random.randrange(2**31)
    g = torch.Generator().manual_seed(seed)
    print(f"seed={seed}")
    return g
