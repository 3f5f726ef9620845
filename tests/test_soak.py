"""The soak's short version (tests/bench/soak.py has the long one and what it checks): 150 tool
calls through real tools, three ``kill -9``s each followed by ``--resume``, compaction after
compaction in a 6,000-token window; nothing lost, the run completes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))

from soak import rows_of, soak


def test_a_short_soak_with_three_kills_loses_nothing_and_completes(tmp_path: Path) -> None:
    result = soak(calls=150, kills=3, window=6000, seed=18, root=tmp_path)
    assert result.failures == []
    assert result.runs == 4  # three kills, three resumes
    assert result.completed_calls >= 147
    assert result.compactions >= 3
    rows = os.environ.get("MCODE_RELIABILITY_ROWS")
    if rows:
        with open(rows, "a") as f:
            f.write(json.dumps(rows_of(result, result.wall_s)[0]) + "\n")


def test_a_ledger_shrinking_to_fit_gives_up_the_file_list_before_the_users_requests() -> None:
    """What the full soak found: after hundreds of files written, the ledger of a small window
    kept every file and dropped every requirement the user had steered in."""
    from mcode.agent.ledger import Ledger

    ledger = Ledger(goal="Generate the reports. Constraint C1: never touch vendor/.")
    ledger.requests = [f"Requirement R{k}: tag batch {k}." for k in range(1, 21)]
    ledger.files = {f"out/r{i:04d}.txt": "created" for i in range(700)}
    text = ledger.render(max_chars=4500)
    assert len(text) <= 4500
    assert "Constraint C1: never touch vendor/." in text
    assert all(r in text for r in ledger.requests)
    assert "[690 earlier files left out: see git status]" in text and "out/r0699.txt" in text
