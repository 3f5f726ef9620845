"""Will llama.cpp run this model on this machine? Asked once in a child process, remembered.

A native crash in llama.cpp (an instruction the CPU or its hypervisor refuses, a bug in one
backend's kernels) kills the process it happens in with a signal, and Python cannot catch it:
the user would see ``Segmentation fault`` and exit 139. So before a GGUF first loads in-process,
a child process loads it with the same parameters and generates a few tokens:

    ensure_runs(model_path, extra_bufts=False, data_dir=data_home())   # ProviderError if not

The verdict is kept in ``DATA_DIR/engine-checks.json`` under a key made of what decides it: the
llama.cpp libraries (name, size and mtime of each file, so a rebuild asks again), the CPU's
flags, the model file (path, size, mtime) and the load parameters. A later start reads that one
file and spawns nothing. Only answers that will not change are kept: "runs", and "died of a
signal". A child that fails otherwise (a Python error, a timeout) decides nothing: the
in-process load then reports what is wrong in its own words.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

from mcode.errors import ProviderError

CHECKS_FILE = "engine-checks.json"
_TIMEOUT = 120.0
# A prompt of a few dozen tokens: prefill runs the batched matmuls, the tokens after it decode.
_PROMPT = "Say hello to the user in one short sentence, then list three colours. " * 3


def ensure_runs(model_path: Path, *, extra_bufts: bool, data_dir: Path | None) -> None:
    """Raise ProviderError if loading ``model_path`` and generating kills the process."""
    key = _key(model_path, extra_bufts)
    file = data_dir / CHECKS_FILE if data_dir is not None else None
    checks = _read(file)
    verdict = checks.get(key)
    if verdict is None:
        verdict = _probe(model_path, extra_bufts)
        if verdict is not None and file is not None:
            checks[key] = verdict
            _write(file, checks)
    if verdict and verdict.startswith("signal "):
        number = int(verdict.split()[1])
        raise ProviderError(
            f"the local model crashed in llama.cpp ({_signal_name(number)}, signal {number}) "
            f"when a test process loaded {model_path.name} on this CPU",
            kind="engine_crash",
            retryable=False,
            hint=(
                "rebuild llama-cpp-python for a generic CPU: CMAKE_ARGS='-DGGML_NATIVE=OFF' "
                "pip install --force-reinstall --no-cache-dir llama-cpp-python; or set an API "
                "key (MINIMAX_API_KEY, ANTHROPIC_API_KEY, OPENAI_API_KEY) to use a remote model"
            ),
        )


def cached_verdict(model_path: Path, data_dir: Path) -> str | None:
    """The kept verdict for ``model_path`` on this machine (``ok`` or ``signal N``), for either
    load parameter, without running anything; None when none is kept (``mcode doctor``)."""
    checks = _read(data_dir / CHECKS_FILE)
    verdicts = [checks.get(_key(model_path, extra)) for extra in (False, True)]
    crashed = [v for v in verdicts if v and v.startswith("signal ")]
    return crashed[0] if crashed else next((v for v in verdicts if v), None)


def _probe(model_path: Path, extra_bufts: bool) -> str | None:
    """``ok``, ``signal N``, or None when the child failed for another reason."""
    cmd = [sys.executable, "-m", "mcode.local_backend.probe", str(model_path)]
    cmd.append(str(int(extra_bufts)))
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode == 0:
        return "ok"
    if proc.returncode < 0:
        return f"signal {-proc.returncode}"
    return None


def _key(model_path: Path, extra_bufts: bool) -> str:
    parts: list[object] = [str(model_path.resolve()), _stat(model_path), extra_bufts]
    spec = importlib.util.find_spec("llama_cpp")
    if spec is not None and spec.origin:
        lib = Path(spec.origin).parent / "lib"
        files = sorted(lib.iterdir()) if lib.is_dir() else []
        parts.append([(f.name, _stat(f)) for f in files])
    parts.append(_cpu_flags())
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _stat(path: Path) -> list[int]:
    try:
        st = path.stat()
    except OSError:
        return []
    return [st.st_size, st.st_mtime_ns]


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _read(file: Path | None) -> dict[str, str]:
    if file is None:
        return {}
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(file: Path, checks: dict[str, str]) -> None:
    # Best effort: a data dir we cannot write only means asking again next time.
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}")
        tmp.write_text(json.dumps(checks, indent=1))
        os.replace(tmp, file)
    except OSError:
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "a signal"


def _child(model_path: str, extra_bufts: bool) -> None:
    import asyncio

    from mcode.local_backend.chat_template import Segment
    from mcode.local_backend.llama_engine import LlamaEngine, Sampling

    engine = LlamaEngine(
        Path(model_path), n_ctx=512, n_threads=1, extra_bufts=extra_bufts, check_in_child=False
    )

    async def go() -> None:
        async for _ in engine.stream([Segment(_PROMPT, False)], Sampling(max_tokens=4)):
            pass

    asyncio.run(go())


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2] == "1")
