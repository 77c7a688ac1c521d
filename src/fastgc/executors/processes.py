"""Worker processes on this machine: fastgc's own pool, or any ``concurrent.futures`` executor.

``executor="processes"`` starts a pool of ``n_workers`` processes for the check (with the
``forkserver`` start method where there is one, else ``spawn``: never ``fork``, which is
unsafe once Numba's, OpenMP's or BLAS's threads exist). Each worker ignores Ctrl-C (the
caller answers it and cancels the outstanding tasks) and caps BLAS at its share of the cores.
The pool outlives the check: the next check with the same worker and thread counts takes it
over at once, and it exits after :data:`IDLE_SECONDS` without a check (or with the caller).
Each check writes its payload once, to a private file that its tasks name and each worker
reads once (it then drops the payloads of earlier checks). Tasks are chunks of indices
(central differences) or of directional rows (the screen's random directions and its
localisation, against the dtheta that then travels with the payload), each run by the local
loop inside the worker. A check interrupted or failed leaves its pool behind (a running chunk
cannot be stopped): the next one starts a fresh pool, and at the process's exit such a pool
has :data:`EXIT_GRACE_SECONDS` to finish before its workers are killed. A worker that dies
mid-check breaks a standard pool: fastgc then starts a fresh pool and resubmits the chunks
that had not come back (up to :data:`MAX_RESTARTS` times), so the check completes with the
same result.

Any other ``concurrent.futures.Executor`` (a ``ProcessPoolExecutor`` you made, a
``ThreadPoolExecutor``, an MPI or loky executor) is accepted as it is. It has no hook that runs
once per worker, so the payload travels with every task (each worker loads it once and keeps
it) and the work is cut into fewer, larger tasks (:data:`TASKS_PER_WORKER_PLAIN` per
worker, each up to :data:`PLAIN_TASK_SECONDS` long). fastgc cannot replace a pool it does
not own: if one of its workers dies, the check fails with an error that names the chunks
that were lost.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from .._errors import ExecutorError
from .._threads import interrupts_deferred
from .._validation import where_in_params
from . import _shipping, _worker
from ._remote import TASK_SECONDS, LostWorker, RemoteExecutor, Task

if TYPE_CHECKING:
    from .._cost import Cost
    from .._steps import StepRule
    from ..engines import Engine

MAX_RESTARTS = 2
#: fastgc's pool waits this long for the next check before its workers exit.
IDLE_SECONDS = 60.0
#: At the process's exit, how long fastgc's pools may take, in all, to finish the chunks
#: that an interrupted or failed check left running, before their workers are killed.
EXIT_GRACE_SECONDS = 10.0
KILLED_SECONDS = 2.0
TASKS_PER_WORKER_PLAIN = 2
PLAIN_TASK_SECONDS = 4 * TASK_SECONDS
# Imported once by the fork server, so that each worker starts in milliseconds.
_PRELOAD = ["numpy", "threadpoolctl", "fastgc", "fastgc.executors._worker",
            "fastgc.executors.local"]
_PRELOAD_IF_IMPORTED = ["numba", "scipy", "torch", "fastgc.adapters.torch"]


def start_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where the platform has it (with fastgc preloaded), else ``spawn``."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Heavy libraries the caller has imported are what its costs use: the fork server
        # imports them once (when it starts), not every worker of every pool.
        preload = _PRELOAD + [name for name in _PRELOAD_IF_IMPORTED if name in sys.modules]
        context.set_forkserver_preload(preload)
        return context
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def _main_module_hidden(hide: bool) -> Iterator[None]:
    """While fastgc's own workers start, hide the main script from them.

    A ``spawn`` or ``forkserver`` worker first runs the caller's main script again (as
    ``__mp_main__``), so that functions defined there can be unpickled: a script without an
    ``if __name__ == "__main__":`` guard would start another check inside every worker. The
    payload does not need it when cloudpickle ships such functions by value, so the workers
    are started without it then.
    """
    main = sys.modules.get("__main__")
    if not hide or main is None:
        yield
        return
    saved = {name: main.__dict__[name] for name in ("__file__", "__spec__")
             if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            del main.__spec__


class _KeptPool:
    """fastgc's pool between two checks: one, for its worker and thread counts.

    A check takes it (nobody else can while it runs) and gives it back when it completes;
    a pool that waited :data:`IDLE_SECONDS`, was built for other counts, or belongs to the
    parent of a forked process is ended or forgotten instead of used, and the one kept
    when the process exits is ended first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: Any = None
        self._key: tuple = ()
        self._pid = 0
        self._timer: threading.Timer | None = None

    def take(self, key: tuple) -> Any:
        """The kept pool for ``key``, or None (a fresh one is needed)."""
        with self._lock:
            pool = self._removed()
            if pool is None or self._pid != os.getpid():
                return None  # none, or the parent's (its threads did not survive the fork)
            # A worker may have died while the pool waited (the flag is the pool's own).
            if self._key != key or getattr(pool, "_broken", False):
                _let_go(pool)
                return None
            return pool

    def give_back(self, key: tuple, pool: Any) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                _let_go(self._pool)  # a check that ran beside this one kept its own
            self._pool, self._key, self._pid = pool, key, os.getpid()
            self._timer = threading.Timer(IDLE_SECONDS, self._retire, (pool,))
            self._timer.daemon = True
            self._timer.start()

    def _retire(self, pool: Any) -> None:
        with self._lock:
            if self._pool is not pool:
                return
            self._pool = None
        _let_go(pool)

    def end(self) -> None:
        """End the kept pool (at exit, before the standard library joins its threads)."""
        with self._lock:
            pool = self._removed()
        if pool is not None and self._pid == os.getpid():
            _let_go(pool)

    def _removed(self) -> Any:
        """The kept pool, no longer kept (under the lock), its idle timer stopped."""
        pool, self._pool = self._pool, None
        if self._timer is not None:
            self._timer.cancel()
        return pool


