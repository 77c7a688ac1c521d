"""Check plans on large networks: evaluations and verdicts of the screen against the full
check and against torch's fast gradcheck.

    python benchmarks/plans.py [--seeds 5] [--large] [--markdown]

Rows:

- torch ``gradcheck(fast_mode=True)`` and ``fastgc.check(plan="screen")`` on a 10^6-element
  tensor whose hand-written backward doubles or flips the sign of gradients around 1e-3, for
  each seed: caught or passed, evaluations, seconds;
- the battery of small networks (tests/networks.py: correct, buggy, kinked) checked with
  ``plan="screen"`` and with ``plan="full"`` as the reference: misses, false alarms, wrong
  blocks, and evaluations as a share of the full check's;
- with ``--large``: the 10.5-million-parameter network of ``python -m fastgc demo large``,
  one wrong component and one doubled bias: evaluations against 2n, and whether the report
  names the planted (block, index).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import fastgc  # noqa: E402


def torch_rows(seeds: int, n: int = 10**6) -> list[tuple]:
    """(bug, seed, torch caught, torch s, fastgc verdict, fastgc evaluations, fastgc s)."""
    import torch

    rows = []
    for factor, bug in ((2.0, "doubled"), (-1.0, "sign flipped")):
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            w, x0 = rng.standard_normal(n), rng.standard_normal(n)
            torch.manual_seed(seed)
            rows.append((bug, seed, *_torch_fast(w, x0, factor), *_screen(w, x0, factor, seed)))
    return rows


def _torch_fast(w, x0, factor):
    import torch

    weights = torch.tensor(w)

    class Planted(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return 1e-3 * (weights * torch.sin(x)).sum()

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 1e-3 * weights * torch.cos(x) * factor

    x = torch.tensor(x0, requires_grad=True)
    started = time.perf_counter()
    passed = torch.autograd.gradcheck(Planted.apply, (x,), fast_mode=True, raise_exception=False)
    return (not passed), time.perf_counter() - started


def _screen(w, x0, factor, seed):
    def cost(p):
        return float(1e-3 * np.sum(w * np.sin(p["x"])))

    started = time.perf_counter()
    result = fastgc.check(cost, {"x": x0}, {"dx": 1e-3 * w * np.cos(x0) * factor},
                          plan=fastgc.Screen(seed=seed), progress=False)
    return result.verdict.value, result.evaluations, time.perf_counter() - started


def battery_rows() -> list[tuple]:
    """(plan, cases, misses, false alarms, wrong block, mean evaluations / 2n)."""
    import networks

    cases = networks.all_cases() + networks.kinked_cases()
    rows = []
    for plan in ("full", "screen"):
        misses = alarms = wrong_block = 0
        shares = []
        for case in cases:
            result = fastgc.check(case.cost, case.params, case.grads, engine="python",
                                  progress=False, plan=plan)
            shares.append(result.evaluations / (2 * result.layout.size))
            flagged = {n for n, p in result.per_parameter.items() if p.verdict == "bug"}
            if case.buggy and result.verdict != "bug":
                misses += 1
            elif case.buggy and not (flagged <= case.buggy):
                wrong_block += 1
            elif not case.buggy and result.verdict == "bug":
                alarms += 1
        rows.append((plan, len(cases), misses, alarms, wrong_block, float(np.mean(shares))))
    return rows


def large_rows() -> list[tuple]:
    """(bug, verdict, named, evaluations, 2n, seconds) on the demo's 10.5M network."""
    from fastgc import _demo_large as demo

    params, X, Y, sizes = demo.large_network()
    grads = demo.backprop(params, X, Y)
    n = sum(v.size for v in params.values())
    rows = []
    for bug in ("entry", "bias"):
        started = time.perf_counter()
        result = fastgc.check(demo.network_cost(), params, demo.planted(grads, bug),
                              args=(X, Y, sizes), plan="screen", progress=False)
        worst = result.worst(1)[0]
        named = f"{worst.name}{list(worst.index)}" if bug == "entry" else \
            result.worst_parameter().name
        rows.append((bug, result.verdict.value, named, result.evaluations, 2 * n,
                     time.perf_counter() - started))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--large", action="store_true",
                        help="also screen the 10.5M-parameter demo network (about a minute)")
    options = parser.parse_args(argv)
    print("torch gradcheck(fast_mode=True) vs fastgc screen, 10^6 elements, gradients ~1e-3:")
    print(f"  {'bug':<13} {'seed':>4}  {'torch':<7} {'s':>6}  {'fastgc':<7} {'evals':>6} {'s':>6}")
    for bug, seed, caught, t_torch, verdict, evaluations, t_fastgc in torch_rows(options.seeds):
        print(f"  {bug:<13} {seed:>4}  {'caught' if caught else 'passed':<7} {t_torch:>6.2f}  "
              f"{verdict:<7} {evaluations:>6} {t_fastgc:>6.2f}")
    print("\nbattery (tests/networks.py, correct + buggy + kinked), python engine:")
    print(f"  {'plan':<7} {'cases':>5} {'misses':>6} {'alarms':>6} {'wrong block':>11} "
          f"{'evals / 2n':>10}")
    for plan, cases, misses, alarms, wrong, share in battery_rows():
        print(f"  {plan:<7} {cases:>5} {misses:>6} {alarms:>6} {wrong:>11} {share:>10.3f}")
    if options.large:
        print("\n10.5M-parameter network (python -m fastgc demo large), plan='screen':")
        for bug, verdict, named, evaluations, full, seconds in large_rows():
            print(f"  {bug:<6} {verdict:<5} {named:<16} {evaluations:>6} evaluations of "
                  f"{full:,} ({evaluations / full:.5%}) in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
