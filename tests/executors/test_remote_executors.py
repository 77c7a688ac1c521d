"""Checks on worker processes (``fastgc/executors/processes.py``) and on a real Dask cluster
(``fastgc/executors/dask.py``): bitwise the local result, a worker killed mid-check, what
cannot be pickled, a worker that computes another J(theta), Ctrl-C in a real child process,
with the caller's arrays byte-identical after each.

Every test runs once per kind of remote executor: fastgc's own pool (``"processes"``), a
``ProcessPoolExecutor`` made by the caller (``"pool"``), and a ``dask.distributed.Client`` of a
``LocalCluster`` with two worker processes (``"dask"``), both started here once per module.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import fastgc
import models
from conftest import TWO_THREADS, assert_untouched, require_engine, snapshot
from processes import SOURCE_DIR, TESTS_DIR

import distributed  # in the test extra

KINDS = ["processes", "pool", "dask"]


@contextlib.contextmanager
def environment_kept():
    """Dask's nannies set OMP_NUM_THREADS=1 (and the BLAS counts) in this process's
    environment when they spawn a worker, which would cap the thread count of every later
    check here: put the environment back."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _keep_environment():
    with environment_kept():
        yield


@pytest.fixture(scope="module")
def cluster():
    with environment_kept(), distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=50,
    ) as local_cluster:
        with environment_kept():
            yield local_cluster


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as made:
        yield made


@pytest.fixture(params=KINDS)
def remote(request):
    """What to pass as ``executor=`` (and ``n_workers=``), one per kind."""
    if request.param == "processes":
        return {"executor": "processes", "n_workers": 2}
    if request.param == "pool":
        return {"executor": request.getfixturevalue("pool")}
    return {"executor": request.getfixturevalue("client")}


def check(cost, params, grads, **options):
    return fastgc.check(cost, params, grads, progress=False, **options)


def bits(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).tobytes()


# --------------------------------------------------------------------------------------------
# Bitwise the local result.


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bug", [None, "one_element"])
def test_numpy_cost_bitwise_as_local(remote, dtype, bug):
    params, X, Y = models.make_mlp(0, dtype)
    grads = models.grads(params, X, Y, bug=bug)
    before = (snapshot(params), snapshot(grads))
    local = check(models.cost, params, grads, args=(X, Y))
    result = check(models.cost, params, grads, args=(X, Y), **remote)
    assert bits(result.approx) == bits(local.approx)
    assert result.verdict == local.verdict == ("bug" if bug else "correct")
    assert result.worst(1)[0].flat_index == local.worst(1)[0].flat_index
    assert result.n_workers == 2 and result.n_threads == 1
    assert f"{result.n_workers} worker(s) x 1 thread(s)" in str(result)
    assert_untouched(params, grads, before)


def test_sampled_plan_on_workers_is_bitwise_as_local(remote):
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y, bug="one_element")
    plan = fastgc.Sampled(per_block=6, seed=1)
    local = check(models.cost, params, grads, args=(X, Y), plan=plan)
    result = check(models.cost, params, grads, args=(X, Y), plan=plan, **remote)
    assert bits(result.approx) == bits(local.approx)
    assert result.verdict == local.verdict
    assert result.coverage == local.coverage


# --------------------------------------------------------------------------------------------
# The screen, and every plan that moves along random directions, on the workers.


def make_wide(dtype=np.float64):
    """A vector of 3000 entries and a 40 x 50 matrix, enough for several levels of
    localisation: the parameters and the data of :func:`wide_cost`."""
    rng = np.random.default_rng(7)
    params = {"w": rng.standard_normal(3000).astype(dtype),
              "v": rng.standard_normal((40, 50)).astype(dtype)}
    return params, rng.standard_normal(3000).astype(dtype), rng.standard_normal((40, 50)).astype(dtype)


def wide_cost(params, a, B):
    """Written for complex input too (no cast to float), for the complex-step screen."""
    return np.sum(np.tanh(params["w"] * a)) + np.sum(np.sin(params["v"]) * B)


def wide_grads(params, a, B, bug=None):
    grads = {"w": a * (1 - np.tanh(params["w"] * a) ** 2), "v": np.cos(params["v"]) * B}
    if bug == "one_entry":
        grads["w"][1234] *= 1.5
    elif bug == "doubled":
        grads["v"] = 2 * grads["v"]
    return grads


def assert_same_check(result, local):
    """Bitwise the local screen: numbers, verdicts, reports and coverage, and the same work
    plus the serial replay of a sample of what was differenced one by one and of
    ``REPLAY_ROWS`` directional rows (every screen here runs more directions on the
    workers)."""
    from fastgc.executors.replay import REPLAY_ROWS, replay_sample

    assert bits(result.approx) == bits(local.approx)
    assert result.verdict == local.verdict and result.plan == local.plan
    assert result.per_parameter == local.per_parameter
    assert result.coverage == local.coverage
    assert (result.checked is None) == (local.checked is None)
    if local.checked is not None:
        assert bits(result.checked) == bits(local.checked)
    replayed = replay_sample(local.approx, local.dtheta, local.checked).shape[0]
    assert result.evaluations == local.evaluations + 2 * (replayed + REPLAY_ROWS)
    assert result.n_workers == 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bug", [None, "one_entry", "doubled"])
