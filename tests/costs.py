"""Test costs shared by several test files, importable in a fresh interpreter too.

- ``sine_cost``, a C function (``C_SOURCE``, compiled by the ``c_library`` fixture) of the
  documented C-cost signature, with its problem and its arithmetic in Python;
- a small tanh model whose cost misbehaves (raises, returns NaN or inf, writes into its
  input) as an int ``mode`` argument says, written three ways: Python, ``@njit``, ``@cfunc``;
- the kernel tests' cost in Python, through ctypes and as a Numba ``@cfunc``, and
  ``kernel_cost``: one compiled cost in the forms every kernel of the ``kernel`` fixture calls.

Nothing here imports Numba until a compiled cost is asked for, so a process that blocks Numba
can still import this module.
"""

from __future__ import annotations

import ctypes
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import fastgc
from fastgc._cost import CostKind

if TYPE_CHECKING:
    from conftest import EngineCase

# --------------------------------------------------------------------------------------------
# A C cost compiled from C.

# A small C cost of the documented signature: J = sum_i a_i sin(theta_i) + (sum_i theta_i)^2 / 2,
# with the coefficients a passed as `void *data`. Its gradient is a_i cos(theta_i) + sum(theta).
C_SOURCE = r"""
#include <math.h>
#include <stddef.h>

double sine_cost(const double *theta, ptrdiff_t n, void *data)
{
    const double *a = (const double *)data;
    double weighted = 0.0, total = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i) {
        weighted += a[i] * sin(theta[i]);
        total += theta[i];
    }
    return weighted + 0.5 * total * total;
}
"""
C_SIGNATURE = (ctypes.c_double, [ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t,
                                 ctypes.c_void_p])


def load_sine_cost(library: Path, restype=C_SIGNATURE[0], argtypes=C_SIGNATURE[1]):
    """A fresh ctypes function pointer to ``sine_cost`` with the given signature."""
    function = ctypes.CDLL(str(library))["sine_cost"]  # [] gives a new, uncached pointer
    function.restype = restype
    if argtypes is not None:
        function.argtypes = argtypes
    return function


def sine_problem(seed: int = 0):
    """Parameters (a dict of two blocks), coefficients a, and the exact gradients."""
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((6, 7)), "b": rng.standard_normal((6, 1))}
    theta = np.concatenate([value.reshape(-1) for value in params.values()])
    a = rng.standard_normal(theta.size)
    dtheta = a * np.cos(theta) + theta.sum()
    grads = {"dW": dtheta[:42].reshape(6, 7), "db": dtheta[42:].reshape(6, 1)}
    return params, a, grads


def python_sine_cost(theta_pointer, n, data):
    """The C cost's arithmetic in Python, for ``ctypes.CFUNCTYPE`` (called back from C)."""
    a = ctypes.cast(data, ctypes.POINTER(ctypes.c_double))
    weighted = total = 0.0
    for i in range(n):
        weighted += a[i] * np.sin(theta_pointer[i])
        total += theta_pointer[i]
    return weighted + 0.5 * total * total


# --------------------------------------------------------------------------------------------
# A cost that fails on demand.

# A two-parameter tanh model over fixed inputs; W1[1, 2] is exactly 0.5 so that a cost can
# misbehave only while that one component is moved up (theta[6] > 0.5).
X = np.linspace(-1.0, 1.0, 4).reshape(4, 1)
TRIGGER_FLAT, TRIGGER = 6, ("W1", (1, 2))

# What the test cost does, selected by an int argument so that one compiled kernel serves all.
OK, RAISE_AT, WRITE, NAN_AT, NAN_BASE, INF_BASE, RAISE_BASE = range(7)


def make_params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    W1 = rng.standard_normal((3, 4)) * 0.5
    W1[1, 2] = 0.5
    return {"W1": W1, "b1": rng.standard_normal((3, 1)) * 0.1}


