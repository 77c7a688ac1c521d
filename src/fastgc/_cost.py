"""The user's cost: what kind of function it is, how it is called, and what it returns.

Three kinds, one vocabulary (:class:`CostKind`) for the whole package:

- ``njit``: an ``@numba.njit`` ``cost(theta, *args)`` of the flat theta, which the Numba
  engine calls from compiled code;
- ``c``: a C-level ``double cost(const double *theta, Py_ssize_t n, void *data)`` (a Numba
  ``@cfunc`` or a ctypes function pointer; ``const float *`` for float32), which the Cython
  engine calls without the GIL;
- ``python``: any other callable, ``cost(params, *args)`` with views in the user's structure.

Here too: the baseline evaluations at theta (value, time, compile time), the checks on what a
cost returns, and the messages that say why an evaluation failed and where.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import functools
import math
import numbers
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import numpy as np

from ._errors import CostError, CostTypeError, InvalidInputError
from ._layout import Layout, flatten_gradients
from ._threads import interrupts_deferred
from ._validation import exception_text, where_in_params


class CostKind(str, enum.Enum):
    """What kind of function the cost is, which decides the engines that can run it."""

    NJIT = "njit"
    C = "c"
    PYTHON = "python"

    @property
    def description(self) -> str:
        return _KIND_DESCRIPTIONS[self]


_KIND_DESCRIPTIONS = {
    CostKind.NJIT: "Numba function",
    CostKind.C: "C-level function",
    CostKind.PYTHON: "Python callable",
}


def is_numba_dispatcher(function: object) -> bool:
    """True for an ``@numba.njit`` function, recognised without importing Numba."""
    module = type(function).__module__ or ""
    return module.startswith("numba.") and hasattr(function, "py_func")


@dataclass
class Cost:
    """The user's cost, classified, with the arguments it is called with."""

    function: Callable[..., Any]
    args: tuple
    layout: Layout
    kind: CostKind
    address: int = 0
    data_address: int = 0
    reseed: Callable[[], Any] | None = None  # called before every evaluation

    @classmethod
    def classify(
        cls, function: object, args: tuple, layout: Layout,
        reseed: Callable[[], Any] | None = None,
    ) -> "Cost":
        if is_numba_dispatcher(function):
            return cls(function, args, layout, CostKind.NJIT,  # type: ignore[arg-type]
                       reseed=reseed)
        from ._ccost import c_cost_pointer

        try:
            address = c_cost_pointer(function, layout.dtype)
        except (TypeError, ValueError) as error:
            raise CostTypeError(f"cost: {error}") from error
        if address is not None:
            return cls(function, args, layout, CostKind.C, address,  # type: ignore[arg-type]
                       _data_address(args), reseed)
        if not callable(function):
            raise InvalidInputError(
                f"cost must be callable (cost(params, *args) -> float), got "
                f"{type(function).__name__}"
            )
        return cls(function, args, layout, CostKind.PYTHON, reseed=reseed)

    @property
    def may_keep_state(self) -> bool:
        """A Python cost may keep state between calls (a layer caching its activations)."""
        return self.kind is CostKind.PYTHON

    def structure(self, theta: np.ndarray) -> Any:
        """What the cost is called with for the flat ``theta``: the user's structure of views
        for a Python cost, theta itself for a compiled one."""
        return self.layout.unflatten(theta) if self.kind is CostKind.PYTHON else theta

    def call(self, theta: np.ndarray) -> Any:
        """The cost at ``theta`` (a flat, contiguous array), as the user's function returns it."""
        if self.reseed is not None:
            self.reseed()
        if self.kind is CostKind.PYTHON:
            return self.function(self.layout.unflatten(theta), *self.args)
        if self.kind is CostKind.NJIT:
            return self.function(theta, *self.args)
        return _c_callable(self.address, self.layout.dtype)(
            theta.ctypes.data, theta.shape[0], self.data_address or None
        )

    def value_at(self, theta: np.ndarray, i: int | None) -> float:
        """The validated cost at ``theta``; ``i`` is the component moved, for messages."""
        return cost_value(self.call(theta), self.layout, i)

    def evaluator(self, work: np.ndarray) -> Callable[[int, int], float]:
        """``evaluate(chunk, i)``: the validated cost at ``work[chunk]`` (theta[i] perturbed)."""
        slots: list[list[tuple[Any, Any, np.ndarray, str]]] = [[] for _ in work]
        if self.kind is CostKind.PYTHON and self.reseed is None:
            # One structure of views per copy, reused for every evaluation: each of its arrays
            # must still be fastgc's view afterwards, or later evaluations read a stale copy.
            targets = [self.layout.unflatten(row) for row in work]
            slots = [list(view_slots(target)) for target in targets]
            function, args = self.function, self.args
        elif self.kind is CostKind.NJIT and self.reseed is None:
            targets = list(work)
            function, args = self.function, self.args  # what call does, one call fewer
        else:
            targets = list(work)
            function, args = self.call, ()

        def evaluate(chunk: int, i: int) -> float:
            try:
                value = function(targets[chunk], *args)
            except Exception as error:
                name, index = self.layout.locate(i)
                raise CostError(
                    f"the cost raised {type(error).__name__}: {exception_text(error)} (while "
                    f"theta[{i}], "
                    f"{where_in_params(self.layout, i)}, was perturbed)",
                    flat_index=int(i), location=(name, index),
                ) from error
            for container, key, view, where in slots[chunk]:
                if not _still_holds(container, key, view):
                    raise _replaced_error(where, self.layout, i)
            return cost_value(value, self.layout, i)

        return evaluate

    def n_compiled(self) -> int:
        """How many specialisations a Numba cost has compiled (0 for other costs)."""
        if self.kind is not CostKind.NJIT:
            return 0
        # The dispatcher's dict of compiled versions: its ``signatures`` list is rebuilt on
        # every read, some microseconds that a check would pay twice.
        overloads = getattr(self.function, "overloads", None)
        if isinstance(overloads, dict):
            return len(overloads)
        return len(getattr(self.function, "signatures", ()))