def _let_go(pool: Any) -> None:
    """Shut a pool down without waiting: idle workers take the request to exit at once, a
    running chunk ends first (it cannot be stopped), and pending tasks are cancelled. No
    worker is terminated, which would break the pool and send its shutdown down the
    standard library's path for a dead worker; and Ctrl-C waits for the call's end, so that
    it never leaves the pool's own state half-changed. The pool's thread and workers are
    remembered until they end (:func:`_end_at_exit`)."""
    with interrupts_deferred():
        # Read before the shutdown, which drops them from the pool.
        thread = getattr(pool, "_executor_manager_thread", None)
        workers = getattr(pool, "_processes", None) or {}
        pool.shutdown(wait=False, cancel_futures=True)
    with _ENDING_LOCK:
        _ENDING[:] = [entry for entry in _ENDING if entry[0].is_alive()]
        if thread is not None:
            _ENDING.append((thread, workers, os.getpid()))


def _end_at_exit() -> None:
    """At exit, before the standard library joins its pools' threads: end the kept pool,
    give the pools let go :data:`EXIT_GRACE_SECONDS` in all to finish the chunks they run,
    then kill their workers. A pool's thread that even so does not end (a worker's exit
    never reported by the fork server) is not joined, so that the process still exits."""
    _KEPT.end()
    with _ENDING_LOCK:
        ending = [entry for entry in _ENDING if entry[2] == os.getpid()]
    deadline = time.monotonic() + EXIT_GRACE_SECONDS
    for thread, _, _ in ending:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = [(thread, workers) for thread, workers, _ in ending if thread.is_alive()]
    for thread, workers in late:
        for process in list(workers.values()):
            with contextlib.suppress(Exception):  # one that is gone already
                process.kill()
    for thread, workers in late:
        thread.join(KILLED_SECONDS)
        if thread.is_alive():
            _not_joined_at_exit(thread, workers)
    if late:
        sys.stderr.write(
            f"fastgc: killed the workers of {len(late)} process pool(s) that had not ended "
            f"{EXIT_GRACE_SECONDS:g} s into the exit (the chunks of a check that was "
            "interrupted or failed)\n"
        )


def _not_joined_at_exit(thread: threading.Thread, workers: dict | None = None) -> None:
    """Take a thread that cannot end, and the workers it waits for, off the lists that the
    exit of the interpreter joins (those of CPython 3.10 to 3.12; elsewhere they stay)."""
    from concurrent.futures import process as futures_process
    from multiprocessing import process as mp_process

    children = getattr(mp_process, "_children", set())
    for worker in (workers or {}).values():
        children.discard(worker)
    getattr(futures_process, "_threads_wakeups", {}).pop(thread, None)
    lock = getattr(thread, "_tstate_lock", None)
    locks = getattr(threading, "_shutdown_locks", None)
    guard = getattr(threading, "_shutdown_locks_lock", None)
    if lock is not None and locks is not None and guard is not None:
        with guard:
            locks.discard(lock)


_KEPT = _KeptPool()
# The manager threads of pools let go, with their workers and the process that made them.
_ENDING: list[tuple[threading.Thread, dict, int]] = []
_ENDING_LOCK = threading.Lock()
# Before concurrent.futures joins its pools' threads at exit (hooks run last-registered
# first).
threading._register_atexit(_end_at_exit)  # type: ignore[attr-defined]


def _completed(futures: list) -> Iterable[Any]:
    remaining = set(futures)
    while remaining:
        done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
        yield from done


class _FuturesExecutor(RemoteExecutor):
    """What the executors of ``concurrent.futures`` share: their futures, and a dead worker
    seen as a broken pool."""

    def _completed(self, futures: list) -> Iterable[Any]:
        return _completed(futures)

    def _result(self, future: Any) -> Any:
        try:
            return future.result()
        except BrokenProcessPool as error:
            raise LostWorker() from error

    def _cancel(self, futures: list) -> None:
        for future in futures:
            future.cancel()


