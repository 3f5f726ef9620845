"""Start-up and the README's main command, timed as a user meets them.

    python tests/bench/startup.py [--runs 10]

Rows: ``mcode --version`` (wall, median and worst of N runs, each a fresh process; as
``python -m mcode`` and as the console script on PATH); ``mcode exec`` start-up to its first
model request (from ``Popen`` to the scripted model server, tests/model_server.py, receiving the
request: settings, store, session, request built and sent); and
``mcode exec "What does this repository do? ..."`` with no API key (the embedded SmolLM2 model on
llama.cpp: model load, one tool call, the answer), median of a few runs in a scratch git repo.
Private XDG folders under a temp dir; nothing touches the user's store. mcode runs from cached
bytecode, as installed (``PYTHONDONTWRITEBYTECODE`` is dropped; one untimed run first writes it).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from model_server import ScriptedServer  # noqa: E402

MAIN_PROMPT = "What does this repository do? Read README.md and list the folders."
KEY_VARS = ("MINIMAX_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return elapsed


def to_first_request(mcode: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds from starting ``mcode exec`` to the model server receiving its first request."""
    with ScriptedServer([{"text": "ok"}]) as server:
        args = [*mcode, "exec", "--provider", "openai", "--base-url", server.base_url]
        args += ["--model", "bench-model", "--permission-mode", "full-auto", "-q", "Say ok."]
        started = time.monotonic()
        proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not server.requests:
            raise SystemExit(f"mcode exec exited {proc.returncode}: {proc.stderr[-500:]}")
        return server.requests[0].received_at - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="runs of --version (exec: a third)")
    a = ap.parse_args()
    mcode = [sys.executable, "-m", "mcode"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = root / "repo"
        (repo / "src").mkdir(parents=True)
        (repo / "README.md").write_text("# demo\n\nA tiny demo project.\n")
        (repo / "src" / "app.py").write_text("print('hi')\n")
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(XDG_DATA_HOME=str(root / "data"), XDG_CONFIG_HOME=str(root / "cfg"))

        to_first_request(mcode, repo, env)  # untimed: writes the bytecode caches
        version = [timed([*mcode, "--version"], repo, env) for _ in range(a.runs)]
        # The console script pip installs (what a user types) adds its own start-up.
        script = shutil.which("mcode")
        scripted = (
            [timed([script, "--version"], repo, env) for _ in range(a.runs)] if script else []
        )
        first_request = [to_first_request(mcode, repo, env) for _ in range(a.runs)]
        runs = max(1, a.runs // 3)
        exec_times = [timed([*mcode, "exec", "-q", MAIN_PROMPT], repo, env) for _ in range(runs)]

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print()
    print("| what | runs | median (s) | worst (s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, xs in (
        ("`python -m mcode --version`", version),
        ("`mcode --version` (console script)", scripted),
        ("`mcode exec` start-up to first request", first_request),
        ("README main command, embedded model, no key", exec_times),
    ):
        if xs:
            print(f"| {name} | {len(xs)} | {statistics.median(xs):.3f} | {max(xs):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
