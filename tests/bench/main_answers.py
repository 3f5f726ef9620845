"""Does the README's main command end with an answer? Over README variants, steered and not.

    python tests/bench/main_answers.py [--variants 8]

The main command (``mcode exec "What does this repository do? ..."``, no API key: the embedded
SmolLM2-135M on llama.cpp) runs in scratch repositories holding this README and the top-level
folders. Variant i has i blank lines appended: the same text, only the line count the read tool
reports differs, which is enough to send a 135M model down another path. Each variant runs
twice, alternated: with ``local.end_after = 0`` (never steered to end: the baseline) and with
the default (steered past half the output cap, ``Sampling.end_after``). Rows: how many runs
ended with exit 0 (the others: exit 3, the answer cut at the 1,024-token cap), the answer's
length (median / max characters), lines repeated 3 times or more, the run's wall time.
Private HOME and XDG folders; nothing touches the user's store. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "What does this repository do? Read README.md and list the folders."
FOLDERS = ("lsp", "kernels", "local_backend", "plugins", "docs")  # not "mcode": see test
KEY_VARS = ("MINIMAX_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def _repo(where: Path, readme: str) -> None:
    where.mkdir(parents=True)
    (where / "README.md").write_text(readme)
    for folder in FOLDERS:
        (where / folder).mkdir()
        (where / folder / "__init__.py").write_text("")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=where, check=True)
    subprocess.run([*git, "add", "-A"], cwd=where, check=True)
    subprocess.run([*git, "commit", "-qm", "readme"], cwd=where, check=True)


def _run(repo: Path, home: Path, steered: bool) -> tuple[int, str, float]:
    config = home / "cfg" / "mcode" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("" if steered else "[local]\nend_after = 0\n")
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS and not k.startswith("MCODE_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "cfg"), XDG_DATA_HOME=str(home / "d"))
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "mcode", "exec", "--output-format", "stream-json", PROMPT],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - started
    events = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    answers = [e for e in events if e["type"] == "message.assistant"]
    parts = answers[-1]["data"]["message"]["parts"] if answers else []
    return run.returncode, "".join(p.get("text", "") for p in parts), wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", type=int, default=8)
    args = parser.parse_args()
    readme = (ROOT / "README.md").read_text()
    results: dict[bool, list[tuple[int, str, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="mcode-bench-") as tmp:
        for i in range(args.variants):
            repo = Path(tmp) / f"repo{i}"
            _repo(repo, readme + "\n" * i)
            for steered in (False, True):
                home = Path(tmp) / f"home{i}-{steered}"
                code, text, wall = _run(repo, home, steered)
                results[steered].append((code, text, wall))
                shutil.rmtree(home, ignore_errors=True)
                print(
                    f"variant {i} steered={steered}: exit {code}, {len(text)} chars, {wall:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )

    def repeated(text: str) -> int:
        lines = [line.strip() for line in text.splitlines() if len(line.strip()) > 20]
        return len({line for line in lines if lines.count(line) >= 3})

    print("| runs | exit 0 | answer chars, median / max | repeated lines | wall, median / max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for steered, label in ((False, "not steered (`local.end_after = 0`)"), (True, "steered")):
        rows = results[steered]
        sizes = [len(t) for _, t, _ in rows]
        walls = [w for _, _, w in rows]
        print(
            f"| {label} | {sum(c == 0 for c, _, _ in rows)} of {len(rows)} "
            f"| {statistics.median(sizes):.0f} / {max(sizes)} "
            f"| {sum(repeated(t) for _, t, _ in rows)} "
            f"| {statistics.median(walls):.0f} / {max(walls):.0f} s |"
        )


if __name__ == "__main__":
    main()
