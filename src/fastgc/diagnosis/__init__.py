"""From numeric and analytic gradients to verdicts one can trust.

The lecture's single number ``||approx - dtheta|| / (||approx|| + ||dtheta||)`` misses bugs in
small blocks, raises false alarms in float32 and on zero gradients, and is blind to NaN. Here:

1. Each component is compared with a tolerance made of the attainable relative accuracy of the
   dtype and a *noise floor*: the round-off of the cost, ``FLOOR_FACTOR * u * |J| / h``, which
   a two-sided difference at step ``h`` cannot see below (:mod:`.noise`).
   Where the floor is too large to vouch for agreement (a large share of the component, and
   not negligible next to the typical gradient, or hiding most of a block whose gradient is
   not zero), components beyond the relative tolerance are flagged all the same.
2. Disagreeing components are re-examined at steps from h/4 to 16h (one-sided slopes, and
   Richardson's fourth-order combinations of central differences), and labelled: agreement at
   another step (round-off or truncation), a kink (one-sided slopes that jump, or a change of
   the user's signature), a likely bug (every estimate agrees with the others and not with the
   analytic value) or unresolved. A component still unresolved climbs a ladder of larger
   steps until round-off stops dominating (:mod:`.reexamine`).
3. Each parameter block gets the lecture's number recomputed with the re-examined values and the
   noise floor subtracted, and a verdict; a block that is not a bug and holds unresolved
   components is inconclusive, never correct. The overall verdict is the worst of them
   (:mod:`.scoring`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .._result import Label, ParameterReport, Verdict
from .evidence import Evidence
from .kinks import signature_crossing
from .noise import Noise, effective_thresholds, measure_roundoff, roundoff_sample
from .probe import Prober
from .reexamine import Examination, Findings, reexamine, reexamine_flagged
from .scoring import (
    count_beyond,
    flag,
    lecture_difference,
    overall_verdict,
    parameter_reports,
    resolution,
    score,
    score_agreement,
)

if TYPE_CHECKING:
    from .scoring import _BlockTotals

__all__ = [
    "Diagnosis",
    "Evidence",
    "Examination",
    "Noise",
    "Prober",
    "diagnose",
    "effective_thresholds",
    "lecture_difference",
    "measure_roundoff",
    "reexamine",
    "signature_crossing",
]


@dataclass
class Diagnosis:
    """Verdicts per parameter and overall, and what re-examination found.

    Attributes
    ----------
    verdict : Verdict
        The worst of the overall and per-parameter verdicts.
    per_parameter : dict of str to ParameterReport
    labels : dict of int to str
        The label of each flagged component, by flat index.
    corrected : dict of int to float
        Better numeric estimates found by re-examination (where dtheta is finite).
    scores : ndarray of float64, shape (n,)
        Noise-aware relative score of each component (0 where it agrees, inf where dtheta is
        not finite).
    noise_floor : float
        The noise floor at the median step.
    thresholds : (float, float)
        The (correct, bug) thresholds used, raised to what the dtype attains.
    explained : dict of str to int
        Components beyond the relative tolerance at the check's step that count as agreeing,
        by reason: "within the noise floor", "kinks", "agree at another step" (only the
        reasons that occur).
    """

    verdict: Verdict
    per_parameter: dict[str, ParameterReport]
    labels: dict[int, str]
    corrected: dict[int, float]
    scores: np.ndarray
    noise_floor: float
    thresholds: tuple[float, float]
    explained: dict[str, int]


def diagnose(
    evidence: Evidence,
    thresholds: tuple[float, float],
    prober: Prober | None = None,
    crossed: Callable[[int, float], bool] | None = None,
) -> Diagnosis:
    """Verdicts per parameter and overall; see the module docstring for the method.

    Works through theta in chunks, so that beyond ``approx``, ``dtheta`` and the per-component
    scores it returns, memory stays bounded whatever the size of theta.

    Parameters
    ----------
    evidence : Evidence
        The numeric and analytic gradients and what they were measured with.
    thresholds : (float, float)
        The requested (correct, bug) thresholds.
    prober : Prober, optional
        Evaluates the cost around theta, to measure round-off and re-examine disagreeing
        components. Without it, disagreeing components are judged as they are.
    crossed : callable, optional
        ``crossed(i, s) -> bool``, whether the user's signature changes at theta +/- s e_i
        (see :func:`signature_crossing`).

    Returns
    -------
    Diagnosis
    """
    correct, bug = effective_thresholds(thresholds, evidence.layout.dtype)
    finest = resolution(evidence, bug)
    noise = Noise.estimate(evidence.cost_at_theta, evidence.layout.dtype, 0.0)
    agreement = score_agreement(evidence, correct, noise.bound, finest)
    if agreement is not None:  # nothing disagrees: no round-off to measure, nothing to examine
        scores, totals, beyond = agreement
        return _diagnosis(evidence, noise, (correct, bug), _NOTHING_FLAGGED, Findings(),
                          scores, totals, beyond)
    noise, flagged, ratio = _noise_and_flagged(evidence, correct, finest, prober)
    findings = Findings()  # what re-examination finds when nothing disagrees
    if flagged.size:
        examination = None  # without a prober nothing can be evaluated again
        if prober is not None:
            examination = Examination(
                prober.probe, evidence.cost_at_theta, noise, correct, crossed, prober.theta,
                finest,
            )
        findings = reexamine_flagged(flagged, ratio, evidence, examination)
    scores, totals = score(evidence, noise.bound, findings.corrected, findings.unjudged)
    return _diagnosis(evidence, noise, (correct, bug), flagged, findings, scores, totals,
                      count_beyond(evidence, correct))


_NOTHING_FLAGGED = np.empty(0, dtype=np.int64)
_NOTHING_FLAGGED.flags.writeable = False


def _diagnosis(
    evidence: Evidence, noise: Noise, thresholds: tuple[float, float], flagged: np.ndarray,
    findings: Findings, scores: np.ndarray, totals: "_BlockTotals", beyond: int,
) -> Diagnosis:
    """The verdicts from the scores and block totals; ``beyond`` components disagree by more
    than the relative tolerance (:func:`count_beyond`)."""
    per_parameter = parameter_reports(
        evidence, totals, scores, flagged, findings.likely_bug, thresholds, findings.unresolved,
    )
    return Diagnosis(
        verdict=overall_verdict(totals, per_parameter, thresholds),
        per_parameter=per_parameter,
        labels=findings.labels,
        corrected={
            i: v for i, v in findings.corrected.items() if np.isfinite(evidence.dtheta[i])
        },
        scores=scores,
        noise_floor=noise.bound / evidence.steps.typical,  # the floor of component i is bound / h_i
        thresholds=thresholds,
        explained=_explained(evidence, beyond, flagged, findings.labels),
    )


_KINK = Label.KINK.value
_AGREEING = frozenset({Label.AGREES_LARGER_STEP.value, Label.AGREES_SMALLER_STEP.value})


def _explained(
    evidence: Evidence, beyond: int, flagged: np.ndarray, labels: dict[int, str]
) -> dict[str, int]:
    """Why the ``beyond`` components beyond the relative tolerance still count as agreeing,
    with counts."""
    flagged_finite = 0
    if flagged.size:
        with np.errstate(invalid="ignore"):
            gaps = evidence.approx[flagged] - evidence.dtheta[flagged]
        flagged_finite = int(np.count_nonzero(np.isfinite(gaps)))
    counts = {
        "within the noise floor": beyond - flagged_finite,
        "kinks": sum(label == _KINK for label in labels.values()),
        "agree at another step": sum(label in _AGREEING for label in labels.values()),
    }
    return {reason: count for reason, count in counts.items() if count > 0}


def _noise_and_flagged(
    evidence: Evidence, correct: float, finest: float, prober: Prober | None
) -> tuple[Noise, np.ndarray, np.ndarray]:
    """The noise of J, and the components that disagree beyond it (with by how much), at the
    relative tolerance ``correct`` and the ``finest`` floor that vouches for agreement."""
    dtype, cost_at_theta = evidence.layout.dtype, evidence.cost_at_theta
    noise = Noise.estimate(cost_at_theta, dtype, 0.0)
    flagged, ratio = flag(evidence, correct, noise.bound, finest)
    if flagged.size and prober is not None:
        # A measured round-off can only raise the floor and clear components, so it is
        # needed only when some disagree.
        measured = evidence.measured_roundoff
        if measured is None:
            sample = roundoff_sample(evidence.layout.size)
            measured = measure_roundoff(prober.near, cost_at_theta, sample, evidence.steps)
        noise = Noise.estimate(cost_at_theta, dtype, measured)
        flagged, ratio = flag(evidence, correct, noise.bound, finest)
    return noise, flagged, ratio