def test_screen_on_workers_is_bitwise_as_local(remote, dtype, bug):
    params, a, B = make_wide(dtype)
    grads = wide_grads(params, a, B, bug)
    before = (snapshot(params), snapshot(grads))
    local = check(wide_cost, params, grads, args=(a, B), plan="screen")
    result = check(wide_cost, params, grads, args=(a, B), plan="screen", **remote)
    assert_same_check(result, local)
    if dtype == np.float64:  # float32's directions resolve less: the bits are the point
        assert local.verdict == ("correct" if bug is None else "bug")
    if bug == "one_entry" and dtype == np.float64:  # localised, not sampled
        assert result.worst(1)[0].flat_index == 1234
        assert result.coverage["w"].finding == "wrong entries located"
    if bug == "doubled":
        assert {n for n, p in result.per_parameter.items() if p.verdict == "bug"} == {"v"}
    assert_untouched(params, grads, before)


def test_screen_of_the_small_mlp_on_workers_is_bitwise_as_local(remote):
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y, bug="one_element")
    local = check(models.cost, params, grads, args=(X, Y), plan=fastgc.Screen(seed=5))
    result = check(models.cost, params, grads, args=(X, Y), plan=fastgc.Screen(seed=5),
                   **remote)
    assert_same_check(result, local)
    assert result.worst(1)[0].flat_index == local.worst(1)[0].flat_index == 9  # W1[2, 1]


def test_a_budget_that_screens_runs_on_the_workers(remote):
    params, a, B = make_wide()
    grads = wide_grads(params, a, B, "one_entry")
    # No full check fits in a nanosecond, and no time is left for a sample: the screen alone.
    local = check(wide_cost, params, grads, args=(a, B), budget=1e-9)
    result = check(wide_cost, params, grads, args=(a, B), budget=1e-9, **remote)
    assert result.plan == local.plan == "screen"
    assert_same_check(result, local)
    assert result.worst(1)[0].flat_index == 1234


def test_complex_step_screen_runs_in_the_caller_and_localises_on_the_workers(remote):
    """The complex step evaluates in this process, serially, as it does locally (one
    evaluation per direction); the localisation's directions and the components found run
    on the workers. The result is the local one."""
    params, a, B = make_wide()
    grads = wide_grads(params, a, B, "one_entry")
    plan = fastgc.Screen(complex_step=True)
    local = check(wide_cost, params, grads, args=(a, B), plan=plan)
    result = check(wide_cost, params, grads, args=(a, B), plan=plan, **remote)
    assert_same_check(result, local)
    assert result.verdict == "bug" and result.worst(1)[0].flat_index == 1234
    assert result.coverage["w"].finding == "wrong entries located"


def the_whole_range_moved(params, w0, v0) -> bool:
    """A direction moves every entry of its range; the round-off measurement one alone."""
    return (np.count_nonzero(params["w"] != w0) > 1
            or np.count_nonzero(params["v"] != v0) > 1)


def nan_when_moved(params, a, B, w0, v0):
    return float("nan") if the_whole_range_moved(params, w0, v0) else wide_cost(params, a, B)


def raising_when_moved(params, a, B, w0, v0):
    if the_whole_range_moved(params, w0, v0):
        raise FloatingPointError("planted")
    return wide_cost(params, a, B)


@pytest.mark.parametrize("failing", [nan_when_moved, raising_when_moved],
                         ids=["nan", "raising"])
def test_a_cost_failing_along_a_direction_is_the_local_cost_error(remote, failing):
    """Every block fails, in tasks that may complete in any order: the error is the one of
    the first block, as the local loop meets it."""
    params, a, B = make_wide()
    grads = wide_grads(params, a, B)
    before = (snapshot(params), snapshot(grads))
    args = (a, B, params["w"].copy(), params["v"].copy())
    with pytest.raises(fastgc.CostError) as expected:
        check(failing, params, grads, args=args, plan="screen")
    with pytest.raises(fastgc.CostError) as got:
        check(failing, params, grads, args=args, plan="screen", **remote)
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)
    assert got.value.flat_index == expected.value.flat_index == 0
    assert re.search(r"theta\[0(:3000)?\]", str(got.value)), str(got.value)
    assert_untouched(params, grads, before)


def test_a_wrong_differenced_component_of_a_remote_screen_is_replayed(remote):
    """The serial replay after a screen on workers takes its sample among the components the
    workers differenced one by one (the localised wrong entry among them): a worker that
    computes them otherwise than this process is caught."""
    params, a, B = make_wide()
    grads = wide_grads(params, a, B, "one_entry")
    args = (a, B, float(params["w"][1234]), os.getpid())
    with pytest.raises(fastgc.IrreproducibleCostError, match=r"theta\[1234\]") as info:
        check(skewed_in_workers, params, grads, args=args, plan="screen", **remote)
    assert 1234 in info.value.indices
    assert "ran on worker processes" in str(info.value) and "n_threads=1" not in str(info.value)


