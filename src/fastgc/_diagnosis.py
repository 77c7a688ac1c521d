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

import bisect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ._layout import Layout
from ._result import Label, ParameterReport, Verdict, worst_verdict
from ._steps import UNIT_ROUNDOFF, StepRule

FLOOR_FACTOR = 4.0
# Re-examination costs 10 serial evaluations a component: small networks are examined in
# full, large ones up to REEXAMINE_MAXIMUM components, and a block stops being examined once
# ENOUGH_EVIDENCE of its components are likely bugs.
REEXAMINE_FRACTION = 0.05
REEXAMINE_MINIMUM = 256
REEXAMINE_MAXIMUM = 2000
ENOUGH_EVIDENCE = 16


def effective_thresholds(thresholds: tuple[float, float], dtype: np.dtype) -> tuple[float, float]:
    """Thresholds no tighter than the dtype can attain (float32 cannot reach 1e-7)."""
    attainable = 5.0 * UNIT_ROUNDOFF[np.dtype(dtype)] ** (2.0 / 3.0)
    correct = max(thresholds[0], attainable)
    return correct, max(thresholds[1], 10.0 * correct)


@dataclass(frozen=True)
class Noise:
    """Round-off of one evaluation of the cost: a bound, and a typical size.

    From the dtype and |J| (``FLOOR_FACTOR`` units of round-off of J itself), raised to what
    was measured: a cost whose terms are much larger than its value (a small difference of
    large numbers, or a float32 sum of many terms) rounds far more than |J| suggests.
    """

    bound: float
    typical: float

    @classmethod
    def estimate(cls, cost_at_theta: float, dtype: np.dtype, measured: float) -> "Noise":
        unit = UNIT_ROUNDOFF[np.dtype(dtype)]
        return cls(
            bound=max(FLOOR_FACTOR * unit * abs(cost_at_theta), 3.0 * measured),
            typical=max(2.0 * unit * abs(cost_at_theta), measured),
        )


_FRACTIONS = np.arange(-4, 5) / 16.0
# Least-squares parabola through J at theta[i] + f h, f in _FRACTIONS: values - HAT @ values
# is what it leaves over.
_VANDERMONDE = np.vander(_FRACTIONS, 3)
_HAT = _VANDERMONDE @ np.linalg.pinv(_VANDERMONDE)


def measure_roundoff(
    cost_near: Callable[[int, float], float], cost_at_theta: float, indices: np.ndarray,
    steps: "StepRule",
) -> float:
    """The largest round-off seen in J around theta, measured on a few components.

    ``cost_near(i, d)`` is J with theta[i] moved by d. Over moves of up to h/4 the exact J is
    a parabola to many digits, so what a least-squares parabola leaves over is round-off.
    """
    largest = 0.0
    for i in indices:
        step = steps.at(int(i))
        values = np.array([
            cost_at_theta if f == 0 else cost_near(int(i), f * step) for f in _FRACTIONS
        ]) - cost_at_theta
        if np.all(np.isfinite(values)):
            largest = max(largest, float(np.max(np.abs(values - _HAT @ values))))
    return largest


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
    noise: "Noise",
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
class Diagnosis:
    verdict: Verdict
    per_parameter: dict[str, ParameterReport]
    labels: dict[int, str]
    corrected: dict[int, float]
    scores: np.ndarray
    noise_floor: float
    thresholds: tuple[float, float]


