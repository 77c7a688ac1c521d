"""The local run loop (``fastgc/executors/local.py``): the progress bar, Ctrl-C from inside the
cost (which leaves the arrays and every thread setting as they were), and the check that every
copy of theta came back bitwise, which catches a cost that writes into its input."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fastgc
import models
from conftest import assert_untouched, require_engine, run
from costs import WRITE, check_faulty, plain_cost
from fastgc.executors.local import MAX_ROUND, ROUND_SECONDS, round_size
from processes import run_python

pytestmark = pytest.mark.usefixtures("no_thread_default")


# --------------------------------------------------------------------------------------------
# The progress bar.


def test_progress_bar_shows_and_changes_nothing(engine, mlp, capsys):
    params, X, Y = mlp
    grads = models.grads(params, X, Y)
    quiet = run(engine, params, X, Y, grads)
    capsys.readouterr()
    shown = run(engine, params, X, Y, grads, progress=True)
    err = capsys.readouterr().err
    assert "fastgc:" in err and f"/{quiet.layout.size} " in err  # a bar over all components
    np.testing.assert_array_equal(shown.approx, quiet.approx)
    assert shown.verdict == quiet.verdict


def test_progress_without_stderr_runs_and_leaves_tqdm_usable(engine, mlp, monkeypatch):
    # pythonw and services have sys.stderr None: no bar, no error, and no lock left held for
    # a later check with a bar, from another thread.
    import threading

    params, X, Y = mlp
    grads = models.grads(params, X, Y)
    quiet = run(engine, params, X, Y, grads)
    with monkeypatch.context() as patch:
        patch.setattr("sys.stderr", None)
        shown = run(engine, params, X, Y, grads, progress=True)
    np.testing.assert_array_equal(shown.approx, quiet.approx)
    later: list = []
    thread = threading.Thread(target=lambda: later.append(
        run(engine, params, X, Y, grads, progress=True)))
    thread.start()
    thread.join(120)
    assert not thread.is_alive() and later[0].verdict == quiet.verdict


# --------------------------------------------------------------------------------------------
# The restoration check.


def test_cost_writing_into_its_input(engine, inputs):
    params, grads, before = inputs
    with pytest.raises(
        fastgc.CostError, match=r"wrote into the parameters .*params\['b1'\]\[1, 0\] changed"
    ) as raised:
        check_faulty(engine, params, grads, WRITE)
    assert raised.value.location == ("b1", (1, 0))
    assert_untouched(params, grads, before)


def test_njit_cost_raising_in_a_worker_threads_chunk_is_reported_with_its_index(numba):
    # Compiled code drops an exception raised in a worker thread; the chunk stops with its
    # copy of theta still moved, which is not the cost writing into its input.
    @numba.njit(cache=False)
    def raising_late(theta):
        if theta[17] > 0.5:
            raise ValueError("boom in a worker thread")
        return np.sum(theta**2)

    theta = np.linspace(-0.4, 0.5, 20)
    theta[17] = 0.5  # moved up, it raises; index 17 is in the second of two chunks
    before = theta.copy()
    with pytest.raises(fastgc.CostError,
                       match=r"raised ValueError: boom in a worker thread \(while theta\[17\]"
                       ) as raised:
        fastgc.check(raising_late, theta, 2 * theta, engine="numba", n_threads=2,
                     progress=False)
    assert "wrote into" not in str(raised.value)
    assert raised.value.flat_index == 17
    assert isinstance(raised.value.__cause__, ValueError)
    np.testing.assert_array_equal(theta, before)


# --------------------------------------------------------------------------------------------
# Ctrl-C from inside the cost.


@pytest.mark.parametrize("engine_name, n_threads", [("python", 1), ("cython", 2), ("cython", 1)])
def test_keyboard_interrupt_leaves_everything_clean(inputs, engine_name, n_threads):
    require_engine(engine_name)
    from threadpoolctl import threadpool_info

    params, grads, before = inputs
    reference = fastgc.check(plain_cost, params, grads, engine=engine_name, n_threads=n_threads,
                             progress=False)
    calls = 0

    def interrupted_cost(p):
        nonlocal calls
        calls += 1
        if calls == 7:
            raise KeyboardInterrupt
        return plain_cost(p)

    numba_threads = None
    if engine_status_ok("numba"):
        import numba

        numba_threads = numba.get_num_threads()
    fastgc_threads = fastgc.get_num_threads()
    pools = threadpool_info()

    with pytest.raises(KeyboardInterrupt, match=r"fastgc check interrupted after \d+ of 15"):
        fastgc.check(interrupted_cost, params, grads, engine=engine_name, n_threads=n_threads,
                     progress=False)
    assert calls >= 7
    assert_untouched(params, grads, before)
    assert fastgc.get_num_threads() == fastgc_threads
    assert threadpool_info() == pools
    if numba_threads is not None:
        import numba

        assert numba.get_num_threads() == numba_threads

    again = fastgc.check(interrupted_cost, params, grads, engine=engine_name,
                         n_threads=n_threads, progress=False)
    assert again.verdict == reference.verdict == "correct"
    np.testing.assert_array_equal(again.approx, reference.approx)
    assert again.difference == reference.difference
    assert_untouched(params, grads, before)


def engine_status_ok(name: str) -> bool:
    from fastgc.engines import engine_status

    return engine_status(name) is None


# --------------------------------------------------------------------------------------------
# Ctrl-C from outside (SIGINT), in a real process: during compilation, during a slow sweep,
# and anywhere in a loop of tiny checks. Every interrupt is honoured and leaves Numba's and
# BLAS's thread counts as they were.

INTERRUPT_PRELUDE = """
import gc, json, os, random, signal, threading, time
import numba, numpy as np
import fastgc, models
from threadpoolctl import threadpool_info

