"""Threads (``fastgc/_threads.py``): what ``n_threads`` means, the usable maximum and the
environment, the default set by ``set_num_threads`` and the ``threads`` context manager.

Also ``fastgc.check`` called from several threads at once, as from a thread pool (dask, joblib,
concurrent.futures): no crash, no deadlock, the same results as alone, untouched arrays, and the
process's thread settings left as they were."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest

import fastgc
import models
from conftest import (ENGINE_CASES, TWO_THREADS, assert_untouched, check_option, require_engine,
                      snapshot)
from costs import plain_cost
from fastgc._threads import (SERIAL_BELOW_SECONDS, resolve_n_threads, threads_for_work,
                             usable_threads)
from processes import run_python

pytestmark = pytest.mark.usefixtures("no_thread_default")


# --------------------------------------------------------------------------------------------
# Thread counts.


@pytest.mark.parametrize(
    "n_threads, message",
    [
        (0, r"n_threads must not be 0"),
        (1.5, r"n_threads must be None or an int, got float 1.5"),
        ("2", r"n_threads must be None or an int, got str '2'"),
        (True, r"n_threads must be None or an int, got bool True"),
        (-10_000, r"n_threads=-10000 counts back past the"),
    ],
)
def test_bad_n_threads(inputs, n_threads, message):
    with pytest.raises(fastgc.InvalidInputError, match=message):
        check_option(inputs, n_threads=n_threads)


@pytest.fixture
def clean_thread_env(monkeypatch):
    for variable in ("FASTGC_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_thread_count_none_positive_and_negative(clean_thread_env):
    maximum = usable_threads()
    assert maximum >= 1
    assert resolve_n_threads(None) == maximum
    assert fastgc.get_num_threads() == maximum
    assert resolve_n_threads(1) == 1
    assert resolve_n_threads(np.int64(1)) == 1
    assert resolve_n_threads(maximum) == maximum
    assert resolve_n_threads(-1) == maximum
    assert resolve_n_threads(-maximum) == 1
    with pytest.raises(fastgc.InvalidInputError, match=rf"n_threads=-{maximum + 1} counts back"):
        resolve_n_threads(-(maximum + 1))


@pytest.mark.parametrize("bad", [0, 1.5, "2", True, False, 2.0])
def test_thread_count_refused(clean_thread_env, bad):
    with pytest.raises(fastgc.InvalidInputError, match=r"n_threads must"):
        resolve_n_threads(bad)
    with pytest.raises(fastgc.InvalidInputError, match=r"n_threads must"):
        fastgc.set_num_threads(bad)
    with pytest.raises(fastgc.InvalidInputError, match=r"n_threads must"):
        with fastgc.threads(bad):
            pass  # pragma: no cover
    assert fastgc.get_num_threads() == usable_threads()


def test_thread_count_above_the_maximum_is_clamped_with_a_warning(clean_thread_env):
    maximum = usable_threads()
    with pytest.warns(fastgc.FastGCWarning, match=rf"n_threads={maximum + 3} is more than the "
                                                  rf"{maximum} usable"):
        assert resolve_n_threads(maximum + 3) == maximum


def test_check_clamps_threads_with_a_warning_pointing_at_the_caller(clean_thread_env, inputs):
    require_engine("cython")
    params, grads, before = inputs
    maximum = usable_threads()
    with pytest.warns(fastgc.FastGCWarning, match="usable") as caught:
        result = fastgc.check(plain_cost, params, grads, engine="cython",
                              n_threads=maximum + 1, progress=False)
    assert result.n_threads == maximum
    assert caught[0].filename == __file__
    assert_untouched(params, grads, before)


def test_thread_limit_from_the_environment(clean_thread_env):
    clean_thread_env.setenv("OMP_NUM_THREADS", "1")
    assert usable_threads() == 1
    assert resolve_n_threads(None) == 1
    assert resolve_n_threads(-1) == 1
    clean_thread_env.delenv("OMP_NUM_THREADS")
    clean_thread_env.setenv("NUMBA_NUM_THREADS", "1")
    assert usable_threads() == 1


def test_fastgc_num_threads_variable(clean_thread_env):
    maximum = usable_threads()
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "1")
    assert fastgc.get_num_threads() == 1
    assert resolve_n_threads(None) == 1
    assert resolve_n_threads(-1) == maximum  # an explicit count wins over the variable
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "-1")
    assert fastgc.get_num_threads() == maximum
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "  ")
    assert fastgc.get_num_threads() == maximum
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "two")
    with pytest.raises(fastgc.InvalidInputError, match=r"FASTGC_NUM_THREADS must be an integer, "
                                                       r"got 'two'"):
        fastgc.get_num_threads()
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "0")
    with pytest.raises(fastgc.InvalidInputError, match=r"FASTGC_NUM_THREADS must not be 0"):
        fastgc.get_num_threads()


def test_set_num_threads_default_and_its_precedence(clean_thread_env):
    maximum = usable_threads()
    clean_thread_env.setenv("FASTGC_NUM_THREADS", str(maximum))
    fastgc.set_num_threads(1)
    assert fastgc.get_num_threads() == 1  # the default wins over the variable
    assert resolve_n_threads(-1) == maximum  # an explicit count wins over the default
    fastgc.set_num_threads(-1)
    assert fastgc.get_num_threads() == maximum
    fastgc.set_num_threads(None)
    assert fastgc.get_num_threads() == maximum


def test_little_work_runs_on_one_thread_unless_a_count_was_given(clean_thread_env):
    maximum = usable_threads()
    assert threads_for_work(maximum, None, SERIAL_BELOW_SECONDS / 2) == 1
    assert threads_for_work(maximum, None, SERIAL_BELOW_SECONDS) == maximum
    assert threads_for_work(maximum, maximum, 0.0) == maximum  # asked for
    with fastgc.threads(maximum):
        assert threads_for_work(maximum, None, 0.0) == maximum
    fastgc.set_num_threads(maximum)
    assert threads_for_work(maximum, None, 0.0) == maximum
    fastgc.set_num_threads(None)
    clean_thread_env.setenv("FASTGC_NUM_THREADS", str(maximum))
    assert threads_for_work(maximum, None, 0.0) == maximum


@numba.njit(nogil=True)
def _slow_cost(theta):
    """sum_i mean_r sin(theta_i + r): a cost of about a millisecond for 50 parameters."""
    total = 0.0
    for r in range(2_000):
        for i in range(theta.shape[0]):
            total += np.sin(theta[i] + r)
    return total / 2_000


def test_a_tiny_check_runs_on_one_thread_and_a_longer_one_on_every_core(clean_thread_env):
    require_engine("numba")
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    tiny = fastgc.check(models.numba_cost(), params, grads, args=(X, Y), engine="numba")
    assert tiny.n_threads == 1 and tiny.verdict == "correct"
    asked = fastgc.check(models.numba_cost(), params, grads, args=(X, Y), engine="numba",
                         n_threads=TWO_THREADS)
    assert asked.n_threads == TWO_THREADS
    assert asked.approx.tobytes() == tiny.approx.tobytes()
    theta = np.linspace(-1.0, 1.0, 50)
    gradient = np.cos(theta[:, None] + np.arange(2_000)).mean(axis=1)
    longer = fastgc.check(_slow_cost, {"theta": theta}, {"dtheta": gradient}, engine="numba")
    assert longer.n_threads == usable_threads() and longer.verdict == "correct"


def test_threads_context_manager_restores_even_on_error(clean_thread_env):
    maximum = usable_threads()
    fastgc.set_num_threads(-1)
    with fastgc.threads(1) as count:
        assert count == 1
        assert fastgc.get_num_threads() == 1
        with fastgc.threads(None) as inner:
            assert inner == maximum
        assert fastgc.get_num_threads() == 1
    assert fastgc.get_num_threads() == maximum
    with pytest.raises(RuntimeError, match="inside"):
        with fastgc.threads(1):
            raise RuntimeError("inside")
    assert fastgc.get_num_threads() == maximum
    with pytest.raises(fastgc.InvalidInputError, match="counts back past"):
        with fastgc.threads(-(maximum + 1)):
            pass  # pragma: no cover
    assert fastgc.get_num_threads() == maximum


# --------------------------------------------------------------------------------------------
# Checks from a thread pool.

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


def test_a_blas_pool_already_on_one_thread_gets_one_thread_back_whatever_the_cost_did():
    # The cap sets only the pools that are not on one thread already, but gives every pool
    # back the count it found: also one the cost changed meanwhile.
    from threadpoolctl import threadpool_limits

    assert blas_threads(), "threadpoolctl finds the BLAS library NumPy uses"
    session = blas_threads()
    set_blas_threads(1)
    seen: list[list[int]] = []

    def cost(p):
        seen.append(blas_threads())
        if len(seen) == 3:  # inside the run: a cost that raises its BLAS threads, for good
            threadpool_limits(limits=2, user_api="blas")
        return float(np.sum(p["w"] ** 2))

    w = np.linspace(-1.0, 1.0, 4)
    try:
        fastgc.check(cost, {"w": w}, {"w": 2 * w}, engine="python", progress=False)
        after = blas_threads()
    finally:
        set_blas_threads(session[0])
    assert seen[0] == [1] * len(session)  # capped (nothing to set)
    assert 2 in seen[-1]  # the cost's change took effect within the check
    assert after == [1] * len(session)


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


def test_blas_stays_capped_in_a_check_outliving_the_one_that_capped_it():
    # A short check caps BLAS; a long one starts inside it and outlives it: the long check's
    # cost must still see one BLAS thread after the short one has left, and the count is
    # restored when the long one ends.
    require_engine("cython")
    if not blas_threads():
        pytest.skip("threadpoolctl finds no BLAS library here")
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    short_inside, long_inside, short_done = (threading.Event() for _ in range(3))
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()
    calls = {"short": 0, "long": 0}

    def cost_for(name):
        def cost(p, X, Y):
            with lock:
                calls[name] += 1
                pause = calls[name] == 4  # past the baseline evaluations, inside the run
            if pause and name == "short":
                short_inside.set()
                assert long_inside.wait(30)
            elif pause:
                long_inside.set()
                assert short_done.wait(30)
                seen["after the short check"] = blas_threads()
            return models.cost(p, X, Y)

        return cost

    def short_check():
        try:
            return fastgc.check(cost_for("short"), params, grads, args=(X, Y),
                                engine="cython", n_threads=2, progress=False)
        finally:
            short_done.set()

    def long_check():
        assert short_inside.wait(30)
        return fastgc.check(cost_for("long"), params, grads, args=(X, Y), engine="cython",
                            n_threads=2, progress=False)

    session = blas_threads()
    set_blas_threads(2)
    try:
        before = blas_threads()
        results = run_in_pool([short_check, long_check], workers=2)
        assert [r.verdict for r in results] == ["correct", "correct"]
        assert all(count == 1 for count in seen["after the short check"]), seen
        assert blas_threads() == before
    finally:
        set_blas_threads(session[0])


@pytest.mark.parametrize("engine_name", ["python", "cython"])
def test_a_blas_using_cost_gives_the_same_bits_at_every_thread_count(engine_name):
    # A threaded BLAS sums in an order that depends on its thread count: every evaluation of
    # every check runs with BLAS on one thread, n_threads=1 as much as n_threads=2.
    require_engine(engine_name)
    if not blas_threads():
        pytest.skip("threadpoolctl finds no BLAS library here")
    rng = np.random.default_rng(3)
    X = rng.standard_normal((64, 256))
    params = {"W": rng.standard_normal((8, 64)) * 0.1, "b": np.zeros((8, 1))}
    seen: set[tuple[int, ...]] = set()

    def cost(p):
        seen.add(tuple(blas_threads()))
        return float(np.sum(np.tanh(p["W"] @ X + p["b"]) ** 2))

    def grads(p):
        A = np.tanh(p["W"] @ X + p["b"])
        dZ = 2 * A * (1 - A**2)
        return {"dW": dZ @ X.T, "db": dZ.sum(axis=1, keepdims=True)}

    session = blas_threads()
    set_blas_threads(2)
    try:
        results = [fastgc.check(cost, params, grads, engine=engine_name, n_threads=n,
                                progress=False) for n in (1, TWO_THREADS)]
        assert blas_threads() == [2] * len(session)
    finally:
        set_blas_threads(session[0])
    assert seen == {(1,) * len(session)}
    assert results[0].verdict == results[1].verdict == "correct"
    np.testing.assert_array_equal(results[0].approx, results[1].approx)
    assert results[0].difference == results[1].difference


def test_set_num_threads_holds_in_checks_started_from_other_threads():
    # Numba's own count is per thread; fastgc's default is the process's.
    require_engine("numba")
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    fastgc.set_num_threads(1)

    def job():
        return fastgc.check(models.numba_cost(), params, grads, args=(X, Y), engine="numba",
                            progress=False), fastgc.get_num_threads()

    (result, default), = run_in_pool([job], workers=1)
    assert default == 1
    assert result.n_threads == 1
    with fastgc.threads(2):  # a block's default stays the block's
        (_, default), = run_in_pool([job], workers=1)
    assert default == 1


# --------------------------------------------------------------------------------------------
# A check in a process forked after a check (multiprocessing's default start method on
# Linux): it neither deadlocks nor aborts, and gives the parent's numbers.

FORK_CODE = """
import json, multiprocessing, sys
import numpy as np
import fastgc
from conftest import ENGINE_CASES
from costs import exact_grads, faulty, make_params

