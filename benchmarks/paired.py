"""Two benchmark runs on the same seeds and test images, compared image by image.

    python benchmarks/paired.py A.json B.json

``benchmarks/hil.py`` and ``benchmarks/refine.py`` keep, with every accuracy they report, the
per-image right/wrong flags it was counted from (``right``: a string of 0 and 1, one per test
image). Two classifiers scored on the same images are compared with McNemar's exact test on the
images only one of them got right, not by their two percentages (docs/hil.md). For every seed
both files hold, every score both runs hold at the same place (``refined_plate.readout_refit``,
``world_reprints[1].plain``, ...) gives one row: the two accuracies, the discordant counts
(``only_a``: A right and B wrong; ``only_b``) and the two-sided p-value. The rows of one seed share
their test images, so they are not independent tests of one question.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labctl.stats import mcnemar  # noqa: E402


def flag_text(right: np.ndarray) -> str:
    """Per-test-image right (1) / wrong (0), as the benchmarks keep it in their JSON."""
    return "".join("1" if r else "0" for r in right)


def flags_of(text: str) -> np.ndarray:
    return np.array([c == "1" for c in text])


def scores(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(place, score) for every score with per-image flags under ``node``, depth first."""
    if isinstance(node, dict):
        if isinstance(node.get("right"), str):
            yield path, node
        for key, value in node.items():
            yield from scores(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for number, value in enumerate(node):
            yield from scores(value, f"{path}[{number}]")


def runs(path: str) -> dict[int, dict[str, Any]]:
    """Seed -> run of a benchmark's ``--json`` output; one line naming the file if it is not one."""
    try:
        found = {run["seed"]: run for run in json.loads(Path(path).read_text())["runs"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: not a benchmark's --json output with runs ({exc})") from None
    if all(next(scores(run), None) is None for run in found.values()):
        raise SystemExit(f"{path}: no per-image flags ('right'); run the benchmark again at a commit that keeps them")
    return found


def compare(path_a: str, path_b: str) -> dict[str, Any]:
    """McNemar between every score two runs share, seed by seed (module docstring)."""
    a, b = runs(path_a), runs(path_b)
    rows = []
    for seed in sorted(set(a) & set(b)):
        theirs = dict(scores(b[seed]))
        for place, score_a in scores(a[seed]):
            if place not in theirs:
                continue
            flags_a, flags_b = flags_of(score_a["right"]), flags_of(theirs[place]["right"])
            if len(flags_a) != len(flags_b):
                raise SystemExit(
                    f"{path_a}, {path_b}: seed {seed}, {place} scored on {len(flags_a)} and {len(flags_b)} images; "
                    "compare runs made with the same --test"
                )
            test = mcnemar(flags_a, flags_b)
            rows.append(
                {"seed": seed, "score": place, "a": float(flags_a.mean()), "b": float(flags_b.mean())}
                | {"only_a": test.b, "only_b": test.c, "p": test.p_value}
            )
    return {"a": path_a, "b": path_b, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", metavar="A.json")
    parser.add_argument("b", metavar="B.json")
    args = parser.parse_args()
    print(json.dumps(compare(args.a, args.b), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