def view_slots(structure: Any, where: str = "params") -> Any:
    """``(container, key, array, where)`` for every array held in a dict or a list of
    ``structure`` (the places a cost could rebind), ``where`` spelled like ``params['W1']``."""
    if isinstance(structure, dict):
        items: Any = structure.items()
    elif isinstance(structure, (list, tuple)):
        items = enumerate(structure)
    else:
        return
    for key, value in items:
        place = f"{where}[{key!r}]"
        if isinstance(value, np.ndarray):
            if not isinstance(structure, tuple):  # a tuple cannot be rebound
                yield structure, key, value, place
        else:
            yield from view_slots(value, place)


def _still_holds(container: Any, key: Any, view: np.ndarray) -> bool:
    try:
        return container[key] is view
    except (KeyError, IndexError):
        return False


def _replaced_error(where: str, layout: Layout, i: int) -> CostError:
    return CostError(
        f"the cost replaced {where} in the parameters it was handed (it assigned a new array "
        f"to that entry, while theta[{i}], {where_in_params(layout, i)}, was perturbed): the "
        "same structure of views is handed to every evaluation, so later ones would read the "
        "replacement and the numeric gradients would be wrong. Copy into a local name "
        "instead (W1 = p['W1'] * 1.0), or copy the structure first (p = dict(p))",
        flat_index=int(i), location=layout.locate(i),
    )


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
    where = (
        "at the unperturbed parameters" if i is None
        else f"with theta[{i}] ({where_in_params(layout, i)}) perturbed"
    )
    if isinstance(value, (bool, np.bool_, numbers.Integral)):
        raise CostTypeError(
            f"the cost returned {type(value).__name__} {value!r} {where}; it must return a "
            "float (an integer cost cannot be differentiated numerically)",
            flat_index=i,
        )
    array = _as_array(value, where, i) if hasattr(value, "__array__") else None
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


def _as_array(value: Any, where: str, i: int | None) -> np.ndarray:
    try:
        return np.asarray(value)
    except Exception as error:  # a torch tensor that requires grad, say
        raise CostTypeError(
            f"the cost returned a {type(value).__name__} that cannot be read as a number "
            f"{where} ({type(error).__name__}: {exception_text(error)}); return a float "
            "(for a tensor, loss.item())",
            flat_index=i,
        ) from error


def analytic_gradients(
    grads: Any, theta: np.ndarray, layout: Layout, args: tuple
) -> tuple[np.ndarray, tuple[str, ...]]:
    """dtheta (flat float64) and the names of gradient entries that match no parameter.

    ``grads`` is taken as given, or called once like a cost, on a copy of theta (the flat
    theta for an njit function, else the user's structure)."""
    if callable(grads) and not isinstance(grads, np.ndarray):
        snapshot = theta.copy()
        target = snapshot if is_numba_dispatcher(grads) else layout.unflatten(snapshot)
        try:
            grads = grads(target, *args)
        except Exception as error:
            raise InvalidInputError(
                f"grads(params) raised {type(error).__name__}: {exception_text(error)}"
            ) from error
    return flatten_gradients(grads, layout)


