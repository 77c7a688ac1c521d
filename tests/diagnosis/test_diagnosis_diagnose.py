"""diagnose() on hand-built evidence, with and without a prober."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastgc import Label, Verdict, flatten
from fastgc.engines import get_engine
from fastgc._steps import choose_steps
from fastgc.diagnosis import Evidence, Prober, diagnose

WEIGHTS = np.array([1.0, -0.5, 2.0, 0.25, 1.5])


def cost_at(point: np.ndarray) -> float:
    return float(np.sum(WEIGHTS * np.exp(point)))


def problem(eps: float):
    """theta in blocks A (3) and B (2), the cost sum w exp(theta), and differences at eps."""
    theta, layout = flatten({"A": np.array([0.1, -0.4, 0.7]), "B": np.array([1.2, -2.0])})
    steps = choose_steps(theta, eps)
    approx = np.empty_like(theta)
    for i in range(theta.shape[0]):
        up, down = theta.copy(), theta.copy()
        up[i] += eps
        down[i] -= eps
        approx[i] = (cost_at(up) - cost_at(down)) / (up[i] - down[i])
    exact = WEIGHTS * np.exp(theta)
    return theta, layout, steps, approx, exact


def evidence_for(theta, layout, steps, approx, dtheta) -> Evidence:
    norms = get_engine("python").block_norms(approx, dtheta, layout.offsets)
    return Evidence(approx, dtheta, layout, steps, cost_at(theta), norms)


def test_without_a_prober_nothing_is_re_examined_and_scores_follow_the_floor():
    theta, layout, steps, approx, exact = problem(1e-7)
    dtheta = exact.copy()
    dtheta[1] *= 1.5
    dtheta[4] = np.nan
    result = diagnose(evidence_for(theta, layout, steps, approx, dtheta), (1e-7, 1e-3))
    assert result.labels == {4: Label.NON_FINITE.value}  # flagged, but not re-examined
    assert result.corrected == {}
    assert result.verdict is Verdict.BUG
    assert result.per_parameter["A"].verdict is Verdict.BUG
    assert result.per_parameter["B"].n_non_finite == 1
    assert result.per_parameter["B"].adjusted_difference == math.inf
    floor = result.noise_floor  # one step for every component here
    for i in range(3):
        a, d = approx[i], dtheta[i]
        assert result.scores[i] == pytest.approx(max(abs(a - d) - floor, 0.0) / (abs(a) + abs(d)))
    assert result.scores[1] > 1e-3 and result.scores[4] == math.inf


def test_a_prober_clears_truncation_and_still_finds_the_bug():
    # At a step of 3e-3 the central differences are off by about h^2/6 relative: flagged,
    # then cleared by the higher-order estimates; the planted bug stays a bug.
    theta, layout, steps, approx, exact = problem(3e-3)
    dtheta = exact.copy()
    dtheta[3] *= 1.05
    evidence = evidence_for(theta, layout, steps, approx, dtheta)
    without = diagnose(evidence, (1e-7, 1e-3))
    assert without.per_parameter["A"].verdict is not Verdict.CORRECT
    prober = Prober(lambda point, i: cost_at(point), theta.copy())
    result = diagnose(evidence, (1e-7, 1e-3), prober)
    assert prober.evaluations > 0
    assert result.per_parameter["A"].verdict is Verdict.CORRECT
    assert result.per_parameter["B"].verdict is Verdict.BUG
    assert result.labels[3] == Label.LIKELY_BUG.value
    assert result.corrected[3] == pytest.approx(exact[3], rel=1e-9)
    agreeing = {Label.AGREES_SMALLER_STEP.value, Label.AGREES_LARGER_STEP.value}
    for i in (0, 1, 2, 4):
        assert result.labels[i] in agreeing
        # The re-examined value is far nearer the exact derivative than the difference at h.
        assert abs(result.corrected[i] - exact[i]) < 0.1 * abs(approx[i] - exact[i])


def test_components_beyond_the_re_examination_budget_leave_their_block_inconclusive(
    monkeypatch,
):
    # Truncation at a large step flags all five; a budget of two clears the worst of A and of
    # B and leaves the other three unexamined: nothing explains them, so both blocks are
    # inconclusive, not correct.
    reexamine_module = __import__("sys").modules["fastgc.diagnosis.reexamine"]
    monkeypatch.setattr(reexamine_module, "REEXAMINE_MINIMUM", 2)
    theta, layout, steps, approx, exact = problem(3e-3)
    evidence = evidence_for(theta, layout, steps, approx, exact)
    prober = Prober(lambda point, i: cost_at(point), theta.copy())
    result = diagnose(evidence, (1e-7, 1e-3), prober)
    assert len(result.labels) == 2  # the worst of A and of B
    assert result.per_parameter["A"].verdict is Verdict.INCONCLUSIVE
    assert result.per_parameter["A"].n_unresolved == 2
    assert result.per_parameter["B"].verdict is Verdict.INCONCLUSIVE
    assert result.per_parameter["B"].n_unresolved == 1
    assert result.verdict is Verdict.INCONCLUSIVE
    monkeypatch.setattr(reexamine_module, "REEXAMINE_MINIMUM", 256)
    full = diagnose(evidence, (1e-7, 1e-3), Prober(lambda point, i: cost_at(point), theta.copy()))
    assert full.verdict is Verdict.CORRECT
    assert full.explained == {"agree at another step": 5}


def test_verdicts_in_order_of_severity_and_what_passes():
    order = [Verdict.CORRECT, Verdict.SUSPICIOUS, Verdict.INCONCLUSIVE, Verdict.BUG]
    assert [v.severity for v in order] == [0, 1, 2, 3]
    assert Verdict.INCONCLUSIVE == "inconclusive"
