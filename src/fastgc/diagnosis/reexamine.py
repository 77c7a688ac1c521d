"""Re-examination: disagreeing components evaluated again at other steps, and labelled.

Agreement at another step (round-off or truncation), a kink (one-sided slopes that jump, or a
change of the user's signature), a likely bug (every estimate agrees with the others and not
with the analytic value) or noise.

Each estimate carries an uncertainty made of round-off (``delta / s``, delta the round-off of
one cost evaluation) and a truncation estimate from the next coarser level: Richardson's
fourth-order central differences at h/2, h and 16h, and the one-sided slopes on each side at
h/4 (their drift over h/4, h/2, h as truncation). A kink crossed on one side spoils that side
only, so the two sides disagreeing is the signature of a kink.

A component left unresolved (round-off swamps every estimate up to 16h, as in a block whose
gradients are tiny next to the cost, or in float32) climbs a ladder of larger steps, doubling
from 16h, until Richardson's estimate is sharp enough to decide or truncation, a kink or the
size of theta_i stops the climb (:func:`climb`). What is still unresolved stays
``Label.NOISE``, and counts as unresolved, never as agreement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .._layout import Layout
from .._result import Label
from .evidence import Evidence
from .noise import Noise

# Re-examination costs 10 serial evaluations a component: small networks are examined in
# full, large ones up to REEXAMINE_MAXIMUM components, and a block stops being examined once
# ENOUGH_EVIDENCE of its components are likely bugs.
REEXAMINE_FRACTION = 0.05
REEXAMINE_MINIMUM = 256
REEXAMINE_MAXIMUM = 2000
ENOUGH_EVIDENCE = 16
# In a block already shown wrong as a whole (``Evidence.decided_blocks``), this many stable
# wrong components confirm it; one that clears lets re-examination go on as elsewhere.
ENOUGH_IN_DECIDED = 3
# The steps, as multiples of h, at which the cost is evaluated on both sides.
STEP_FACTORS = (0.25, 0.5, 1.0, 2.0, 8.0, 16.0)
# The ladder of larger steps: at most this many doublings beyond 16h, never beyond
# LADDER_REACH * max(1, |theta_i|), and it stops once truncation makes the estimate
# LADDER_GIVE_UP times worse than the best seen.
LADDER_LEVELS = 30
LADDER_REACH = 0.5
LADDER_GIVE_UP = 16.0
LADDER_SHARP = 1e-3

Probe = Callable[[int, float], tuple[float, float, float, float]]


@dataclass(frozen=True)
class Examination:
    """How a component is re-examined: what is evaluated, against what noise and tolerance.

    Attributes
    ----------
    probe : callable
        ``probe(i, s)`` returns (J(theta + s e_i), J(theta - s e_i), represented up step,
        represented down step), as :meth:`Prober.probe` does.
    cost_at_theta : float
        J at theta itself.
    noise : Noise
        The round-off of one evaluation of J.
    rtol : float
        The relative tolerance (the effective correct threshold).
    crossed : callable, optional
        ``crossed(i, s)``: whether the user's signature changes at theta +/- s e_i.
    theta : ndarray, optional
        The flat parameters, for the reach of the ladder of larger steps (``LADDER_REACH``
        times ``max(1, |theta_i|)``); without it the ladder is not climbed.
    resolution : float, default 0.0
        An absolute uncertainty small enough for agreement on the ladder whatever the size of
        the component (the bug threshold times the RMS of the analytic gradient).
    """

    probe: Probe
    cost_at_theta: float
    noise: Noise
    rtol: float
    crossed: Callable[[int, float], bool] | None = None
    theta: np.ndarray | None = None
    resolution: float = 0.0


@dataclass(frozen=True)
class Reexamination:
    """The label of one component, and the numeric value it settled on."""

    label: Label
    estimate: float


@dataclass(frozen=True)
class Estimate:
    """A numeric derivative and its uncertainty (round-off plus truncation)."""

    value: float
    uncertainty: float


@dataclass(frozen=True)
class SidedSlopes:
    """The forward and backward difference quotients at one step."""

    forward: float
    backward: float

    @classmethod
    def measure(cls, probe: Probe, i: int, step: float, cost_at_theta: float) -> "SidedSlopes":
        """Evaluate J on both sides of theta[i] at ``step``."""
        j_plus, j_minus, up, down = probe(i, step)
        return cls(
            forward=_quotient(j_plus - cost_at_theta, up),
            backward=_quotient(cost_at_theta - j_minus, down),
        )

    @property
    def central(self) -> float:
        return 0.5 * (self.forward + self.backward)

    @property
    def gap(self) -> float:
        return abs(self.forward - self.backward)


@dataclass(frozen=True)
class Slopes:
    """The one-sided slopes of J at each step ``factor * h``, factor in ``STEP_FACTORS``."""

    at: dict[float, SidedSlopes]

    @classmethod
    def measure(cls, probe: Probe, i: int, step: float, cost_at_theta: float) -> "Slopes":
        """Evaluate J on both sides of theta[i] at every step factor, smallest first."""
        at = {}
        for factor in STEP_FACTORS:
            at[factor] = SidedSlopes.measure(probe, i, step * factor, cost_at_theta)
        return cls(at)

    def central(self, factor: float) -> float:
        return self.at[factor].central

    def richardson(self, factor: float) -> float:
        """Fourth order, from the central differences at ``factor / 2`` and ``factor``."""
        return (4.0 * self.central(factor / 2) - self.central(factor)) / 3.0

    def drifts(self) -> tuple[float, float]:
        """How far the forward and the backward slope move over h/4, h/2, h."""
        quarter, half, one = self.at[0.25], self.at[0.5], self.at[1.0]
        return (
            _drift(quarter.forward, half.forward, one.forward),
            _drift(quarter.backward, half.backward, one.backward),
        )


def _quotient(change: float, step: float) -> float:
    """A difference quotient; NaN where the step vanished in theta's dtype (a large
    |theta_i|), which no judgement trusts."""
    return change / step if step != 0.0 else float("nan")


def _drift(quarter: float, half: float, one: float) -> float:
    return abs(half - quarter) + 0.5 * abs(one - half)


@dataclass(frozen=True)
class _Judge:
    """Compares estimates with the analytic value."""

    analytic: float
    rtol: float
    discrepancy: float  # |central difference at h - analytic|, the disagreement to explain

    def agrees(self, estimate: Estimate) -> bool:
        return abs(estimate.value - self.analytic) <= self.rtol * (
            abs(estimate.value) + abs(self.analytic)
        ) + 3.0 * estimate.uncertainty

    def sharp(self, estimate: Estimate) -> bool:
        # An estimate settles the question only if it is sharper than the disagreement.
        return 3.0 * estimate.uncertainty < self.discrepancy


def reexamine(i: int, analytic: float, step: float, examination: Examination) -> Reexamination:
    """Label component ``i`` after evaluating the cost around it at several steps.

    Parameters
    ----------
    i : int
        The flat index of the component.
    analytic : float
        The analytic gradient of that component.
    step : float
        Its step h.
    examination : Examination
        What to evaluate, and the noise and tolerance to judge by.

    Returns
    -------
    Reexamination
        The label, and the numeric estimate settled on (the analytic value itself for a kink
        or noise, which have no better estimate).
    """
    slopes = Slopes.measure(examination.probe, i, step, examination.cost_at_theta)
    roundoff = examination.noise.typical / (0.25 * step)  # of a one-sided slope at h/4
    forward, backward = _nearest_sides(slopes, roundoff)
    if examination.crossed is not None:
        kinked = examination.crossed(i, step) or examination.crossed(i, 0.5 * step)
    else:
        kinked = _looks_kinked(slopes, roundoff)
    judge = _Judge(analytic, examination.rtol, abs(slopes.central(1.0) - analytic))
    if not kinked:
        for estimate, label in _higher_order(slopes, step, examination.noise.bound):
            if 6.0 * estimate.uncertainty < judge.discrepancy and judge.agrees(estimate):
                return Reexamination(label, estimate.value)
    forward_ok = judge.sharp(forward) and judge.agrees(forward)
    backward_ok = judge.sharp(backward) and judge.agrees(backward)
    if forward_ok and backward_ok:
        return Reexamination(Label.AGREES_SMALLER_STEP, 0.5 * (forward.value + backward.value))
    if forward_ok or backward_ok:
        # One side matches backprop and the other does not: that side crossed a kink.
        return Reexamination(Label.KINK, analytic)
    if kinked:
        judged = _judge_at_kink(slopes, forward, backward, roundoff, judge)
    else:
        judged = _judge_smooth(slopes, step, examination.noise.typical, judge)
        if judged.label is Label.NOISE:
            judged = climb(i, step, slopes, judge, examination) or judged
    if judged.label is Label.NOISE:
        return _judge_calm_side(slopes, roundoff, judge) or judged
    return judged


def _nearest_sides(slopes: Slopes, roundoff: float) -> tuple[Estimate, Estimate]:
    """The one-sided slopes nearest theta; their drift over h/4, h/2, h is their truncation."""
    forward_drift, backward_drift = slopes.drifts()
    nearest = slopes.at[0.25]
    return (
        Estimate(nearest.forward, forward_drift + roundoff),
        Estimate(nearest.backward, backward_drift + roundoff),
    )


def _looks_kinked(slopes: Slopes, roundoff: float) -> bool:
    """Whether the slopes show a kink, when the user gave no signature to tell.

    Smooth: both sides drift alike (by about J'' s), and the gap between them shrinks with the
    step. A kink crossed on one side makes that side drift far more than the other; a kink at
    theta itself leaves a gap that does not shrink.
    """
    forward_drift, backward_drift = slopes.drifts()
    gap_near, gap_far = slopes.at[0.25].gap, slopes.at[1.0].gap
    return max(forward_drift, backward_drift) > (
        4.0 * min(forward_drift, backward_drift) + 4.0 * roundoff
    ) or (gap_near > 3.0 * roundoff and gap_near > 0.5 * gap_far)


def _higher_order(slopes: Slopes, step: float, delta: float) -> list[tuple[Estimate, Label]]:
    """Richardson's estimates at h/2, h and 16h, each with the label it earns by agreeing."""
    at_half, at_one = slopes.richardson(0.5), slopes.richardson(1.0)
    at_two, at_sixteen = slopes.richardson(2.0), slopes.richardson(16.0)
    return [
        (Estimate(at_half, 6.0 * delta / step + abs(at_half - at_one) / 15.0),
         Label.AGREES_SMALLER_STEP),
        (Estimate(at_one, 3.0 * delta / step + abs(at_one - at_two) / 15.0),
         Label.AGREES_SMALLER_STEP),
        (Estimate(at_sixteen, 3.0 * delta / (16.0 * step) + abs(at_sixteen - at_two)),
         Label.AGREES_LARGER_STEP),
    ]


