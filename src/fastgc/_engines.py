"""Costs and engines: what kind of cost the user gave, which engine runs it, and how.

Three engines run the same algorithm (see ``fastgc._numba_kernels``, ``fastgc._core`` and
``fastgc._reference``):

- ``"numba"``: an ``@numba.njit`` ``cost(theta, *args)`` runs inside a compiled ``prange``;
- ``"cython"``: the OpenMP extension ``fastgc._core``; a C-level cost (Numba ``@cfunc`` or ctypes
  function pointer) runs without the GIL, any other callable with the GIL held;
- ``"python"``: the pure-Python reference loop, serial; it runs every kind of cost.

:func:`resolve_engine` picks one: the ``engine`` argument, else the ``FASTGC_ENGINE`` environment
variable (read once), else automatically (numba for a jitted cost, cython when the extension is
built, python otherwise).
"""

from __future__ import annotations

import ctypes
import functools
import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import _reference
from ._errors import CostError, CostTypeError, EngineError, InvalidInputError
from ._layout import Layout

ENGINES = ("numba", "cython", "python")

Runner = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def is_numba_dispatcher(function: object) -> bool:
    """True for an ``@numba.njit`` function, recognised without importing Numba."""
    module = type(function).__module__ or ""
    return module.startswith("numba.") and hasattr(function, "py_func")


@functools.lru_cache(maxsize=None)
def engine_status(name: str) -> str | None:
    """None when engine ``name`` can run here, else why it cannot and what to do."""
    if name == "numba":
        try:
            import numba  # noqa: F401
        except Exception as error:  # ImportError, or a broken llvmlite
            return f"Numba cannot be imported ({error}); install it with `pip install numba`"
        return None
    if name == "cython":
        try:
            from . import _core  # noqa: F401
        except ImportError as error:
            return (
                f"the compiled extension fastgc._core is not built ({error}); reinstall with "
                "`FASTGC_REQUIRE_CYTHON=1 pip install .` to see why the build failed"
            )
        return None
    if name == "python":
        return None
    raise InvalidInputError(f"engine must be one of {('auto',) + ENGINES}, got {name!r}")


@functools.lru_cache(maxsize=1)
def _environment_engine() -> str:
    return os.environ.get("FASTGC_ENGINE", "auto").strip().lower() or "auto"


@dataclass
class Cost:
    """The user's cost, classified, with the arguments it is called with."""

    function: Callable[..., Any]
    args: tuple
    layout: Layout
    kind: str  # "numba", "c" or "python"
    address: int = 0
    data_address: int = 0
    reseed: Callable[[], Any] | None = None  # called before every evaluation

    @classmethod
    def classify(cls, function: object, args: tuple, layout: Layout) -> "Cost":
        if is_numba_dispatcher(function):
            return cls(function, args, layout, "numba")  # type: ignore[arg-type]
        from ._ccost import c_cost_pointer

        try:
            address = c_cost_pointer(function, layout.dtype)
        except (TypeError, ValueError) as error:
            raise CostTypeError(f"cost: {error}") from error
        if address is not None:
            return cls(function, args, layout, "c", address, _data_address(args))  # type: ignore[arg-type]
        if not callable(function):
            raise InvalidInputError(
                f"cost must be callable (cost(params, *args) -> float), got "
                f"{type(function).__name__}"
            )
        return cls(function, args, layout, "python")

    def call(self, theta: np.ndarray) -> Any:
        """The cost at ``theta`` (a flat, contiguous array), as the user's function returns it."""
        if self.reseed is not None:
            self.reseed()
        if self.kind == "python":
            return self.function(self.layout.unflatten(theta), *self.args)
        if self.kind == "numba":
            return self.function(theta, *self.args)
        return _c_callable(self.address, self.layout.dtype)(
            theta.ctypes.data, theta.shape[0], self.data_address or None
        )

    def evaluator(self, work: np.ndarray) -> Callable[[int, int], float]:
        """``evaluate(chunk, i)``: the validated cost at ``work[chunk]`` (theta[i] perturbed)."""
        if self.kind == "python" and self.reseed is None:
            targets = [self.layout.unflatten(row) for row in work]
            function, args = self.function, self.args
        else:
            targets = list(work)
            function, args = self.call, ()

        def evaluate(chunk: int, i: int) -> float:
            try:
                value = function(targets[chunk], *args)
            except Exception as error:
                name, index = self.layout.locate(i)
                raise CostError(
                    f"the cost raised {type(error).__name__}: {error} (while theta[{i}], "
                    f"params[{name!r}]{list(index)}, was perturbed)",
                    flat_index=int(i), location=(name, index),
                ) from error
            return cost_value(value, self.layout, i)

        return evaluate