def exact_grads(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    A = np.tanh(params["W1"] @ X + params["b1"])
    dZ = 2 * A * (1 - A**2)
    return {"dW1": dZ @ X.T, "db1": dZ}


def plain_cost(p):
    return float(np.sum(np.tanh(p["W1"] @ X + p["b1"]) ** 2))


def py_cost(p, mode):
    if mode == RAISE_BASE or (mode == RAISE_AT and p["W1"][1, 2] > 0.5):
        raise ValueError("boom inside the cost")
    if mode == WRITE:
        p["b1"][1, 0] = 7.0
    value = float(np.sum(np.tanh(p["W1"] @ X + p["b1"]) ** 2))
    if mode == NAN_BASE or (mode == NAN_AT and p["W1"][1, 2] > 0.5):
        return math.nan
    if mode == INF_BASE:
        return math.inf
    return value


_compiled: dict[str, object] = {}


def njit_cost():
    """``py_cost`` as an @njit function of the flat theta (W1 then b1, C order)."""
    if "njit" not in _compiled:
        import numba

        @numba.njit(cache=False)
        def flat_cost(theta, mode):  # loops, not W1 @ X: much quicker to compile
            if mode == RAISE_BASE or (mode == RAISE_AT and theta[TRIGGER_FLAT] > 0.5):
                raise ValueError("boom inside the cost")
            if mode == WRITE:
                theta[13] = 7.0
            value = 0.0
            for row in range(3):
                z = theta[12 + row]
                for column in range(4):
                    z += theta[4 * row + column] * X[column, 0]
                value += np.tanh(z) ** 2
            if mode == NAN_BASE or (mode == NAN_AT and theta[TRIGGER_FLAT] > 0.5):
                return np.nan
            if mode == INF_BASE:
                return np.inf
            return value

        _compiled["njit"] = flat_cost
    return _compiled["njit"]


def c_cost():
    """The same as a Numba @cfunc; ``void *data`` points to the int64 mode."""
    if "cfunc" not in _compiled:
        import numba
        from numba import types

        flat_cost = njit_cost()
        signature = types.float64(types.CPointer(types.float64), types.intp, types.voidptr)

        @numba.cfunc(signature)
        def cost_c(theta_pointer, n, data):
            mode = numba.carray(data, (1,), dtype=np.int64)[0]
            return flat_cost(numba.carray(theta_pointer, (n,)), mode)

        _compiled["cfunc"] = cost_c
    return _compiled["cfunc"]


def faulty(case: EngineCase, mode: int):
    """(cost, args) of the test cost for an engine case, misbehaving as ``mode`` says."""
    if case.cost_kind == CostKind.NJIT:
        return njit_cost(), (mode,)
    if case.cost_kind == CostKind.C:
        return c_cost(), (np.array([mode], dtype=np.int64),)
    return py_cost, (mode,)


def check_faulty(case: EngineCase, params, grads, mode: int, **options):
    cost, args = faulty(case, mode)
    return fastgc.check(cost, params, grads, args=args, engine=case.engine, progress=False,
                        **options)


# --------------------------------------------------------------------------------------------
# The kernel tests' cost: in Python, through ctypes, and as a Numba @cfunc.

DTYPES = [np.float64, np.float32]
C_FLOAT = {np.float64: ctypes.c_double, np.float32: ctypes.c_float}


def python_cost(theta, weights):
    """The cost used through ctypes and by the equivalent Python ``evaluate``."""
    x = theta.astype(np.float64)
    return float(np.sum(weights * np.sin(x)) + 0.25 * np.dot(x * x, x))


def make_ctypes_cost(dtype, weights, cost=python_cost):
    prototype = ctypes.CFUNCTYPE(
        ctypes.c_double, ctypes.POINTER(C_FLOAT[dtype]), ctypes.c_ssize_t, ctypes.c_void_p
    )

    def callback(theta_ptr, n, data):
        return cost(np.ctypeslib.as_array(theta_ptr, shape=(n,)), weights)

    return prototype(callback)


def make_numba_cost(numba, dtype, nan_index=-1, nan_above=np.inf):
    """A ``@cfunc`` cost reading its weights through ``data``; NaN when theta[nan_index] is big."""
    from numba import types

    element = types.float64 if dtype == np.float64 else types.float32
    signature = types.float64(types.CPointer(element), types.intp, types.voidptr)

    def cost(theta_ptr, n, data):
        theta = numba.carray(theta_ptr, n)
        weights = numba.carray(data, n, dtype=np.float64)
        if nan_index >= 0 and theta[nan_index] > nan_above:
            return np.nan
        total = 0.0
        for j in range(n):
            x = np.float64(theta[j])
            total += weights[j] * np.sin(x) + 0.25 * x * x * x
        return total

    return numba.cfunc(signature)(cost)


def numba_cost_body(theta, weights):
    """The body of ``make_numba_cost`` as an ordinary function of an array."""
    total = 0.0
    for j in range(theta.shape[0]):
        x = np.float64(theta[j])
        total += weights[j] * np.sin(x) + 0.25 * x * x * x
    return total


def first_coordinate(theta, data):
    """J(theta) = theta[0], in float64."""
    return np.float64(theta[0])


@dataclass(frozen=True)
class KernelCost:
    """A cost ``body(theta, data)`` compiled with Numba, in the two forms the kernels call.

    ``njit`` is what the Numba kernels call, and what the Python-cost kernels call from Python;
    ``cfunc`` is the C function ``double (*)(const T *theta, Py_ssize_t n, void *data)`` that
    ``fastgc._core.central_differences_c`` calls, ``data`` pointing to a float64 array as long
    as theta. The C function calls that same ``njit``, so every kernel gets the same cost
    values, to the bit.
    """

    njit: Any
    cfunc: Any


@functools.lru_cache(maxsize=None)
def kernel_cost(body, dtype, nan_index=-1, nan_above=np.inf) -> KernelCost:
    """``body`` compiled for theta of ``dtype``, NaN when theta[nan_index] > nan_above.

    Compiled once per process: every new compiled cost compiles the Numba kernels again.
    """
    import numba
    from numba import types

    compiled = numba.njit(cache=False)(body)
    if nan_index < 0:
        jitted = compiled
    else:
        @numba.njit(cache=False)
        def jitted(theta, data):
            if theta[nan_index] > nan_above:
                return np.nan
            return compiled(theta, data)

    element = types.float64 if np.dtype(dtype) == np.float64 else types.float32
    signature = types.float64(types.CPointer(element), types.intp, types.voidptr)

    def c_body(theta_pointer, n, data):
        return jitted(numba.carray(theta_pointer, n), numba.carray(data, n, dtype=np.float64))

    return KernelCost(jitted, numba.cfunc(signature)(c_body))