def _judge_at_kink(
    slopes: Slopes, forward: Estimate, backward: Estimate, roundoff: float, judge: _Judge
) -> Reexamination:
    """A kink was crossed, and neither side alone matches backprop."""
    # Sides that still meet at h/4 put the kink beyond h/4: the central difference there is
    # clean, and decides.
    near_gap = slopes.at[0.25].gap
    nearest = Estimate(slopes.central(0.25), roundoff + 0.5 * near_gap)
    if near_gap <= 6.0 * roundoff and judge.sharp(nearest):
        if judge.agrees(nearest):
            return Reexamination(Label.KINK, judge.analytic)
        return Reexamination(Label.LIKELY_BUG, nearest.value)
    sharp_sides = [side for side in (forward, backward) if judge.sharp(side)]
    if len(sharp_sides) == 2 and _between(judge.analytic, forward, backward):
        return Reexamination(Label.KINK, judge.analytic)  # a subgradient at the kink itself
    if len(sharp_sides) == 2:  # both sides clear of the kink, and backprop matches neither
        sharpest = min(sharp_sides, key=lambda side: side.uncertainty)
        return Reexamination(Label.LIKELY_BUG, sharpest.value)
    # One sharp side could itself sit on a kink closer than h/4: no verdict either way.
    return Reexamination(Label.NOISE, judge.analytic)