class ProcessExecutor(_FuturesExecutor):
    """``n_workers`` processes of fastgc's own pool (see the module docstring)."""

    name = "processes"
    where = "worker processes"

    def __init__(
        self, engine: "Engine", cost: "Cost", theta: np.ndarray, steps: "StepRule",
        caller_value: float, n_threads: int, n_workers: int,
        dtheta: np.ndarray | None = None,
    ) -> None:
        super().__init__(engine, cost, theta, steps, caller_value, n_threads, dtheta)
        self._n_workers = n_workers
        self._pool: Any = None
        self._payload_file: _shipping.PayloadFile | None = None
        self.restarts = 0

    @property
    def n_workers(self) -> int:
        return self._n_workers

    def _new_pool(self) -> Any:
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(
            self._n_workers, mp_context=start_context(),
            initializer=_worker.start_pool_worker, initargs=(self.n_threads,),
        )

    @property
    def _pool_key(self) -> tuple:
        return (self._n_workers, self.n_threads)

    @contextlib.contextmanager
    def _started(self, payload: bytes, token: str) -> Iterator[None]:
        self._payload_file = _shipping.PayloadFile.write(payload)
        self._pool = _KEPT.take(self._pool_key) or self._new_pool()
        finished = False
        try:
            yield
            finished = True
        finally:
            pool, self._pool = self._pool, None
            if finished:
                _KEPT.give_back(self._pool_key, pool)
            else:
                _let_go(pool)  # after an error or Ctrl-C: the chunks still running are not awaited
            self._payload_file.remove()

    def _submit(self, task: Task) -> Any:
        # A fresh pool starts its processes as the first tasks are submitted.
        function, arguments = task.call()
        with _main_module_hidden(_shipping.ships_by_value()), interrupts_deferred():
            try:
                return self._pool.submit(function, self.token, self._payload_file, *arguments)
            except BrokenProcessPool:
                # A worker of the kept pool died while it waited (or one died just now: the
                # tasks submitted before come back as lost and are resubmitted).
                self._replace_pool()
                return self._pool.submit(function, self.token, self._payload_file, *arguments)

    def _replace_pool(self) -> None:
        """A fresh pool in place of a broken one, whose running chunks are not waited for."""
        _let_go(self._pool)
        self._pool = self._new_pool()

    def _recover(self, tasks: list[Task]) -> None:
        if self.restarts >= MAX_RESTARTS:
            raise ExecutorError(
                f"worker processes died {self.restarts + 1} times during the check "
                f"({lost_chunks(self.cost, tasks)} were lost); is the machine out of memory?"
            )
        self.restarts += 1
        self._replace_pool()


class ExecutorAdapter(_FuturesExecutor):
    """Any ``concurrent.futures.Executor`` the caller made (see the module docstring)."""

    name = "executor"
    where = "the executor's workers"
    task_seconds = PLAIN_TASK_SECONDS

    def __init__(
        self, engine: "Engine", cost: "Cost", theta: np.ndarray, steps: "StepRule",
        caller_value: float, n_threads: int, pool: Executor,
        dtheta: np.ndarray | None = None,
    ) -> None:
        super().__init__(engine, cost, theta, steps, caller_value, n_threads, dtheta)
        self.pool = pool
        self.name = type(pool).__name__

    @property
    def n_workers(self) -> int:
        return int(getattr(self.pool, "_max_workers", None) or 1)

    def task_count(self, n: int, seconds_per_cost: float) -> int:
        # The payload goes with every task: as few tasks as keep every worker busy, each
        # short enough that Ctrl-C frees the pool soon (a running task cannot be cancelled).
        workers = self.n_workers
        by_time = math.ceil(2.0 * max(seconds_per_cost, 1e-8) * n / self.task_seconds)
        count = max(TASKS_PER_WORKER_PLAIN * workers, by_time)
        return max(1, min(n, workers * math.ceil(count / workers)))

    @contextlib.contextmanager
    def _started(self, payload: bytes, token: str) -> Iterator[None]:
        yield

    def _submit(self, task: Task) -> Any:
        function, arguments = task.call()
        try:
            return self.pool.submit(function, self.token, self.payload, *arguments)
        except BrokenProcessPool as error:
            raise ExecutorError(
                f"the {self.name} passed as executor= is broken (a worker process died "
                "earlier) and cannot run tasks: make a new one"
            ) from error

    def _recover(self, tasks: list[Task]) -> None:
        raise ExecutorError(
            f"a worker process of the {self.name} passed as executor= died during the "
            f"check, and {lost_chunks(self.cost, tasks)} were lost; fastgc cannot restart "
            "a pool it does not own. Make a new pool and check again, or pass "
            "executor='processes', which restarts its own pool and resubmits lost chunks"
        )


def lost_chunks(cost: "Cost", tasks: list[Task]) -> str:
    """The lost chunks, named by the components they cover."""
    tasks = sorted(tasks, key=lambda task: task.start)
    shown = ", ".join(_chunk_name(cost, task) for task in tasks[:3])
    more = f" and {len(tasks) - 3} more" if len(tasks) > 3 else ""
    return f"chunk(s) {shown}{more}"


def _chunk_name(cost: "Cost", task: Task) -> str:
    first, last = task.components()
    what = "directions moving " if task.directions is not None else ""
    return (f"#{task.number} ({what}theta[{first}], {where_in_params(cost.layout, first)}, "
            f"to theta[{last}], {where_in_params(cost.layout, last)})")