def diagnose(
    approx: np.ndarray,
    dtheta: np.ndarray,
    layout: Layout,
    steps: StepRule,
    cost_at_theta: float,
    thresholds: tuple[float, float],
    block_norms: np.ndarray,
    probe: Callable[[int, float], tuple[float, float, float, float]] | None,
    crossed: Callable[[int, float], bool] | None = None,
    measure_roundoff: Callable[[], float] | None = None,
) -> Diagnosis:
    """Verdicts per parameter and overall; see the module docstring for the method.

    Works through theta in chunks, so that beyond ``approx``, ``dtheta`` and the per-component
    scores it returns, memory stays bounded whatever the size of theta.
    """
    correct, bug = effective_thresholds(thresholds, layout.dtype)
    noise = Noise.estimate(cost_at_theta, layout.dtype, 0.0)
    flagged, ratio = _flag(approx, dtheta, steps, correct, noise.bound)
    if flagged.size and measure_roundoff is not None:
        # A measured round-off can only raise the floor and clear components, so it is
        # needed only when some disagree.
        noise = Noise.estimate(cost_at_theta, layout.dtype, measure_roundoff())
        flagged, ratio = _flag(approx, dtheta, steps, correct, noise.bound)
    floor_scale = noise.bound  # the noise floor of component i is this / h_i
    findings = _Findings()
    if flagged.size:
        findings = _reexamine_flagged(
            flagged, ratio, approx, dtheta, layout, steps, cost_at_theta, noise, correct,
            probe, crossed,
        )
    labels, corrected = findings.labels, findings.corrected
    unjudged, likely_bug = findings.unjudged, findings.likely_bug

    sparse = _Sparse(corrected, unjudged)
    scores, sums = _score(approx, dtheta, steps, floor_scale, sparse, layout.offsets)
    disagreeing = np.bincount(layout.block_of(flagged), minlength=len(layout.names))
    worst_bug_score: dict[int, float] = {}
    for i in likely_bug:
        block = int(layout.block_of(i))
        worst_bug_score[block] = max(worst_bug_score.get(block, 0.0), float(scores[i]))
    per_parameter = {}
    for k, (name, shape) in enumerate(zip(layout.names, layout.shapes)):
        if sums.n_non_finite[k]:
            adjusted, verdict = float("inf"), Verdict.BUG
        else:
            adjusted = _lecture(*sums.squares[k])
            verdict = _verdict(adjusted, correct, bug)
            if k in worst_bug_score:
                verdict = worst_verdict([verdict, _verdict(worst_bug_score[k], correct, bug)])
        per_parameter[name] = ParameterReport(
            name=name,
            shape=tuple(shape),
            difference=_lecture(*block_norms[k]),
            adjusted_difference=adjusted,
            verdict=verdict,
            max_abs_error=float(sums.max_error[k]),
            worst_index=(
                layout.locate(int(sums.worst[k]))[1] if layout.offsets[k + 1] > layout.offsets[k]
                else ()  # an empty parameter has no worst component
            ),
            n_disagreeing=int(disagreeing[k]),
            n_non_finite=int(sums.n_non_finite[k]),
        )
    any_non_finite = bool(sums.n_non_finite.any())
    totals = sums.squares.sum(axis=0)
    overall = Verdict.BUG if any_non_finite else _verdict(_lecture(*totals), correct, bug)
    overall = worst_verdict([overall] + [p.verdict for p in per_parameter.values()])
    return Diagnosis(
        verdict=overall,
        per_parameter=per_parameter,
        labels=labels,
        corrected={i: v for i, v in corrected.items() if np.isfinite(dtheta[i])},
        scores=scores,
        noise_floor=floor_scale / steps.typical,
        thresholds=(correct, bug),
    )


@dataclass
class _Findings:
    """What re-examining the disagreeing components found."""

    labels: dict[int, str] = field(default_factory=dict)
    corrected: dict[int, float] = field(default_factory=dict)  # better numeric estimates
    unjudged: set[int] = field(default_factory=set)  # cleared, kinked or too noisy to count
    likely_bug: set[int] = field(default_factory=set)


def _reexamine_flagged(
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
) -> _Findings:
    """Label the flagged components, re-examining the most disagreeing within a budget."""
    findings = _Findings()
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
        for i in _select(candidates, candidate_ratio, layout, budget):
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


CHUNK = 1 << 14


