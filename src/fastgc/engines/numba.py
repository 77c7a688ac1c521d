"""The Numba engine: an ``@numba.njit`` cost of the flat theta, called from a compiled
``prange`` over chunks of indices.

The cost reaches the kernel as a first-class function, typed by its signature alone, so the
kernel is compiled once per argument types whatever the cost, and kept in Numba's on-disk
cache: a second cost, or a new process, compiles nothing of fastgc's. A cost Numba cannot pass
that way runs in a kernel specialised on it, compiled in memory, as a fallback.

Its bookkeeping lives here too: which costs the specialised kernels were compiled for (so a
check that needs nothing compiled skips the warm-up launch), Numba's per-thread thread count,
and whether a parallel region may start from the calling thread (Numba's ``workqueue`` layer
cannot nest inside a foreign thread pool).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import time
import warnings
import weakref
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator

import numpy as np

from .._cost import CostKind
from .._errors import CostError
from .._threads import in_forked_child, in_main_thread, interrupts_deferred, numba_threads
from ._base import Engine, Runner

if TYPE_CHECKING:
    from .._cost import Cost

# Per njit cost and argument types (see _type_key), the kernel chosen for them in this
# process: the compiled entry of the first-class kernel, or the specialised kernel.
_kernels: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_SCALARS = (bool, int, float, complex, np.number, np.bool_)


def _type_key(value: Any) -> Any:
    """What decides Numba's type of an argument, cheaply: dtype, rank, memory layout and
    flags of arrays, element keys of tuples, the type of Python and NumPy scalars, and
    Numba's own type of anything else (a typed list, a function)."""
    if isinstance(value, np.ndarray):
        flags = value.flags
        return (value.dtype, value.ndim, flags.c_contiguous, flags.f_contiguous,
                flags.writeable, flags.aligned)
    if isinstance(value, tuple):
        return (type(value), tuple(_type_key(item) for item in value))
    if isinstance(value, _SCALARS) and not (isinstance(value, int) and value.bit_length() > 63):
        return type(value)
    import numba

    return numba.typeof(value)


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
        # One chunk needs no parallel region: the serial loop spares its launch.
        return _NumbaRunner(cost, work, parallel and work.shape[0] > 1)

    def make_directional_runner(self, cost, work, theta, dtheta, parallel=True):
        return _NumbaDirectionalRunner(cost, work, theta, dtheta,
                                       parallel and work.shape[0] > 1)

    def warm_up(self, run: Runner, cost: "Cost", work: np.ndarray, parallel: bool) -> float:
        """Compile (or load from Numba's cache) the kernels for these argument types, once per
        process; the seconds it took, 0.0 when they were ready."""
        assert isinstance(run, _NumbaRunner)
        started = time.perf_counter()
        try:
            compiled = run.prepare()
            if _extension_block_norms() is None:
                compiled = _compile_block_norms() or compiled
        except Exception as error:
            raise CostError(
                "Numba could not compile the check around this cost (are all args arrays, "
                f"numbers or tuples of them, and does the cost return a float?): {error}"
            ) from error
        return time.perf_counter() - started if compiled else 0.0

    def _block_norms_kernel(self) -> Callable[..., None]:
        twin = _extension_block_norms()
        if twin is not None:
            return twin
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


