"""From numeric and analytic gradients to verdicts one can trust.

The lecture's single number ``||approx - dtheta|| / (||approx|| + ||dtheta||)`` misses bugs in
small blocks, raises false alarms in float32 and on zero gradients, and is blind to NaN. Here:

1. Each component is compared with a tolerance made of the attainable relative accuracy of the
   dtype and a *noise floor*: the round-off of the cost, ``FLOOR_FACTOR * u * |J| / h``, which
   a two-sided difference at step ``h`` cannot see below.
2. Disagreeing components are re-examined at other steps (h/10, 2h, 10h, 20h and Richardson's
   fourth-order combinations), and labelled: agreement at another step (round-off or truncation),
   a kink (one-sided slopes that jump, or a change of the user's signature), a likely bug (every
   estimate agrees with the others and not with the analytic value) or noise.
3. Each parameter block gets the lecture's number recomputed with the re-examined values and the
   noise floor subtracted, and a verdict; the overall verdict is the worst of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ._layout import Layout
from ._result import Label, ParameterReport, Verdict, worst_verdict

UNIT_ROUNDOFF = {np.dtype(np.float64): 2.0**-53, np.dtype(np.float32): 2.0**-24}
FLOOR_FACTOR = 4.0
# Default steps: the lecture's 1e-7 for float64; about cbrt(u), relative, for float32.
DEFAULT_EPS = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 2.0**-8}
# Re-examination costs 10 serial evaluations a component: small networks are examined in
# full, large ones up to REEXAMINE_MAXIMUM components, and a block stops being examined once
# ENOUGH_EVIDENCE of its components are likely bugs.
REEXAMINE_FRACTION = 0.05
REEXAMINE_MINIMUM = 256
REEXAMINE_MAXIMUM = 2000
ENOUGH_EVIDENCE = 16


def choose_steps(theta: np.ndarray, eps: float | None) -> tuple[np.ndarray, str]:
    """Per-component steps h_i (float64) and a sentence saying how they were chosen.

    float64 keeps the lecture's absolute 1e-7, so ``difference`` is the lecture's number.
    float32 cannot resolve that: its step is about cbrt(u) relative to |theta_i|.
    """
    if eps is not None:
        return np.full(theta.shape[0], float(eps)), f"eps={eps:g} as given"
    base = DEFAULT_EPS[theta.dtype]
    if theta.dtype == np.float64:
        return np.full(theta.shape[0], base), f"eps={base:g}, the default for float64"
    steps = base * np.maximum(1.0, np.abs(theta.astype(np.float64)))
    return steps, (
        f"eps={base:.3g} x max(1, |theta_i|), the default for {theta.dtype} (about cbrt(u): "
        "balances round-off against truncation)"
    )


def effective_thresholds(thresholds: tuple[float, float], dtype: np.dtype) -> tuple[float, float]:
    """Thresholds no tighter than the dtype can attain (float32 cannot reach 1e-7)."""
    attainable = 5.0 * UNIT_ROUNDOFF[np.dtype(dtype)] ** (2.0 / 3.0)
    correct = max(thresholds[0], attainable)
    return correct, max(thresholds[1], 10.0 * correct)


def noise_floor(cost_at_theta: float, dtype: np.dtype, steps: np.ndarray) -> np.ndarray:
    """The smallest derivative error a two-sided difference can resolve, per component."""
    return FLOOR_FACTOR * UNIT_ROUNDOFF[np.dtype(dtype)] * abs(cost_at_theta) / steps


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
    unit_roundoff: float,
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
    delta = FLOOR_FACTOR * unit_roundoff * abs(cost_at_theta)
    one_ulp = 2.0 * unit_roundoff * abs(cost_at_theta)  # a typical round-off, not a bound
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
        # Smooth: both sides drift alike (by about J'' s). A kink crossed on one side makes
        # that side drift far more than the other.
        kinked = max(forward_drift, backward_drift) > (
            4.0 * min(forward_drift, backward_drift) + 4.0 * roundoff
        )

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
        sharp_sides = [side for side in (forward, backward) if sharp(side)]
        if len(sharp_sides) == 2 and _between(analytic, forward, backward):
            return Reexamination(Label.KINK, analytic)  # a subgradient at the kink itself
        if sharp_sides:  # the smooth side of the kink disagrees with backprop
            return Reexamination(Label.LIKELY_BUG, min(sharp_sides, key=lambda s: s[1])[0])
        return Reexamination(Label.NOISE, analytic)
    best, best_uncertainty, _ = min(candidates[:2], key=lambda c: c[1])
    if abs(best - analytic) > 3.0 * best_uncertainty + rtol * (abs(best) + abs(analytic)):
        return Reexamination(Label.LIKELY_BUG, best)
    return Reexamination(Label.NOISE, analytic)


def _drift(slopes: dict) -> float:
    return abs(slopes[0.5] - slopes[0.25]) + 0.5 * abs(slopes[1.0] - slopes[0.5])


def _between(value: float, forward: tuple, backward: tuple) -> bool:
    """Is ``value`` within the spread of the one-sided slopes (a subgradient at a kink)?"""
    margin = 3.0 * max(forward[1], backward[1])
    low, high = sorted((forward[0], backward[0]))
    return low - margin <= value <= high + margin


@dataclass
class Diagnosis:
    verdict: Verdict
    per_parameter: dict[str, ParameterReport]
    labels: dict[int, str]
    corrected: dict[int, float]
    scores: np.ndarray
    noise_floor: float
    thresholds: tuple[float, float]
    n_evaluations: int


def diagnose(
    approx: np.ndarray,
    dtheta: np.ndarray,
    layout: Layout,
    steps: np.ndarray,
    cost_at_theta: float,
    thresholds: tuple[float, float],
    block_norms: np.ndarray,
    probe: Callable[[int, float], tuple[float, float, float, float]] | None,
    crossed: Callable[[int, float], bool] | None = None,
) -> Diagnosis:
    """Verdicts per parameter and overall; see the module docstring for the method."""
    dtype = layout.dtype
    correct, bug = effective_thresholds(thresholds, dtype)
    unit = UNIT_ROUNDOFF[dtype]
    floors = noise_floor(cost_at_theta, dtype, steps)
    finite = np.isfinite(dtheta)
    with np.errstate(invalid="ignore", over="ignore"):
        abs_error = np.abs(approx - dtheta)
        tolerance = correct * (np.abs(approx) + np.abs(dtheta)) + floors
        flagged = np.flatnonzero(~finite | (abs_error > tolerance))

    corrected_values = approx.copy()
    labels: dict[int, str] = {}
    n_evaluations = 0
    judged = np.ones(approx.shape[0], dtype=bool)
    likely_bug = np.zeros(approx.shape[0], dtype=bool)
    for i in flagged[~finite[flagged]]:
        labels[int(i)] = Label.NON_FINITE.value
    candidates = flagged[finite[flagged]]
    budget = min(
        REEXAMINE_MAXIMUM, max(REEXAMINE_MINIMUM, int(REEXAMINE_FRACTION * approx.shape[0]))
    )
    bugs_per_block = np.zeros(len(layout.names), dtype=np.int64)
    examined = np.zeros(approx.shape[0], dtype=bool)
    if probe is not None and candidates.size:
        for i in _select(candidates, abs_error / tolerance, layout, budget):
            block = int(layout.block_of(i))
            if bugs_per_block[block] >= ENOUGH_EVIDENCE:
                continue
            examined[i] = True
            result = reexamine(
                int(i), float(dtheta[i]), float(steps[i]), probe, cost_at_theta, unit, correct,
                crossed,
            )
            n_evaluations += 12
            labels[int(i)] = result.label.value
            corrected_values[i] = result.estimate
            # Agreement at another step is agreement within that estimate's own uncertainty;
            # kinks and noise cannot be judged: none of them counts against the block.
            judged[i] = result.label is Label.LIKELY_BUG
            likely_bug[i] = result.label is Label.LIKELY_BUG
            bugs_per_block[block] += likely_bug[i]
    # Flagged components left over once the budget is spent are judged like the block's
    # re-examined ones: if re-examination cleared some of them, the rest are not counted.
    leftover = candidates[~examined[candidates]]
    if leftover.size:
        cleared_blocks = np.unique(layout.block_of(np.flatnonzero(examined & ~likely_bug)))
        judged[leftover[np.isin(layout.block_of(leftover), cleared_blocks)]] = False

    with np.errstate(invalid="ignore", over="ignore"):
        residual = np.where(judged, np.maximum(np.abs(corrected_values - dtheta) - floors, 0.0), 0.0)
        scale = np.abs(corrected_values) + np.abs(dtheta)
        scores = np.where(scale > 0, residual / np.where(scale > 0, scale, 1.0), 0.0)
    scores = np.where(finite, scores, np.inf)

    per_parameter = {}
    for k, (name, shape) in enumerate(zip(layout.names, layout.shapes)):
        lo, hi = int(layout.offsets[k]), int(layout.offsets[k + 1])
        block = slice(lo, hi)
        n_non_finite = int(np.count_nonzero(~finite[block]))
        sum_difference, sum_approx, sum_dtheta = block_norms[k]
        difference = _lecture(sum_difference, sum_approx, sum_dtheta)
        if n_non_finite:
            adjusted, verdict = float("inf"), Verdict.BUG
        else:
            adjusted = _ratio(residual[block], corrected_values[block], dtheta[block])
            verdict = _verdict(adjusted, correct, bug)
            bug_scores = scores[block][likely_bug[block]]
            if bug_scores.size:
                verdict = worst_verdict([verdict, _verdict(float(bug_scores.max()), correct, bug)])
        errors = np.where(finite[block], abs_error[block], np.inf)
        worst = int(np.argmax(np.nan_to_num(errors, nan=np.inf)))
        per_parameter[name] = ParameterReport(
            name=name,
            shape=tuple(shape),
            difference=difference,
            adjusted_difference=adjusted,
            verdict=verdict,
            max_abs_error=float(errors[worst]),
            worst_index=layout.locate(lo + worst)[1],
            n_disagreeing=int(np.count_nonzero((flagged >= lo) & (flagged < hi))),
            n_non_finite=n_non_finite,
        )
    if np.all(finite):
        overall = _verdict(_ratio(residual, corrected_values, dtheta), correct, bug)
    else:
        overall = Verdict.BUG
    overall = worst_verdict([overall] + [p.verdict for p in per_parameter.values()])
    corrected = {i: float(corrected_values[i]) for i in labels if i in labels and finite[i]}
    return Diagnosis(
        verdict=overall,
        per_parameter=per_parameter,
        labels=labels,
        corrected=corrected,
        scores=scores,
        noise_floor=float(np.median(floors)),
        thresholds=(correct, bug),
        n_evaluations=n_evaluations,
    )


def lecture_difference(norms: np.ndarray) -> float:
    """The lecture's number from summed squared norms (rows of ``block_norms``)."""
    total = norms.sum(axis=0)
    return _lecture(*total)


