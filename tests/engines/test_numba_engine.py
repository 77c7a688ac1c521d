"""The Numba engine (``fastgc/engines/numba.py``): what it says of a cost it cannot run, its
kernels compiled once per cost and argument types, and a serial run instead of a deadlock
inside a foreign thread pool under the workqueue threading layer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastgc
import models
from conftest import TWO_THREADS, assert_untouched, check, check_option, require_engine
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


WORKQUEUE_SCRIPT = """
import json
from concurrent.futures import ThreadPoolExecutor
import numba
import numpy as np
import fastgc

@numba.njit
def cost(theta, a):
    return np.sum(a * np.sin(theta)) + 0.5 * np.sum(theta) ** 2

rng = np.random.default_rng(0)
theta, a = rng.standard_normal(40), rng.standard_normal(40)
right = a * np.cos(theta) + theta.sum()
wrong = right.copy()
wrong[7] = -wrong[7]
untouched = theta.tobytes(), right.tobytes(), wrong.tobytes()

def run(k):
    return fastgc.check(cost, theta, wrong if k % 2 else right, args=(a,), engine="numba",
                        n_threads=2, progress=False)

def in_pool(n):
    with ThreadPoolExecutor(max_workers=3) as pool:
        return [f.result(timeout=120) for f in [pool.submit(run, k) for k in range(n)]]

before_any_parallel_region = in_pool(3)
main = run(0)  # the main thread may run the parallel kernel; this picks the layer
layer = numba.threading_layer()
after = in_pool(6)
pooled = before_any_parallel_region + after
print(json.dumps({
    "layer": layer,
    "main_n_threads": main.n_threads,
    "pool_n_threads": sorted({r.n_threads for r in pooled}),
    "verdicts": [str(r.verdict) for r in pooled],
    "worst": sorted({r.worst(1)[0].flat_index for r in pooled if r.verdict == "bug"}),
    "same_approx": all(np.array_equal(r.approx, main.approx) for r in pooled
                       if r.verdict == "correct"),
    "untouched": untouched == (theta.tobytes(), right.tobytes(), wrong.tobytes()),
}))
"""


def test_numba_engine_degrades_to_serial_under_the_workqueue_layer():
    require_engine("numba")
    source = Path(fastgc.__file__).resolve().parent.parent
    environment = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue",
                   "PYTHONPATH": os.pathsep.join(
                       p for p in (str(source), os.environ.get("PYTHONPATH", "")) if p)}
    environment.pop("FASTGC_ENGINE", None)
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WORKQUEUE_SCRIPT)], capture_output=True,
        text=True, env=environment, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    outcome = json.loads(completed.stdout.splitlines()[-1])
    assert outcome["layer"] == "workqueue"
    assert outcome["main_n_threads"] == TWO_THREADS
    assert outcome["pool_n_threads"] == [1]  # serial inside the pool, instead of a deadlock
    assert outcome["verdicts"] == ["correct", "bug", "correct"] + ["correct", "bug"] * 3
    assert outcome["worst"] == [7]
    assert outcome["same_approx"] and outcome["untouched"]


def _kernel_signatures() -> int:
    from fastgc.engines import _numba_kernels

    return len(_numba_kernels.central_differences_at.signatures)


def test_a_second_cost_with_the_same_argument_types_compiles_no_kernel():
    require_engine("numba")
    import numba

    rng = np.random.default_rng(5)
    theta, a = rng.standard_normal(12), rng.standard_normal(12).astype(np.float32)

    @numba.njit
    def first(theta, a, scale):
        return scale * np.sum(a * np.sin(theta))

    @numba.njit
    def second(theta, a, scale):
        return scale * np.sum(a * np.cos(theta))

    args = (a, 3)  # a float32 array and an integer: argument types no other test uses
    right = fastgc.check(first, theta, 3 * a * np.cos(theta), args=args, engine="numba",
                         n_threads=TWO_THREADS, progress=False)
    compiled = _kernel_signatures()
    other = fastgc.check(second, theta, -3 * a * np.sin(theta), args=args, engine="numba",
                         n_threads=TWO_THREADS, progress=False)
    assert right.verdict == other.verdict == "correct"
    assert _kernel_signatures() == compiled  # the kernel compiled for `first` serves `second`
    assert other.compile_seconds < right.compile_seconds  # only `second` itself compiled
    assert len(first.signatures) == len(second.signatures) == 1


def test_a_cost_with_an_explicit_signature_runs_in_a_kernel_specialised_on_it():
    require_engine("numba")
    import numba

    from fastgc.engines._numba_kernels import specialised_kernels

    def sine(theta, a):
        return np.sum(a * np.sin(theta))

    # Compiled for non-contiguous arrays only: there is no specialisation for the kernel's
    # contiguous rows to pass through a function pointer, so Numba converts at each call.
    explicit = numba.njit("float64(float64[:], float64[:])")(sine)
    rng = np.random.default_rng(6)
    theta, a = rng.standard_normal(9), rng.standard_normal(9)
    before = len(specialised_kernels()[0].signatures)
    result = fastgc.check(explicit, theta, a * np.cos(theta), args=(a,), engine="numba",
                          n_threads=TWO_THREADS, progress=False)
    reference = fastgc.check(numba.njit(sine), theta, a * np.cos(theta), args=(a,),
                             engine="numba", n_threads=TWO_THREADS, progress=False)
    assert result.verdict == "correct"
    assert len(specialised_kernels()[0].signatures) == before + 1
    np.testing.assert_array_equal(result.approx, reference.approx)


def test_compiling_the_kernels_warns_of_nothing():
    require_engine("numba")
    import warnings

    import numba

    @numba.njit
    def cost(theta, a, flag):
        return np.sum(a * theta * theta) if flag else 0.0

    theta, a = np.linspace(-1.0, 1.0, 6), np.arange(6.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fastgc.check(cost, theta, 2 * a * theta, args=(a, True), engine="numba",
                              progress=False)  # a bool argument: a new kernel specialisation
    assert result.verdict == "correct" and result.compile_seconds > 0.0
    assert [str(w.message) for w in caught] == []


CACHE_SCRIPT = """
import json
import numba
import numpy as np
import fastgc
from fastgc.engines import _numba_kernels

