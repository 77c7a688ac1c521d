"""Executors: where the engine's kernel runs.

:class:`LocalExecutor` runs it in this process, on the engine's threads, each on a private
copy of theta. Its siblings run the same local loop inside worker processes: fastgc's own pool
or any ``concurrent.futures.Executor`` (:mod:`.processes`), or the workers of a Dask cluster
(:mod:`.dask`). They take the same engine, cost and theta and offer the same session interface
(``differences`` for given indices, ``sweep`` over all of theta, ``directional`` along seeded
random directions, for which the remote ones ship dtheta to their workers once);
:func:`resolve_executor` is the one place that picks one from the ``executor=`` argument.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from .._errors import InvalidInputError
from .._threads import count_threads, usable_threads
from ._remote import Placement
from .local import LocalExecutor, LocalSession

if TYPE_CHECKING:
    import numpy as np

    from .._cost import Cost
    from .._steps import StepRule
    from ..engines import Engine

__all__ = [
    "executor_lines", "LocalExecutor", "LocalSession", "Placement", "placement_hints", "placement_of",
    "resolve_executor",
]

_NAMES = ("local", "processes")


def resolve_executor(
    executor: Any, n_workers: int | None, engine: "Engine", cost: "Cost", theta: "np.ndarray",
    n_threads: int, requested_threads: int | None, steps: "StepRule", caller_value: float,
    dtheta: "np.ndarray | None" = None,
) -> Any:
    """The executor of a check, from ``executor=`` (None or "local", "processes", a
    ``concurrent.futures.Executor``, a ``dask.distributed.Client``).

    ``n_threads`` is the resolved count for a local run; ``requested_threads`` what the caller
    asked for (None: one per worker for a Python cost, the worker's share of the cores for a
    compiled one). ``dtheta``, for a plan that moves along directions, goes to the workers of
    a remote executor with the payload (a local session is handed it with each call).
    """
    if executor is None or (isinstance(executor, str) and executor.strip().lower() == "local"):
        _no_workers_count(n_workers, "executor='local'")
        return LocalExecutor(engine, cost, theta, n_threads)
    from .dask import is_dask_client
    if isinstance(executor, str):
        if executor.strip().lower() != "processes":
            raise InvalidInputError(
                f"executor must be one of {_NAMES}, a concurrent.futures.Executor or a "
                f"dask.distributed.Client, got {executor!r}"
            )
        from .processes import ProcessExecutor

        workers = usable_threads() if n_workers is None else _count_workers(n_workers)
        threads = _threads_per_worker(cost, requested_threads, workers)
        return ProcessExecutor(engine, cost, theta, steps, caller_value, threads, workers,
                               dtheta)
    if is_dask_client(executor):
        from .dask import DaskExecutor

        _no_workers_count(n_workers, "a Dask client (the cluster has its workers)")
        threads = 1 if requested_threads is None else count_threads(requested_threads)
        return DaskExecutor(engine, cost, theta, steps, caller_value, threads, executor,
                            dtheta)
    if isinstance(executor, Executor):
        from .processes import ExecutorAdapter

        _no_workers_count(n_workers, f"a {type(executor).__name__} (it has its workers)")
        workers = int(getattr(executor, "_max_workers", None) or 1)
        threads = _threads_per_worker(cost, requested_threads, workers)
        return ExecutorAdapter(engine, cost, theta, steps, caller_value, threads, executor,
                               dtheta)
    raise InvalidInputError(
        f"executor must be one of {_NAMES}, a concurrent.futures.Executor or a "
        f"dask.distributed.Client, got {type(executor).__name__}"
    )


def placement_of(executor: Any) -> Placement:
    """Where a check on ``executor`` ran (after its session closed)."""
    placement = getattr(executor, "placement", None)
    return placement if placement is not None else Placement("local", 1, executor.n_chunks)


# A one-thread check of a Python cost that took this long would likely gain from workers
# (starting them takes a fraction of a second).
HINT_AFTER_SECONDS = 2.0


def placement_hints(cost: "Cost", placement: Placement, seconds: float) -> tuple[str, ...]:
    """Advice for the report: a Python cost that ran locally on one thread for a while, on a
    machine with more cores, would likely be faster with ``executor="processes"``."""
    if (placement.executor != "local" or placement.threads_per_worker > 1
            or not cost.may_keep_state or seconds < HINT_AFTER_SECONDS):
        return ()
    cores = usable_threads()  # a system call: asked only when the rest holds
    if cores < 2:
        return ()
    return (
        f"this Python cost ran on one thread for {seconds:.1f} s; executor=\"processes\" "
        f"would likely be faster, running it in {cores} worker processes (one per core)",
    )


def executor_lines() -> list[str]:
    """Lines for ``show_config``: the executors this process can use."""
    import importlib.util

    from .processes import start_context

    lines = [f"  executor processes: available (start method {start_context().get_start_method()})"]
    if importlib.util.find_spec("distributed") is None:
        lines.append('  executor dask: unavailable: pip install "fastgc[dask]"')
    else:
        lines.append("  executor dask: available (pass a dask.distributed.Client)")
    pickler = "cloudpickle" if importlib.util.find_spec("cloudpickle") else (
        "pickle (pip install cloudpickle to ship closures and notebook functions)")
    lines.append(f"  costs sent to workers with {pickler}")
    return lines


def _count_workers(n_workers: object) -> int:
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise InvalidInputError(
            f"n_workers must be None (one per usable core) or a positive int, got {n_workers!r}"
        )
    return n_workers


def _no_workers_count(n_workers: object, what: str) -> None:
    if n_workers is not None:
        raise InvalidInputError(
            f"n_workers={n_workers!r} applies to executor='processes' only, not to {what}"
        )


def _threads_per_worker(cost: "Cost", requested: int | None, n_workers: int) -> int:
    """One thread per worker for a Python cost; a compiled cost shares the cores out."""
    if requested is not None:
        return count_threads(requested)
    if cost.may_keep_state:
        return 1
    return max(1, usable_threads() // n_workers)