def _lecture(sum_difference: float, sum_approx: float, sum_dtheta: float) -> float:
    denominator = np.sqrt(sum_approx) + np.sqrt(sum_dtheta)
    if not np.isfinite(sum_difference) or not np.isfinite(denominator):
        return float("nan")
    if denominator == 0.0:
        return 0.0
    return float(np.sqrt(sum_difference) / denominator)


def _ratio(residual: np.ndarray, approx: np.ndarray, dtheta: np.ndarray) -> float:
    denominator = np.linalg.norm(approx) + np.linalg.norm(dtheta)
    numerator = float(np.linalg.norm(residual))
    if numerator == 0.0:
        return 0.0
    return numerator / denominator


def _verdict(difference: float, correct: float, bug: float) -> Verdict:
    if not np.isfinite(difference) or difference >= bug:
        return Verdict.BUG
    if difference > correct:
        return Verdict.SUSPICIOUS
    return Verdict.CORRECT


def _select(candidates: np.ndarray, ratio: np.ndarray, layout: Layout, total: int) -> np.ndarray:
    """The ``total`` most disagreeing candidates, shared fairly between the blocks."""
    if candidates.size <= total:
        return candidates
    blocks = layout.block_of(candidates)
    # Rank within each block, then take rank 0 of every block, rank 1 of every block, ...
    order = np.lexsort((-ratio[candidates], blocks))
    ranked, sorted_blocks = candidates[order], blocks[order]
    starts = np.searchsorted(sorted_blocks, sorted_blocks, side="left")
    rank_in_block = np.arange(ranked.size) - starts
    fair = np.lexsort((-ratio[ranked], rank_in_block))
    return ranked[fair][:total]


def signature_crossing(
    signature: Callable[..., Any], call_with: Callable[[np.ndarray], Any], theta: np.ndarray
) -> Callable[[int, float], bool]:
    """``crossed(i, s)``: does the user's signature (e.g. ReLU masks) change at theta +/- s e_i?"""
    probe = theta.copy()
    reference = _signature_bytes(signature(call_with(probe)))

    def crossed(i: int, s: float) -> bool:
        saved = probe[i]
        try:
            for delta in (s, -s):
                probe[i] = saved + np.float64(delta)
                if _signature_bytes(signature(call_with(probe))) != reference:
                    return True
        finally:
            probe[i] = saved
        return False

    return crossed


def _signature_bytes(value: Any) -> bytes:
    if isinstance(value, (list, tuple)):
        return b"|".join(_signature_bytes(v) for v in value)
    if isinstance(value, dict):
        return b"|".join(_signature_bytes(v) for v in value.values())
    return np.ascontiguousarray(np.asarray(value)).tobytes()
