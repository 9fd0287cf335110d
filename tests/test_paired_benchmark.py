"""benchmarks/paired.py: two benchmark runs compared image by image (McNemar on the discordant images)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_file(tmp_path: Path, name: str, runs: list[dict]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"design": "x", "runs": runs}))
    return str(path)


def paired(*paths: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "paired.py"), *paths], capture_output=True, text=True, timeout=60
    )


def test_every_shared_score_is_compared_seed_by_seed(tmp_path):
    a = run_file(
        tmp_path,
        "a.json",
        [
            {
                "seed": 0,
                "plain": {"right": "1100"},
                "prints": [{"plain": {"right": "1111"}}],
                "only_in_a": {"right": "1"},
            }
        ],
    )
    b = run_file(
        tmp_path, "b.json", [{"seed": 0, "plain": {"right": "1010"}, "prints": [{"plain": {"right": "0000"}}]}]
    )
    done = paired(a, b)
    assert done.returncode == 0, done.stderr
    rows = {row["score"]: row for row in json.loads(done.stdout)["rows"]}
    assert set(rows) == {"plain", "prints[0].plain"}
    assert (rows["plain"]["only_a"], rows["plain"]["only_b"], rows["plain"]["p"]) == (1, 1, 1.0)
    assert (rows["prints[0].plain"]["a"], rows["prints[0].plain"]["b"]) == (1.0, 0.0)
    assert (rows["prints[0].plain"]["only_a"], rows["prints[0].plain"]["only_b"]) == (4, 0)
    assert rows["prints[0].plain"]["p"] == 0.125  # exact two-sided binomial: 2 * 0.5**4


def test_runs_on_different_images_or_without_flags_are_refused_in_one_line(tmp_path):
    a = run_file(tmp_path, "a.json", [{"seed": 0, "plain": {"right": "1100"}}])
    shorter = run_file(tmp_path, "b.json", [{"seed": 0, "plain": {"right": "110"}}])
    done = paired(a, shorter)
    assert done.returncode != 0
    assert "scored on 4 and 3 images" in done.stderr and "Traceback" not in done.stderr
    bare = run_file(tmp_path, "c.json", [{"seed": 0, "plain": {"accuracy": 0.5}}])
    done = paired(a, bare)
    assert done.returncode != 0 and "no per-image flags" in done.stderr and "Traceback" not in done.stderr