def skewed_in_workers(params, a, B, original, caller):
    """The wide cost, plus a slope of 1e-6 along w[1234] in any process but the caller's
    (the same J(theta) everywhere)."""
    skew = 0.0 if os.getpid() == caller else 1e-6 * (params["w"][1234] - original)
    return wide_cost(params, a, B) + skew


def skewed_along_w_in_workers(params, a, B, w0, caller):
    """The wide cost, plus a slope of 4e-8 along the sum of w in any process but the
    caller's: the same J(theta) everywhere, and a few units in the last place of J along a
    direction over w, far below what the screen resolves."""
    skew = 0.0 if os.getpid() == caller else 4e-8 * float(np.sum(params["w"] - w0))
    return wide_cost(params, a, B) + skew


def test_a_cost_differing_in_the_workers_under_a_screen_that_passes_is_caught(remote):
    """No block disagrees, so nothing is differenced one by one: the replay of the
    directions the workers ran is what catches a cost that is another function there."""
    params, a, B = make_wide()
    grads = wide_grads(params, a, B)
    # Skewed in this process too, the screen passes every block without a component.
    everywhere = check(skewed_along_w_in_workers, params, grads,
                       args=(a, B, params["w"].copy(), -1), plan="screen")
    assert everywhere.verdict == "correct"
    assert all(c.components == 0 and c.finding == "passed the screen"
               for c in everywhere.coverage.values())
    before = (snapshot(params), snapshot(grads))
    with pytest.raises(fastgc.IrreproducibleCostError, match="directional differences") as info:
        check(skewed_along_w_in_workers, params, grads,
              args=(a, B, params["w"].copy(), os.getpid()), plan="screen", **remote)
    message = str(info.value)
    assert "ran on worker processes" in message and "n_threads=1" not in message
    assert "executor='local'" in message
    assert set(info.value.indices) == {0} and info.value.location == ("w", (0,))
    assert "theta[0:3000] (params['w'][0] to params['w'][2999])" in message
    assert all(p != s for p, s in zip(info.value.parallel, info.value.serial))
    assert_untouched(params, grads, before)


def test_directional_session_needs_the_dtheta_it_shipped(remote):
    from fastgc._cost import Cost, measure_baseline
    from fastgc._layout import flatten
    from fastgc._steps import choose_steps
    from fastgc.engines import resolve_engine
    from fastgc.executors import LocalExecutor, resolve_executor

    params, X, Y = models.make_mlp(2)
    theta, layout = flatten(params)
    cost = Cost.classify(models.cost, (X, Y), layout)
    engine = resolve_engine(None, cost)
    dtheta = flatten(models.grads(params, X, Y))[0]
    rows = (np.array([0, 20, 3], np.int64), np.array([20, 25, 4], np.int64),
            np.array([1, 2, 3], np.uint64), np.array([1, 0, 1], np.int64),
            np.array([1e-6, 1e-5, 1e-7]))
    expected, got = np.empty((3, 3)), np.empty((3, 3))
    with LocalExecutor(engine, cost, theta, 1).open() as session:
        session.directional(dtheta, *rows, expected)
    value = measure_baseline(cost, theta).value
    made = [resolve_executor(remote["executor"], remote.get("n_workers"), engine, cost, theta,
                             1, None, choose_steps(theta, None), value, shipped)
            for shipped in (dtheta, None)]
    with made[0].open() as session:
        session.directional(dtheta, *rows, got)
        with pytest.raises(fastgc.ExecutorError, match="was given another one"):
            session.directional(2 * dtheta, *rows, got)
    assert bits(got) == bits(expected)
    with made[1].open() as session:
        with pytest.raises(fastgc.ExecutorError, match="was given none: pass dtheta="):
            session.directional(dtheta, *rows, got)


@pytest.mark.parametrize("plan", ["full", "screen"])
@pytest.mark.parametrize("kind", ["pool", "dask"])
def test_njit_cost_bitwise_as_local(request, kind, plan):
    """The compiled kernels in the workers, the directional one too."""
    require_engine("numba")
    executor = request.getfixturevalue("pool" if kind == "pool" else "client")
    params, X, Y = models.make_mlp(1)
    grads = models.grads(params, X, Y, bug="dW2_doubled" if plan == "screen" else None)
    local = check(models.numba_cost(), params, grads, args=(X, Y), plan=plan)
    result = check(models.numba_cost(), params, grads, args=(X, Y), plan=plan,
                   executor=executor, n_threads=1)
    assert bits(result.approx) == bits(local.approx)
    assert result.coverage == local.coverage
    assert result.engine == local.engine == "numba"
    assert result.verdict == ("bug" if plan == "screen" else "correct")


