"""What a check hands to the diagnosis once every component has been differenced."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._layout import Layout
from .._steps import StepRule


@dataclass(frozen=True, eq=False)
class Evidence:
    """The numeric and analytic gradients and what they were measured with.

    Attributes
    ----------
    approx : ndarray of float64, shape (n,)
        Two-sided differences at the steps of ``steps``.
    dtheta : ndarray of float64, shape (n,)
        The analytic gradient, flat.
    layout : Layout
        Names, shapes and offsets of the parameter blocks of theta.
    steps : StepRule
        The step h_i of each component.
    cost_at_theta : float
        J at the unperturbed theta.
    block_norms : ndarray of float64, shape (n_blocks, 3)
        Per block, the squared norms of ``approx - dtheta``, ``approx`` and ``dtheta``.
    measured_roundoff : float or None
        The round-off of J already measured on ``roundoff_sample`` at these steps (by a plan
        that needed it), or None to measure it here when needed.
    decided_blocks : frozenset of int
        Blocks already shown wrong as a whole by independent evidence (random directions
        disagreeing alike at two steps): a few stable wrong components confirm them, so
        fewer are re-examined there.
    """

    approx: np.ndarray
    dtheta: np.ndarray
    layout: Layout
    steps: StepRule
    cost_at_theta: float
    block_norms: np.ndarray
    measured_roundoff: float | None = None
    decided_blocks: frozenset = frozenset()