class _NumbaRunner:
    """One round of the Numba kernel for ``cost`` on ``work``: ``run(indices, steps, approx,
    failed)``. The kernel is chosen, and compiled if need be, by :meth:`prepare`."""

    def __init__(self, cost: "Cost", work: np.ndarray, parallel: bool) -> None:
        self.function, self.args, self.work, self.parallel = cost.function, cost.args, work, parallel
        self._kernel: Callable[..., None] | None = None

    def prepare(self) -> bool:
        """Choose the kernel; True when it had to be compiled or loaded from the disk cache."""
        if self._kernel is not None:
            return False
        key = (_type_key(self.args), _type_key(self.work), self.parallel)
        try:
            chosen = _kernels.setdefault(self.function, {})
        except TypeError:  # not weakly referenceable: choose every time
            chosen = {}
        compiled = key not in chosen
        if compiled:
            # The first-class kernel, or None for the kernel specialised on this cost (a
            # value that holds no reference to the cost, which is the weak key).
            chosen[key], compiled = _first_class_kernel(
                self.function, self.args, self.work, self.parallel)
            if chosen[key] is None:
                self._compile_specialised_kernel()
                compiled = True
        run = chosen[key]
        self._kernel = run if run is not None else functools.partial(
            self._specialised_kernel(), self.function)
        return compiled

    def _specialised_kernel(self) -> Callable[..., None]:
        from ._numba_kernels import specialised_kernels

        return specialised_kernels()[0 if self.parallel else 1]

    def _compile_specialised_kernel(self) -> None:
        empty = np.empty(0)
        self._specialised_kernel()(
            self.function, self.args, self.work, np.empty(0, dtype=np.int64), empty, empty,
            np.empty(self.work.shape[0], dtype=np.int64))

    def __call__(self, indices: np.ndarray, steps: np.ndarray, approx: np.ndarray,
                 failed: np.ndarray) -> None:
        if self._kernel is None:
            self.prepare()
        # The compiled entry takes C-contiguous int64 and float64 vectors and nothing else.
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        steps = np.ascontiguousarray(steps, dtype=np.float64)
        if not (_is_vector_of(approx, np.float64) and _is_vector_of(failed, np.int64)):
            into, flags = np.empty(approx.shape[0]), np.empty(failed.shape[0], dtype=np.int64)
            self(indices, steps, into, flags)
            approx[:], failed[:] = into, flags
            return
        self._kernel(self.args, self.work, indices, steps, approx, failed)


def _is_vector_of(array: np.ndarray, dtype: type) -> bool:
    flags = array.flags
    return (array.dtype == dtype and array.ndim == 1 and flags.c_contiguous and flags.writeable
            and flags.aligned)


def _first_class_kernel(
    function: Any, args: tuple, work: np.ndarray, parallel: bool
) -> tuple[Callable[..., None] | None, bool]:
    """The compiled kernel calling ``function`` through its address, as a first-class function
    of its signature, with that address bound: ``run(args, work, indices, steps, approx,
    failed)``; and whether it was compiled (or loaded from disk) now. ``(None, False)`` when
    Numba cannot pass this cost so."""
    from ._numba_kernels import central_differences_at, central_differences_serial_at

    kernel = central_differences_at if parallel else central_differences_serial_at
    with _first_class_functions_allowed():
        typed = _kernel_signature(function, args, work)
    if typed is None:
        return None, False
    signature, address, cost_type = typed
    compiled = signature not in kernel.overloads
    try:
        with _first_class_functions_allowed():
            if compiled:
                kernel.compile(signature)
            run = functools.partial(kernel.overloads[signature].entry_point, address, cost_type)
            empty = np.empty(0)  # a round of nothing: it runs, or the cost cannot go this way
            run(args, work, np.empty(0, dtype=np.int64), empty, empty,
                np.empty(work.shape[0], dtype=np.int64))
    except Exception:  # a cost Numba cannot call through a pointer: the specialised kernel
        return None, False
    return run, compiled


@contextlib.contextmanager
def _first_class_functions_allowed() -> Iterator[None]:
    """Numba calls first-class functions experimental and says so on every compilation; the
    kernels' use of them is tested here, so the user is not told."""
    from numba.core.errors import NumbaExperimentalFeatureWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
        yield


def _kernel_signature(function: Any, args: tuple, work: np.ndarray) -> tuple | None:
    """Numba's argument types of the ``*_at`` kernel for this cost, the address of the cost's
    compiled code and its first-class type ``return_type(theta_type, *arg_types)``, from the
    specialisation it already compiled for these arguments (the baseline evaluations compiled
    it); None when there is none."""
    import numba

    found = _cost_address(function, args, work)
    if found is None:
        return None
    address, cost_type, args_type = found
    index_type = numba.types.Array(numba.types.int64, 1, "C")
    real_type = numba.types.Array(numba.types.float64, 1, "C")
    signature = (numba.types.int64, numba.typeof(cost_type), args_type, numba.typeof(work),
                 index_type, real_type, real_type, index_type)
    return signature, address, cost_type


