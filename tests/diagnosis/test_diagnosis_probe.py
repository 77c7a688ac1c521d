"""The prober moves one component, evaluates, and puts theta back bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from fastgc.diagnosis import Prober


def recording_prober(theta: np.ndarray, fail_when=None):
    seen = []

    def evaluate(point, i):
        seen.append((i, point.copy()))
        if fail_when is not None and fail_when(point):
            raise ValueError("outside the domain")
        return float(np.sum(point.astype(np.float64) ** 2))

    return Prober(evaluate, theta), seen


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_probe_restores_theta_bit_for_bit_and_counts_evaluations(dtype):
    # -0.0, a subnormal and a value whose moves round: restoring by subtraction would fail.
    theta = np.array([-0.0, np.finfo(dtype).smallest_subnormal, 0.1, 3.0], dtype=dtype)
    before = theta.tobytes()
    prober, seen = recording_prober(theta)
    for i in range(theta.shape[0]):
        prober.probe(i, 1e-3)
        assert theta.tobytes() == before
        prober.near(i, -2.5e-4)
        assert theta.tobytes() == before
    assert prober.evaluations == 3 * theta.shape[0] == len(seen)
    # Each evaluation saw only its own component moved.
    for i, point in seen:
        others = np.delete(np.arange(theta.shape[0]), i)
        assert point[others].tobytes() == theta[others].tobytes()
        assert point[i] != theta[i]


def test_probe_returns_both_values_and_the_steps_as_represented():
    theta = np.array([1.0], dtype=np.float32)
    prober, _ = recording_prober(theta)
    plus, minus, up, down = prober.probe(0, 0.1)
    # float32(1.1) = 1.10000002384185791, float32(0.9) = 0.89999997615814209
    assert up == pytest.approx(0.10000002384185791, abs=1e-16)
    assert down == pytest.approx(0.10000002384185791, abs=1e-16)
    assert plus == float(np.float32(1.1)) ** 2 and minus == float(np.float32(0.9)) ** 2
    _, _, vanished, _ = prober.probe(0, 2.0**-30)  # below half an ulp of 1.0: rounds away
    assert vanished == 0.0


def test_a_cost_that_raises_gives_nan_and_theta_is_still_restored():
    theta = np.array([0.5, 2.0])
    before = theta.tobytes()
    prober, _ = recording_prober(theta, fail_when=lambda point: point[0] > 0.5)
    plus, minus, _, _ = prober.probe(0, 1e-3)
    assert np.isnan(plus) and minus == pytest.approx(0.499**2 + 4.0)
    assert np.isnan(prober.near(0, 1e-2)) and prober.near(0, -1e-2) == pytest.approx(0.49**2 + 4)
    assert theta.tobytes() == before
    assert prober.evaluations == 4