@numba.njit
def cost(theta, a):
    return np.sum(a * np.sin(theta))

rng = np.random.default_rng(0)
theta, a = rng.standard_normal(30), rng.standard_normal(30)
result = fastgc.check(cost, theta, a * np.cos(theta), args=(a,), engine="numba", n_threads=2,
                      progress=False)
# What a check runs (the loop is inlined into its entry, compiled and cached with it).
kernels = (_numba_kernels.central_differences_at, _numba_kernels.block_norms)
from fastgc.engines.numba import _extension_block_norms
everything = kernels
print(json.dumps({
    "verdict": str(result.verdict),
    "approx": result.approx.tolist(),
    "hits": sum(sum(k.stats.cache_hits.values()) for k in kernels),
    "misses": sum(sum(k.stats.cache_misses.values()) for k in everything),
    "cached": [type(k._cache).__name__ for k in everything],
    # The block norms are Numba's only when the extension, their twin, is not built.
    "numba_norms": _extension_block_norms() is None,
}))
"""


def test_a_new_process_with_a_warm_cache_compiles_nothing_of_fastgcs(tmp_path):
    require_engine("numba")
    from processes import run_python

    environment = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    cold = run_python(CACHE_SCRIPT, env=environment)
    warm = run_python(CACHE_SCRIPT, env=environment)
    assert cold["verdict"] == warm["verdict"] == "correct"
    compiled = 2 if cold["numba_norms"] else 1
    assert cold["misses"] == compiled and cold["hits"] == 0  # compiled, saved in NUMBA_CACHE_DIR
    assert warm["misses"] == 0 and warm["hits"] == compiled  # loaded, nothing compiled
    assert warm["approx"] == cold["approx"]
    assert any((tmp_path / "cache").rglob("*.nbi"))


def test_a_check_writes_nothing_into_the_working_directory(tmp_path):
    require_engine("numba")
    from processes import run_python

    work_dir = tmp_path / "cwd"
    work_dir.mkdir()
    environment = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    assert run_python(CACHE_SCRIPT, env=environment, cwd=work_dir)["verdict"] == "correct"
    outcome = run_python(CACHE_SCRIPT, env={"NUMBA_CACHE_DIR": ""}, cwd=work_dir)
    assert outcome["verdict"] == "correct"
    assert list(work_dir.iterdir()) == []


def test_without_a_writable_place_for_a_cache_the_kernels_compile_in_memory(tmp_path):
    require_engine("numba")
    import shutil

    from processes import run_python

    # A copy of the package where Numba finds no place to write: the cache directory it is
    # given, the __pycache__ beside the kernels and the user's cache directory are all paths
    # through a regular file (which not even root can create directories under).
    package = tmp_path / "site"
    shutil.copytree(Path(fastgc.__file__).resolve().parent, package / "fastgc",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (package / "fastgc" / "engines" / "__pycache__").write_text("")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    environment = {"NUMBA_CACHE_DIR": str(blocker / "cache"), "XDG_CACHE_HOME": str(blocker),
                   "HOME": str(blocker)}
    prelude = f"import sys\nsys.path.insert(0, {str(package)!r})\n"
    outcome = run_python(CACHE_SCRIPT, prelude=prelude, env=environment)
    reference = run_python(CACHE_SCRIPT, env={"NUMBA_CACHE_DIR": str(tmp_path / "cache")})
    assert outcome["verdict"] == "correct"
    assert outcome["cached"] == ["NullCache"] * 2
    assert outcome["approx"] == reference["approx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "cache", "site"]


USER_COST_MODULE = """
import numba
import numpy as np

@numba.njit(cache=True)
def cost(theta, a):
    return np.sum(a * np.sin(theta)) + 0.5 * np.sum(theta) ** 2
"""

USER_CACHE_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import fastgc
from fastgc.engines import _numba_kernels
from usercost import cost

rng = np.random.default_rng(2)
theta, a = rng.standard_normal(20), rng.standard_normal(20)
result = fastgc.check(cost, theta, a * np.cos(theta) + theta.sum(), args=(a,), engine="numba",
                      n_threads=2, progress=False)
print(json.dumps({
    "verdict": str(result.verdict),
    "approx": result.approx.tolist(),
    "cost_hits": sum(cost.stats.cache_hits.values()),
    "kernel_misses": sum(sum(k.stats.cache_misses.values()) for k in (
        _numba_kernels.central_differences_at, _numba_kernels.block_norms)),
}))
"""


def test_a_cost_cached_by_its_author_is_loaded_from_the_cache_too(tmp_path):
    require_engine("numba")
    from processes import run_python

    (tmp_path / "usercost.py").write_text(USER_COST_MODULE)
    environment = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    cold = run_python(USER_CACHE_SCRIPT, str(tmp_path), env=environment)
    warm = run_python(USER_CACHE_SCRIPT, str(tmp_path), env=environment)
    assert cold["verdict"] == warm["verdict"] == "correct"
    assert cold["cost_hits"] == 0 and warm["cost_hits"] == 1
    assert warm["kernel_misses"] == 0
    assert warm["approx"] == cold["approx"]
