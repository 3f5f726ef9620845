"""Many rounds of ``mcode exec`` against a zero-latency scripted server: CPU, memory, request
bytes and prompt-cache friendliness (a script printing a table, not a test).

    python tests/bench/rounds.py [--repeat 3]        # the standard rows (below)
    python tests/bench/rounds.py --rounds 100 --kib 4 [--wire openai|anthropic]
                                 [--profile out.prof] [--output-format stream-json|text]

Each round the server (tests/model_server.py, in this process, no delay) streams ``--kib`` KiB of
assistant text in 64-character chunks and then one ``bash`` call (``echo round N``); after the
last round, a final answer. ``mcode exec`` is the real one, a subprocess (``python -m mcode exec
--permission-mode full-auto --output-format stream-json``, stdout to /dev/null), with private XDG
folders, a fake API key and a scratch git repo. The standard rows are 100 x 4 KiB and
300 x 8 KiB on both wire formats.

Columns:

- **CPU s**: user + system seconds of the mcode process *and the bash children it waited for*
  (``os.wait4``'s rusage covers both); **bash s** is an estimate of the children's share
  (the same ``bash -c`` commands run here, timed the same way), **mcode s** the difference.
- **peak RSS**: ``ru_maxrss`` of the same rusage (the mcode process: bash is far smaller).
- **req KiB mean / last**: request body size, mean over the run and the last one.
- **prefix-stable**: requests 2..N whose tools, system and earlier messages are byte-identical to
  the previous request's, ignoring ``cache_control`` markers (:func:`prefix_stable`).
- **sys+tools B**: the serialised ``tools`` and system prompt of one request, as sent.
- **compactions**: summary requests mcode sent. The server reports ``prompt_tokens`` as ~4
  request bytes a token, so mcode's context budget works as against a real API;
  ``--context-window`` (default 1M, MiniMax-M3's) decides when it compacts. A summary request is
  answered off the script, and neither it nor the first request after it (a new prefix by
  design) counts in the prefix-stable share.

``--profile FILE`` runs the child under ``python -m cProfile -o FILE`` (CPU numbers then include
the profiler's overhead). ``--repeat N`` runs each row N times and shows the run with the median
CPU time (the range in brackets). mcode runs from cached bytecode, as installed (a warm-up run
first; ``PYTHONDONTWRITEBYTECODE`` is dropped for it). Nothing touches the user's store.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from helpers import clean_env, exec_args, make_repo  # noqa: E402
from model_server import RecordedRequest, ScriptedServer, Step  # noqa: E402

from mcode.agent.ledger import SUMMARY_ASK  # noqa: E402

# What the bench's model answers when mcode asks it to summarise for a compaction.
SUMMARY = "## Progress\n- the rounds so far are done\n## Open items\n- the remaining rounds"

STANDARD_ROWS = ((100, 4), (300, 8))
WIRES = ("openai", "anthropic")
CHUNK = 64
KEY_VAR = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
FAKE_KEY = "sk-bench-0123456789abcdef0123456789abcdef"


# ----------------------------------------------------------------------------- prefix stability


def strip_cache_control(value: Any) -> Any:
    """``value`` (a parsed body or part of one) without any ``cache_control`` key, recursively."""
    if isinstance(value, dict):
        return {k: strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [strip_cache_control(v) for v in value]
    return value


def _parsed(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes | str):
        body = json.loads(body)
    if not isinstance(body, dict):
        raise ValueError("a request body is not a JSON object")
    return strip_cache_control(body)  # type: ignore[no-any-return]


def prefix_stable(previous: Any, current: Any) -> bool:
    """Whether ``current`` extends ``previous`` the way a prompt cache needs.

    Both are request bodies (bytes, str or parsed JSON), either wire format. After removing
    every ``cache_control`` key: ``tools`` and ``system`` (Anthropic; absent on Chat Completions,
    where the system prompt is the first message) equal the previous request's, and the previous
    request's ``messages`` are, element by element, the first messages of this one."""
    prev, cur = _parsed(previous), _parsed(current)
    if prev.get("tools") != cur.get("tools") or prev.get("system") != cur.get("system"):
        return False
    before, now = prev.get("messages") or [], cur.get("messages") or []
    return len(now) >= len(before) and now[: len(before)] == before


def unstable_requests(bodies: list[Any]) -> list[int]:
    """The (0-based) indexes of the requests after the first that are not prefix-stable."""
    return [i for i in range(1, len(bodies)) if not prefix_stable(bodies[i - 1], bodies[i])]


def system_tools_bytes(body: Any) -> int:
    """Bytes of the serialised ``tools`` plus the system prompt of one request, as mcode sends
    them (compact JSON, UTF-8): Anthropic's ``system`` field, or Chat Completions' system
    message."""
    if isinstance(body, bytes | str):
        body = json.loads(body)

    def size(value: Any) -> int:
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())

    total = size(body["tools"]) if "tools" in body else 0
    if "system" in body:
        total += size(body["system"])
    else:
        total += sum(size(m) for m in body.get("messages", [])[:1] if m.get("role") == "system")
    return total


