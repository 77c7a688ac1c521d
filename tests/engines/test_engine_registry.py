"""The engine registry (``fastgc/engines/__init__.py``): which engine runs a check.

``import fastgc`` loads no compiled engine; then the ``engine`` argument, else
``FASTGC_ENGINE`` (read once per process), else the first of numba, cython and python that is
available and can run the cost; a wrong name gets a message listing the allowed ones.
"""

from __future__ import annotations

import ctypes

import pytest

import fastgc
import models
from conftest import TWO_THREADS, check, check_option, require_engine
from costs import C_SIGNATURE, load_sine_cost, python_sine_cost, sine_problem
from fastgc import engines as _engines
from processes import run_python

pytestmark = pytest.mark.usefixtures("no_thread_default")

ALLOWED = r"\('auto', 'numba', 'cython', 'python'\)"


# --- import -----------------------------------------------------------------------------------


def test_import_loads_neither_numba_nor_the_extension():
    loaded = run_python(
        """
        import json, sys
        import fastgc
        at_import = sorted(sys.modules)
        import numpy as np
        params = {"W": np.ones((2, 3)), "b": np.zeros((2, 1))}
        theta, layout = fastgc.flatten(params)
        fastgc.set_num_threads(1)
        result = fastgc.check(lambda p: float(np.sum(p["W"] ** 2) + np.sum(p["b"])), params,
                              {"dW": 2 * params["W"], "db": np.ones((2, 1))},
                              engine="python", progress=False)
        print(json.dumps({"at_import": at_import, "after_python_check": sorted(sys.modules),
                          "verdict": str(result.verdict)}))
        """
    )
    compiled = ("numba", "llvmlite", "fastgc._core", "fastgc.engines._numba_kernels")
    for name in compiled:
        assert not [m for m in loaded["at_import"] if m == name or m.startswith(name + ".")]
    assert "fastgc._check" in loaded["at_import"]  # the import itself did happen
    # Nor does a check on the pure-Python engine need Numba.
    assert not [m for m in loaded["after_python_check"] if m.split(".")[0] in ("numba", "llvmlite")]
    assert loaded["verdict"] == "correct"


# --- engine resolution ------------------------------------------------------------------------


@pytest.mark.parametrize("kind, expected", [
    ("njit", "numba"), ("cfunc", "cython"), ("ctypes", "cython"), ("ctypes-callback", "cython"),
    ("python", "cython"),
])
def test_auto_picks_the_engine_for_the_kind_of_cost(no_engine_variable, c_library, kind,
                                                    expected):
    require_engine("cython")
    if kind in ("njit", "cfunc"):
        require_engine("numba")
        params, X, Y = models.make_mlp(0)
        cost, args = (models.numba_cost(), (X, Y)) if kind == "njit" else (models.c_cost(X, Y), ())
        grads = models.grads(params, X, Y)
    elif kind == "python":
        params, X, Y = models.make_mlp(0)
        cost, args, grads = models.cost, (X, Y), models.grads(params, X, Y)
    else:
        params, a, grads = sine_problem()
        args = (a,)
        cost = (load_sine_cost(c_library) if kind == "ctypes"
                else ctypes.CFUNCTYPE(C_SIGNATURE[0], *C_SIGNATURE[1])(python_sine_cost))
    for engine in (None, "auto", " AUTO "):
        result = check(cost, params, grads, args=args, engine=engine, n_threads=TWO_THREADS)
        assert result.engine == expected
        assert result.verdict == "correct"
        assert result.n_threads == TWO_THREADS


def test_engine_argument_beats_the_environment_variable(no_engine_variable):
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    no_engine_variable.setenv("FASTGC_ENGINE", " Python ")
    _engines.environment_engine.cache_clear()
    assert check(models.cost, params, grads, args=(X, Y)).engine == "python"
    assert check(models.cost, params, grads, args=(X, Y), engine="auto").engine == "python"
    if _engines.engine_status("cython") is None:
        assert check(models.cost, params, grads, args=(X, Y), engine="cython").engine == "cython"
    # The variable is read once: changing it later has no effect until the cache is cleared.
    no_engine_variable.setenv("FASTGC_ENGINE", "no-such-engine")
    assert check(models.cost, params, grads, args=(X, Y)).engine == "python"
    _engines.environment_engine.cache_clear()
    with pytest.raises(fastgc.InvalidInputError,
                       match=rf"^FASTGC_ENGINE must be one of {ALLOWED}, got 'no-such-engine'$"):
        check(models.cost, params, grads, args=(X, Y))
    # engine="AUTO" defers to the variable too, so the message must blame the variable.
    with pytest.raises(fastgc.InvalidInputError, match=r"^FASTGC_ENGINE must be one of"):
        check(models.cost, params, grads, args=(X, Y), engine="AUTO")
    # An explicit engine never reads the broken variable.
    assert check(models.cost, params, grads, args=(X, Y), engine="python").engine == "python"


def test_environment_variable_selects_the_engine_in_a_fresh_process():
    require_engine("cython")
    outcome = run_python(
        """
        import json, os
        import fastgc, models
        params, X, Y = models.make_mlp(0)
        grads = models.grads(params, X, Y)
        def engine(**options):
            return fastgc.check(models.cost, params, grads, args=(X, Y), progress=False,
                                **options).engine
        first = engine()
        explicit = engine(engine="cython")
        os.environ["FASTGC_ENGINE"] = "cython"  # read once: too late to matter
        later = engine()
        print(json.dumps({"first": first, "explicit": explicit, "later": later}))
        """,
        env={"FASTGC_ENGINE": "python"},
    )
    assert outcome == {"first": "python", "explicit": "cython", "later": "python"}


def test_environment_numba_with_a_python_cost_names_the_variable(no_engine_variable):
    params, X, Y = models.make_mlp(0)
    no_engine_variable.setenv("FASTGC_ENGINE", "numba")
    _engines.environment_engine.cache_clear()
    require_engine("numba")
    with pytest.raises(fastgc.EngineError,
                       match=r"^FASTGC_ENGINE='numba' runs a cost compiled with @numba\.njit.*"
                             r"\(or unset FASTGC_ENGINE\)$"):
        check(models.cost, params, models.grads(params, X, Y), args=(X, Y))


@pytest.mark.parametrize("engine", ["gpu", "Cuda", "", "numba-parallel", 3])
def test_invalid_engine_names_list_the_allowed_values(engine):
    params, X, Y = models.make_mlp(0)
    received = repr(str(engine).strip().lower())
    with pytest.raises(fastgc.InvalidInputError,
                       match=rf"^engine must be one of {ALLOWED}, got {received}$"):
        check(models.cost, params, models.grads(params, X, Y), args=(X, Y), engine=engine)


@pytest.mark.parametrize("engine_name", ["fortran", "", 3])
def test_unknown_engine(inputs, engine_name):
    with pytest.raises(fastgc.InvalidInputError, match=r"engine must be one of"):
        check_option(inputs, engine=engine_name)


# --- hooks ------------------------------------------------------------------------------------


def test_reseed_with_a_parallel_engine(inputs):
    with pytest.raises(fastgc.EngineError, match=r"reseed .* pass engine='python'"):
        check_option(inputs, engine="cython", reseed=lambda: None)
