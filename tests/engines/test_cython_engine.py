"""The Cython engine (``fastgc/engines/cython.py``, the extension ``fastgc._core``): a C cost
run in parallel without Numba and bitwise as the Python engine runs it, and the fallback to
Python when the extension is not built."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TWO_THREADS, check, require_engine
from costs import load_sine_cost, sine_problem
from processes import run_python


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


# --- agreement with the Python engine ----------------------------------------------------------


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


# --- OpenMP -----------------------------------------------------------------------------------


def test_openmp_queries(core):
    assert isinstance(core.openmp_enabled(), bool)
    assert isinstance(core.openmp_max_threads(), int)
    assert core.openmp_max_threads() >= 1