def test_njit_cost_on_the_threads_of_fastgcs_own_workers():
    """fastgc's workers come from a fork server that never ran a thread pool: a compiled cost
    runs on the threads each worker is given, with the local bits."""
    require_engine("numba")
    params, X, Y = models.make_mlp(1)
    grads = models.grads(params, X, Y)
    local = check(models.numba_cost(), params, grads, args=(X, Y), n_threads=TWO_THREADS)
    result = check(models.numba_cost(), params, grads, args=(X, Y), executor="processes",
                   n_workers=1, n_threads=TWO_THREADS)
    assert (result.executor, result.n_workers, result.n_threads) == ("processes", 1,
                                                                      TWO_THREADS)
    assert bits(result.approx) == bits(local.approx) and result.verdict == "correct"


def test_differences_session_of_given_indices(remote):
    """The session's ``differences`` (what a plan asks for): any indices, any steps."""
    from fastgc._cost import Cost, measure_baseline
    from fastgc._layout import flatten
    from fastgc._steps import choose_steps
    from fastgc.engines import resolve_engine
    from fastgc.executors import LocalExecutor, resolve_executor

    params, X, Y = models.make_mlp(2)
    theta, layout = flatten(params)
    cost = Cost.classify(models.cost, (X, Y), layout)
    engine = resolve_engine(None, cost)
    steps = choose_steps(theta, None)
    indices = np.array([40, 3, 3, 17, 0, 22, 9], dtype=np.int64)
    given = np.linspace(1e-6, 1e-4, indices.shape[0])
    expected, got = np.empty(indices.shape[0]), np.empty(indices.shape[0])
    with LocalExecutor(engine, cost, theta, 1).open() as session:
        session.differences(indices, given, expected)
    executor = resolve_executor(remote["executor"], remote.get("n_workers"), engine, cost,
                                theta, 1, None, steps, measure_baseline(cost, theta).value)
    with executor.open() as session:
        session.differences(indices, given, got)
    assert bits(got) == bits(expected)


@pytest.mark.parametrize("n", [1, 3, 7, 1_000, 20_026, 3_000_000])
@pytest.mark.parametrize("seconds_per_cost", [1e-9, 7.3e-5, 0.02])
def test_chunk_rule_gives_every_slot_the_same_work(remote, n, seconds_per_cost):
    """Tasks cover the items once, in order; their count is a multiple of the slots (at least
    four per slot when there are enough items), and their sizes differ by at most one, so no
    slot runs a task while the others are idle at the end."""
    from fastgc._cost import Cost
    from fastgc._layout import flatten
    from fastgc._steps import choose_steps
    from fastgc.engines import resolve_engine
    from fastgc.executors import resolve_executor
    from fastgc.executors._remote import MAX_ROUND, TASKS_PER_WORKER

    params, X, Y = models.make_mlp(0)
    theta, layout = flatten(params)
    cost = Cost.classify(models.cost, (X, Y), layout)
    executor = resolve_executor(remote["executor"], remote.get("n_workers"),
                                resolve_engine(None, cost), cost, theta, 1, None,
                                choose_steps(theta, None), 0.0)
    bounds = executor.task_bounds(n, seconds_per_cost)
    sizes = np.diff(bounds)
    slots = executor._slots()
    assert bounds[0] == 0 and bounds[-1] == n and np.all(sizes >= 1)
    assert sizes.max() - sizes.min() <= 1
    if n >= TASKS_PER_WORKER * slots:
        assert sizes.shape[0] % slots == 0 and sizes.shape[0] >= 2 * slots
    # A task lasts at most the rule's time (two evaluations per item), give or take an item.
    assert 2 * seconds_per_cost * (sizes.max() - 1) <= executor.task_seconds
    if not isinstance(remote["executor"], ProcessPoolExecutor):
        assert sizes.max() <= MAX_ROUND  # a caller's pool takes the payload with every task


def test_progress_bar_moves_per_chunk(remote, capsys):
    params, X, Y = models.make_mlp(0)
    result = fastgc.check(models.cost, params, models.grads(params, X, Y), args=(X, Y),
                          progress=True, **remote)
    err = capsys.readouterr().err
    assert "fastgc:" in err and f"/{result.layout.size} " in err


# --------------------------------------------------------------------------------------------
# Hooks.


class Dropout:
    """A stochastic cost made repeatable by ``reseed`` (the generator lives in the worker)."""

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def reseed(self):
        self.rng = np.random.default_rng(0)

    def __call__(self, params, X, Y):
        mask = self.rng.random(X.shape) > 0.3
        return models.cost(params, X * mask / 0.7, Y)


def test_reseed_and_signature_hooks_work(remote):
    params, X, Y = models.make_mlp(3)
    dropout = Dropout()
    grads = models.grads(params, X, Y)
    local = check(dropout, params, grads, args=(X, Y), reseed=dropout.reseed)
    result = check(dropout, params, grads, args=(X, Y), reseed=dropout.reseed, **remote)
    assert bits(result.approx) == bits(local.approx) and result.engine == "python"

    def signature(p):  # runs in the caller, with the diagnosis
        return p["W1"] @ X + p["b1"] > 0

    signed = check(models.cost, params, grads, args=(X, Y), signature=signature, **remote)
    assert signed.verdict == "correct"