def thread_settings(libraries=None):
    # Numba's thread count and each BLAS/OpenMP pool's (of ``libraries`` if given:
    # compiling can load one more).
    pools = {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}
    chosen = {path: count for path, count in pools.items()
              if libraries is None or path in libraries}
    return [numba.get_num_threads(), chosen]
"""


def test_ctrl_c_while_the_kernels_compile_is_honoured_once_they_are_compiled():
    code = """
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    before = thread_settings()

    def interrupt_three_times():  # while the cost and the kernels compile (seconds)
        for _ in range(3):
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt_three_times)
    sender.start()
    try:
        fastgc.check(models.numba_cost(), params, grads, args=(X, Y), engine="numba",
                     n_threads=2, progress=False)
        outcome = "ran to the end"
    except KeyboardInterrupt:
        outcome = "interrupted"
    sender.join()
    after = thread_settings(libraries=before[1])
    # The compiler's state is intact: the same check, compiled again or not, works.
    again = fastgc.check(models.numba_cost(), params, grads, args=(X, Y), engine="numba",
                         n_threads=2, progress=False)
    print(json.dumps({"outcome": outcome, "before": before, "after": after,
                      "verdict": again.verdict.value}))
    """
    report = run_python(code, prelude=INTERRUPT_PRELUDE)
    assert report["outcome"] == "interrupted"
    assert report["after"] == report["before"]
    assert report["verdict"] == "correct"


def test_ctrl_c_during_a_slow_sweep_stops_it_and_restores_the_thread_settings():
    # A ~20 ms cost on 2 threads: the sweep would take several seconds; the interrupt comes
    # once the sweep has started, and the check stops at the end of the round under way.
    code = """
    @numba.njit(cache=False)
    def slow_cost(theta, counter):
        counter[0] += 1
        value = 0.0
        for repeat in range(400_000):
            value += np.sin(theta[repeat % theta.shape[0]] + repeat * 1e-9)
        return value / 400_000

    theta = np.linspace(-1.0, 1.0, 300)
    counter = np.zeros(1, dtype=np.int64)
    # Compile everything first, on a small theta of the same types.
    fastgc.check(slow_cost, theta[:2].copy(), np.zeros(2), args=(counter,), n_threads=2,
                 progress=False)
    before = thread_settings()
    counter[0] = 0

    def interrupt_once_sweeping():
        while counter[0] < 10:  # the baseline takes 2 evaluations; past them, it sweeps
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt_once_sweeping)
    sender.start()
    try:
        fastgc.check(slow_cost, theta, np.cos(theta), args=(counter,), n_threads=2,
                     progress=False)
        message = "ran to the end"
    except KeyboardInterrupt as interrupt:
        message = str(interrupt)
    sender.join()
    print(json.dumps({"message": message, "before": before, "after": thread_settings()}))
    """
    report = run_python(code, prelude=INTERRUPT_PRELUDE)
    assert re.fullmatch(r"fastgc check interrupted after \d+ of 300 components; the caller's "
                        r"arrays are untouched", report["message"]), report["message"]
    assert report["after"] == report["before"]


@pytest.mark.parametrize("engine_name", ["numba", "cython"])
def test_ctrl_c_anywhere_in_tiny_checks_leaves_every_thread_setting(engine_name):
    require_engine(engine_name)
    code = """
    import sys
    engine = sys.argv[1]
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    cost, args = ((models.numba_cost(), (X, Y)) if engine == "numba"
                  else (models.c_cost(X, Y), ()))
    fastgc.check(cost, params, grads, args=args, engine=engine, n_threads=2, progress=False)
    before = thread_settings()
    go, sent = threading.Event(), threading.Event()
    rounds = 120
    rng = random.Random(0)

    def interrupter():
        for _ in range(rounds):
            go.wait()
            go.clear()
            time.sleep(rng.uniform(0.0, 0.004))  # anywhere in a check of a millisecond or so
            os.kill(os.getpid(), signal.SIGINT)
            sent.set()

    sender = threading.Thread(target=interrupter)
    sender.start()
    changed, interrupted = [], 0
    for k in range(rounds):
        sent.clear()
        go.set()
        try:
            try:
                fastgc.check(cost, params, grads, args=args, engine=engine, n_threads=2,
                             progress=False)
            finally:
                sent.wait(10)
                time.sleep(0.002)  # an interrupt sent after the check lands here
        except KeyboardInterrupt:
            interrupted += 1
        if thread_settings() != before:
            changed.append([k, thread_settings()])
        # threadpool_info() leaves garbage whose weakref callbacks, run by a later collection,
        # could swallow the next interrupt (CPython drops exceptions raised in them); a check
        # itself leaves none (test_a_check_leaves_no_cyclic_garbage).
        gc.collect()
    sender.join()
    print(json.dumps({"changed": changed, "interrupted": interrupted, "rounds": rounds}))
    """
    report = run_python(code, engine_name, prelude=INTERRUPT_PRELUDE)
    assert report["interrupted"] == report["rounds"]  # every SIGINT was honoured somewhere
    assert report["changed"] == []


def test_rounds_last_about_round_seconds_even_for_a_slow_cost():
    # A 20 ms cost on 2 threads: 10 ms per index; a round is about ROUND_SECONDS of work,
    # not a fixed minimum of indices per thread.
    size = round_size(100_000, 2, 0.010)
    assert 2 <= size and size * 0.010 <= ROUND_SECONDS
    assert round_size(100_000, 2, 10.0) == 2  # at least one index per chunk
    assert round_size(1, 2, 1e-9) == 1  # never past the end
    assert round_size(10**9, 2, 1e-9) == MAX_ROUND


def test_a_check_leaves_no_cyclic_garbage(engine):
    # Garbage collected later runs weakref callbacks at random moments, where CPython drops
    # any exception, a KeyboardInterrupt included: a check must make none.
    import gc

    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    cost, args = engine.cost_for(X, Y)
    for _ in range(2):
        fastgc.check(cost, params, grads, args=args, engine=engine.engine, progress=False)
    gc.collect()
    saved = gc.get_debug()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        fastgc.check(cost, params, grads, args=args, engine=engine.engine, progress=False)
        gc.collect()
        garbage = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(saved)
        gc.garbage.clear()
    assert garbage == []


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 99, 4096, 4097, 20000])
def test_a_copy_differing_in_one_bit_is_found_below_and_above_the_bytes_limit(dtype, n):
    from fastgc.executors.local import _aborted_at, check_restored

    theta = np.linspace(-1.0, 1.0, n).astype(dtype)
    theta[0] = 0.0
    _, layout = fastgc.flatten(theta)
    for change in ("negative zero", "nan payload", "last entry"):
        work = np.tile(theta, (2, 1))
        check_restored(work, theta, layout)  # identical copies pass
        assert _aborted_at(work, theta, np.arange(n, dtype=np.int64)) is None
        at = n - 1 if change == "last entry" else 0
        if change == "negative zero":
            work[1, 0] = -0.0  # equal as a number, not as bits
        elif change == "nan payload":
            theta[0] = np.nan
            work = np.tile(theta, (2, 1))
            bits = work.view(f"u{theta.itemsize}")
            bits[1, 0] ^= 1  # another NaN
        else:
            work[1, at] = np.nextafter(work[1, at], dtype(2.0))
        with pytest.raises(fastgc.CostError, match=rf"theta\[{at}\]|params\[.theta.\]"):
            check_restored(work, theta, layout)
        assert _aborted_at(work, theta, np.arange(n, dtype=np.int64)) == at
        assert _aborted_at(work, theta, np.array([at], dtype=np.int64)) == 0
        theta[0] = 0.0
