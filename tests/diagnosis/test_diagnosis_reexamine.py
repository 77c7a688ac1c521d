"""Re-examination on one-dimensional costs whose derivative is known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastgc import Label, flatten
from fastgc._steps import choose_steps
from fastgc.diagnosis import Evidence, Noise, Prober, diagnose
from fastgc.diagnosis.noise import roundoff_sample
from fastgc.diagnosis.reexamine import (
    ENOUGH_EVIDENCE,
    STEP_FACTORS,
    Examination,
    reexamine,
    select,
)

STEP = 1e-7


def examine(cost, at: float, analytic: float, step: float = STEP, crossed=None):
    """Re-examine the single component of theta = [at] of ``cost(x)``."""
    theta = np.array([at])
    prober = Prober(lambda point, i: cost(float(point[0])), theta)
    cost_at_theta = cost(at)
    noise = Noise.estimate(cost_at_theta, theta.dtype, 0.0)
    examination = Examination(prober.probe, cost_at_theta, noise, 1e-7, crossed)
    return reexamine(0, analytic, step, examination), prober


def quadratic(x: float) -> float:
    return 3.0 * x * x - 2.0 * x + 0.5


QUADRATIC_SLOPE_AT_07 = 6.0 * 0.7 - 2.0


@pytest.mark.parametrize("analytic", [QUADRATIC_SLOPE_AT_07 * 1.01, QUADRATIC_SLOPE_AT_07 + 1e-4,
                                      -QUADRATIC_SLOPE_AT_07])
def test_smooth_cost_with_a_wrong_analytic_value_is_a_likely_bug(analytic):
    result, prober = examine(quadratic, 0.7, analytic)
    assert result.label is Label.LIKELY_BUG
    assert result.estimate == pytest.approx(QUADRATIC_SLOPE_AT_07, rel=1e-7)
    assert prober.evaluations == 2 * len(STEP_FACTORS)


def test_truncation_at_a_large_step_is_cleared_by_higher_order_estimates():
    # exp(10 x) at a step of 1e-3: the central difference is off by about (10 h)^2 / 6.
    def cost(x):
        return math.exp(10.0 * x)

    exact = 10.0 * math.exp(1.0)
    result, _ = examine(cost, 0.1, exact, step=1e-3)
    assert result.label is Label.AGREES_SMALLER_STEP
    assert result.estimate == pytest.approx(exact, rel=1e-9)


def kinked(x: float) -> float:
    return abs(x - 0.3) + 0.5 * x * x  # slope -1 + x left of 0.3, 1 + x right of it


@pytest.mark.parametrize("offset", [4e-8, -4e-8, 6e-8])
def test_abs_kink_within_the_steps_is_a_kink(offset):
    at = 0.3 + offset
    slope = (1.0 if offset > 0 else -1.0) + at  # the derivative on theta's own side
    result, _ = examine(kinked, at, slope)
    assert result.label is Label.KINK
    assert result.estimate == slope


def test_subgradient_at_the_kink_itself_is_a_kink():
    result, _ = examine(abs, 0.0, 0.5)  # in [-1, 1]
    assert result.label is Label.KINK


@pytest.mark.parametrize("at", [0.3, 0.3 + 4e-8])
def test_value_outside_every_one_sided_slope_at_a_kink_is_a_likely_bug(at):
    result, _ = examine(kinked, at, 5.0)
    assert result.label is Label.LIKELY_BUG
    assert min(abs(result.estimate - (1.0 + at)), abs(result.estimate - (-1.0 + at))) < 1e-6


def test_a_signature_change_decides_the_kink():
    at = 0.3 + 4e-8
    asked = []

    def crossed(i, s):
        asked.append((i, s))
        return s > 4e-8  # the kink lies 4e-8 above theta

    result, _ = examine(kinked, at, 1.0 + at, crossed=crossed)
    assert result.label is Label.KINK
    assert asked == [(0, STEP)]  # crossed at h already: h/2 need not be asked


def test_noisy_cost_with_the_right_value_is_not_called_a_bug():
    # Round-off far above what |J| suggests (nothing measured it): the estimates scatter.
    def cost(x):
        return 2.0 * x + 1e-9 * math.sin(1e11 * x + 1.0)

    right, _ = examine(cost, 0.5, 2.0)
    assert right.label is Label.NOISE
    wrong, _ = examine(cost, 0.5, 2.3)
    assert wrong.label is Label.LIKELY_BUG
    assert wrong.estimate == pytest.approx(2.0, abs=1e-2)


def test_select_takes_the_worst_of_every_block_before_the_second_of_any():
    _, layout = flatten({"A": np.zeros(10), "B": np.zeros(3)})
    candidates = np.array([1, 4, 7, 10, 12], dtype=np.int64)
    ratio = np.array([5.0, 9.0, 8.0, 2.0, 3.0])
    assert select(candidates, ratio, layout, 2).tolist() == [4, 12]
    assert select(candidates, ratio, layout, 4).tolist() == [4, 12, 7, 10]
    assert select(candidates, ratio, layout, 5).tolist() == [4, 7, 1, 12, 10]


def test_a_block_stops_being_examined_once_enough_bugs_are_found():
    theta, layout = flatten({"W": np.linspace(-1.0, 1.0, 40)})
    weights = np.linspace(1.0, 2.0, 40)

    def cost(point, i):
        return float(np.sum(weights * point**2))

    steps = choose_steps(theta, None)
    exact = 2.0 * weights * theta
    approx = exact.copy()
    dtheta = exact * 1.5  # every component wrong (no theta_i is 0)
    norms = np.array([[np.sum((approx - dtheta) ** 2), np.sum(approx**2), np.sum(dtheta**2)]])
    evidence = Evidence(approx, dtheta, layout, steps, cost(theta, None), norms)
    prober = Prober(cost, theta)
    result = diagnose(evidence, (1e-7, 1e-3), prober)
    bugs = [i for i, label in result.labels.items() if label == Label.LIKELY_BUG.value]
    assert len(bugs) == ENOUGH_EVIDENCE
    measured = 8 * roundoff_sample(40).size  # 9 fractions of h, theta itself not evaluated
    assert prober.evaluations == measured + ENOUGH_EVIDENCE * 2 * len(STEP_FACTORS)
    assert result.verdict == "bug" and result.per_parameter["W"].n_disagreeing == 40


def examine_on_the_ladder(cost, at: float, analytic: float, step: float = STEP, crossed=None):
    """Re-examine theta = [at], with theta given so that the ladder of larger steps is climbed."""
    theta = np.array([at])
    prober = Prober(lambda point, i: cost(float(point[0])), theta)
    cost_at_theta = cost(at)
    noise = Noise.estimate(cost_at_theta, theta.dtype, 0.0)
    examination = Examination(prober.probe, cost_at_theta, noise, 1e-7, crossed, theta)
    return reexamine(0, analytic, step, examination), prober


def swamped(x: float) -> float:
    # Round-off of 1e6 is ~1e-10, so at h = 1e-7 the slope 1e-2 + 2x is seen to ~1e-3 only.
    return 1e6 + 1e-2 * x + x * x


SWAMPED_SLOPE_AT_01 = 1e-2 + 2 * 0.1


def test_the_ladder_resolves_a_component_round_off_swamps_at_small_steps():
    near, _ = examine(swamped, 0.1, SWAMPED_SLOPE_AT_01 * 1.01)
    assert near.label is Label.NOISE  # up to 16h nothing is sharp enough
    right, prober = examine_on_the_ladder(swamped, 0.1, SWAMPED_SLOPE_AT_01)
    assert right.label is Label.AGREES_LARGER_STEP
    assert right.estimate == pytest.approx(SWAMPED_SLOPE_AT_01, rel=1e-4)
    assert prober.evaluations > 2 * len(STEP_FACTORS)
    wrong, _ = examine_on_the_ladder(swamped, 0.1, SWAMPED_SLOPE_AT_01 * 1.01)
    assert wrong.label is Label.LIKELY_BUG
    assert wrong.estimate == pytest.approx(SWAMPED_SLOPE_AT_01, rel=1e-3)
    doubled, _ = examine_on_the_ladder(swamped, 0.1, 2 * SWAMPED_SLOPE_AT_01)
    assert doubled.label is Label.LIKELY_BUG


@pytest.mark.parametrize("distance", [3e-5, 1e-4, 1e-3])
def test_the_ladder_stops_at_a_kink_and_its_estimates_are_the_slope_on_theta_s_side(distance):
    def kinked_far(x):  # a kink above theta, crossed by the ladder's upper rungs
        return swamped(x) + 0.5 * abs(x - (0.1 + distance))

    slope = SWAMPED_SLOPE_AT_01 - 0.5
    right, _ = examine_on_the_ladder(kinked_far, 0.1, slope)
    assert right.label in (Label.NOISE, Label.AGREES_LARGER_STEP), right
    wrong, _ = examine_on_the_ladder(kinked_far, 0.1, 1.05 * slope)
    assert wrong.label in (Label.NOISE, Label.LIKELY_BUG), wrong
    if wrong.label is Label.LIKELY_BUG:
        assert wrong.estimate == pytest.approx(slope, rel=1e-3)


def test_the_ladder_stops_where_the_signature_changes():
    asked = []

    def crossed(i, s):
        asked.append(s)
        return s > 1e-5

    result, _ = examine_on_the_ladder(swamped, 0.1, SWAMPED_SLOPE_AT_01, crossed=crossed)
    assert result.label is Label.NOISE
    assert max(asked) <= 4e-5


def test_a_step_that_vanishes_at_a_large_theta_is_no_evidence_and_no_crash():
    # At 3e8 the float64 spacing is 6e-8: h / 4 = 2.5e-8 rounds away.
    def cost(x):
        return 2.0 * x

    result, _ = examine_on_the_ladder(cost, 3e8, 3.0)
    assert result.label is Label.LIKELY_BUG
    assert result.estimate == pytest.approx(2.0, rel=1e-6)