class Stateful:
    """A layer-like cost that keeps its activations between calls: refuses to be entered
    from two threads at once."""

    def __init__(self, X, Y):
        self.X, self.Y, self.busy = X, Y, False

    def __call__(self, params):
        if self.busy:
            raise RuntimeError("called from two threads at once")
        self.busy = True
        try:
            threading.Event().wait(0.0005)
            return models.cost(params, self.X, self.Y)
        finally:
            self.busy = False


def test_the_threads_of_one_worker_take_turns_with_a_python_cost():
    from concurrent.futures import ThreadPoolExecutor

    params, X, Y = models.make_mlp(5)
    grads = models.grads(params, X, Y)
    local = check(Stateful(X, Y), params, grads)
    with ThreadPoolExecutor(2) as threads:
        result = check(Stateful(X, Y), params, grads, executor=threads)
    assert bits(result.approx) == bits(local.approx) and result.executor == "ThreadPoolExecutor"


# --------------------------------------------------------------------------------------------
# A worker killed mid-check.


def killing_cost(params, X, Y, marker, caller, original):
    """The MLP cost, except that the first worker process to see W1[0, 3] moved kills itself
    (once: the marker file says it happened)."""
    if os.getpid() != caller and params["W1"][0, 3] != original:
        try:
            descriptor = os.open(marker, os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            pass
        else:
            os.close(descriptor)
            os.kill(os.getpid(), signal.SIGKILL)
    return models.cost(params, X, Y)


def killing_args(tmp_path, params, X, Y):
    return (X, Y, str(tmp_path / "killed"), os.getpid(), float(params["W1"][0, 3]))


@pytest.mark.parametrize("plan", ["full", "screen"])
@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_killed_worker_gives_the_same_result(request, tmp_path, kind, plan):
    """With the screen, the worker dies in the first round of directions (W1 moved)."""
    executor = "processes" if kind == "processes" else request.getfixturevalue("client")
    options = {"n_workers": 2} if kind == "processes" else {}
    params, X, Y = models.make_mlp(4)
    grads = models.grads(params, X, Y, bug="dW2_doubled")
    before = (snapshot(params), snapshot(grads))
    args = killing_args(tmp_path, params, X, Y)
    local = check(killing_cost, params, grads, args=args, plan=plan)
    result = check(killing_cost, params, grads, args=args, plan=plan, executor=executor,
                   **options)
    assert (tmp_path / "killed").exists()  # a worker did die
    assert bits(result.approx) == bits(local.approx) and result.verdict == "bug"
    assert result.coverage == local.coverage
    assert_untouched(params, grads, before)


@pytest.mark.parametrize("plan,lost", [("full", r"#\d+ \(theta"),
                                       ("screen", r"#\d+ \(directions moving theta\[0\]")])
def test_killed_worker_of_a_callers_pool_names_the_lost_chunk(tmp_path, plan, lost):
    params, X, Y = models.make_mlp(4)
    grads = models.grads(params, X, Y)
    before = (snapshot(params), snapshot(grads))
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as own:
        with pytest.raises(fastgc.ExecutorError, match=r"died during the check.*chunk\(s\) "
                                                       + lost):
            check(killing_cost, params, grads, args=killing_args(tmp_path, params, X, Y),
                  executor=own, plan=plan)
    assert_untouched(params, grads, before)


# --------------------------------------------------------------------------------------------
# What cannot be shipped, and a worker that computes differently.


def test_unpicklable_cost_args_and_hook_are_named(remote, tmp_path):
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    before = (snapshot(params), snapshot(grads))
    lock = threading.Lock()

    def locked_cost(p, X, Y):
        with lock:
            return models.cost(p, X, Y)

    with pytest.raises(fastgc.ExecutorError, match=r"the cost cannot be pickled.*lock"):
        check(locked_cost, params, grads, args=(X, Y), **remote)
    with open(tmp_path / "log.txt", "w") as log:
        with pytest.raises(fastgc.ExecutorError, match=r"the args cannot be pickled"):
            check(lambda p, X, Y, log: models.cost(p, X, Y), params, grads,
                  args=(X, Y, log), **remote)
    with pytest.raises(fastgc.ExecutorError, match=r"the reseed cannot be pickled"):
        check(models.cost, params, grads, args=(X, Y), reseed=lambda: lock.acquire(False),
              **remote)
    assert_untouched(params, grads, before)


def process_dependent_cost(params, X, Y, caller):
    """The MLP cost, off by one part in 1e12 in any process but the caller's."""
    return models.cost(params, X, Y) * (1.0 if os.getpid() == caller else 1.0 + 1e-12)


def test_worker_computing_another_cost_is_refused(remote):
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    before = (snapshot(params), snapshot(grads))
    with pytest.raises(fastgc.ExecutorError, match=r"computes J\(theta\) = .* where this process"):
        check(process_dependent_cost, params, grads, args=(X, Y, os.getpid()), **remote)
    assert_untouched(params, grads, before)


def raising_cost(params, X, Y, original):
    """The MLP cost, raising while W1[0, 3] is moved (in whichever process runs it)."""
    if params["W1"][0, 3] != original:
        raise FloatingPointError("planted")
    return models.cost(params, X, Y)


def test_a_cost_raising_in_a_worker_names_the_component(remote):
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    before = (snapshot(params), snapshot(grads))
    with pytest.raises(fastgc.CostError, match=r"FloatingPointError: planted.*theta\[3\]") as info:
        check(raising_cost, params, grads, args=(X, Y, float(params["W1"][0, 3])), **remote)
    assert info.value.flat_index == 3 and info.value.location == ("W1", (0, 3))
    assert_untouched(params, grads, before)


def test_the_payload_leaves_the_dask_workers_after_a_check(client):
    from fastgc.executors import _worker

    params, X, Y = models.make_mlp(0)
    check(models.cost, params, models.grads(params, X, Y), args=(X, Y), executor=client)
    held = client.run(lambda: len(_worker._INSTALLED))
    assert len(held) == 2 and set(held.values()) == {0}


# --------------------------------------------------------------------------------------------
# fastgc's own pool between checks.


def recording_cost(params, X, Y, folder, caller):
    """The MLP cost; a worker process also notes its pid and how many checks' payloads it
    holds."""
    if os.getpid() != caller:
        from fastgc.executors import _worker

        with open(os.path.join(folder, f"{os.getpid()}-{len(_worker._INSTALLED)}"), "w"):
            pass
    return models.cost(params, X, Y)


def recorded(folder):
    """{pid: the payload counts it held} of the workers that ran a recording check."""
    seen: dict[int, set[int]] = {}
    for name in os.listdir(folder):
        pid, held = name.split("-")
        seen.setdefault(int(pid), set()).add(int(held))
    return seen


def recording_check(tmp_path, name, n_workers=2, cost=recording_cost):
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    folder = tmp_path / name
    folder.mkdir()
    before = (snapshot(params), snapshot(grads))
    result = check(cost, params, grads, args=(X, Y, str(folder), os.getpid()),
                   executor="processes", n_workers=n_workers)
    assert_untouched(params, grads, before)
    local = check(models.cost, params, grads, args=(X, Y))
    assert bits(result.approx) == bits(local.approx) and result.verdict == "correct"
    return recorded(folder)


def payload_files(folder):
    return [name for name in os.listdir(folder) if name.startswith("fastgc-payload-")]


def test_fastgcs_pool_serves_the_next_checks(tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temporary))
    recording_check(tmp_path, "start")  # on the pool an earlier test kept, or a fresh one
    runs = [recording_check(tmp_path, f"run{k}") for k in range(4)]
    # The same two processes ran every check (fresh pools would bring new pids each time),
    # each holding only the payload of the check it ran (none while loading it).
    assert len(set().union(*runs)) <= 2
    assert all(1 in held and held <= {0, 1} for run in runs for held in run.values())
    assert payload_files(temporary) == []  # each check removed its payload file


