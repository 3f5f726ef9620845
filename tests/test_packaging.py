"""Packaging: the wheel installs every top-level folder under mcode., and start-up stays light."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("httpx", "pydantic", "torch", "triton", "llama_cpp", "textual", "sqlite3")


def _modules_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_version_imports_nothing_heavy():
    mods = _modules_after(
        "from mcode.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass"
    )
    assert not [m for m in mods if m.split(".")[0] in HEAVY]


def test_import_mcode_is_light():
    mods = _modules_after("import mcode")
    assert not [m for m in mods if m.split(".")[0] in HEAVY]


def test_version_output():
    out = subprocess.run(
        [sys.executable, "-m", "mcode", "--version"], capture_output=True, text=True, check=True
    )
    import mcode

    assert out.stdout.strip() == f"mcode {mcode.__version__}"


@pytest.mark.timeout(300)
def test_wheel_installs_every_package_in_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("mcode-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import importlib.util, json, mcode\n"
        "names = ['mcode.runtime', 'mcode.agent', 'mcode.providers', 'mcode.tools',\n"
        "         'mcode.local_backend', 'mcode.kernels']\n"
        "print(json.dumps({n: importlib.util.find_spec(n).origin for n in names}))\n"
    )
    out = subprocess.run(
        [str(py), "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    origins = json.loads(out.stdout)
    for name, origin in origins.items():
        assert origin and str(env_dir) in origin, (name, origin)  # installed copy, not the tree
    version = subprocess.run(
        [str(env_dir / "bin" / "mcode"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("mcode ")
