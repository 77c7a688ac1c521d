"""Checks of the NumPy MLP on worker processes and on a Dask cluster, against one process.

The cost is the course-style NumPy cost (``_models.numpy_cost``), which runs on one thread in
one process: the case the executors are for. Every row uses the serial Python engine, in the
caller or in each worker, so that the rows differ only in where the work runs. A Dask
``LocalCluster`` of worker processes (one thread each) is started in ``setup``, outside the
timing; fastgc's own pool (``executor="processes"``) is started by the first timed check
and kept for the next ones, as in a session of several checks.

``time_check`` times a whole ``fastgc.check``; ``time_sample`` times :data:`SAMPLE` evenly
spaced indices through the executor's session (shipping the payload, comparing J(theta),
chunks out and numbers back), for sizes where a whole check takes minutes on one core.
"""

from __future__ import annotations

import time

import numpy as np

import fastgc

from . import _models

SAMPLE = 2_000
EXECUTORS = ["local", "processes-2", "dask-1", "dask-2"]


def _ship_this_suite_by_value() -> None:
    """Workers import a cost's module by name, and asv loads this suite from a path that
    worker processes do not have: its cost functions travel by value instead (cloudpickle,
    installed with the dask extra, which these benchmarks need)."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(_models)


def start_executor(name: str):
    """``(executor, n_workers, cluster)`` for a row name; ``cluster`` is closed afterwards."""
    if name == "local":
        return None, None, None
    _ship_this_suite_by_value()
    count = int(name.split("-")[1])
    if name.startswith("processes"):
        return "processes", count, None
    import os

    from dask.distributed import Client, LocalCluster

    saved = dict(os.environ)  # the nannies set OMP_NUM_THREADS=1 here when they spawn
    cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=50)
    os.environ.clear()
    os.environ.update(saved)
    return Client(cluster), None, cluster


def stop_executor(executor, cluster) -> None:
    if cluster is not None:
        executor.close()
        cluster.close()


def check_seconds(mlp, grads, executor, n_workers) -> float:
    """One whole check, in seconds."""
    started = time.perf_counter()
    with one_blas_thread():
        fastgc.check(_models.numpy_cost, mlp.theta, grads, args=mlp.args, engine="python",
                     executor=executor, n_workers=n_workers, progress=False)
    return time.perf_counter() - started


def one_blas_thread():
    """BLAS on one thread in this process, as in every worker (fastgc's own cap theirs, Dask
    starts its workers so): one process is then one core, and the rows compare cores."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def sample_seconds(mlp, executor, n_workers, indices: np.ndarray) -> float:
    """``indices`` through an executor's session (startup and shipping included)."""
    from fastgc._cost import Cost, measure_baseline
    from fastgc._layout import flatten
    from fastgc._steps import choose_steps
    from fastgc.engines import get_engine
    from fastgc.executors import resolve_executor

    theta, layout = flatten(mlp.theta)
    cost = Cost.classify(_models.numpy_cost, mlp.args, layout)
    steps = choose_steps(theta, None)
    baseline = measure_baseline(cost, theta)
    approx = np.empty(indices.shape[0])
    started = time.perf_counter()
    remote = resolve_executor(executor, n_workers, get_engine("python"), cost, theta, 1, None,
                              steps, baseline.value)
    with one_blas_thread(), remote.open() as session:
        session._seconds_per_cost = baseline.seconds  # the chunk rule of a check
        session.differences(indices, steps.take(indices), approx)
    return time.perf_counter() - started


def task_overhead_seconds(mlp, executor, n_workers, n_tasks: int = 40) -> float:
    """The cost of one task beyond its two evaluations: ``n_tasks`` one-index tasks through
    an open session, the slots' time per task less one index's work."""
    from fastgc._cost import Cost, measure_baseline
    from fastgc._layout import flatten
    from fastgc._steps import choose_steps
    from fastgc.engines import get_engine
    from fastgc.executors import resolve_executor
    from fastgc.executors._remote import Task

    theta, layout = flatten(mlp.theta)
    cost = Cost.classify(_models.numpy_cost, mlp.args, layout)
    steps = choose_steps(theta, None)
    baseline = measure_baseline(cost, theta)
    remote = resolve_executor(executor, n_workers, get_engine("python"), cost, theta, 1, None,
                              steps, baseline.value)
    with remote.open() as session:
        warm = [Task(k, (k, k + 1), None, k, k + 1) for k in range(2 * remote._slots())]
        session._run(warm, np.empty(theta.shape[0]), None)  # every worker has its payload
        tasks = [Task(k, (k, k + 1), None, k, k + 1) for k in range(n_tasks)]
        started = time.perf_counter()
        session._run(tasks, np.empty(theta.shape[0]), None)
        elapsed = time.perf_counter() - started
    return max(0.0, elapsed * remote._slots() / n_tasks - 2 * baseline.seconds)


class TimeExecutorCheck:
    """A whole check of the ~20k-parameter NumPy MLP, per executor."""

    params = (EXECUTORS, [20_000])
    param_names = ["executor", "size"]
    number = 1
    repeat = (1, 3, 30.0)
    warmup_time = 0.0
    timeout = 300.0

    def setup(self, name, size):
        self.mlp = _models.make_mlp(size)
        self.grads = _models.numpy_grads(self.mlp.theta, *self.mlp.args)
        self.executor, self.n_workers, self.cluster = start_executor(name)

    def teardown(self, name, size):
        stop_executor(self.executor, self.cluster)

    def time_check(self, name, size):
        check_seconds(self.mlp, self.grads, self.executor, self.n_workers)


class TimeExecutorSample:
    """:data:`SAMPLE` indices of the ~200k-parameter NumPy MLP through each executor."""

    params = (EXECUTORS, [200_000])
    param_names = ["executor", "size"]
    number = 1
    repeat = (1, 3, 30.0)
    warmup_time = 0.0
    timeout = 300.0

    def setup(self, name, size):
        self.mlp = _models.make_mlp(size)
        self.indices = np.linspace(0, self.mlp.n - 1, SAMPLE).astype(np.int64)
        self.executor, self.n_workers, self.cluster = start_executor(name)

    def teardown(self, name, size):
        stop_executor(self.executor, self.cluster)

    def time_sample(self, name, size):
        sample_seconds(self.mlp, self.executor, self.n_workers, self.indices)


class TrackTaskOverhead:
    """Milliseconds one task costs beyond its work, per remote executor."""

    params = (EXECUTORS[1:],)
    param_names = ["executor"]
    unit = "ms"
    timeout = 120.0

    def setup(self, name):
        self.mlp = _models.make_mlp(2_000)
        self.executor, self.n_workers, self.cluster = start_executor(name)

    def teardown(self, name):
        stop_executor(self.executor, self.cluster)

    def track_task_overhead(self, name):
        return 1e3 * task_overhead_seconds(self.mlp, self.executor, self.n_workers)
