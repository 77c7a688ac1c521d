"""The noise floor: how much round-off one evaluation of the cost carries.

A two-sided difference at step h cannot see below the round-off of J divided by h, so each
component's tolerance includes that floor, and the thresholds are never tighter than the
dtype can attain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._steps import UNIT_ROUNDOFF, StepRule

FLOOR_FACTOR = 4.0


def effective_thresholds(thresholds: tuple[float, float], dtype: np.dtype) -> tuple[float, float]:
    """Thresholds no tighter than the dtype can attain (float32 cannot reach 1e-7).

    Parameters
    ----------
    thresholds : (float, float)
        The requested (correct, bug) thresholds.
    dtype : numpy dtype
        The dtype of theta, float32 or float64.

    Returns
    -------
    (float, float)
        The correct threshold raised to ``5 u**(2/3)``, and the bug threshold raised to at
        least ten times that.
    """
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
        """The noise of J at theta from its size, its dtype and a measured round-off."""
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
    steps: StepRule,
) -> float:
    """The largest round-off seen in J around theta, measured on a few components.

    Over moves of up to h/4 the exact J is a parabola to many digits, so what a least-squares
    parabola leaves over is round-off.

    Parameters
    ----------
    cost_near : callable
        ``cost_near(i, d)`` is J with theta[i] moved by d.
    cost_at_theta : float
        J at theta itself.
    indices : ndarray of int64
        The components to measure on.
    steps : StepRule
        The step h_i of each component.

    Returns
    -------
    float
        The largest residual of the fitted parabolas (0.0 where no fit had finite values).
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


def roundoff_sample(n: int) -> np.ndarray:
    """The components round-off is measured on: up to four, evenly spread, first and last.

    Parameters
    ----------
    n : int
        The number of components of theta.

    Returns
    -------
    ndarray of int64
        Distinct indices in increasing order (empty when ``n`` is 0).
    """
    return np.unique(np.linspace(0, n - 1, min(4, n)).astype(np.int64))
