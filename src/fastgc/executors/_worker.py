"""What runs inside a worker process: the check's payload, installed once, and its chunks.

A worker (a process of fastgc's pool, of any ``concurrent.futures`` executor, or of a Dask
cluster) receives the payload once (the cost, its args, theta, the step rule, the engine),
keeps its own copy, evaluates J(theta) for the caller to compare, and then runs chunks
through the local executor, on its own threads, returning only the numbers: chunks of
indices (central differences, :func:`run_chunk`) or chunks of directional tasks (a range of
theta moved along a seeded direction, :func:`run_directional_chunk`, with the dtheta of the
payload). Everything here is importable by name, so that the tasks pickle by reference.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

# The payloads of recent checks in this process, by token; a few, so that a pool shared by
# overlapping checks does not reload them in turn.
_INSTALLED: "OrderedDict[str, WorkerState]" = OrderedDict()
_KEEP = 4
_lock = threading.Lock()
# Payloads that failed to load, by token: the error goes to the caller with the first chunk.
FAILED: dict[str, BaseException] = {}


@dataclass
class WorkerState:
    """One check's payload in this worker, and what the worker found at theta."""

    cost: Any  # fastgc._cost.Cost
    theta: np.ndarray
    steps: Any  # fastgc._steps.StepRule
    engine: Any  # fastgc.engines.Engine
    n_threads: int
    value: float  # J(theta) in this worker
    compile_seconds: float
    dtheta: np.ndarray | None = None  # shipped only for a plan that moves along directions
    reported_compile: bool = False
    # A Python cost may keep state between calls: the chunks of one check in one process
    # (the threads of a Dask worker, a thread pool) take turns with it.
    turn: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class ChunkResult:
    """What a chunk sends back: its numbers, and who computed them from which J(theta)."""

    approx: np.ndarray  # differences, or the (T, 3) rows of directional tasks
    worker: str
    value: float
    n_threads: int
    compile_seconds: float


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def install(token: str, payload: Any) -> WorkerState:
    """Load ``payload`` (made by :func:`fastgc.executors._shipping.pack`, as bytes or as a
    :class:`~fastgc.executors._shipping.PayloadFile`) for ``token``."""
    with _lock:
        state = _INSTALLED.get(token)
        if state is not None:
            return state
    from ._shipping import PayloadFile

    if isinstance(payload, PayloadFile):
        # A worker of fastgc's pool serves one check at a time: the earlier checks'
        # payloads (theta, args) would only hold memory.
        with _lock:
            _INSTALLED.clear()
        payload = payload.read()
    state = _load(payload)
    with _lock:
        _INSTALLED[token] = state
        while len(_INSTALLED) > _KEEP:
            _INSTALLED.popitem(last=False)
    return state


def discard(token: str) -> None:
    with _lock:
        _INSTALLED.pop(token, None)
        FAILED.pop(token, None)


def _load(payload: bytes) -> WorkerState:
    from .._cost import Cost, measure_baseline
    from .._errors import ExecutorError
    from .._threads import resolve_n_threads
    from ..engines import get_engine, resolve_engine

    try:
        shipped = pickle.loads(payload)
    except Exception as error:  # a module of the cost missing here, another version
        raise ExecutorError(
            f"worker {worker_name()} could not load the check's cost and args: "
            f"{type(error).__name__}: {error}. Every worker needs the modules the cost uses "
            "(install them there, or define the cost in the script or notebook that runs "
            "the check)"
        ) from error
    cost = Cost(shipped["function"], shipped["args"], shipped["layout"], shipped["kind"],
                reseed=shipped["reseed"])
    engine = get_engine(shipped["engine"])
    if engine.unavailable is not None or engine.cannot_run(cost) is not None:
        engine = resolve_engine(None, cost)  # the engines agree to the bit
    requested = shipped["n_threads"]
    n_threads = resolve_n_threads(requested, unset=1 if cost.may_keep_state else None)
    theta = shipped["theta"]
    baseline = measure_baseline(cost, theta)
    return WorkerState(cost, theta, shipped["steps"], engine, n_threads, baseline.value,
                       baseline.compile_seconds, shipped.get("dtheta"))


