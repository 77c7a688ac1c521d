"""The Numba engine (``fastgc/engines/numba.py``): what it says of a cost it cannot run, and
its kernels compiled once per cost and argument types."""

from __future__ import annotations

import numpy as np
import pytest

import fastgc
import models
from conftest import assert_untouched, check, check_option, require_engine
from costs import OK, c_cost, load_sine_cost, sine_problem

pytestmark = pytest.mark.usefixtures("no_thread_default")


@pytest.mark.parametrize("kind, described", [
    ("python", "Python callable"), ("cfunc", "C-level function"), ("ctypes", "C-level function"),
])
def test_numba_engine_with_a_cost_it_cannot_run_says_what_to_pass(no_engine_variable, c_library,
                                                                  kind, described):
    require_engine("numba")
    if kind == "ctypes":
        params, a, grads = sine_problem()
        cost, args = load_sine_cost(c_library), (a,)
    else:
        params, X, Y = models.make_mlp(0)
        grads = models.grads(params, X, Y)
        cost, args = (models.cost, (X, Y)) if kind == "python" else (models.c_cost(X, Y), ())
    with pytest.raises(
        fastgc.EngineError,
        match=rf"^engine='numba' runs a cost compiled with @numba\.njit taking the flat theta, "
              rf"cost\(theta, \*args\); this cost is a {described}\. Pass engine='cython' or "
              rf"engine='python' \(or 'auto'\)$",
    ):
        check(cost, params, grads, args=args, engine="numba")


def test_numba_engine_with_a_plain_python_cost_says_what_to_pass(inputs):
    require_engine("numba")
    with pytest.raises(
        fastgc.EngineError,
        match=r"engine='numba' runs a cost compiled with @numba.njit .* this cost is a Python "
        r"callable\. Pass engine='cython' or engine='python'",
    ):
        check_option(inputs, engine="numba")


def test_numba_engine_with_a_c_cost_says_what_to_pass(inputs):
    require_engine("numba")
    params, grads, before = inputs
    with pytest.raises(fastgc.EngineError, match=r"this cost is a C-level function"):
        fastgc.check(c_cost(), params, grads, args=(np.array([OK]),), engine="numba",
                     progress=False)
    assert_untouched(params, grads, before)


def test_numba_kernels_are_compiled_once_per_cost_and_argument_types():
    import numba

    @numba.njit
    def cost(theta, X, y):
        residual = X @ theta - y
        return 0.5 * (residual @ residual) / y.shape[0]

    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((9, 4)), rng.standard_normal(9)
    theta = rng.standard_normal(4)

    def exact(X):
        return X.T @ (X @ theta - y) / y.shape[0]

    first = fastgc.check(cost, theta, exact(X), args=(X, y), engine="numba", progress=False)
    again = fastgc.check(cost, theta, exact(X), args=(X, y), engine="numba", progress=False)
    assert first.verdict == again.verdict == "correct"
    assert first.compile_seconds > 0.05  # the cost and the kernel around it were compiled
    assert again.compile_seconds == 0.0  # nothing left to compile, no warm-up run
    np.testing.assert_array_equal(first.approx, again.approx)
    # New argument types (a Fortran-ordered X) compile a new specialisation before the run.
    X_fortran = np.asfortranarray(X)
    other = fastgc.check(cost, theta, exact(X), args=(X_fortran, y), engine="numba",
                         progress=False)
    assert other.verdict == "correct" and other.compile_seconds > 0.05
    assert len(cost.signatures) == 2
