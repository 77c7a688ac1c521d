"""The user's signature tells kinks exactly."""

from __future__ import annotations

import numpy as np

from fastgc.diagnosis import signature_crossing


def test_crossed_sees_a_mask_change_on_either_side_and_leaves_theta_alone():
    theta = np.array([0.5, -2e-7, 3.0])
    before = theta.tobytes()
    calls = []

    def masks(p):
        calls.append(p.copy())
        return [p > 0, {"second": p[1] > 1e-7}]

    crossed = signature_crossing(masks, lambda point: point, theta)
    assert crossed(1, 1e-7) is False  # -1e-7 and -3e-7: still negative
    assert crossed(1, 3e-7) is True  # +1e-7 > 0 flips the first mask
    assert crossed(1, 1e-8) is False
    assert crossed(0, 1e-3) is False
    assert crossed(0, 0.6) is True  # 0.5 - 0.6 < 0
    assert theta.tobytes() == before
    # Between calls the private copy is back at theta, bit for bit.
    crossed(2, 1.0)
    assert calls[-1][2] != theta[2] and calls[-1][[0, 1]].tobytes() == theta[[0, 1]].tobytes()