def _data_address(args: tuple) -> int:
    """The ``void *data`` of a C-level cost: nothing, an array's buffer, or an address."""
    if not args:
        return 0
    if len(args) == 1:
        (data,) = args
        if isinstance(data, np.ndarray):
            # The C cost reads the buffer without strides: a strided view would be misread.
            if not (data.flags.c_contiguous or data.flags.f_contiguous):
                raise InvalidInputError(
                    "args=(array,) of a C-level cost is passed as its `void *data` and must be "
                    f"contiguous, got an array of shape {data.shape} with strides "
                    f"{data.strides}; pass np.ascontiguousarray(array)"
                )
            return int(data.ctypes.data)
        if isinstance(data, numbers.Integral) and not isinstance(data, bool):
            return int(data)
        if isinstance(data, ctypes._SimpleCData) or isinstance(data, ctypes.Structure):
            return int(ctypes.addressof(data))
    raise InvalidInputError(
        "a C-level cost receives one `void *data`: pass args=() or args=(array,) or "
        f"args=(address,), got {len(args)} argument(s)"
    )


@functools.lru_cache(maxsize=None)
def _c_prototype(dtype: np.dtype) -> Any:
    element = ctypes.c_double if dtype == np.float64 else ctypes.c_float
    return ctypes.CFUNCTYPE(
        ctypes.c_double, ctypes.POINTER(element), ctypes.c_ssize_t, ctypes.c_void_p
    )


@functools.lru_cache(maxsize=16)
def _c_callable(address: int, dtype: np.dtype) -> Callable[..., float]:
    function = _c_prototype(np.dtype(dtype))(address)
    element = ctypes.c_double if dtype == np.float64 else ctypes.c_float

    def call(data: int, n: int, user: int | None) -> float:
        return function(ctypes.cast(data, ctypes.POINTER(element)), n, user)

    return call


def cost_value(value: Any, layout: Layout, i: int | None) -> float:
    """``value`` as a float, or a :class:`CostTypeError` saying what was returned instead."""
    if isinstance(value, (float, np.floating)):
        return float(value)
    where = "at the unperturbed parameters" if i is None else _where(layout, i)
    if isinstance(value, (bool, np.bool_, numbers.Integral)):
        raise CostTypeError(
            f"the cost returned {type(value).__name__} {value!r} {where}; it must return a "
            "float (an integer cost cannot be differentiated numerically)",
            flat_index=i,
        )
    array = np.asarray(value) if hasattr(value, "__array__") else None
    if array is not None and array.ndim == 0 and array.dtype.kind == "f":
        return float(array)
    if array is not None and array.ndim > 0:
        raise CostTypeError(
            f"the cost returned an array of shape {array.shape} {where}; it must return one "
            "scalar (did you forget to sum or average over the examples?)",
            flat_index=i,
        )
    raise CostTypeError(
        f"the cost returned {type(value).__name__} {value!r:.60} {where}; it must return a "
        "float scalar",
        flat_index=i,
    )


def _where(layout: Layout, i: int) -> str:
    name, index = layout.locate(i)
    return f"with theta[{i}] (params[{name!r}]{list(index)}) perturbed"


