"""Re-examination: disagreeing components evaluated again at other steps, and labelled.

Agreement at another step (round-off or truncation), a kink (one-sided slopes that jump, or a
change of the user's signature), a likely bug (every estimate agrees with the others and not
with the analytic value) or noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .._layout import Layout
from .._result import Label
from .._steps import StepRule
from .noise import Noise

# Re-examination costs 10 serial evaluations a component: small networks are examined in
# full, large ones up to REEXAMINE_MAXIMUM components, and a block stops being examined once
# ENOUGH_EVIDENCE of its components are likely bugs.
REEXAMINE_FRACTION = 0.05
REEXAMINE_MINIMUM = 256
REEXAMINE_MAXIMUM = 2000
ENOUGH_EVIDENCE = 16


@dataclass
class Reexamination:
    label: Label
    estimate: float


def reexamine(
    i: int,
    analytic: float,
    step: float,
    probe: Callable[[int, float], tuple[float, float, float, float]],
    cost_at_theta: float,
    noise: Noise,
    rtol: float,
    crossed: Callable[[int, float], bool] | None,
) -> Reexamination:
    """Label component ``i`` after evaluating the cost around it at several steps.

    ``probe(i, s)`` returns (J(theta + s e_i), J(theta - s e_i), represented up step,
    represented down step); ``crossed(i, s)`` says whether the user's signature changes.

    Estimates, each with an uncertainty made of round-off (``delta / s``, delta the round-off
    of one cost evaluation) and a truncation estimate from the next coarser level:
    Richardson's fourth-order central differences at h/2, h and 16h, and the one-sided
    slopes on each side at h/4 (their drift over h/4, h/2, h as truncation). A kink crossed on one side spoils that
    side only, so the two sides disagreeing is the signature of a kink.
    """
    delta, one_ulp = noise.bound, noise.typical
    plus, minus = {}, {}
    for factor in (0.25, 0.5, 1.0, 2.0, 8.0, 16.0):
        j_plus, j_minus, up, down = probe(i, step * factor)
        plus[factor] = (j_plus - cost_at_theta) / up  # forward slope
        minus[factor] = (cost_at_theta - j_minus) / down  # backward slope

    def central(f: float) -> float:
        return 0.5 * (plus[f] + minus[f])

    def richardson(f: float) -> float:  # from central differences at f/2 and f
        return (4.0 * central(f / 2) - central(f)) / 3.0

    candidates = [  # (value, uncertainty, label if it agrees)
        (richardson(0.5), 6.0 * delta / step + abs(richardson(0.5) - richardson(1.0)) / 15.0,
         Label.AGREES_SMALLER_STEP),
        (richardson(1.0), 3.0 * delta / step + abs(richardson(1.0) - richardson(2.0)) / 15.0,
         Label.AGREES_SMALLER_STEP),
        (richardson(16.0), 3.0 * delta / (16.0 * step) + abs(richardson(16.0) - richardson(2.0)),
         Label.AGREES_LARGER_STEP),
    ]
    # One-sided slopes nearest theta; their drift over h/4, h/2, h is their truncation error.
    roundoff = one_ulp / (0.25 * step)
    forward_drift, backward_drift = _drift(plus), _drift(minus)
    forward = (plus[0.25], forward_drift + roundoff)
    backward = (minus[0.25], backward_drift + roundoff)
    if crossed is not None:
        kinked = crossed(i, step) or crossed(i, 0.5 * step)
    else:
        # Smooth: both sides drift alike (by about J'' s), and the gap between them shrinks
        # with the step. A kink crossed on one side makes that side drift far more than the
        # other; a kink at theta itself leaves a gap that does not shrink.
        gap_near, gap_far = abs(plus[0.25] - minus[0.25]), abs(plus[1.0] - minus[1.0])
        kinked = max(forward_drift, backward_drift) > (
            4.0 * min(forward_drift, backward_drift) + 4.0 * roundoff
        ) or (gap_near > 3.0 * roundoff and gap_near > 0.5 * gap_far)

    def agrees(value: float, uncertainty: float, target: float) -> bool:
        return abs(value - target) <= rtol * (abs(value) + abs(target)) + 3.0 * uncertainty

    discrepancy = abs(central(1.0) - analytic)

    def sharp(side: tuple) -> bool:
        # An estimate settles the question only if it is sharper than the disagreement.
        return 3.0 * side[1] < discrepancy

    if not kinked:
        for value, uncertainty, label in candidates:
            if 6.0 * uncertainty < discrepancy and agrees(value, uncertainty, analytic):
                return Reexamination(label, value)
    forward_ok = sharp(forward) and agrees(*forward, analytic)
    backward_ok = sharp(backward) and agrees(*backward, analytic)
    if forward_ok and backward_ok:
        return Reexamination(Label.AGREES_SMALLER_STEP, 0.5 * (forward[0] + backward[0]))
    if forward_ok or backward_ok:
        # One side matches backprop and the other does not: that side crossed a kink.
        return Reexamination(Label.KINK, analytic)
    if kinked:
        # Sides that still meet at h/4 put the kink beyond h/4: the central difference there
        # is clean, and decides.
        near_gap = abs(plus[0.25] - minus[0.25])
        nearest = (central(0.25), roundoff + 0.5 * near_gap)
        if near_gap <= 6.0 * roundoff and sharp(nearest):
            if agrees(*nearest, analytic):
                return Reexamination(Label.KINK, analytic)
            return Reexamination(Label.LIKELY_BUG, nearest[0])
        sharp_sides = [side for side in (forward, backward) if sharp(side)]
        if len(sharp_sides) == 2 and _between(analytic, forward, backward):
            return Reexamination(Label.KINK, analytic)  # a subgradient at the kink itself
        if len(sharp_sides) == 2:  # both sides clear of the kink, and backprop matches neither
            return Reexamination(Label.LIKELY_BUG, min(sharp_sides, key=lambda s: s[1])[0])
        # One sharp side could itself sit on a kink closer than h/4: no verdict either way.
        return Reexamination(Label.NOISE, analytic)
    # A likely bug: the small-step estimates agree with one another far better than any of
    # them agrees with backprop, and the miss is well above typical round-off.
    best = richardson(1.0)
    best_uncertainty = 3.0 * one_ulp / step + abs(richardson(1.0) - richardson(2.0)) / 15.0
    nearby = [richardson(0.5), best, central(0.25), central(0.5)]
    spread = max(nearby) - min(nearby)
    miss = abs(best - analytic)
    if miss > 3.0 * best_uncertainty + rtol * (abs(best) + abs(analytic)) and miss > 4.0 * spread:
        return Reexamination(Label.LIKELY_BUG, best)
    return Reexamination(Label.NOISE, analytic)


def _drift(slopes: dict) -> float:
    return abs(slopes[0.5] - slopes[0.25]) + 0.5 * abs(slopes[1.0] - slopes[0.5])


def _between(value: float, forward: tuple, backward: tuple) -> bool:
    """Is ``value`` between the one-sided slopes (a subgradient at a kink), each side widened
    by its own uncertainty?"""
    (low, low_uncertainty), (high, high_uncertainty) = sorted((forward, backward))
    return low - 3.0 * low_uncertainty <= value <= high + 3.0 * high_uncertainty


@dataclass
class Findings:
    """What re-examining the disagreeing components found."""

    labels: dict[int, str] = field(default_factory=dict)
    corrected: dict[int, float] = field(default_factory=dict)  # better numeric estimates
    unjudged: set[int] = field(default_factory=set)  # cleared, kinked or too noisy to count
    likely_bug: set[int] = field(default_factory=set)


def reexamine_flagged(
    flagged: np.ndarray,
    ratio: np.ndarray,
    approx: np.ndarray,
    dtheta: np.ndarray,
    layout: Layout,
    steps: StepRule,
    cost_at_theta: float,
    noise: Noise,
    correct: float,
    probe: Callable[[int, float], tuple[float, float, float, float]] | None,
    crossed: Callable[[int, float], bool] | None,
) -> Findings:
    """Label the flagged components, re-examining the most disagreeing within a budget."""
    findings = Findings()
    labels, corrected = findings.labels, findings.corrected
    unjudged, likely_bug = findings.unjudged, findings.likely_bug
    finite_flagged = np.isfinite(dtheta[flagged])
    for i in flagged[~finite_flagged]:
        labels[int(i)] = Label.NON_FINITE.value
    candidates, candidate_ratio = flagged[finite_flagged], ratio[finite_flagged]
    budget = min(
        REEXAMINE_MAXIMUM, max(REEXAMINE_MINIMUM, int(REEXAMINE_FRACTION * approx.shape[0]))
    )
    bugs_per_block = np.zeros(len(layout.names), dtype=np.int64)
    examined_blocks_cleared: set[int] = set()
    examined: set[int] = set()
    if probe is not None and candidates.size:
        for i in select(candidates, candidate_ratio, layout, budget):
            i, block = int(i), int(layout.block_of(i))
            if bugs_per_block[block] >= ENOUGH_EVIDENCE:
                continue
            examined.add(i)
            result = reexamine(
                i, float(dtheta[i]), steps.at(i), probe, cost_at_theta, noise, correct, crossed
            )
            labels[i] = result.label.value
            if result.label not in (Label.KINK, Label.NOISE):  # these have no better estimate
                corrected[i] = result.estimate
            # Agreement at another step is agreement within that estimate's own uncertainty;
            # kinks and noise cannot be judged: none of them counts against the block.
            if result.label is Label.LIKELY_BUG:
                likely_bug.add(i)
                bugs_per_block[block] += 1
            else:
                unjudged.add(i)
                examined_blocks_cleared.add(block)
    # Flagged components left over once the budget is spent are judged like the block's
    # re-examined ones: if re-examination cleared some of them, the rest are not counted.
    for i in candidates:
        if int(i) not in examined and int(layout.block_of(i)) in examined_blocks_cleared:
            unjudged.add(int(i))
    return findings


def select(candidates: np.ndarray, ratio: np.ndarray, layout: Layout, total: int) -> np.ndarray:
    """The ``total`` most disagreeing candidates (``ratio`` aligned), shared between blocks."""
    if candidates.size <= total:
        return candidates[np.argsort(-ratio, kind="stable")]
    blocks = layout.block_of(candidates)
    # Rank within each block, then take rank 0 of every block, rank 1 of every block, ...
    order = np.lexsort((-ratio, blocks))
    ranked, sorted_blocks, ranked_ratio = candidates[order], blocks[order], ratio[order]
    rank_in_block = np.arange(ranked.size) - np.searchsorted(sorted_blocks, sorted_blocks)
    fair = np.lexsort((-ranked_ratio, rank_in_block))
    return ranked[fair][:total]