def _judge_smooth(slopes: Slopes, step: float, one_ulp: float, judge: _Judge) -> Reexamination:
    """No kink, and no estimate agrees with backprop: a likely bug, or noise.

    A likely bug: the small-step estimates agree with one another far better than any of them
    agrees with backprop, and the miss is well above typical round-off.
    """
    best = slopes.richardson(1.0)
    best_uncertainty = 3.0 * one_ulp / step + abs(best - slopes.richardson(2.0)) / 15.0
    nearby = [slopes.richardson(0.5), best, slopes.central(0.25), slopes.central(0.5)]
    spread = max(nearby) - min(nearby)
    miss = abs(best - judge.analytic)
    if miss > 3.0 * best_uncertainty + judge.rtol * (
        abs(best) + abs(judge.analytic)
    ) and miss > 4.0 * spread:
        return Reexamination(Label.LIKELY_BUG, best)
    return Reexamination(Label.NOISE, judge.analytic)


@dataclass(frozen=True)
class _Rung:
    """One rung of the ladder of larger steps: the step, the one-sided slopes there, and
    Richardson's estimate from them and the rung below."""

    step: float
    slopes: SidedSlopes
    richardson: float


def climb(
    i: int, step: float, slopes: Slopes, judge: _Judge, examination: Examination
) -> Reexamination | None:
    """Larger steps for a component that every estimate up to 16h left unresolved.

    Doubling from 16h, each rung s gives Richardson's ``R(s) = (4 C(s/2) - C(s)) / 3`` with an
    uncertainty of ``3 delta / s`` (round-off) plus ``|R(s) - R(2s)| / 15`` (truncation, from
    the rung above). Agreement needs an estimate sharp enough to see an error of
    ``LADDER_SHARP`` of the value (or the tolerance, or the resolution); a likely bug needs
    three rungs in a row that agree with one another far better than with backprop, and
    one-sided slopes that, extrapolated, meet. The climb stops at a kink (the user's
    signature changes, or the gap between the one-sided slopes stops growing in proportion to
    the step), at a non-finite value, once truncation dominates, or at the reach of theta_i.

    Returns
    -------
    Reexamination or None
        None when nothing was decided (or ``examination.theta`` is not given).
    """
    if examination.theta is None:
        return None
    reach = LADDER_REACH * max(1.0, abs(float(examination.theta[i])))
    delta = examination.noise.bound
    within_floor = judge.discrepancy <= delta / step
    rungs = [_Rung(16.0 * step, slopes.at[16.0], slopes.richardson(16.0))]
    best = math.inf
    for _ in range(LADDER_LEVELS):
        s = 2.0 * rungs[-1].step
        if s > reach or (examination.crossed is not None and examination.crossed(i, s)):
            return None
        sided = SidedSlopes.measure(examination.probe, i, s, examination.cost_at_theta)
        if not math.isfinite(sided.central) or _kink_between(rungs[-1], sided, delta / s):
            return None
        rungs.append(_Rung(s, sided, (4.0 * rungs[-1].slopes.central - sided.central) / 3.0))
        decided, uncertainty = _decide_on_rung(
            rungs, delta, judge, examination.resolution, within_floor
        )
        if decided is not None:
            return decided
        best = min(best, uncertainty)
        if uncertainty > LADDER_GIVE_UP * best:
            return None
    return None


