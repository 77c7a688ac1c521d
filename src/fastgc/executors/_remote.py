"""What the process and Dask executors share: chunks out, numbers back, in the caller.

A :class:`RemoteExecutor` ships the check's payload to its workers once (how is the backend's
business: a pool initializer, a Dask worker plugin, or with every task for a plain
``concurrent.futures.Executor``), then its session cuts the work into tasks, submits them,
and writes each chunk's numbers into the output as it completes, with the progress bar moving
per chunk. The work is central differences along indices (``differences``, ``sweep``) or
directional differences (``directional``: the screen's and the localisation's rows, each a
range of theta moved along a seeded direction, against the dtheta the payload carries for a
plan that moves along directions). A direction is a pure function of its seed and of the
index, so a row's numbers do not depend on the worker or thread that computes it: the
results are bitwise those of a local run. Every chunk carries the J(theta) its worker
computed; a worker whose value differs from the caller's is an error before any of its
numbers are used. A cost that fails in a worker is the same :class:`CostError` a local run
raises: when several chunks fail, the error of the first of them in the order of the work,
as the local loop would meet it. Ctrl-C or an error cancels the outstanding tasks; the
caller's arrays are never written to by a worker.

The chunk rule: a task lasts about :data:`TASK_SECONDS` (from the caller's timing of one
evaluation; twice that on Dask, whose tasks cost a few milliseconds each, several under
load), there are at least :data:`TASKS_PER_WORKER` tasks per worker slot so that the bar
moves, and the count is a multiple of the slots, with sizes that differ by at most one: every
slot gets the same work, so none finishes a task after the others are idle.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from .._errors import CostError, ExecutorError
from . import _shipping, _worker
from .local import MAX_ROUND, PROGRESS_AFTER_SECONDS, progress_bar

if TYPE_CHECKING:
    from .._cost import Cost
    from .._steps import StepRule
    from ..engines import Engine

#: A task lasts about this long, so that the per-task overhead (a few milliseconds for Dask,
#: well under one for a process pool) stays under a percent or two of the check.
TASK_SECONDS = 0.5
TASKS_PER_WORKER = 4


@dataclass(frozen=True)
class Placement:
    """Where a check ran: the executor, its workers and the threads of each."""

    executor: str  # "local", "processes", "executor" or "dask"
    n_workers: int
    threads_per_worker: int

    @property
    def description(self) -> str:
        threads = f"{self.threads_per_worker} thread{'s' if self.threads_per_worker != 1 else ''}"
        if self.executor == "local":
            return f"local, {threads}"
        workers = f"{self.n_workers} worker{'s' if self.n_workers != 1 else ''}"
        return f"{self.executor}, {workers} x {threads}"


@dataclass
class Task:
    """One chunk: a ``(start, stop)`` range, or indices with their steps, or directional
    rows ``(lo, hi, seeds, kinds, steps)``; and where its numbers go in the output."""

    number: int
    indices: Any
    steps: np.ndarray | None
    start: int
    stop: int
    directions: tuple[np.ndarray, ...] | None = None

    def call(self) -> tuple[Callable[..., Any], tuple]:
        """The worker's function, and its arguments after the token and the payload."""
        if self.directions is not None:
            return _worker.run_directional_chunk, self.directions
        return _worker.run_chunk, (self.indices, self.steps)

    def components(self) -> tuple[int, int]:
        """The first and last component of theta the chunk moves (for messages)."""
        if self.directions is not None:
            lo, hi = self.directions[0], self.directions[1]
            return int(lo.min()), max(int(lo.min()), int(hi.max()) - 1)
        if isinstance(self.indices, tuple):
            return self.indices[0], self.indices[1] - 1
        return int(self.indices[0]), int(self.indices[-1])


class LostWorker(Exception):
    """A backend's signal that the worker running some tasks died."""