# ----------------------------------------------------------------------------- the server


@dataclass
class _Observed:
    requests: int = 0
    stable: int = 0
    unstable: list[int] = field(default_factory=list)
    bytes_total: int = 0
    bytes_last: int = 0
    system_tools: int = 0
    first_at: float | None = None
    compactions: int = 0  # summary requests (not part of the script, not checked for prefix)


class BenchServer(ScriptedServer):
    """A ScriptedServer that checks each request as it arrives and keeps only what the table
    needs: the bodies of 300 rounds of 8 KiB would take gigabytes as parsed JSON."""

    def __init__(self, script: list[Step], **kw: Any) -> None:
        super().__init__(script, **kw)
        self.observed = _Observed()
        self._previous: dict[str, Any] | None = None
        self._observe_lock = threading.Lock()

    def _next(self, record: RecordedRequest) -> tuple[Step | None, int]:
        with self._observe_lock:
            o = self.observed
            o.requests += 1
            if o.first_at is None:
                o.first_at = record.received_at
            o.bytes_total += len(record.raw)
            o.bytes_last = len(record.raw)
            body = record.body if isinstance(record.body, dict) else {}
            if _asks_summary(body):
                # A compaction: answered here, off the script; the request after it starts a
                # new prefix (the ledger), so it is compared with nothing.
                o.compactions += 1
                self._previous = None
                return {"text": SUMMARY, "usage": _usage(record, SUMMARY)}, o.requests
            if body:
                if o.requests == 1:
                    o.system_tools = system_tools_bytes(body)
                current = strip_cache_control(body)
                if self._previous is not None:
                    if prefix_stable(self._previous, current):
                        o.stable += 1
                    else:
                        o.unstable.append(o.requests)
                self._previous = current
        light = RecordedRequest(None, record.headers, b"", record.path, record.peer)
        step, n = super()._next(light)
        if isinstance(step, dict):
            step = {**step, "usage": _usage(record, step.get("text", ""))}
        return step, n