def _flag(
    approx: np.ndarray, dtheta: np.ndarray, steps: StepRule, rtol: float, floor_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Components beyond ``rtol * (|a| + |d|) + floor`` (or non-finite), and by how much."""
    flagged, ratios = [], []
    for start in range(0, approx.shape[0], CHUNK):
        stop = min(approx.shape[0], start + CHUNK)
        a, d = approx[start:stop], dtheta[start:stop]
        with np.errstate(invalid="ignore", over="ignore"):
            error = np.abs(a - d)
            tolerance = np.abs(a)
            tolerance += np.abs(d)
            tolerance *= rtol
            tolerance += floor_scale / steps.over(start, stop)
            outside = np.flatnonzero(~(error <= tolerance))  # NaN and Inf included
        flagged.append(outside + start)
        ratios.append(error[outside] / tolerance[outside])
    return np.concatenate(flagged), np.concatenate(ratios)


@dataclass
class _Sparse:
    """Re-examined values and unjudged components, looked up a chunk at a time."""

    corrected: dict[int, float]
    unjudged: set[int]

    def __post_init__(self) -> None:
        self.corrected_at = np.array(sorted(self.corrected), dtype=np.int64)
        self.corrected_values = np.array([self.corrected[i] for i in self.corrected_at])
        self.unjudged_at = np.array(sorted(self.unjudged), dtype=np.int64)

    def within(self, positions: np.ndarray, start: int, stop: int) -> slice:
        if not positions.size:
            return slice(0, 0)
        return slice(*np.searchsorted(positions, [start, stop]).tolist())


@dataclass
class _BlockTotals:
    """Per-block results of :func:`_score`, one row or entry per parameter."""

    squares: np.ndarray  # (n_blocks, 3): residual, corrected numeric, analytic, squared norms
    max_error: np.ndarray  # the largest raw |approx - dtheta| (inf where dtheta is not finite)
    worst: np.ndarray  # the flat index where it occurs
    n_non_finite: np.ndarray  # components whose analytic gradient is NaN or Inf


def _score(
    approx: np.ndarray, dtheta: np.ndarray, steps: StepRule, floor_scale: float,
    sparse: _Sparse, offsets: np.ndarray,
) -> tuple[np.ndarray, _BlockTotals]:
    """Noise-aware per-component scores and per-block sums, a chunk of theta at a time.

    Every operation runs over a whole chunk, whatever the blocks in it (summed per block with
    ``reduceat``), so many small parameters cost no more than one large one.
    """
    n, n_blocks = approx.shape[0], offsets.shape[0] - 1
    bounds = offsets.tolist()
    scores = np.zeros(n)
    totals = _BlockTotals(
        squares=np.zeros((n_blocks, 3)),
        max_error=np.zeros(n_blocks),
        worst=offsets[:-1].copy(),
        n_non_finite=np.zeros(n_blocks, dtype=np.int64),
    )
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        estimate, analytic = approx[start:stop], dtheta[start:stop]
        numeric = estimate
        found = sparse.within(sparse.corrected_at, start, stop)
        if found.stop > found.start:
            numeric = estimate.copy()
            numeric[sparse.corrected_at[found] - start] = sparse.corrected_values[found]
        finite = np.isfinite(analytic)
        all_finite = bool(finite.all())
        with np.errstate(invalid="ignore", over="ignore"):
            raw_error = np.abs(estimate - analytic)
            if not all_finite:
                raw_error[~finite] = np.inf
            residual = (raw_error if numeric is estimate else np.abs(numeric - analytic)) - (
                floor_scale / steps.over(start, stop)
            )
            np.maximum(residual, 0.0, out=residual)
            skipped = sparse.within(sparse.unjudged_at, start, stop)
            residual[sparse.unjudged_at[skipped] - start] = 0.0
            scale = np.abs(numeric)
            scale += np.abs(analytic)
            chunk_scores = scores[start:stop]
            np.divide(residual, scale, out=chunk_scores, where=scale > 0)
            if not all_finite:
                residual[~finite] = 0.0
                chunk_scores[~finite] = np.inf
                numeric = np.where(finite, numeric, 0.0)
                analytic = np.where(finite, analytic, 0.0)
            squares = np.empty((3, stop - start))
            np.multiply(residual, residual, out=squares[0])
            np.multiply(numeric, numeric, out=squares[1])
            np.multiply(analytic, analytic, out=squares[2])
        # The non-empty blocks meeting this chunk, and where each begins in it.
        first = bisect.bisect_right(bounds, start) - 1
        last = bisect.bisect_left(bounds, stop)
        blocks_here, begins_here = [], []
        for block in range(first, last):
            lo, hi = max(bounds[block], start), min(bounds[block + 1], stop)
            if hi > lo:
                blocks_here.append(block)
                begins_here.append(lo - start)
        blocks, begins = np.array(blocks_here), np.array(begins_here)
        totals.squares[blocks] += np.add.reduceat(squares, begins, axis=1).T
        if not all_finite:
            totals.n_non_finite[blocks] += np.add.reduceat(~finite, begins, dtype=np.int64)
        # The worst component of each block: argmax takes the first on ties, and a NaN first.
        ends = begins_here[1:] + [stop - start]
        for block, lo, hi in zip(blocks_here, begins_here, ends):
            worst = lo + int(np.argmax(raw_error[lo:hi]))
            candidate = float(raw_error[worst])
            if candidate > totals.max_error[block] or math.isnan(candidate):
                totals.max_error[block], totals.worst[block] = candidate, start + worst
    return scores, totals


def lecture_difference(norms: np.ndarray) -> float:
    """The lecture's number from summed squared norms (rows of ``block_norms``)."""
    return _lecture(*norms.sum(axis=0).tolist())


def _lecture(sum_difference: float, sum_approx: float, sum_dtheta: float) -> float:
    sum_difference, sum_approx, sum_dtheta = (
        float(sum_difference), float(sum_approx), float(sum_dtheta)
    )
    if not all(map(math.isfinite, (sum_difference, sum_approx, sum_dtheta))):
        return float("nan")
    denominator = math.sqrt(sum_approx) + math.sqrt(sum_dtheta)
    if denominator == 0.0:
        return 0.0
    return math.sqrt(sum_difference) / denominator


def _verdict(difference: float, correct: float, bug: float) -> Verdict:
    if not np.isfinite(difference) or difference >= bug:
        return Verdict.BUG
    if difference > correct:
        return Verdict.SUSPICIOUS
    return Verdict.CORRECT


def _select(candidates: np.ndarray, ratio: np.ndarray, layout: Layout, total: int) -> np.ndarray:
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
