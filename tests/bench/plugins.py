"""Start-up with plugins and MCP servers configured, against none (a script printing a table).

    python tests/bench/plugins.py [--runs 10]

Three configurations in private XDG folders and a scratch git repo:

- **none**: no plugin enabled, no hook, no MCP server (the bundled plugins are there, off);
- **10 plugins + 2 MCP**: ten user plugins, each with two commands, a skill and an agent role,
  enabled, and two stdio MCP servers in the user config (``tests/test_mcp.py``'s demo server,
  written with the ``mcp`` SDK), their tool lists already cached (every run after a server's
  first: it is not started until one of its tools is called);
- **... first run**: the same with the cache removed before each run, so both servers are
  started and listed while the session opens (what the first session after configuring a
  server costs).

Rows: ``mcode --version`` (wall, fresh process each run) and ``mcode exec`` start-up to its
first model request (``Popen`` to the scripted model server receiving the request), median
and worst of N runs, with the CPU seconds of the whole exec run (its rusage: on a shared
machine wall times move with the neighbours' load, CPU time much less). mcode runs from cached
bytecode (one untimed warm-up run first).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from helpers import clean_env  # noqa: E402
from model_server import ScriptedServer  # noqa: E402
from test_mcp import SERVER  # noqa: E402

MCODE = [sys.executable, "-m", "mcode"]


def version(cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run([*MCODE, "--version"], cwd=cwd, env=env, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.decode()[-500:])
    return time.perf_counter() - started


def to_first_request(cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds to the first request, and CPU seconds of the whole run (user + system of
    mcode and the children it waited for: rusage, which load on the machine barely moves)."""
    with ScriptedServer([{"text": "ok"}]) as server:
        args = [*MCODE, "exec", "--provider", "openai", "--base-url", server.base_url]
        args += ["--model", "bench-model", "--permission-mode", "full-auto", "-q", "Say ok."]
        started = time.monotonic()
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0 or not server.requests:
            raise SystemExit(f"mcode exec exited {proc.returncode}: {err.decode()[-800:]}")
        return server.requests[0].received_at - started, usage.ru_utime + usage.ru_stime


def configure(root: Path, home: Path) -> None:
    """Ten enabled user plugins and two stdio MCP servers in ``home``'s config."""
    config = home / "config" / "mcode"
    for i in range(10):
        plugin = config / "plugins" / f"p{i}"
        (plugin / "commands").mkdir(parents=True)
        (plugin / "agents").mkdir()
        (plugin / "skills" / f"skill{i}").mkdir(parents=True)
        (plugin / "mcode-plugin.toml").write_text(f'name = "p{i}"\ndescription = "bench {i}"\n')
        for c in range(2):
            (plugin / "commands" / f"c{i}_{c}.md").write_text(
                f"---\ndescription: command {c}\n---\nDo thing {c} with $ARGUMENTS.\n"
            )
        (plugin / "agents" / f"role{i}.md").write_text(
            f"---\nname: role{i}\ndescription: role {i}\ntools: Read\n---\nYou are role {i}.\n"
        )
        (plugin / "skills" / f"skill{i}" / "SKILL.md").write_text(
            f"---\nname: skill{i}\ndescription: skill number {i}\n---\nBody {i}.\n"
        )
    server = root / "demo_server.py"
    server.write_text(SERVER)
    lines = []
    for name in ("one", "two"):
        lines.append(
            f"[mcp_servers.{name}]\ncommand = {json.dumps(sys.executable)}\n"
            f"args = [{json.dumps(str(server))}, {json.dumps(str(root / (name + '.log')))}]\n"
        )
    (config / "config.toml").write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    rows: list[tuple[str, str, list[float], list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = root / "repo"
        repo.mkdir()
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        for label in ("none", "10 plugins + 2 MCP"):
            home = root / label.replace(" ", "_")
            env = clean_env(home)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            if label != "none":
                configure(root, home)
            to_first_request(repo, env)  # untimed: bytecode, and the MCP tool cache
            rows.append(
                ("`mcode --version`", label, [version(repo, env) for _ in range(a.runs)], [])
            )
            warm = [to_first_request(repo, env) for _ in range(a.runs)]
            rows.append(("`mcode exec`", label, [w for w, _ in warm], [c for _, c in warm]))
            if label != "none":
                cache = home / "data" / "mcode" / "mcp-tools.json"
                cold = []
                for _ in range(max(1, a.runs // 3)):
                    cache.unlink(missing_ok=True)
                    cold.append(to_first_request(repo, env))
                rows.append(
                    (
                        "`mcode exec`",
                        f"{label}, first run",
                        [w for w, _ in cold],
                        [c for _, c in cold],
                    )
                )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print()
    print(
        "| what | configured | runs | to first request / wall, median (s) | worst (s) | CPU s, median |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for what, label, xs, cpu in rows:
        cpu_s = f"{statistics.median(cpu):.3f}" if cpu else "-"
        print(
            f"| {what} | {label} | {len(xs)} | {statistics.median(xs):.3f} | {max(xs):.3f} "
            f"| {cpu_s} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