def _cost_address(function: Any, args: tuple, work: np.ndarray) -> tuple | None:
    """The address of the cost's compiled code for these arguments, its first-class type and
    Numba's type of ``args``; None when there is no compiled code to point to."""
    import numba

    try:
        args_type = numba.typeof(args)
        theta_type = numba.typeof(work[0])
        overload = function.overloads.get((theta_type, *args_type.types))
        if overload is None:
            return None
        address = overload.library.get_pointer_to_function(overload.fndesc.llvm_func_name)
    except Exception:  # a value Numba cannot type, or no compiled code to point to
        return None
    if not address:
        return None
    return address, numba.types.FunctionType(overload.signature), args_type


class _NumbaDirectionalRunner:
    """One round of the directional kernel for ``cost`` on ``work``: ``run(lo, hi, seeds,
    kinds, steps, out, failed)``, through the cost's address as the central kernel is (so it
    too is compiled once per argument types and cached), else specialised on the cost."""

    def __init__(self, cost: "Cost", work: np.ndarray, theta: np.ndarray,
                 dtheta: np.ndarray, parallel: bool) -> None:
        self.function, self.args, self.work, self.parallel = cost.function, cost.args, work, parallel
        self.theta, self.dtheta = theta, np.ascontiguousarray(dtheta, dtype=np.float64)
        self._kernel: Callable[..., None] | None = None

    def _choose(self) -> Callable[..., None]:
        from ._numba_kernels import (
            directional_differences_at,
            directional_differences_serial_at,
            specialised_directional_kernels,
        )

        with _first_class_functions_allowed():
            found = _cost_address(self.function, self.args, self.work)
        if found is not None:
            kernel = (directional_differences_at if self.parallel
                      else directional_differences_serial_at)
            run = functools.partial(kernel, found[0], found[1])
            try:
                with _first_class_functions_allowed():  # a round of nothing compiles it
                    self._round(run, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64),
                                np.empty(0), np.empty((0, 3)))
                return run
            except Exception:  # a cost Numba cannot call through a pointer
                pass
        specialised = specialised_directional_kernels()[0 if self.parallel else 1]
        return functools.partial(specialised, self.function)

    def _round(self, run: Callable[..., None], empty_index: np.ndarray, empty_seeds: np.ndarray,
               empty: np.ndarray, empty_out: np.ndarray) -> None:
        run(self.args, self.work, self.theta, self.dtheta, empty_index, empty_index,
            empty_seeds, empty_index, empty, empty_out,
            np.empty(self.work.shape[0], dtype=np.int64))

    def __call__(self, lo: np.ndarray, hi: np.ndarray, seeds: np.ndarray, kinds: np.ndarray,
                 steps: np.ndarray, out: np.ndarray, failed: np.ndarray) -> None:
        if self._kernel is None:
            # The first round compiles (or loads) the kernel: Ctrl-C waits for the compiler,
            # as in the warm-up of the central kernel.
            with interrupts_deferred():
                self._kernel = self._choose()
        self._kernel(self.args, self.work, self.theta, self.dtheta, lo, hi, seeds, kinds, steps,
                     out, failed)


@functools.lru_cache(maxsize=1)
def _extension_block_norms() -> Callable[..., None] | None:
    """The compiled extension's block norms when it is built, else None.

    It is the twin of Numba's (the same sums in the same order, so the same bits) and needs no
    compilation: a first check in a new process is spared Numba's compilation of that kernel,
    a sixth of fastgc's share with a cold cache.
    """
    try:
        from .._core import block_norms
    except ImportError:
        return None
    return block_norms


def _compile_block_norms() -> bool:
    """Compile (or load) the block-norm kernel; True when it was not ready."""
    from ._numba_kernels import block_norms

    if block_norms.overloads:
        return False
    empty = np.empty(0)
    block_norms(empty, empty, np.zeros(1, dtype=np.int64), np.zeros((0, 3)))
    return True


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