class RemoteExecutor:
    """The shared part of the process and Dask executors (see the module docstring)."""

    name = ""
    where = "the workers"  # for messages
    task_seconds = TASK_SECONDS  # how long a task should last (the chunk rule)

    def __init__(
        self, engine: "Engine", cost: "Cost", theta: np.ndarray, steps: "StepRule",
        caller_value: float, n_threads: int | None, dtheta: np.ndarray | None = None,
    ) -> None:
        self.engine, self.cost, self.theta, self.steps = engine, cost, theta, steps
        # The analytic gradient, shipped with the payload for a plan that moves along
        # directions (None: the sessions run central differences only).
        self.dtheta = dtheta
        self.caller_value = caller_value
        self.n_threads = n_threads
        self.n_chunks = 1  # threads per worker, known once workers report
        self.workers: set[str] = set()  # the workers whose numbers were used
        self.token, self.payload = "", b""  # set when the session opens

    # The backend's part ------------------------------------------------------------------
    @property
    def n_workers(self) -> int:
        raise NotImplementedError

    @contextlib.contextmanager
    def _started(self, payload: bytes, token: str) -> Iterator[None]:
        """Deliver the payload to the workers for the block."""
        raise NotImplementedError

    def _submit(self, task: Task) -> Any:
        raise NotImplementedError

    def _completed(self, futures: list) -> Iterable[Any]:
        raise NotImplementedError

    def _result(self, future: Any) -> Any:
        """The chunk's result; raises :class:`LostWorker` when its worker died."""
        raise NotImplementedError

    def _cancel(self, futures: list) -> None:
        raise NotImplementedError

    def _recover(self, tasks: list[Task]) -> None:
        """After a lost worker: make the backend able to run ``tasks`` again, or raise."""
        raise NotImplementedError

    def _slots(self) -> int:
        """How many tasks the workers run at once."""
        return self.n_workers

    # Shared ------------------------------------------------------------------------------
    @property
    def placement(self) -> Placement:
        return Placement(self.name, self.n_workers, self.n_chunks)

    @contextlib.contextmanager
    def open(self) -> Iterator["RemoteSession"]:
        """Ship the payload (an :class:`ExecutorError` naming what cannot be pickled comes
        before any work), and run chunks for as long as the block lasts."""
        payload = _shipping.pack(self.cost, self.theta, self.steps, self.engine,
                                 self.n_threads, self.where, self.dtheta)
        token = _shipping.new_token()
        self.token, self.payload = token, payload
        session = RemoteSession(self)
        with self._started(payload, token):
            yield session

    def task_bounds(self, n: int, seconds_per_cost: float) -> np.ndarray:
        """Where the tasks over ``n`` items start and stop (``count + 1`` boundaries): the
        chunk rule of the module docstring."""
        count = self.task_count(n, seconds_per_cost)
        return np.arange(count + 1, dtype=np.int64) * n // count

    def task_spans(self, n: int, seconds_per_cost: float) -> list[tuple[int, int]]:
        """``(start, stop)`` of each task over ``n`` items, in order."""
        bounds = self.task_bounds(n, seconds_per_cost).tolist()
        return list(zip(bounds[:-1], bounds[1:]))

    def task_count(self, n: int, seconds_per_cost: float) -> int:
        """How many tasks ``n`` items make (see the module docstring)."""
        slots = max(self._slots(), 1)
        by_time = math.ceil(2.0 * max(seconds_per_cost, 1e-8) * n / self.task_seconds)
        count = max(TASKS_PER_WORKER * slots, by_time, math.ceil(n / MAX_ROUND))
        return max(1, min(n, slots * math.ceil(count / slots)))

    def accept(self, result: Any) -> None:
        """Check the J(theta) a worker computed against the caller's."""
        if result.value != self.caller_value:
            raise ExecutorError(
                f"worker {result.worker} computes J(theta) = {result.value!r} where this "
                f"process computes {self.caller_value!r}: it runs another version of the "
                "cost's libraries (NumPy, BLAS, Numba) or other data, so its finite "
                "differences would not be this process's. Give every worker the same "
                "environment, or run with executor='local'"
            )
        self.workers.add(result.worker)
        self.n_chunks = max(self.n_chunks, result.n_threads)