case = ENGINE_CASES[int(sys.argv[1])]
params = make_params()
grads = exact_grads(params)
cost, args = faulty(case, 0)

def run():
    return fastgc.check(cost, params, grads, args=args, engine=case.engine, n_threads=2,
                        progress=False)

parent = run()

def child(queue):
    result = run()
    queue.put([result.approx.tobytes() == parent.approx.tobytes(), result.verdict.value])

context = multiprocessing.get_context("fork")
queue = context.Queue()
process = context.Process(target=child, args=(queue,))
process.start()
process.join(60)
if process.is_alive():
    process.kill()
    outcome = "deadlocked"
elif process.exitcode != 0:
    outcome = f"died with exit code {process.exitcode}"
else:
    outcome = queue.get(timeout=10)
print(json.dumps({"outcome": outcome, "parent": parent.verdict.value}))
"""


@pytest.mark.parametrize("case", range(len(ENGINE_CASES)),
                         ids=[f"{c.engine}-{c.cost_kind.value}" for c in ENGINE_CASES])
def test_a_check_in_a_child_forked_after_a_check_works(case):
    require_engine(ENGINE_CASES[case].engine)
    report = run_python(FORK_CODE, str(case))
    assert report["parent"] == "correct"
    assert report["outcome"] == [True, "correct"]  # bitwise the parent's numeric gradients


def test_forked_children_are_told_apart():
    # The flag that makes the OpenMP engines serial is set in the child only.
    report = run_python("""
    import json, os
    from fastgc._threads import in_forked_child
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, b"1" if in_forked_child() else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    print(json.dumps({"parent": in_forked_child(), "child": os.read(read, 1).decode()}))
    """)
    assert report == {"parent": False, "child": "1"}


# --------------------------------------------------------------------------------------------
# Ctrl-C deferred where it must not cut in.


def test_interrupts_deferred_delivers_one_keyboard_interrupt_at_the_end():
    import os
    import signal
    import time

    from fastgc._threads import interrupts_deferred

    handler = signal.getsignal(signal.SIGINT)
    finished_inside = False
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            for _ in range(3):  # repeated Ctrl-C: recorded, not raised here
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)
            with interrupts_deferred():  # nested: the outer one delivers
                time.sleep(0.01)
            finished_inside = True
    assert finished_inside
    assert signal.getsignal(signal.SIGINT) is handler
    with interrupts_deferred():  # nothing received: nothing raised
        pass
    assert signal.getsignal(signal.SIGINT) is handler


def test_a_watch_defers_inside_blocks_raises_at_once_outside_and_restores_the_handler():
    import os
    import signal
    import time

    from fastgc._threads import interrupts_deferred, interrupts_watched

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with interrupts_watched():
            watching = signal.getsignal(signal.SIGINT)
            assert watching is not handler
            finished_inside = False
            with pytest.raises(KeyboardInterrupt):
                with interrupts_deferred():
                    # The block raises a flag: the watch's handler stays and records.
                    assert signal.getsignal(signal.SIGINT) is watching
                    for _ in range(3):
                        os.kill(os.getpid(), signal.SIGINT)
                        time.sleep(0.01)
                    finished_inside = True
            assert finished_inside  # delivered once, at the end of the block
            assert signal.getsignal(signal.SIGINT) is watching
            with interrupts_deferred():  # nothing received: nothing raised
                pass
            reached = False
            os.kill(os.getpid(), signal.SIGINT)  # outside any block: raised at once
            time.sleep(0.05)
            reached = True
    assert not reached
    assert signal.getsignal(signal.SIGINT) is handler


def test_ctrl_c_anywhere_around_a_watch_is_raised_once_and_leaves_its_state_clean():
    # Interrupts at random moments of many short watched sections (deferred blocks inside,
    # as a check has): each one is raised once, inside or just after its section, and the
    # handler and the watch's state are as before every time.
    report = run_python("""
    import json, os, random, signal, threading, time
    from fastgc import _threads
    from fastgc._threads import interrupts_deferred, interrupts_watched

    handler = signal.getsignal(signal.SIGINT)
    go, sent = threading.Event(), threading.Event()
    rounds, rng = 300, random.Random(1)

    def interrupter():
        for _ in range(rounds):
            go.wait()
            go.clear()
            time.sleep(rng.uniform(0.0, 0.001))
            os.kill(os.getpid(), signal.SIGINT)
            sent.set()

    def section():
        with interrupts_watched():
            for _ in range(4):
                with interrupts_deferred():  # sleeping lets the sender run
                    time.sleep(0.0001)
                time.sleep(0.0001)

    sender = threading.Thread(target=interrupter)
    sender.start()
    raised, inside, unclean = 0, 0, []
    for k in range(rounds):
        sent.clear()
        go.set()
        try:
            try:
                section()
            except KeyboardInterrupt:
                inside += 1
                raise
            finally:
                sent.wait(10)
                time.sleep(0.002)  # an interrupt sent after the section lands here
        except KeyboardInterrupt:
            raised += 1
        if (signal.getsignal(signal.SIGINT) is not handler or _threads._watch.previous
                is not None or getattr(_threads._deferring, "active", False)):
            unclean.append(k)
    sender.join()
    print(json.dumps({"raised": raised, "inside": inside, "rounds": rounds,
                      "unclean": unclean}))
    """)
    assert report["unclean"] == []
    assert report["raised"] == report["rounds"]
    assert report["inside"] > report["rounds"] // 4  # most land inside the sections


def test_a_watch_is_one_per_check_and_a_check_gives_the_handler_back():
    import signal

    from fastgc import _threads
    from fastgc._threads import interrupts_watched

    handler = signal.getsignal(signal.SIGINT)
    installed = []

    def cost(p):
        installed.append(signal.getsignal(signal.SIGINT))
        with interrupts_watched():  # nested: the check's watch stays
            installed.append(signal.getsignal(signal.SIGINT))
        return float(np.sum(p["w"] ** 2))

    w = np.linspace(-1.0, 1.0, 3)
    fastgc.check(cost, {"w": w}, {"w": 2 * w}, engine="python", progress=False)
    assert installed and set(installed) == {_threads._on_watched_interrupt}
    assert signal.getsignal(signal.SIGINT) is handler
    assert _threads._watch.previous is None and not _threads._watch.received


def test_interrupts_deferred_is_a_no_op_outside_the_main_thread():
    from fastgc._threads import interrupts_deferred

    def job():
        with interrupts_deferred():
            return "ran"

    assert run_in_pool([job], workers=1) == ["ran"]


def test_a_check_inside_a_cost_keeps_the_blas_cap_of_the_check_around_it():
    # A nested check (here from the cost of another, in the same thread) leaves the cap to the
    # outer one: BLAS stays on one thread after the inner check ends, until the outer ends.
    require_engine("cython")
    assert blas_threads(), "threadpoolctl finds the BLAS library NumPy uses"
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    seen: dict[str, list[int]] = {}

    def outer_cost(p, X, Y):
        if "after the inner check" not in seen:
            inner = fastgc.check(models.cost, params, grads, args=(X, Y), engine="cython",
                                 n_threads=1, progress=False)
            assert inner.verdict == "correct"
            seen["after the inner check"] = blas_threads()
        return models.cost(p, X, Y)

    session = blas_threads()
    set_blas_threads(2)
    try:
        before = blas_threads()
        result = fastgc.check(outer_cost, params, grads, args=(X, Y), engine="cython",
                              n_threads=1, progress=False)
        assert result.verdict == "correct"
        assert all(count == 1 for count in seen["after the inner check"]), seen
        assert blas_threads() == before
    finally:
        set_blas_threads(session[0])
