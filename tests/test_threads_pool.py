"""fastgc.check called from several threads at once, as from a thread pool (dask, joblib,
concurrent.futures): no crash, no deadlock, the same results as alone, untouched arrays, and the
process's thread settings left as they were."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import fastgc
import models
from conftest import ENGINE_CASES, require_engine, snapshot
from fastgc._threads import usable_threads

TWO_THREADS = min(2, usable_threads())
TIMEOUT = 120  # seconds for any one check; a deadlock fails the test instead of hanging it
BUGS = [(None, None), ("db1_sign", "b1"), ("dW2_doubled", "W2"), ("one_element", "W1")]


def tasks(n_tasks: int):
    """Different parameters (same X and Y) with correct or buggy gradients, and the verdict."""
    base, X, Y = models.make_mlp(0)
    rng = np.random.default_rng(1)
    out = []
    for k in range(n_tasks):
        params = {name: value + 0.05 * rng.standard_normal(value.shape)
                  for name, value in base.items()}
        bug, parameter = BUGS[k % len(BUGS)]
        out.append((params, models.grads(params, X, Y, bug=bug), parameter))
    return out, X, Y


def run_in_pool(jobs, workers: int):
    """Run ``jobs`` (zero-argument callables) on a thread pool; results in order."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(job) for job in jobs]
        return [future.result(timeout=TIMEOUT) for future in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def check_job(case, cost, args, params, grads):
    return lambda: fastgc.check(cost, params, grads, args=args, engine=case.engine,
                                n_threads=TWO_THREADS, progress=False)


def assert_same_as_alone(results, alone, expected_parameters, engine):
    for result, reference, parameter in zip(results, alone, expected_parameters):
        assert result.engine == engine
        np.testing.assert_array_equal(result.approx, reference.approx)
        assert result.difference == reference.difference
        if parameter is None:
            assert result.verdict == "correct"
        else:
            assert result.verdict == "bug"
            assert result.worst_parameter().name == parameter


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_checks_in_a_thread_pool(engine, workers):
    problems, X, Y = tasks(3 * workers)
    cost, args = engine.cost_for(X, Y)
    # Each check alone, in this thread first (this also compiles what needs compiling).
    alone = [fastgc.check(cost, p, g, args=args, engine=engine.engine, n_threads=TWO_THREADS,
                          progress=False) for p, g, _ in problems]
    before = [(snapshot(p), snapshot(g)) for p, g, _ in problems]
    results = run_in_pool([check_job(engine, cost, args, p, g) for p, g, _ in problems], workers)
    assert_same_as_alone(results, alone, [parameter for *_, parameter in problems], engine.engine)
    assert [(snapshot(p), snapshot(g)) for p, g, _ in problems] == before


def test_every_engine_at_once_in_one_pool():
    for name in ("numba", "cython", "python"):
        require_engine(name)
    problems, X, Y = tasks(len(ENGINE_CASES) * 2)
    jobs, alone, parameters = [], [], []
    for k, (params, grads, parameter) in enumerate(problems):
        case = ENGINE_CASES[k % len(ENGINE_CASES)]
        cost, args = case.cost_for(X, Y)
        alone.append(check_job(case, cost, args, params, grads)())
        jobs.append(check_job(case, cost, args, params, grads))
        parameters.append(parameter)
    results = run_in_pool(jobs, workers=4)
    for result, reference, parameter in zip(results, alone, parameters):
        assert_same_as_alone([result], [reference], [parameter], reference.engine)


def blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def set_blas_threads(count: int) -> None:
    """Set the BLAS thread count from a thread that then ends, so it keeps no control of it.

    threadpoolctl lets one thread at a time control a process-wide BLAS pool; the main thread
    must not keep that control, or the checks' own caps from pool threads would be ignored.
    """
    from threadpoolctl import threadpool_limits

    setter = threading.Thread(target=threadpool_limits, kwargs={"limits": count,
                                                                "user_api": "blas"})
    setter.start()
    setter.join()


def test_overlapping_checks_restore_the_blas_thread_count():
    require_engine("cython")
    if TWO_THREADS < 2:
        pytest.skip("needs 2 usable threads: with one, the BLAS cap is never applied")
    if not blas_threads():
        pytest.skip("threadpoolctl finds no BLAS library here")
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    first_inside, second_inside, first_done = (threading.Event() for _ in range(3))
    lock = threading.Lock()
    calls = {"first": 0, "second": 0}
    inside: dict[str, list[int]] = {}

    def cost_for(name, entered, wait_for):
        def cost(p, X, Y):
            with lock:
                calls[name] += 1
                pause = calls[name] == 4  # past the baseline evaluations, inside the run
            if pause:  # the check is now inside its BLAS cap: hold it there
                inside[name] = blas_threads()
                entered.set()
                wait_for.wait(30)
            return models.cost(p, X, Y)

        return cost

    def first():
        try:
            return fastgc.check(cost_for("first", first_inside, second_inside), params, grads,
                                args=(X, Y), engine="cython", n_threads=2, progress=False)
        finally:
            first_done.set()

    def second():
        assert first_inside.wait(30)
        return fastgc.check(cost_for("second", second_inside, first_done), params, grads,
                            args=(X, Y), engine="cython", n_threads=2, progress=False)

    session = blas_threads()
    set_blas_threads(2)  # whatever earlier tests left, start from two BLAS threads
    try:
        before = blas_threads()
        results = run_in_pool([first, second], workers=2)
        assert [r.verdict for r in results] == ["correct", "correct"]
        # Both costs ran with BLAS on one thread; the second check entered while the first
        # held the cap, and left last.
        assert set(inside) == {"first", "second"}
        assert all(count == 1 for counts in inside.values() for count in counts), inside
        assert blas_threads() == before
    finally:
        set_blas_threads(session[0])


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
