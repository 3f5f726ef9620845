"""``@`` completion on a 100k-file git repository: what reading the list costs (once, in a
thread) and what each key press costs while a path is typed out and deleted again, against
the matcher it replaced (a Python loop over every path, lower-casing each, on every key).
Prints a table.

    python tests/bench/tui_completion.py [--files 100000]

Target: a key press well under the 50 ms keystroke budget of issue 13 (a few ms at most).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE.parent))

from mcode.tui.completion import SHOWN, FileIndex  # noqa: E402

# What a user types after the @, one key at a time, then deletes again: short queries that
# match most of the tree first, then narrower ones, and a miss.
TYPED = ["src/pkg7/mod_3", "test", "readme", "zzz"]


def _repo(root: Path, files: int) -> Path:
    """A git repository of ``files`` small files, 100 to a folder, two levels deep, committed
    (tracked) but for a quarter (lib/) left untracked, which git ls-files -o lists too."""
    per = 100
    names = []
    for i in range(files):
        top = ("src", "tests", "docs", "lib")[i % 4]
        folder = f"{top}/pkg{i // (per * 40)}/mod_{i // per % 40}"
        names.append(f"{folder}/file_{i}.py")
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (root / "README.md").write_text("x\n")
    git = ["git", "-c", "user.email=b@example.com", "-c", "user.name=b"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A", "src", "tests", "docs"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], cwd=root, check=True)
    return root


def _match_before(paths: list[str], query: str, limit: int = SHOWN) -> list[str]:
    """The matcher this replaced, as it was: every path lower-cased and ranked per key."""
    q = query.lower()
    ranked: list[tuple[int, int, str]] = []
    for path in paths:
        low = path.lower()
        at = low.find(q)
        if at < 0:
            continue
        name = low.rstrip("/").rsplit("/", 1)[-1]
        rank = 0 if name.startswith(q) else 1 if at == 0 else 2
        ranked.append((rank, len(path), path))
    ranked.sort()
    return [p for _, _, p in ranked[:limit]]


def _keys() -> list[str]:
    queries = []
    for word in TYPED:
        queries += [word[:i] for i in range(1, len(word) + 1)]
        queries += [word[:i] for i in range(len(word) - 1, 0, -1)]
    return queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = _repo(Path(tmp), args.files)
        made = time.perf_counter() - t0
        index = FileIndex(root)
        t0 = time.perf_counter()
        paths = index.load()
        read = time.perf_counter() - t0
        keys = _keys()
        rows = []
        for name, match in (
            ("before: a loop over every path", lambda q: _match_before(paths, q)),
            ("now: cached, C-level filters", index.match),
        ):
            times = []
            for q in keys:
                t0 = time.perf_counter()
                match(q)
                times.append(1000 * (time.perf_counter() - t0))
            rows.append((name, statistics.median(times), max(times), sum(times)))
        for q in keys:  # the two agree on every key (the new one leaves out q itself)
            before = [p for p in _match_before(paths, q, SHOWN + 1) if p != q][:SHOWN]
            assert index.match(q) == before, q
    print(
        f"repository: {args.files:,} files (+ {len(paths) - args.files:,} folders), "
        f"made in {made:.1f} s; list read (git ls-files, once, in a thread) {1000 * read:.0f} ms"
    )
    print(f"{len(keys)} key presses typing and deleting {', '.join(TYPED)}\n")
    print("| matcher | median ms/key | max ms/key | all keys ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, med, worst, total in rows:
        print(f"| {name} | {med:.2f} | {worst:.2f} | {total:.0f} |")


if __name__ == "__main__":
    main()
