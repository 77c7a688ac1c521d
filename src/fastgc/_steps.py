"""The step rule: how far each component of theta is moved, chosen by dtype.

float64 keeps the lecture's absolute 1e-7, so the reported difference is the lecture's number.
float32 cannot resolve that: its step is about cbrt(u) relative to |theta_i|. Execution needs
the rule before anything runs, and the diagnosis needs it afterwards, so it lives here.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from ._errors import InvalidInputError


UNIT_ROUNDOFF = {np.dtype(np.float64): 2.0**-53, np.dtype(np.float32): 2.0**-24}
# Default steps: the lecture's 1e-7 for float64; about cbrt(u), relative, for float32.
DEFAULT_EPS = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 2.0**-8}


@dataclass(frozen=True)
class StepRule:
    """The step h_i of each component, computed for a range at a time (no length-n array).

    float64 keeps the lecture's absolute 1e-7, so ``difference`` is the lecture's number.
    float32 cannot resolve that: its step is about cbrt(u) relative to |theta_i|.
    """

    theta: np.ndarray
    eps: float
    relative: bool
    description: str

    def __call__(self, start: int, stop: int) -> np.ndarray:
        """float64 steps of components ``start`` to ``stop``."""
        if not self.relative:
            return np.full(stop - start, self.eps)
        return self.eps * np.maximum(1.0, np.abs(self.theta[start:stop].astype(np.float64)))

    def over(self, start: int, stop: int) -> float | np.ndarray:
        """The steps of components ``start`` to ``stop``, as one float when they are all equal
        (it broadcasts, and saves building an array)."""
        return self.eps if not self.relative else self(start, stop)

    def take(self, indices: np.ndarray) -> np.ndarray:
        """float64 steps of the components ``indices``."""
        if not self.relative:
            return np.full(indices.shape[0], self.eps)
        return self.eps * np.maximum(1.0, np.abs(self.theta[indices].astype(np.float64)))

    def at(self, i: int) -> float:
        return float(self(i, i + 1)[0])

    @property
    def typical(self) -> float:
        """The median step, for the report (computed once, when the rule is chosen, while the
        memory a float32 check may use has room for its temporary)."""
        return self._median_step if self.relative else self.eps

    @functools.cached_property
    def _median_step(self) -> float:
        """The median of relative steps, computed on first use."""
        # One temporary the size of theta, reused in place: a float32 check's memory bound
        # has room for no more.
        magnitudes = np.abs(self.theta)
        np.maximum(magnitudes, 1.0, out=magnitudes)
        return self.eps * float(np.median(magnitudes, overwrite_input=True))


def choose_steps(theta: np.ndarray, eps: float | None) -> StepRule:
    """How the step of each component is chosen, with a sentence saying so."""
    if eps is not None:
        return StepRule(theta, float(eps), False, f"eps={eps:g} as given")
    base = DEFAULT_EPS[theta.dtype]
    if theta.dtype == np.float64:
        return StepRule(theta, base, False, f"eps={base:g}, the default for float64")
    rule = StepRule(
        theta, base, True,
        f"eps={base:.3g} x max(1, |theta_i|), the default for {theta.dtype} (about cbrt(u): "
        "balances round-off against truncation)",
    )
    rule.typical  # now, before the check's n-sized arrays exist
    return rule


def upcast_float32(
    theta: np.ndarray, layout, thresholds: tuple[float, float], upcast: object
) -> tuple[np.ndarray, object, tuple[float, float]]:
    """With ``upcast``, float32 parameters become a float64 copy (the cost is then evaluated
    in float64), and the thresholds those of float32 gradients: what the analytic side can
    attain. Anything else is returned as it is."""
    if not isinstance(upcast, (bool, np.bool_)):
        raise InvalidInputError(f"upcast must be True or False, got {upcast!r}")
    if not upcast or theta.dtype != np.float32:
        return theta, layout, thresholds
    attainable = 5.0 * UNIT_ROUNDOFF[np.dtype(np.float32)] ** (2.0 / 3.0)
    correct = max(thresholds[0], attainable)
    raised = (correct, max(thresholds[1], 10.0 * correct))
    return (theta.astype(np.float64), dataclasses.replace(layout, dtype=np.dtype(np.float64)),
            raised)
