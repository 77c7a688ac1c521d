"""The complex step along random directions: ``Im J(theta + i h v) / h`` is the directional
derivative without a subtraction (so without the round-off of a difference, the remedy for
float32) and without crossing a kink, at one evaluation per direction.

It needs a cost written for complex input (NumPy arithmetic, no ``abs`` or comparisons on the
parameters, no cast to float); it runs in Python, one evaluation per direction.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._cost import CostKind
from .._errors import CostTypeError, InvalidInputError
from ._base import DirectionBatch, PlanContext

COMPLEX = {np.dtype(np.float64): np.complex128, np.dtype(np.float32): np.complex64}
# The imaginary step: tiny, since nothing is subtracted (far above the smallest normal).
IMAGINARY_STEP = 1e-20


def complex_directions(context: PlanContext, batch: DirectionBatch) -> np.ndarray:
    """``out`` as the directional kernels give it (2 Im J, the prediction 2 h v . dtheta, and
    |h v|^2), from one complex evaluation per direction."""
    cost = context.session.executor.cost
    if cost.kind is not CostKind.PYTHON:
        raise InvalidInputError(
            "complex_step=True needs a Python cost that accepts complex parameters; this "
            f"cost is {cost.kind.value}"
        )
    theta = context.theta.astype(COMPLEX[context.layout.dtype])
    out = np.empty((batch.size, 3))
    step = IMAGINARY_STEP if context.layout.dtype == np.float64 else 1e-10
    for row in range(batch.size):
        lo, hi = int(batch.lo[row]), int(batch.hi[row])
        v = np.random.default_rng(int(batch.seeds[row])).standard_normal(hi - lo)
        move = step * v
        theta[lo:hi] += 1j * move.astype(theta.dtype)
        try:
            value = _imaginary_part(cost, theta, lo)
        finally:
            theta[lo:hi] = context.theta[lo:hi]
        context._advance(1)
        out[row] = (2.0 * value, 2.0 * float(np.dot(move, context.dtheta[lo:hi])),
                    float(np.dot(move, move)))
    return out


def _imaginary_part(cost, theta: np.ndarray, lo: int) -> float:
    try:
        with warnings.catch_warnings():
            # A cast of complex to real drops the step: an error here, not a warning.
            warnings.simplefilter("error", np.exceptions.ComplexWarning)
            value = cost.function(cost.layout.unflatten(theta), *cost.args)
    except (TypeError, ValueError, np.exceptions.ComplexWarning) as error:
        raise CostTypeError(
            f"complex_step=True: the cost failed on complex parameters ({error}); it must "
            "accept complex input (or use the screen without complex_step)",
            flat_index=lo,
        ) from error
    if not np.iscomplexobj(value) or np.ndim(value) != 0:
        raise CostTypeError(
            f"complex_step=True: the cost returned {type(value).__name__} for complex "
            "parameters, not one complex scalar; it does not carry the complex step (a cast "
            "to float, abs or a comparison on the parameters drops it)",
            flat_index=lo,
        )
    return float(np.imag(value))