def test_fastgcs_pool_is_replaced_for_other_counts_and_after_a_failure(tmp_path):
    two = set(recording_check(tmp_path, "two"))
    one = set(recording_check(tmp_path, "one", n_workers=1))
    assert len(one) == 1 and not one & two
    two_again = set(recording_check(tmp_path, "two-again"))
    assert not two_again & (one | two)
    params, X, Y = models.make_mlp(0)
    with pytest.raises(fastgc.CostError, match="planted"):
        check(raising_cost, params, models.grads(params, X, Y),
              args=(X, Y, float(params["W1"][0, 3])), executor="processes", n_workers=2)
    after_failure = set(recording_check(tmp_path, "after-failure"))
    assert not after_failure & (one | two | two_again)


@pytest.mark.parametrize("wait", [0.0, 0.5])
def test_a_worker_of_the_kept_pool_killed_between_checks(tmp_path, wait):
    # In a process of its own, which must then exit: the pool it breaks stays there.
    from processes import run_python

    seen = run_python(f"""
        import json, os, pathlib, signal, threading
        from test_remote_executors import recording_check
        folder = pathlib.Path({str(tmp_path)!r})
        workers = recording_check(folder, "first")
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        threading.Event().wait({wait})  # 0: perhaps before the pool noticed
        after = recording_check(folder, "after")  # bitwise the local result
        print(json.dumps([sorted(workers), killed, sorted(after)]))
    """, env={"PYTHONPATH": os.pathsep.join([str(SOURCE_DIR), str(TESTS_DIR),
                                             str(TESTS_DIR / "executors")])})
    workers, killed, after = set(seen[0]), seen[1], set(seen[2])
    assert killed not in after
    if wait:  # noticed: the check ran on a fresh pool (else the survivor may have helped)
        assert not after & workers


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def all_gone(pids: set, seconds: float) -> bool:
    """Whether every process of ``pids`` has ended within ``seconds``."""
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.05)
    return True


