"""The pure-Python engine: the reference loop, serial, for every kind of cost.

It is the last resort when nothing compiled is available, the only engine that can call a
``reseed`` hook before every evaluation, and (through ``_reference``) the tests' oracle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from . import _reference
from ._base import Engine, Runner

if TYPE_CHECKING:
    from .._cost import Cost


class PythonEngine(Engine):
    name = "python"
    runs_hooks = True
    serial = True

    def make_runner(self, cost: "Cost", work: np.ndarray, parallel: bool = True) -> Runner:
        evaluate = cost.evaluator(work)

        def run_reference(indices, steps, approx, failed):
            _reference.central_differences(evaluate, work, indices, steps, approx, failed)

        return run_reference

    def make_directional_runner(self, cost, work, theta, dtheta, parallel=True):
        evaluate = cost.evaluator(work)

        def run_reference(lo, hi, seeds, kinds, steps, out, failed):
            _reference.directional_differences(
                evaluate, work, theta, dtheta, lo, hi, seeds, kinds, steps, out, failed
            )

        return run_reference

    def _block_norms_kernel(self) -> Callable[..., None]:
        return _reference.block_norms