def resolve_engine(engine: str | None, cost: Cost) -> str:
    """The engine that will run ``cost``, or an :class:`EngineError` saying why none can."""
    requested = "auto" if engine is None else str(engine).strip().lower()
    # Errors name where the request came from: the argument, or the environment variable.
    source = "engine"
    if requested == "auto":
        requested, source = _environment_engine(), "FASTGC_ENGINE"
    if requested not in ("auto",) + ENGINES:
        raise InvalidInputError(
            f"{source} must be one of {('auto',) + ENGINES}, got {requested!r}"
        )
    if requested == "auto":
        if cost.kind == "numba" and engine_status("numba") is None:
            return "numba"
        if engine_status("cython") is None:
            return "cython"
        return "python"
    reason = engine_status(requested)
    if reason is not None:
        raise EngineError(f"{source}={requested!r} is not available: {reason}")
    if requested == "numba" and cost.kind != "numba":
        advice = "" if source == "engine" else " (or unset FASTGC_ENGINE)"
        raise EngineError(
            f"{source}='numba' runs a cost compiled with @numba.njit taking the flat theta, "
            f"cost(theta, *args); this cost is a {_kind_name(cost.kind)}. Pass engine='cython' "
            f"or engine='python' (or 'auto'){advice}"
        )
    return requested


def _kind_name(kind: str) -> str:
    return {"c": "C-level function", "python": "Python callable", "numba": "Numba function"}[kind]


def chunk_count(engine: str, n_threads: int) -> int:
    """How many private copies of theta (and parallel chunks) the engine works with."""
    return 1 if engine == "python" else n_threads


def make_runner(engine: str, cost: Cost, work: np.ndarray, parallel: bool = True) -> Runner:
    """A function ``run(indices, steps, approx, failed)`` that does one round of the check."""
    n_chunks = work.shape[0]
    if engine == "numba":
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
    if engine == "cython":
        from . import _core

        threads = n_chunks if parallel else 1
        if cost.kind == "c":
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
    evaluate = cost.evaluator(work)

    def run_reference(indices, steps, approx, failed):
        _reference.central_differences(evaluate, work, indices, steps, approx, failed)

    return run_reference


def block_norms(engine: str, approx: np.ndarray, dtheta: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Squared norms (difference, approx, dtheta) per block, computed by the engine's kernel."""
    norms = np.zeros((offsets.shape[0] - 1, 3))
    if engine == "numba":
        from ._numba_kernels import block_norms as kernel
    elif engine == "cython":
        from ._core import block_norms as kernel
    else:
        kernel = _reference.block_norms
    kernel(approx, dtheta, offsets, norms)
    return norms


def show_config(file: Any = None) -> None:
    """Print which engines can run here, and the threading facts that decide speed.

    Examples
    --------
    >>> import fastgc
    >>> fastgc.show_config()  # doctest: +ELLIPSIS
    fastgc ...
    """
    import platform

    from . import __version__
    from ._threads import usable_threads

    lines = [f"fastgc {__version__} on Python {platform.python_version()} ({platform.machine()})"]
    for name in ENGINES:
        reason = engine_status(name)
        lines.append(f"  engine {name:<7} {'available' if reason is None else 'unavailable: ' + reason}")
    if engine_status("numba") is None:
        import numba

        try:
            layer = numba.threading_layer()
        except ValueError:
            layer = f"not chosen yet (configured: {numba.config.THREADING_LAYER})"
        lines.append(f"  numba {numba.__version__}, threading layer {layer}, "
                     f"NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}")
    if engine_status("cython") is None:
        from . import _core

        openmp = (
            f"OpenMP on, {_core.openmp_max_threads()} thread(s) at most"
            if _core.openmp_enabled()
            else "OpenMP off (built without it: the Cython engine runs serially)"
        )
        lines.append(f"  cython extension: {openmp}")
    lines.append(f"  usable threads: {usable_threads()}; FASTGC_ENGINE={_environment_engine()}")
    print("\n".join(lines), file=file)
