"""Serial evaluations of the cost around theta, for re-examination and the round-off measure."""

from __future__ import annotations

from typing import Callable

import numpy as np


class Prober:
    """J at theta with one component moved, restoring theta exactly each time.

    ``theta`` is the check's own flattened copy, so it serves as the buffer: no n-sized copy.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(theta, i) -> float``: the validated cost value at the flat ``theta``, in
        which component ``i`` has been moved (``i`` is for error messages).
    theta : ndarray, shape (n,)
        The flat parameters; each move is undone bit for bit before a method returns.

    Attributes
    ----------
    evaluations : int
        How many times ``evaluate`` has been called.
    """

    def __init__(self, evaluate: Callable[[np.ndarray, int], float], theta: np.ndarray) -> None:
        self.evaluate, self.theta, self.evaluations = evaluate, theta, 0

    def _evaluate(self, i: int) -> float:
        self.evaluations += 1
        try:
            return self.evaluate(self.theta, i)
        except Exception:  # a cost defined only near theta: this point tells nothing
            return float("nan")

    def probe(self, i: int, step: float) -> tuple[float, float, float, float]:
        """J at theta[i] + step and theta[i] - step, and the two steps as represented.

        Parameters
        ----------
        i : int
            The component to move.
        step : float
            How far to move it each way.

        Returns
        -------
        (float, float, float, float)
            J up, J down (NaN where the cost raised), the represented step up
            ``theta[i] + step - theta[i]`` and down ``theta[i] - (theta[i] - step)``.
        """
        theta, saved = self.theta, self.theta[i]
        try:
            theta[i] = saved + np.float64(step)
            up = float(theta[i]) - float(saved)
            plus = self._evaluate(i)
            theta[i] = saved - np.float64(step)
            down = float(saved) - float(theta[i])
            minus = self._evaluate(i)
        finally:
            theta[i] = saved
        return plus, minus, up, down

    def near(self, i: int, offset: float) -> float:
        """J with theta[i] moved by ``offset`` (NaN where the cost raised)."""
        theta, saved = self.theta, self.theta[i]
        try:
            theta[i] = saved + np.float64(offset)
            return self._evaluate(i)
        finally:
            theta[i] = saved