def _asks_summary(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or []
    return bool(messages) and SUMMARY_ASK in json.dumps(messages[-1])


def _usage(record: RecordedRequest, text: str) -> dict[str, int]:
    """Token counts as an API would report them, at ~4 bytes a token: the context budget
    anchors on them, so they decide when mcode compacts."""
    return {"prompt_tokens": len(record.raw) // 4, "completion_tokens": len(text) // 4 + 20}


def round_text(n: int, kib: int) -> str:
    """About ``kib`` KiB of prose-like lines for round ``n`` (different every round)."""
    lines: list[str] = []
    size = 0
    i = 0
    while size < kib * 1024:
        line = (
            f"Round {n}, note {i}: the function reads the file, checks each entry and "
            f"records what changed ({n * 31 + i}).\n"
        )
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines)[: kib * 1024]


def script(rounds: int, kib: int) -> list[Step]:
    steps: list[Step] = [
        {
            "text": round_text(n, kib),
            "tool_calls": [
                {"id": f"call_{n}", "name": "bash", "arguments": {"command": f"echo round {n}"}}
            ],
        }
        for n in range(1, rounds + 1)
    ]
    steps.append({"text": f"All {rounds} rounds are done."})
    return steps


# ----------------------------------------------------------------------------- one run


@dataclass
class Result:
    wire: str
    rounds: int
    kib: int
    code: int
    wall: float
    cpu: float
    bash_cpu: float
    maxrss_mb: float
    observed: _Observed
    window: int
    cpu_runs: list[float] = field(default_factory=list)  # with --repeat: every run's CPU s

    @property
    def mean_kib(self) -> float:
        return self.observed.bytes_total / max(1, self.observed.requests) / 1024

    @property
    def share(self) -> str:
        o = self.observed
        # Requests 2..N, less the summary requests and the first request after each.
        checked = o.requests - 1 - 2 * o.compactions
        pct = 100.0 * o.stable / checked if checked else 100.0
        return f"{pct:.0f}% ({o.stable}/{checked})"


def _bash_cpu(rounds: int, cwd: Path) -> float:
    """CPU seconds of the bash children: the same commands, run the way the bash tool runs
    them (``bash -c``, stdin from /dev/null, output to a pipe), timed through RUSAGE_CHILDREN."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for n in range(1, rounds + 1):
        subprocess.run(
            ["bash", "-c", f"echo round {n}"],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=True,
            start_new_session=True,
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_rounds(
    rounds: int,
    kib: int,
    wire: str,
    *,
    profile: str | None = None,
    output_format: str = "stream-json",
    window: int = 1_000_000,
) -> Result:
    with tempfile.TemporaryDirectory(prefix="mcode-bench-") as tmp:
        home = Path(tmp)
        repo = make_repo(home / "repo", {"README.md": "# bench\n", "src/app.py": "print(1)\n"})
        env = clean_env(home, **{KEY_VAR[wire]: FAKE_KEY})
        # As installed: modules load from their cached bytecode, not compiled at every start.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        server = BenchServer(script(rounds, kib), chunk_size=CHUNK).start()
        try:
            python = [sys.executable]
            if profile:
                python += ["-m", "cProfile", "-o", str(Path(profile).resolve())]
            args = [
                *python,
                "-m",
                "mcode",
                *exec_args(server, wire=wire),
                "--permission-mode",
                "full-auto",
                "--max-turns",
                str(rounds + 5),
                "--context-window",
                str(window),
                "--output-format",
                output_format,
                f"Run the {rounds} rounds.",
            ]
            started = time.perf_counter()
            proc = subprocess.Popen(
                args,
                cwd=repo,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            assert proc.stderr is not None
            err: list[bytes] = []
            reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
            reader.start()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            reader.join(timeout=10)
        finally:
            server.stop()
        code = proc.returncode
        expected = rounds + 1 + server.observed.compactions
        if code != 0 or server.observed.requests != expected:
            tail = b"".join(err).decode(errors="replace")[-2000:]
            raise SystemExit(
                f"{wire} {rounds}x{kib}: exit {code}, {server.observed.requests} requests "
                f"(expected {expected})\n{tail}"
            )
        bash = _bash_cpu(rounds, repo)
    return Result(
        wire=wire,
        rounds=rounds,
        kib=kib,
        code=code,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        bash_cpu=bash,
        maxrss_mb=usage.ru_maxrss / 1024,
        observed=server.observed,
        window=window,
    )


# ----------------------------------------------------------------------------- the table


HEADER = (
    "| wire | rounds x KiB | window | wall s | CPU s | bash s | mcode s | peak RSS MB "
    "| req KiB mean / last | compactions | prefix-stable | sys+tools B |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def median_run(runs: list[Result]) -> Result:
    """The run with the median CPU time (the lower middle one of an even count), knowing all."""
    ordered = sorted(runs, key=lambda r: r.cpu)
    chosen = ordered[(len(ordered) - 1) // 2]
    chosen.cpu_runs = [r.cpu for r in ordered]
    return chosen


def row(r: Result) -> str:
    o = r.observed
    cpu = f"{r.cpu:.2f}"
    if len(r.cpu_runs) > 1:
        cpu += f" ({r.cpu_runs[0]:.2f}–{r.cpu_runs[-1]:.2f})"
    return (
        f"| {r.wire} | {r.rounds} x {r.kib} | {r.window // 1000}K | {r.wall:.2f} | {cpu} "
        f"| {r.bash_cpu:.2f} | {r.cpu - r.bash_cpu:.2f} | {r.maxrss_mb:.0f} "
        f"| {r.mean_kib:.0f} / {o.bytes_last / 1024:.0f} | {o.compactions} | {r.share} "
        f"| {o.system_tools} |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, help="one run of this many rounds (default: standard)")
    ap.add_argument("--kib", type=int, default=4, help="assistant text per round, KiB (4)")
    ap.add_argument("--wire", choices=WIRES, help="one wire format (default: both)")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the mcode process into FILE")
    ap.add_argument(
        "--output-format", default="stream-json", choices=["stream-json", "text", "json"]
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs per row; the row shows the median-CPU run"
    )
    ap.add_argument(
        "--context-window",
        type=int,
        default=1_000_000,
        help="tokens (1M, MiniMax-M3's: no compaction); the server counts ~4 bytes a token",
    )
    a = ap.parse_args()
    wires = [a.wire] if a.wire else list(WIRES)
    rows = [(a.rounds, a.kib)] if a.rounds else list(STANDARD_ROWS)
    if a.profile and (len(wires) * len(rows) > 1 or a.repeat > 1):
        ap.error("--profile needs one run: give --rounds and --wire, no --repeat")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        f"; output {a.output_format}; median of {a.repeat} run(s) per row"
    )
    print()
    # Warm-up, not shown: bytecode caches written, files in the page cache.
    run_rounds(1, 1, wires[0], output_format=a.output_format)
    print(HEADER)
    for rounds, kib in rows:
        for wire in wires:
            runs = [
                run_rounds(
                    rounds,
                    kib,
                    wire,
                    profile=a.profile,
                    output_format=a.output_format,
                    window=a.context_window,
                )
                for _ in range(max(1, a.repeat))
            ]
            r = median_run(runs)
            print(row(r), flush=True)
            if r.observed.unstable:
                print(f"<!-- {wire}: unstable requests {r.observed.unstable[:20]} -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
