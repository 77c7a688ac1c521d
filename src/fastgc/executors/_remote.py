"""What the process and Dask executors share: chunks out, numbers back, in the caller.

A :class:`RemoteExecutor` ships the check's payload to its workers once (how is the backend's
business: a pool initializer, a Dask worker plugin, or with every task for a plain
``concurrent.futures.Executor``), then its session cuts the indices into tasks, submits them,
and writes each chunk's numbers into ``approx`` as it completes, with the progress bar moving
per chunk. Every chunk carries the J(theta) its worker computed; a worker whose value differs
from the caller's is an error before any of its numbers are used. Ctrl-C or an error cancels
the outstanding tasks; the caller's arrays are never written to by a worker.

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
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from .._errors import ExecutorError
from . import _shipping
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
    """One chunk: a ``(start, stop)`` range, or indices with their steps, and where its
    numbers go in ``approx``."""

    number: int
    indices: Any
    steps: np.ndarray | None
    start: int
    stop: int


class LostWorker(Exception):
    """A backend's signal that the worker running some tasks died."""


class RemoteExecutor:
    """The shared part of the process and Dask executors (see the module docstring)."""

    name = ""
    where = "the workers"  # for messages
    #: Workers difference components one by one; directions run in the caller's process.
    runs_directions = False
    task_seconds = TASK_SECONDS  # how long a task should last (the chunk rule)

    def __init__(
        self, engine: "Engine", cost: "Cost", theta: np.ndarray, steps: "StepRule",
        caller_value: float, n_threads: int | None,
    ) -> None:
        self.engine, self.cost, self.theta, self.steps = engine, cost, theta, steps
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
                                 self.n_threads, self.where)
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
        bounds = self.executor.task_bounds(indices.shape[0], self._seconds_per_cost)
        tasks = [
            Task(k, indices[start:stop], steps[start:stop], start, stop)
            for k, (start, stop) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
        ]
        self._run(tasks, approx, None)

    def sweep(
        self, steps: "StepRule", approx: np.ndarray, seconds_per_cost: float,
        progress: bool | None,
    ) -> None:
        """Central differences along every component of theta, into ``approx``, in chunks."""
        n = self.executor.theta.shape[0]
        self._seconds_per_cost = seconds_per_cost
        bounds = self.executor.task_bounds(n, seconds_per_cost)
        tasks = [
            Task(k, (start, stop), None, start, stop)
            for k, (start, stop) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
        ]
        expected = 2.0 * max(seconds_per_cost, 1e-8) * n / max(self.executor.n_workers, 1)
        show = progress if progress is not None else expected > PROGRESS_AFTER_SECONDS
        bar = progress_bar(n) if show else None
        try:
            self._run(tasks, approx, bar)
        finally:
            if bar is not None:
                bar.close()

    def _run(self, tasks: list[Task], approx: np.ndarray, bar: Any) -> None:
        executor = self.executor
        n = sum(task.stop - task.start for task in tasks)
        done = 0
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
                    executor.accept(result)
                    self.compile_seconds = max(self.compile_seconds, result.compile_seconds)
                    approx[task.start:task.stop] = result.approx
                    done += task.stop - task.start
                    if bar is not None:
                        bar.update(task.stop - task.start)
                if lost:
                    lost += list(pending.values())
                    executor._cancel(list(pending))
                    executor._recover(lost)
                    pending = {executor._submit(task): task for task in lost}
        except KeyboardInterrupt:
            executor._cancel(list(pending))
            raise KeyboardInterrupt(
                f"fastgc check interrupted after {done} of {n} components; the outstanding "
                f"tasks on {executor.where} were cancelled and the caller's arrays are "
                "untouched"
            ) from None
        except BaseException:
            executor._cancel(list(pending))
            raise