def describe(token: str) -> tuple[float, int]:
    """J(theta) and the thread count of ``token``'s payload in this worker."""
    if token in FAILED:
        raise FAILED[token]
    state = _INSTALLED[token]
    return state.value, state.n_threads


def run_chunk(token: str, payload: Any, indices: Any, steps: Any) -> ChunkResult:
    """Central differences of one chunk: ``indices`` is a ``(start, stop)`` range (steps from
    the step rule) or an index array with its ``steps``."""
    state = _state(token, payload)
    if isinstance(indices, tuple):
        start, stop = indices
        indices, steps = np.arange(start, stop, dtype=np.int64), state.steps(start, stop)
    approx = np.empty(indices.shape[0], dtype=np.float64)
    with _session(state) as (executor, session):
        session.differences(indices, steps, approx)
    return _chunk_result(state, approx, executor, session)


def run_directional_chunk(
    token: str, payload: Any, lo: np.ndarray, hi: np.ndarray, seeds: np.ndarray,
    kinds: np.ndarray, steps: np.ndarray,
) -> ChunkResult:
    """Directional differences of one chunk of tasks, as ``LocalSession.directional`` runs
    them, along the payload's dtheta: the ``(T, 3)`` rows of ``out`` come back as ``approx``."""
    state = _state(token, payload)
    if state.dtheta is None:
        from .._errors import ExecutorError

        raise ExecutorError(
            f"worker {worker_name()} received no dtheta with the check's payload, so it cannot "
            "run directional differences: give the executor dtheta before opening it"
        )
    out = np.empty((lo.shape[0], 3), dtype=np.float64)
    with _session(state) as (executor, session):
        session.directional(state.dtheta, lo, hi, seeds, kinds, steps, out)
    return _chunk_result(state, out, executor, session)


def _state(token: str, payload: Any) -> WorkerState:
    """The installed payload of ``token`` (installed now when ``payload`` comes along)."""
    if token in FAILED:
        raise FAILED[token]
    state = install(token, payload) if payload is not None else _INSTALLED.get(token)
    if state is None:
        from .._errors import ExecutorError

        raise ExecutorError(
            f"worker {worker_name()} has not received the check's payload (token {token})"
        )
    return state


@contextlib.contextmanager
def _session(state: WorkerState) -> Iterator[tuple[Any, Any]]:
    """A local session on the worker's threads, taking turns with the other chunks of this
    process when the cost may keep state."""
    from .local import LocalExecutor

    executor = LocalExecutor(state.engine, state.cost, state.theta, state.n_threads)
    turn = state.turn if state.cost.may_keep_state else contextlib.nullcontext()
    with turn, executor.open() as session:
        yield executor, session


def _chunk_result(state: WorkerState, numbers: np.ndarray, executor: Any,
                  session: Any) -> ChunkResult:
    compile_seconds = 0.0
    if not state.reported_compile:  # once per worker: they compile side by side
        compile_seconds = state.compile_seconds + session.compile_seconds
        state.reported_compile = True
    return ChunkResult(numbers, worker_name(), state.value, executor.n_chunks, compile_seconds)


def start_pool_worker(blas_threads: int) -> None:
    """Initializer of fastgc's own process pool: ignore Ctrl-C (the caller handles it and
    cancels the work), cap BLAS and OpenMP at the worker's share of the cores (the worker's
    own thread count, so a compiled cost keeps its threads). Each check's payload comes with
    its tasks, as a file read once (the pool outlives a check)."""
    import signal

    from .._threads import forked_from_a_clean_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # fastgc's pool starts its workers from a fork server (or spawns them), which never ran
    # a parallel region: a compiled cost may use the worker's threads.
    forked_from_a_clean_parent()
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=blas_threads)