class RemoteSession:
    """An open run of a :class:`RemoteExecutor`, with the interface of ``LocalSession``."""

    def __init__(self, executor: RemoteExecutor) -> None:
        self.executor = executor
        self.compile_seconds = 0.0
        self._seconds_per_cost = 1e-3

    def differences(self, indices: np.ndarray, steps: np.ndarray, approx: np.ndarray) -> None:
        """``approx[k]``: the central difference along ``indices[k]`` at ``steps[k]``."""
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        steps = np.ascontiguousarray(steps, dtype=np.float64)
        spans = self.executor.task_spans(indices.shape[0], self._seconds_per_cost)
        tasks = [Task(k, indices[start:stop], steps[start:stop], start, stop)
                 for k, (start, stop) in enumerate(spans)]
        self._run(tasks, approx, None)

    def sweep(
        self, steps: "StepRule", approx: np.ndarray, seconds_per_cost: float,
        progress: bool | None,
    ) -> None:
        """Central differences along every component of theta, into ``approx``, in chunks."""
        n = self.executor.theta.shape[0]
        self._seconds_per_cost = seconds_per_cost
        spans = self.executor.task_spans(n, seconds_per_cost)
        tasks = [Task(k, (start, stop), None, start, stop)
                 for k, (start, stop) in enumerate(spans)]
        expected = 2.0 * max(seconds_per_cost, 1e-8) * n / max(self.executor.n_workers, 1)
        show = progress if progress is not None else expected > PROGRESS_AFTER_SECONDS
        bar = progress_bar(n) if show else None
        try:
            self._run(tasks, approx, bar)
        finally:
            if bar is not None:
                bar.close()

    def directional(
        self, dtheta: np.ndarray, lo: np.ndarray, hi: np.ndarray, seeds: np.ndarray,
        kinds: np.ndarray, steps: np.ndarray, out: np.ndarray,
    ) -> None:
        """Directional differences, as ``LocalSession.directional`` computes them, with the
        rows cut into tasks over the workers (two evaluations per row, the chunk rule of
        :meth:`RemoteExecutor.task_bounds`); each task's rows of ``out`` are written as it
        completes. ``dtheta`` must be the one the executor shipped."""
        self._check_shipped(dtheta)
        rows = (np.ascontiguousarray(lo, dtype=np.int64), np.ascontiguousarray(hi, dtype=np.int64),
                np.ascontiguousarray(seeds, dtype=np.uint64),
                np.ascontiguousarray(kinds, dtype=np.int64),
                np.ascontiguousarray(steps, dtype=np.float64))
        n = rows[0].shape[0]
        spans = self.executor.task_spans(n, self._seconds_per_cost)
        tasks = [Task(k, None, None, start, stop, tuple(column[start:stop] for column in rows))
                 for k, (start, stop) in enumerate(spans)]
        self._run(tasks, out, None, unit="directions")

    def _check_shipped(self, dtheta: np.ndarray) -> None:
        shipped = self.executor.dtheta
        if shipped is not None and (dtheta is shipped or (
                dtheta.shape == shipped.shape and dtheta.dtype == shipped.dtype
                and np.array_equal(dtheta, shipped, equal_nan=True))):
            return
        raise ExecutorError(
            f"directional differences on {self.executor.where} run along the dtheta shipped "
            "with the payload, and this executor was given "
            + ("none" if shipped is None else "another one")
            + ": pass dtheta= to resolve_executor (check() does so for a plan that moves "
            "along directions)"
        )

    def _run(self, tasks: list[Task], out: np.ndarray, bar: Any,
             unit: str = "components") -> None:
        """Submit ``tasks``, write their numbers into ``out`` as they complete, resubmit
        those of lost workers, and raise the first failure in the order of the tasks."""
        executor = self.executor
        n = sum(task.stop - task.start for task in tasks)
        done = 0
        failure: tuple[int, BaseException] | None = None
        pending = {executor._submit(task): task for task in tasks}
        try:
            while pending:
                lost: list[Task] = []
                for future in executor._completed(list(pending)):
                    task = pending.pop(future)
                    try:
                        result = executor._result(future)
                    except LostWorker:
                        lost.append(task)
                        continue
                    except CostError as error:
                        if failure is None or task.number < failure[0]:
                            failure = (task.number, error)
                        if self._drop_after(pending, failure[0]):
                            break  # wait again, for the earlier tasks only
                        continue
                    executor.accept(result)
                    self.compile_seconds = max(self.compile_seconds, result.compile_seconds)
                    out[task.start:task.stop] = result.approx
                    done += task.stop - task.start
                    if bar is not None:
                        bar.update(task.stop - task.start)
                if lost:
                    pending = self._resubmitted(pending, lost, failure)
            if failure is not None:
                raise failure[1]
        except KeyboardInterrupt:
            executor._cancel(list(pending))
            raise KeyboardInterrupt(
                f"fastgc check interrupted after {done} of {n} {unit}; the outstanding "
                f"tasks on {executor.where} were cancelled and the caller's arrays are "
                "untouched"
            ) from None
        except BaseException:
            executor._cancel(list(pending))
            raise

    def _resubmitted(self, pending: dict, lost: list[Task],
                     failure: tuple[int, BaseException] | None) -> dict:
        """After a lost worker: every task not come back (before the first failure, if one
        failed), submitted again once the backend recovered."""
        executor = self.executor
        executor._cancel(list(pending))
        again = lost + list(pending.values())
        if failure is not None:
            again = [task for task in again if task.number < failure[0]]
        if not again:
            return {}
        executor._recover(again)
        return {executor._submit(task): task for task in again}

    def _drop_after(self, pending: dict, number: int) -> bool:
        """Cancel the pending tasks after task ``number``, which failed: a local run would
        not have reached them. Whether any were dropped."""
        later = [future for future, task in pending.items() if task.number > number]
        self.executor._cancel(later)
        for future in later:
            del pending[future]
        return bool(later)
