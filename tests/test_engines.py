"""Engines: cheap import, how the engine is resolved, what happens without Numba or without the
extension, C-level costs compiled from C, and agreement of the engines with each other."""

from __future__ import annotations

import ctypes
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgc
import models
from conftest import TWO_THREADS, check, require_engine
from costs import C_SIGNATURE, load_sine_cost, python_sine_cost, sine_problem
from fastgc import engines as _engines
from fastgc._threads import usable_threads
from processes import run_python

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


def test_ctypes_cost_with_the_wrong_signature_states_expected_and_received(c_library):
    params, a, grads = sine_problem()
    expected = (r"double \(\*\)\(const double \*theta, Py_ssize_t n, void \*data\), that is "
                r"CFUNCTYPE\(c_double, POINTER\(c_double\), c_ssize_t, c_void_p\)")
    float_pointer = load_sine_cost(
        c_library, argtypes=[ctypes.POINTER(ctypes.c_float), ctypes.c_ssize_t, ctypes.c_void_p]
    )
    with pytest.raises(fastgc.CostTypeError,
                       match=rf"float64 theta must have the signature {expected}; the ctypes "
                             r"function pointer given has the signature "
                             r"c_double \(\*\)\(LP_c_float, c_\w+, c_void_p\)$"):
        check(float_pointer, params, grads, args=(a,))
    untyped = load_sine_cost(c_library, restype=ctypes.c_double, argtypes=None)
    with pytest.raises(fastgc.FastGCError, match=r"given has the signature "
                                                 r"c_double \(\*\)\(unknown \(argtypes not set\)\)"):
        check(untyped, params, grads, args=(a,))
    # The right function for float64 is the wrong one for float32 parameters.
    params32 = {name: value.astype(np.float32) for name, value in params.items()}
    with pytest.raises(fastgc.CostTypeError,
                       match=r"float32 theta must have the signature double \(\*\)\(const "
                             r"float \*theta.*given has the signature c_double \(\*\)\("
                             r"LP_c_double"):
        check(load_sine_cost(c_library), params32, grads, args=(a,))


def test_strided_data_array_of_a_c_cost_is_rejected(c_library):
    # The C cost reads `void *data` without strides; a strided view would be read wrongly.
    params, a, grads = sine_problem()
    strided = np.repeat(a, 2)[::2]
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"args=\(array,\) of a C-level cost .* must be contiguous"):
        check(load_sine_cost(c_library), params, grads, args=(strided,))
    assert check(load_sine_cost(c_library), params, grads,
                 args=(np.ascontiguousarray(strided),)).verdict == "correct"


# --- without Numba, without the extension ------------------------------------------------------

BLOCK_NUMBA = 'import sys\nsys.modules["numba"] = None  # importing numba now fails\n'
BLOCK_CORE = 'sys.modules["fastgc._core"] = None  # the extension is not built\n'

C_COST_SCRIPT = """
import ctypes, io, json, sys
import numpy as np
import fastgc
from costs import load_sine_cost, sine_problem

cost = load_sine_cost(sys.argv[1])
params, a, grads = sine_problem(1)
wrong = {"dW": grads["dW"], "db": -grads["db"]}
good = fastgc.check(cost, params, grads, args=(a,), n_threads=int(sys.argv[2]), progress=False)
bad = fastgc.check(cost, params, wrong, args=(a,), n_threads=int(sys.argv[2]), progress=False)
errors = {}
for engine in ("numba", "cython"):
    try:
        fastgc.check(cost, params, grads, args=(a,), engine=engine, progress=False)
    except fastgc.FastGCError as error:
        errors[engine] = f"{type(error).__name__}: {error}"
config = io.StringIO()
fastgc.show_config(file=config)
print(json.dumps({
    "engine": good.engine, "n_threads": good.n_threads, "verdict": str(good.verdict),
    "bad_verdict": str(bad.verdict), "bad_worst": bad.worst_parameter().name,
    "approx": [value.hex() for value in good.approx], "errors": errors,
    "config": config.getvalue(),
    "numba_loaded": [m for m in sys.modules if m.split(".")[0] in ("numba", "llvmlite")
                     and sys.modules[m] is not None],
}))
"""


def python_engine_approx(c_library) -> list[str]:
    params, a, grads = sine_problem(1)
    result = check(load_sine_cost(c_library), params, grads, args=(a,), engine="python")
    return [value.hex() for value in result.approx]


def test_without_numba_auto_runs_a_c_cost_in_the_cython_engine_in_parallel(c_library):
    require_engine("cython")
    outcome = run_python(C_COST_SCRIPT, str(c_library), str(TWO_THREADS), prelude=BLOCK_NUMBA)
    assert outcome["numba_loaded"] == []
    assert outcome["engine"] == "cython"
    assert outcome["n_threads"] == TWO_THREADS
    assert (outcome["verdict"], outcome["bad_verdict"], outcome["bad_worst"]) == (
        "correct", "bug", "b")
    assert outcome["approx"] == python_engine_approx(c_library)
    assert outcome["errors"].keys() == {"numba"}
    assert outcome["errors"]["numba"].startswith(
        "EngineError: engine='numba' is not available: Numba cannot be imported")
    assert "pip install numba" in outcome["errors"]["numba"]
    config = outcome["config"]
    assert "engine numba   unavailable: Numba cannot be imported" in config
    assert "engine cython  available" in config
    assert "engine python  available" in config
    assert "cython extension: OpenMP" in config


