"""Split stability: how many existing backgrounds change split when one is added.

For every count n from 0 to --max_n and every seed below --seeds, the
backgrounds n0..n{n-1} are split (transforms/splits.py), one more name is
added, and the backgrounds in both splits whose split differs are counted;
the same for held-out foregrounds (--test_foreground_fraction). Printed per
fraction setting: the worst and the mean count. docs/dataset.md ("What a build
writes") quotes the worst.

    python scripts/split_moves.py --max_n 400 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transforms.splits import assign_splits, held_out_foregrounds, moved  # noqa: E402

FRACTIONS: Tuple[Tuple[float, float], ...] = (
    (0.1, 0.1),
    (0.2, 0.1),
    (0.05, 0.15),
    (0.3, 0.3),
    (0.45, 0.45),
    (0.1, 0.0),
    (0.0, 0.3),
)
FOREGROUND_FRACTIONS = (0.1, 0.25, 0.5)


def background_moves(max_n: int, seeds: int, val: float, test: float) -> List[int]:
    counts = []
    for n in range(max_n + 1):
        names = [f"n{i}" for i in range(n)]
        for seed in range(seeds):
            before = assign_splits(names, seed, val, test)
            counts.append(moved(before, assign_splits([*names, "added"], seed, val, test)))
    return counts


def foreground_moves(max_n: int, seeds: int, fraction: float) -> List[int]:
    counts = []
    for n in range(max_n + 1):
        names = [f"n{i}" for i in range(n)]
        for seed in range(seeds):
            before = held_out_foregrounds(names, seed, fraction)
            after = held_out_foregrounds([*names, "added"], seed, fraction)
            counts.append(len(before - after) + len((after - before) - {"added"}))
    return counts


def summary(counts: List[int]) -> Dict[str, float]:
    return {"worst": max(counts), "mean": round(sum(counts) / len(counts), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--max_n", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    results = {
        "backgrounds": {
            f"val {val} test {test}": summary(background_moves(args.max_n, args.seeds, val, test))
            for val, test in FRACTIONS
        },
        "held_out_foregrounds": {
            f"test_foreground {fraction}": summary(
                foreground_moves(args.max_n, args.seeds, fraction)
            )
            for fraction in FOREGROUND_FRACTIONS
        },
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
