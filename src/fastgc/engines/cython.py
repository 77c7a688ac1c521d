"""The Cython engine: the OpenMP extension ``fastgc._core``.

A C-level cost runs in the extension's ``prange`` without the GIL; any other callable runs
there with the GIL held for each evaluation, so chunks overlap only while the cost releases
it (NumPy's BLAS calls do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from .._cost import CostKind
from .._threads import in_forked_child
from ._base import Engine, Runner

if TYPE_CHECKING:
    from .._cost import Cost


class CythonEngine(Engine):
    name = "cython"

    def _why_unavailable(self) -> str | None:
        try:
            from .. import _core  # noqa: F401
        except ImportError as error:
            return (
                f"the compiled extension fastgc._core is not built ({error}); reinstall with "
                "`FASTGC_REQUIRE_CYTHON=1 pip install .` to see why the build failed"
            )
        return None

    def parallel_allowed(self) -> bool:
        # OpenMP's thread pool does not survive a fork: in a forked child, run on one thread.
        return not in_forked_child()

    def make_runner(self, cost: "Cost", work: np.ndarray, parallel: bool = True) -> Runner:
        from .. import _core

        threads = work.shape[0] if parallel else 1
        if cost.kind is CostKind.C:
            address, data = cost.address, cost.data_address

            def run_c(indices, steps, approx, failed):
                _core.central_differences_c(
                    address, data, work, indices, steps, approx, failed, threads
                )

            return run_c
        evaluate = cost.evaluator(work)

        def run_python_cost(indices, steps, approx, failed):
            _core.central_differences_py(evaluate, work, indices, steps, approx, failed, threads)

        return run_python_cost

    def make_directional_runner(self, cost, work, theta, dtheta, parallel=True):
        from .. import _core

        threads = work.shape[0] if parallel else 1
        if cost.kind is CostKind.C:
            address, data = cost.address, cost.data_address

            def run_c(lo, hi, seeds, kinds, steps, out, failed):
                _core.directional_differences_c(
                    address, data, work, theta, dtheta, lo, hi, seeds, kinds, steps, out,
                    failed, threads,
                )

            return run_c
        evaluate = cost.evaluator(work)

        def run_python_cost(lo, hi, seeds, kinds, steps, out, failed):
            _core.directional_differences_py(
                evaluate, work, theta, dtheta, lo, hi, seeds, kinds, steps, out, failed, threads
            )

        return run_python_cost

    def _block_norms_kernel(self) -> Callable[..., None]:
        from .._core import block_norms

        return block_norms

    def config_lines(self) -> list[str]:
        from .. import _core

        openmp = (
            f"OpenMP on, {_core.openmp_max_threads()} thread(s) at most"
            if _core.openmp_enabled()
            else "OpenMP off (built without it: the Cython engine runs serially)"
        )
        return [f"  cython extension: {openmp}"]
