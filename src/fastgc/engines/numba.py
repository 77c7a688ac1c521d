"""The Numba engine: an ``@numba.njit`` cost of the flat theta, called from a compiled
``prange`` over chunks of indices.

Its bookkeeping lives here too: which argument types the kernels were compiled for (so a
check that needs nothing compiled skips the warm-up launch), Numba's per-thread thread count,
and whether a parallel region may start from the calling thread (Numba's ``workqueue`` layer
cannot nest inside a foreign thread pool).
"""

from __future__ import annotations

import importlib
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, ContextManager

import numpy as np

from .._cost import CostKind
from .._errors import CostError
from .._threads import in_forked_child, in_main_thread, numba_threads
from ._base import Engine, Runner

if TYPE_CHECKING:
    from .._cost import Cost

# Per njit cost, the argument types its check kernels were compiled for in this process.
_compiled: "weakref.WeakKeyDictionary[Any, set]" = weakref.WeakKeyDictionary()


def _type_key(value: Any) -> Any:
    """What decides Numba's compiled specialisation for an argument, cheaply: dtype, rank,
    memory layout and flags of arrays, element keys of tuples, the type of anything else."""
    if isinstance(value, np.ndarray):
        flags = value.flags
        return (value.dtype.str, value.ndim, flags.c_contiguous, flags.f_contiguous,
                flags.writeable, flags.aligned)
    if isinstance(value, tuple):
        return (type(value), tuple(_type_key(item) for item in value))
    return type(value)


class NumbaEngine(Engine):
    name = "numba"

    def _why_unavailable(self) -> str | None:
        try:
            import numba  # noqa: F401
        except Exception as error:  # ImportError, or a broken llvmlite
            return f"Numba cannot be imported ({error}); install it with `pip install numba`"
        return None

    def cannot_run(self, cost: "Cost") -> str | None:
        if cost.kind is CostKind.NJIT:
            return None
        return (
            "runs a cost compiled with @numba.njit taking the flat theta, cost(theta, *args); "
            f"this cost is a {cost.kind.description}. Pass engine='cython' or engine='python' "
            "(or 'auto')"
        )

    def parallel_allowed(self) -> bool:
        if in_forked_child() and not _threading_layer_forks():
            return False  # GNU OpenMP and the workqueue do not survive a fork: run serially
        return in_main_thread() or _threading_layer_nests()

    def thread_state(self, n_chunks: int) -> ContextManager[None]:
        return numba_threads(n_chunks)

    def make_runner(self, cost: "Cost", work: np.ndarray, parallel: bool = True) -> Runner:
        from . import _numba_kernels

        kernel = (
            _numba_kernels.central_differences
            if parallel
            else _numba_kernels.central_differences_serial
        )
        function, args = cost.function, cost.args

        def run_numba(indices, steps, approx, failed):
            kernel(function, args, work, indices, steps, approx, failed)

        return run_numba

    def make_directional_runner(self, cost, work, theta, dtheta, parallel=True):
        from . import _numba_kernels

        kernel = (
            _numba_kernels.directional_differences
            if parallel
            else _numba_kernels.directional_differences_serial
        )
        function, args = cost.function, cost.args

        def run_numba(lo, hi, seeds, kinds, steps, out, failed):
            kernel(function, args, work, theta, dtheta, lo, hi, seeds, kinds, steps, out, failed)

        return run_numba

    def warm_up(self, run: Runner, cost: "Cost", work: np.ndarray, parallel: bool) -> float:
        """Compile the kernels for this cost and these argument types, once per process."""
        key = (_type_key(cost.args), _type_key(work), parallel)
        try:
            seen = _compiled.setdefault(cost.function, set())
        except TypeError:  # not weakly referenceable: warm up every time
            seen = set()
        if key in seen:
            return 0.0
        started = time.perf_counter()
        empty = np.empty(0)
        self.block_norms(empty, empty, np.zeros(1, dtype=np.int64))
        try:
            run(np.empty(0, dtype=np.int64), empty, empty, np.empty(work.shape[0], dtype=np.int64))
        except Exception as error:
            raise CostError(
                "Numba could not compile the check around this cost (are all args arrays, "
                f"numbers or tuples of them, and does the cost return a float?): {error}"
            ) from error
        seen.add(key)
        return time.perf_counter() - started

    def _block_norms_kernel(self) -> Callable[..., None]:
        from ._numba_kernels import block_norms

        return block_norms

    def config_lines(self) -> list[str]:
        import numba

        try:
            layer = numba.threading_layer()
        except ValueError:
            layer = f"not chosen yet (configured: {numba.config.THREADING_LAYER})"
        return [f"  numba {numba.__version__}, threading layer {layer}, "
                f"NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}"]


def _threading_layer_forks() -> bool:
    """Whether Numba's threading layer runs parallel regions in a forked child (only tbb is
    known to; GNU OpenMP aborts the process, the workqueue's threads are gone)."""
    import numba

    try:
        return numba.threading_layer() == "tbb"
    except ValueError:  # nothing ran in parallel yet: only a layer fixed to tbb is sure
        return numba.config.THREADING_LAYER == "tbb"


def _threading_layer_nests() -> bool:
    """Whether Numba's threading layer can run parallel regions from several threads at once
    (tbb and omp can; workqueue cannot)."""
    import numba

    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel region has run yet: which layer will be chosen?
        pass
    layer = numba.config.THREADING_LAYER
    if layer in ("omp", "tbb", "safe", "threadsafe"):
        return True
    if layer != "default":
        return False
    # The default tries tbb, then omp, then workqueue: safe when one of the first two loads.
    for module in ("numba.np.ufunc.tbbpool", "numba.np.ufunc.omppool"):
        try:
            importlib.import_module(module)
            return True
        except Exception:  # ImportError, or a missing libgomp/libtbb
            continue
    return False