def _kink_between(below: _Rung, sided: SidedSlopes, roundoff: float) -> bool:
    """Smooth, the gap between the one-sided slopes is J'' s: it doubles with the step. A kink
    crossed between the two rungs makes it jump instead. ``roundoff`` is delta / s."""
    return abs(sided.gap - 2.0 * below.slopes.gap) > 0.5 * abs(sided.gap) + 20.0 * roundoff


def _sides_meet(below: _Rung, rung: _Rung, delta: float, allowed: float) -> bool:
    """Whether the one-sided slopes, each extrapolated to a zero step (``2 F(s/2) - F(s)``),
    meet within ``allowed`` plus their round-off: smooth, both reach J' up to O(s^2); a kink
    crossed on one side leaves that side's extrapolation elsewhere."""
    forward = 2.0 * below.slopes.forward - rung.slopes.forward
    backward = 2.0 * below.slopes.backward - rung.slopes.backward
    return abs(forward - backward) <= allowed + 12.0 * delta / rung.step


def _decide_on_rung(
    rungs: list[_Rung], delta: float, judge: _Judge, resolution: float, within_floor: bool
) -> tuple[Reexamination | None, float]:
    """Judge the rung below the top one (the top one gives its truncation); its uncertainty."""
    rung, above = rungs[-2], rungs[-1]
    estimate = Estimate(
        rung.richardson, 3.0 * delta / rung.step + abs(rung.richardson - above.richardson) / 15.0
    )
    scale = abs(estimate.value) + abs(judge.analytic)
    tolerance = judge.rtol * scale
    # Agreement needs an estimate sharp enough to see an error of LADDER_SHARP of the value,
    # or one negligible next to the typical gradient that still sees a tenth of the value;
    # and, unless the disagreement at h was within the floor there (a floor too large to
    # vouch), sharper than that disagreement.
    sharp = 3.0 * estimate.uncertainty <= max(
        LADDER_SHARP * scale, tolerance, min(resolution, 0.1 * scale)
    )
    explains = within_floor or 6.0 * estimate.uncertainty < max(judge.discrepancy, tolerance)
    if sharp and explains and judge.agrees(estimate):
        return Reexamination(Label.AGREES_LARGER_STEP, estimate.value), estimate.uncertainty
    if len(rungs) >= 3:
        spread = max(abs(rung.richardson - rungs[-3].richardson),
                     abs(rung.richardson - above.richardson))
        miss = abs(estimate.value - judge.analytic)
        if miss > 3.0 * estimate.uncertainty + tolerance and miss > 4.0 * spread and (
            _sides_meet(rungs[-3], rung, delta, 0.25 * miss)
        ):
            return Reexamination(Label.LIKELY_BUG, estimate.value), estimate.uncertainty
    return None, estimate.uncertainty


