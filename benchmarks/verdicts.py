"""How often the verdict is right on networks with kinks: a sweep beyond the test battery.

ReLU, leaky-ReLU, tanh and sigmoid MLPs whose examples are NOT kept away from the kinks, in
float64 and float32, each checked correct and with single-parameter bugs. A correct network
must not be called a bug; a buggy one must be, with the buggy parameter ranked first.

    python benchmarks/verdicts.py --seeds 30            # small networks, batch 12
    python benchmarks/verdicts.py --seeds 10 --wide     # 20-32-16 layers, batch 64

Prints the counts of verdicts and every miss.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import networks  # noqa: E402

import fastgc  # noqa: E402

BUGS = ["dW2_doubled", "db1_sign_flip", "dW1_single_entry_10pct", "db2_times_4",
        "dW1_swapped_neighbours"]
KINDS = [("relu", "ce"), ("leaky", "bce"), ("relu", "mse"), ("tanh", "ce"), ("sigmoid", "ce")]


def sweep(seeds: int, wide: bool) -> int:
    counts: collections.Counter = collections.Counter()
    misses = []
    for seed in range(seeds):
        for act, loss in KINDS:
            outputs = 1 if loss == "bce" else 3
            sizes = [20, 32, 16, outputs] if wide else [5, 8, 6, outputs]
            net = networks._MLP(
                f"sweep_{act}_{loss}_{seed}", sizes=sizes, act=act, loss=loss,
                m=64 if wide else 12, seed=1000 + seed, lam=0.3 if seed % 3 == 0 else 0.0,
                kink_margin=0.0, w_scale=1.5 if wide else 1.0,
            )
            for dtype in (np.float64, np.float32):
                for bug in [None] + BUGS:
                    buggy = {bug.split("_")[0][1:]} if bug else set()
                    case = net.case(bug, buggy, dtype)
                    result = fastgc.check(case.cost, case.params, case.grads, progress=False)
                    blamed = result.worst_parameter().name
                    if bug is None:
                        right = result.verdict != "bug"
                    else:
                        right = result.verdict == "bug" and blamed in buggy
                    counts["buggy" if bug else "correct", result.verdict.value] += 1
                    if not right:
                        misses.append(f"{case.name}: {result.verdict.value}, blamed {blamed}")
    for (kind, verdict), count in sorted(counts.items()):
        print(f"{kind:>8} networks called {verdict:<10} {count:>5}")
    print(f"{len(misses)} wrong of {sum(counts.values())}")
    for miss in misses:
        print("  " + miss)
    return 1 if misses else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--wide", action="store_true", help="20-32-16 layers, batch of 64")
    options = parser.parse_args()
    sys.exit(sweep(options.seeds, options.wide))
