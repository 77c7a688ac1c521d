"""Thresholds, the round-off sample and the round-off measure."""

from __future__ import annotations

import numpy as np
import pytest

from fastgc._steps import choose_steps
from fastgc.diagnosis import effective_thresholds, measure_roundoff
from fastgc.diagnosis.noise import roundoff_sample


def test_thresholds_are_raised_only_where_the_dtype_cannot_reach_them():
    assert effective_thresholds((1e-7, 1e-3), np.float64) == (1e-7, 1e-3)
    correct, bug = effective_thresholds((1e-7, 1e-3), np.float32)
    assert correct == pytest.approx(5.0 * 2.0**-16)  # 5 u^(2/3), u = 2^-24
    assert bug == 1e-3
    assert effective_thresholds((1e-7, 2e-4), np.float32)[1] == pytest.approx(10 * correct)


@pytest.mark.parametrize("n, expected", [(0, []), (1, [0]), (2, [0, 1]), (3, [0, 1, 2]),
                                         (10, [0, 3, 6, 9]), (1000, [0, 333, 666, 999])])
def test_roundoff_sample_spreads_up_to_four_components_first_and_last(n, expected):
    sample = roundoff_sample(n)
    assert sample.dtype == np.int64 and sample.tolist() == expected


def test_measure_roundoff_sees_planted_noise_and_not_a_smooth_cost():
    theta = np.array([0.3])
    steps = choose_steps(theta, 1e-4)
    amplitude = 1e-9

    def smooth(i, d):
        x = theta[i] + d
        return 1.0 + x * x  # exactly a parabola in d

    def noisy(i, d):
        # Noise of a fixed size that no parabola follows: its sign alternates with 16 d / h.
        return smooth(i, d) + amplitude * (-1.0) ** round(d / steps.at(i) * 16)

    first = np.array([0], dtype=np.int64)
    assert measure_roundoff(smooth, smooth(0, 0.0), first, steps) < 1e-14
    measured = measure_roundoff(noisy, smooth(0, 0.0) + amplitude, first, steps)
    assert amplitude / 4 < measured < 4 * amplitude


def test_measure_roundoff_ignores_components_where_the_cost_is_not_finite():
    theta = np.array([0.3])
    steps = choose_steps(theta, 1e-4)
    assert measure_roundoff(lambda i, d: np.nan, 1.0, np.array([0]), steps) == 0.0