# Where to look for a calm side: over h/4 ... limit, extrapolated from the step pairs
# (far, near), each ``2 S(s/2) - S(s)`` at its s.
_CALM_RANGES = ((16.0, 16.0, 2.0), (2.0, 2.0, 1.0))


def _judge_calm_side(slopes: Slopes, roundoff: float, judge: _Judge) -> Reexamination | None:
    """A kink crossed on one side: over h/4 ... 16h (or ... 2h, when the other side meets a
    kink of its own further out) that side's slope moves far more than the other's. The calm
    side, extrapolated to a zero step, is the derivative on theta's own side: when it agrees,
    a kink explains the disagreement. (A miss is no evidence of a bug here: a second kink
    further out on the calm side would look the same.) ``roundoff`` is that of a one-sided
    slope at h/4."""
    for limit, far_at, near_at in _CALM_RANGES:
        factors = [f for f in STEP_FACTORS if f <= limit]
        moves = [max(abs(_side(slopes, f, side) - _side(slopes, factors[0], side))
                     for f in factors) for side in ("forward", "backward")]
        if not max(moves) > 4.0 * min(moves) + 8.0 * roundoff:
            continue
        side = "forward" if moves[0] < moves[1] else "backward"
        far = 2.0 * _side(slopes, far_at / 2, side) - _side(slopes, far_at, side)
        near = 2.0 * _side(slopes, near_at / 2, side) - _side(slopes, near_at, side)
        # Round-off of 2 S(s/2) - S(s): three times that of a slope at s/2.
        estimate = Estimate(far, 3.0 * roundoff * 0.25 / (far_at / 2) + abs(far - near))
        if not judge.sharp(estimate):
            continue
        if judge.agrees(estimate):
            return Reexamination(Label.KINK, judge.analytic)
    return None


def _side(slopes: Slopes, factor: float, side: str) -> float:
    return getattr(slopes.at[factor], side)


def _between(value: float, forward: Estimate, backward: Estimate) -> bool:
    """Is ``value`` between the one-sided slopes (a subgradient at a kink), each side widened
    by its own uncertainty?"""
    # Ordered as (value, uncertainty) pairs, the uncertainty deciding between equal values.
    (low, low_uncertainty), (high, high_uncertainty) = sorted(
        ((forward.value, forward.uncertainty), (backward.value, backward.uncertainty))
    )
    return low - 3.0 * low_uncertainty <= value <= high + 3.0 * high_uncertainty


@dataclass
class Findings:
    """What re-examining the disagreeing components found."""

    labels: dict[int, str] = field(default_factory=dict)
    corrected: dict[int, float] = field(default_factory=dict)  # better numeric estimates
    unjudged: set[int] = field(default_factory=set)  # cleared, kinked or too noisy to count
    likely_bug: set[int] = field(default_factory=set)
    # Disagreeing with nothing to explain it: too noisy at every step, or not re-examined.
    unresolved: set[int] = field(default_factory=set)