def stuck_cost(params, X, Y, folder, caller):
    """The MLP cost, except in a worker process, which notes its pid and never returns."""
    if os.getpid() != caller:
        with open(os.path.join(folder, f"{os.getpid()}-0"), "w"):
            pass
        threading.Event().wait(600.0)
    return models.cost(params, X, Y)


STUCK_CHILD = """
import json, os, pathlib, signal, sys, threading, time
import fastgc, models
from fastgc.executors import processes
from test_remote_executors import stuck_cost

signal.signal(signal.SIGINT, signal.default_int_handler)  # also from a background job
processes.EXIT_GRACE_SECONDS = 1.0
folder = pathlib.Path(sys.argv[1])

def interrupt_once_both_workers_wait():
    while len(os.listdir(folder)) < 2:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt_once_both_workers_wait, daemon=True).start()
params, X, Y = models.make_mlp(0)
try:
    fastgc.check(stuck_cost, params, models.grads(params, X, Y), progress=False,
                 args=(X, Y, str(folder), os.getpid()), executor="processes", n_workers=2)
    said = "not interrupted"
except KeyboardInterrupt as interrupt:
    said = str(interrupt)
print(json.dumps(said), flush=True)
"""


def test_the_exit_after_an_interrupted_check_kills_workers_stuck_in_a_chunk(tmp_path):
    """Ctrl-C leaves the running chunks to their pool; at the process's exit they get
    EXIT_GRACE_SECONDS (1 s here), then their workers are killed and the process exits."""
    folder = tmp_path / "stuck"
    folder.mkdir()
    paths = [str(SOURCE_DIR), str(TESTS_DIR), str(TESTS_DIR / "executors")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    completed = subprocess.run(
        [sys.executable, "-c", "import faulthandler; faulthandler.dump_traceback_later(90, "
         "exit=True)\n" + STUCK_CHILD, str(folder)],
        capture_output=True, text=True, env=environment, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "interrupted after" in json.loads(completed.stdout.splitlines()[-1])
    assert "fastgc: killed the workers of 1 process pool(s) that had not ended" in completed.stderr
    workers = set(recorded(folder))
    assert len(workers) == 2  # both were stuck in their chunk
    assert all_gone(workers, seconds=10)


def test_a_pools_thread_that_cannot_end_does_not_hold_the_exit():
    """The last resort of the exit: a thread stuck for good (as a pool's is when its worker's
    exit is never reported) is not joined, and the process exits."""
    from processes import run_python

    said = run_python("""
        import json, threading
        from fastgc.executors import processes
        stuck = threading.Thread(target=threading.Event().wait)  # not a daemon: joined
        stuck.start()
        processes._not_joined_at_exit(stuck)
        print(json.dumps(stuck.is_alive()))
    """)
    assert said is True


def test_fastgcs_idle_pool_exits(tmp_path, monkeypatch):
    from fastgc.executors import processes

    monkeypatch.setattr(processes, "IDLE_SECONDS", 0.2)
    workers = set(recording_check(tmp_path, "idle"))
    assert workers
    assert all_gone(workers, seconds=10)
    assert not set(recording_check(tmp_path, "later")) & workers


def test_a_process_ends_its_kept_pool_when_it_exits(tmp_path):
    from processes import run_python

    folder = tmp_path / "exit"
    folder.mkdir()
    run_python(f"""
        import json, os
        import fastgc, models
        from test_remote_executors import recording_cost
        params, X, Y = models.make_mlp(0)
        result = fastgc.check(recording_cost, params, models.grads(params, X, Y),
                              args=(X, Y, {str(folder)!r}, os.getpid()),
                              executor="processes", n_workers=2, progress=False)
        print(json.dumps(result.verdict.value))
    """, env={"PYTHONPATH": os.pathsep.join([str(SOURCE_DIR), str(TESTS_DIR),
                                             str(TESTS_DIR / "executors")])})
    workers = set(recorded(folder))
    assert workers  # they ran the check, and the interpreter's exit ended them
    assert all_gone(workers, seconds=5)


def test_options_of_executors_are_checked():
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y)
    with pytest.raises(fastgc.InvalidInputError, match="executor must be one of"):
        check(models.cost, params, grads, args=(X, Y), executor="threads")
    with pytest.raises(fastgc.InvalidInputError, match="n_workers=2 applies to"):
        check(models.cost, params, grads, args=(X, Y), n_workers=2)
    with pytest.raises(fastgc.InvalidInputError, match="n_workers must be"):
        check(models.cost, params, grads, args=(X, Y), executor="processes", n_workers=0)


def test_c_cost_stays_local():
    require_engine("numba")
    params, X, Y = models.make_mlp(0)
    with pytest.raises(fastgc.ExecutorError, match="C-level cost"):
        check(models.c_cost(X, Y), params, models.grads(params, X, Y), executor="processes")


# --------------------------------------------------------------------------------------------
# The report.


def test_report_suggests_processes_for_a_slow_one_thread_python_cost():
    from fastgc._cost import Cost
    from fastgc._layout import flatten
    from fastgc._threads import usable_threads
    from fastgc.executors import Placement, placement_hints

    params, X, Y = models.make_mlp(0)
    cost = Cost.classify(models.cost, (X, Y), flatten(params)[1])
    slow = placement_hints(cost, Placement("local", 1, 1), 30.0)
    assert bool(slow) == (usable_threads() > 1)
    assert all('executor="processes"' in hint for hint in slow)
    assert placement_hints(cost, Placement("local", 1, 1), 0.5) == ()
    assert placement_hints(cost, Placement("processes", 2, 1), 30.0) == ()


# --------------------------------------------------------------------------------------------
# Ctrl-C in a real child process.

CHILD = """
import faulthandler, json, os, signal, sys, time
import numpy as np
import fastgc, models
from conftest import snapshot

# A child that hangs prints where each of its threads is, and exits, before the test's timeout.
faulthandler.dump_traceback_later(90, exit=True)

# Started from a shell's background job, a process inherits SIGINT ignored: answer it as a
# terminal's foreground process does.
signal.signal(signal.SIGINT, signal.default_int_handler)

def slow_cost(params, X, Y):
    time.sleep(0.004)
    return models.cost(params, X, Y)

def slower_when_moved(p, W0, params, X, Y):
    # A direction moves the whole block: 1 s per evaluation, so that the screen's first
    # round (4 directions, 8 evaluations on two workers) lasts about 4 s.
    time.sleep(1.0 if np.count_nonzero(p["W"] != W0) > 1 else 0.0)
    return models.cost(params, X, Y) + float(np.sum(p["W"] ** 2))

def main(kind, address, plan):
    if kind == "dask":
        from dask.distributed import Client
        executor = Client(address)
    elif kind == "pool":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        executor = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver"))
    else:
        executor = "processes"
    params, X, Y = models.make_mlp(0)
    big = {"W": np.random.default_rng(0).standard_normal((60, 50))}
    before = snapshot(big)
    print("started", flush=True)
    try:
        if plan == "screen":
            fastgc.check(slower_when_moved, big, {"W": 2 * big["W"]}, progress=False,
                         args=(big["W"].copy(), params, X, Y), plan="screen",
                         executor=executor)
        else:
            fastgc.check(lambda p: slow_cost(params, X, Y) + float(np.sum(p["W"] ** 2)),
                         big, {"W": 2 * big["W"]}, progress=False, executor=executor)
        message = "not interrupted"
    except KeyboardInterrupt as interrupt:
        message = str(interrupt)
    grads = models.grads(params, X, Y)
    after = fastgc.check(models.cost, params, grads, args=(X, Y), progress=False,
                         executor=executor)
    print(json.dumps({"message": message, "verdict": str(after.verdict),
                      "untouched": snapshot(big) == before}), flush=True)

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
"""


@pytest.mark.parametrize("plan", ["full", "screen"])
@pytest.mark.parametrize("kind", KINDS)
def test_ctrl_c_cancels_and_leaves_the_executor_usable(request, tmp_path, kind, plan):
    address = request.getfixturevalue("cluster").scheduler_address if kind == "dask" else ""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    paths = [str(SOURCE_DIR), str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    child = subprocess.Popen([sys.executable, str(script), kind, address, plan],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=environment)
    try:
        assert child.stdout.readline().strip() == "started"
        # The check (3000 components at 4 ms per evaluation: about 12 s on two workers; or
        # the screen's first round of directions, about 4 s) is under way once the workers
        # report; interrupt it then.
        threading.Event().wait(2.0)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, err
    report = json.loads(out.splitlines()[-1])
    # The full check's sweep says what was cancelled; a plan says how far it got.
    said = "cancelled" if plan == "full" else "cost evaluations of the plan"
    assert "interrupted after" in report["message"] and said in report["message"]
    assert report["verdict"] == "correct" and report["untouched"]


NO_GUARD = """
import numpy as np, fastgc
rng = np.random.default_rng(0)
X = rng.standard_normal((3, 5))
params = {"W": rng.standard_normal((2, 3))}
def cost(p):
    return float(np.sum(np.tanh(p["W"] @ X) ** 2))
def grads(p):
    A = np.tanh(p["W"] @ X)
    return {"W": (2 * A * (1 - A**2)) @ X.T}
print("checking")
result = fastgc.check(cost, params, grads(params), executor="processes", n_workers=2,
                      progress=False)
print(result.verdict, result.executor)
"""


def test_a_script_without_a_main_guard_runs_its_check_once(tmp_path):
    """fastgc's workers do not run the caller's script again (spawn and forkserver would)."""
    script = tmp_path / "course.py"
    script.write_text(NO_GUARD)
    environment = {**os.environ, "PYTHONPATH": str(SOURCE_DIR)}
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                               env=environment, timeout=120, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == ["checking", "correct processes"]
