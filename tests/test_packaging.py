"""Packaging: the wheel installs every top-level folder under mcode., and start-up stays light."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "httpx",
    "pydantic",
    "torch",
    "triton",
    "llama_cpp",
    "textual",
    "sqlite3",
    "pygls",
    "lsprotocol",
)


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


# The providers' ground floor: the data the configuration reads (presets, model facts, network
# settings), importing nothing from the rest of mcode.
PROVIDER_GROUND_FLOOR = {"mcode.providers", "mcode.providers.presets", "mcode.providers.network"}


def test_config_reads_provider_data_without_loading_provider_code():
    mods = _modules_after("import mcode.config")
    assert {m for m in mods if m.startswith("mcode.")} <= {
        "mcode.config",
        "mcode.errors",
        *PROVIDER_GROUND_FLOOR,
    }
    assert not [m for m in mods if m.split(".")[0] in HEAVY]


def test_version_output():
    out = subprocess.run(
        [sys.executable, "-m", "mcode", "--version"], capture_output=True, text=True, check=True
    )
    import mcode

    assert out.stdout.strip() == f"mcode {mcode.__version__}"


def _help(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mcode", *args, "--help"], capture_output=True, text=True, check=True
    )
    return out.stdout


def test_help_agrees_with_the_readme():
    readme = (ROOT / "README.md").read_text()
    # Every flag README's "`mcode exec` flags:" paragraph names is in `mcode exec --help`, and
    # the other way round (--output-format is shown in README's usage block).
    para = readme.split("`mcode exec` flags:", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"`(--?[a-z][a-z-]*)", para)) | {"--output-format"}
    shown = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", _help("exec").split("options:")[1]))
    shown -= {"-h", "--help", "--quiet"}  # README names -q
    assert documented == shown
    # The exit codes: README's table, the help's epilog.
    table = readme.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    codes = re.findall(r"^\| (\d+) \|", table, re.MULTILINE)
    epilog = _help("exec").split("exit codes:", 1)[1]
    assert (
        codes == re.findall(r"^  (\d+) ", epilog, re.MULTILINE) == ["0", "1", "2", "3", "4", "130"]
    )
    assert "crashed" not in epilog  # a tool that fails never ends the run
    # undo and sessions: the flags README shows.
    for flag in ("--dry-run", "--force", "--resume", "--cwd"):
        assert flag in _help("undo")
    assert "--all" in _help("sessions")


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
    # The fresh venv must see only what it installed: a PYTHONPATH pointing at a source tree
    # (a developer's shell, CI) would otherwise be imported instead of the wheel.
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        env=clean,
    )
    probe = (
        "import importlib.util, json, mcode\n"
        "names = ['mcode.runtime', 'mcode.agent', 'mcode.providers', 'mcode.tools',\n"
        "         'mcode.local_backend', 'mcode.kernels']\n"
        "print(json.dumps({n: importlib.util.find_spec(n).origin for n in names}))\n"
    )
    out = subprocess.run(
        [str(py), "-c", probe], cwd=tmp_path, env=clean, capture_output=True, text=True, check=True
    )
    origins = json.loads(out.stdout)
    for name, origin in origins.items():
        assert origin and str(env_dir) in origin, (name, origin)  # installed copy, not the tree
    version = subprocess.run(
        [str(env_dir / "bin" / "mcode"), "--version"],
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.startswith("mcode ")