def test_without_numba_or_the_extension_auto_falls_back_to_python(c_library):
    outcome = run_python(C_COST_SCRIPT, str(c_library), str(TWO_THREADS),
                         prelude=BLOCK_NUMBA + BLOCK_CORE)
    assert outcome["numba_loaded"] == []
    assert outcome["engine"] == "python"
    assert outcome["n_threads"] == 1
    assert (outcome["verdict"], outcome["bad_verdict"], outcome["bad_worst"]) == (
        "correct", "bug", "b")
    assert outcome["approx"] == python_engine_approx(c_library)
    assert outcome["errors"]["cython"].startswith(
        "EngineError: engine='cython' is not available: the compiled extension fastgc._core "
        "is not built")
    config = outcome["config"]
    assert "engine numba   unavailable: Numba cannot be imported" in config
    assert "engine cython  unavailable: the compiled extension fastgc._core is not built" in config
    assert "FASTGC_REQUIRE_CYTHON=1 pip install ." in config
    assert "engine python  available" in config


def test_show_config_reports_every_engine_and_openmp():
    for name in _engines.ENGINES:
        require_engine(name)
    from fastgc import _core

    output = io.StringIO()
    fastgc.show_config(file=output)
    text = output.getvalue()
    for name in _engines.ENGINES:
        assert f"engine {name:<7} available" in text
    assert "unavailable" not in text
    import numba

    assert f"numba {numba.__version__}, threading layer" in text
    if _core.openmp_enabled():
        assert f"cython extension: OpenMP on, {_core.openmp_max_threads()} thread(s)" in text
    else:
        assert "cython extension: OpenMP off" in text
    assert f"usable threads: {usable_threads()};" in text


# --- agreement between engines -----------------------------------------------------------------


@pytest.mark.parametrize("n_threads", sorted({1, TWO_THREADS}))
def test_cython_engine_with_a_compiled_c_cost_matches_the_python_engine_bitwise(c_library,
                                                                              n_threads):
    require_engine("cython")
    params, a, grads = sine_problem(2)
    grads["dW"] = grads["dW"].copy()
    grads["dW"][4, 5] += 1e-3  # one wrong component, so the verdict is not trivially correct
    reference = check(load_sine_cost(c_library), params, grads, args=(a,), engine="python")
    result = check(load_sine_cost(c_library), params, grads, args=(a,), engine="cython",
                   n_threads=n_threads)
    assert result.n_threads == n_threads
    np.testing.assert_array_equal(result.approx, reference.approx)
    assert result.difference == reference.difference
    assert result.verdict == reference.verdict != "correct"
    assert result.worst(1)[0].name == "W" and result.worst(1)[0].index == (4, 5)


def random_mlp(seed: int, n_in: int, n_out: int, m: int, scale: float):
    """An MLP of models' fixed hidden width with the given shapes and random values."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_in, m))
    # Fortran order, as in models.make_mlp, so Numba reuses the kernel compiled for that layout.
    Y = np.asfortranarray(np.eye(n_out)[:, rng.integers(0, n_out, size=m)])
    params = {
        "W1": rng.standard_normal((models.N_HIDDEN, n_in)) * scale,
        "b1": rng.standard_normal((models.N_HIDDEN, 1)) * 0.1,
        "W2": rng.standard_normal((n_out, models.N_HIDDEN)) * scale,
        "b2": rng.standard_normal((n_out, 1)) * 0.1,
    }
    return params, X, Y


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_in=st.integers(1, 4),
    n_out=st.integers(2, 4),
    m=st.integers(2, 6),
    scale=st.floats(0.1, 2.0),
)
def test_engines_agree_and_threads_do_not_change_results(seed, n_in, n_out, m, scale):
    for name in _engines.ENGINES:
        require_engine(name)
    params, X, Y = random_mlp(seed, n_in, n_out, m, scale)
    cost = models.numba_cost()  # an njit cost every engine can call
    grads = models.grads(params, X, Y)
    approx = {}
    for engine in _engines.ENGINES:
        one = check(cost, params, grads, args=(X, Y), engine=engine, n_threads=1)
        two = check(cost, params, grads, args=(X, Y), engine=engine, n_threads=TWO_THREADS)
        assert one.engine == two.engine == engine
        np.testing.assert_array_equal(one.approx, two.approx, err_msg=engine)
        assert one.difference == two.difference
        assert one.verdict == "correct"
        approx[engine] = one.approx
    reference = approx["python"]
    for engine in ("numba", "cython"):
        np.testing.assert_allclose(approx[engine], reference, rtol=1e-12,
                                   atol=1e-12 * np.abs(reference).max(), err_msg=engine)


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