@dataclass(frozen=True)
class Baseline:
    """The cost at the unperturbed theta, measured before any perturbation."""

    value: float  # J(theta)
    seconds: float  # one evaluation, the faster of two
    compile_seconds: float  # what the first evaluation spent compiling (Numba costs)


def measure_baseline(cost: Cost, theta: np.ndarray) -> Baseline:
    """Evaluate the cost twice at theta: it must be finite, a float of theta's precision and
    the same both times (a stochastic cost is refused)."""
    timings: list[float] = []
    values: list[float] = []
    compiled_before = cost.n_compiled()
    for attempt in range(2):  # the first may compile; both must agree
        probe = theta.copy()
        started = time.perf_counter()
        try:
            # The second call has the first one's argument types: nothing left to compile.
            with _compiling(cost) if attempt == 0 else contextlib.nullcontext():
                raw = cost.call(probe)
        except Exception as error:
            raise CostError(
                f"the cost raised {type(error).__name__} at the unperturbed parameters: "
                f"{exception_text(error)}"
            ) from error
        timings.append(time.perf_counter() - started)
        values.append(_baseline_value(raw, cost.layout, values))
    seconds = min(timings)
    compiled = cost.n_compiled() != compiled_before
    compile_seconds = max(0.0, timings[0] - seconds) if compiled else 0.0
    return Baseline(values[-1], seconds, compile_seconds)


def _compiling(cost: Cost) -> ContextManager[None]:
    """Ctrl-C deferred while an njit cost may compile (the first evaluation): interrupted
    half-way, Numba's compiler can leave its state corrupt. One evaluation, then it is seen."""
    return interrupts_deferred() if cost.kind is CostKind.NJIT else contextlib.nullcontext()


def _baseline_value(raw: Any, layout: Layout, earlier: list[float]) -> float:
    value = cost_value(raw, layout, None)
    # A Python float (the usual value) has no dtype: the layout's is not even looked at.
    if getattr(raw, "dtype", None) == np.float32 and layout.dtype == np.float64:
        raise CostTypeError(
            "the cost returned a float32 value for float64 parameters: float32 round-off "
            "swamps a finite difference at float64 steps; return a float64 (or give float32 "
            "parameters, for which fastgc chooses larger steps)"
        )
    if not math.isfinite(value):
        raise CostError(
            f"the cost is {value} at the unperturbed parameters; it must be finite there"
        )
    if earlier and value != earlier[0]:
        raise CostError(
            f"the cost returned {earlier[0]!r} and then {value!r} for the same parameters: "
            "it is not deterministic. Fix its random state (dropout masks, sampling) or "
            "pass reseed= to reset it before every evaluation"
        )
    return value


def describe_failure(cost: Cost, theta: np.ndarray, i: int, step: float) -> None:
    """Raise the :class:`CostError` that says why component ``i`` had no finite difference:
    the step vanished in theta's dtype, or the cost is not finite on one side."""
    name, index = cost.layout.locate(i)
    where = f"theta[{i}] ({where_in_params(cost.layout, i)})"
    probe = theta.copy()
    saved = probe[i]
    probe[i] = saved + np.float64(step)
    upper = probe[i]
    probe[i] = saved - np.float64(step)
    lower = probe[i]
    if upper == lower:
        raise CostError(
            f"the step {step:g} vanishes at {where} = {saved!r} in {theta.dtype}: "
            "pass a larger eps (or leave eps=None for a step scaled to |theta_i|)",
            flat_index=i, location=(name, index),
        )
    for sign, value in (("+", upper), ("-", lower)):
        probe[i] = value
        result = cost.value_at(probe, i)
        if not math.isfinite(result):
            raise CostError(
                f"the cost returned {result} when {where} was moved by {sign}{step:g}; "
                "it must stay finite near the parameters (clip logs, use a stable softmax)",
                flat_index=i, location=(name, index),
            )
    raise CostError(
        f"the cost was not finite near {where} in the parallel run but is when re-evaluated: "
        "is the cost deterministic and free of shared state?",
        flat_index=i, location=(name, index),
    )