def reexamine_flagged(
    flagged: np.ndarray, ratio: np.ndarray, evidence: Evidence, examination: Examination | None
) -> Findings:
    """Label the flagged components, re-examining the most disagreeing within a budget.

    Parameters
    ----------
    flagged : ndarray of int64, shape (m,)
        The components that disagree beyond the tolerance (or are not finite).
    ratio : ndarray of float64, shape (m,)
        By how much each disagrees: its error over its tolerance.
    evidence : Evidence
        The gradients, layout and steps.
    examination : Examination or None
        How to re-examine; None when the cost cannot be evaluated again (only non-finite
        components are then labelled).

    Returns
    -------
    Findings
    """
    findings = Findings()
    finite_flagged = np.isfinite(evidence.dtheta[flagged])
    for i in flagged[~finite_flagged]:
        findings.labels[int(i)] = Label.NON_FINITE.value
    candidates, candidate_ratio = flagged[finite_flagged], ratio[finite_flagged]
    examined: set[int] = set()
    cleared_blocks: set[int] = set()
    if examination is not None and candidates.size:
        examined, cleared_blocks = _reexamine_within_budget(
            candidates, candidate_ratio, evidence, examination, findings
        )
    # Flagged components left over once the budget is spent do not count against a block in
    # which re-examination cleared some, but nothing explains them: they are unresolved.
    for i in candidates:
        if int(i) not in examined and int(evidence.layout.block_of(i)) in cleared_blocks:
            findings.unjudged.add(int(i))
            findings.unresolved.add(int(i))
    return findings


def _reexamine_within_budget(
    candidates: np.ndarray, ratio: np.ndarray, evidence: Evidence, examination: Examination,
    findings: Findings,
) -> tuple[set[int], set[int]]:
    """Re-examine the most disagreeing candidates into ``findings``; return the components
    examined and the blocks in which some were cleared."""
    layout = evidence.layout
    budget = min(
        REEXAMINE_MAXIMUM,
        max(REEXAMINE_MINIMUM, int(REEXAMINE_FRACTION * evidence.approx.shape[0])),
    )
    bugs_per_block = np.zeros(len(layout.names), dtype=np.int64)
    examined: set[int] = set()
    cleared_blocks: set[int] = set()
    for i in select(candidates, ratio, layout, budget):
        i, block = int(i), int(layout.block_of(i))
        enough = (ENOUGH_IN_DECIDED if block in evidence.decided_blocks
                  and block not in cleared_blocks else ENOUGH_EVIDENCE)
        if bugs_per_block[block] >= enough:
            continue
        examined.add(i)
        result = reexamine(i, float(evidence.dtheta[i]), evidence.steps.at(i), examination)
        findings.labels[i] = result.label.value
        if result.label not in (Label.KINK, Label.NOISE):  # these have no better estimate
            findings.corrected[i] = result.estimate
        # Agreement at another step is agreement within that estimate's own uncertainty;
        # kinks and noise cannot be judged: none of them counts against the block.
        if result.label is Label.LIKELY_BUG:
            findings.likely_bug.add(i)
            bugs_per_block[block] += 1
        else:
            if result.label is Label.NOISE:
                findings.unresolved.add(i)
            findings.unjudged.add(i)
            cleared_blocks.add(block)
    return examined, cleared_blocks


def select(candidates: np.ndarray, ratio: np.ndarray, layout: Layout, total: int) -> np.ndarray:
    """The ``total`` most disagreeing candidates (``ratio`` aligned), shared between blocks.

    Parameters
    ----------
    candidates : ndarray of int64, shape (m,)
        Flat indices of the candidates.
    ratio : ndarray of float64, shape (m,)
        How much each disagrees.
    layout : Layout
        Says which block each candidate belongs to.
    total : int
        How many to return at most.

    Returns
    -------
    ndarray of int64
        Most disagreeing first; when not all fit, the worst of every block before the
        second-worst of any.
    """
    if candidates.size <= total:
        return candidates[np.argsort(-ratio, kind="stable")]
    blocks = layout.block_of(candidates)
    # Rank within each block, then take rank 0 of every block, rank 1 of every block, ...
    order = np.lexsort((-ratio, blocks))
    ranked, sorted_blocks, ranked_ratio = candidates[order], blocks[order], ratio[order]
    rank_in_block = np.arange(ranked.size) - np.searchsorted(sorted_blocks, sorted_blocks)
    fair = np.lexsort((-ranked_ratio, rank_in_block))
    return ranked[fair][:total]
