"""The local run loop: the engine's kernel on this machine's threads.

One place owns what every run needs, whoever asks for it (``check``, ``suggest_threads``,
the benchmarks): the private copies of theta, the thread state (the engine's own thread count
and BLAS capped at one thread inside the cost while several of ours run, both restored), the
compile-ahead warm-up, rounds sized so that the progress bar moves and Ctrl-C is answered
promptly, the messages that name the component where a cost failed, and the bitwise check
that every copy of theta came back as it was.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .._cost import describe_failure
from .._errors import CostError
from .._threads import blas_limited, interrupts_deferred
from .._validation import exception_text, where_in_params
from ..engines import get_engine

if TYPE_CHECKING:
    from .._cost import Cost
    from .._layout import Layout
    from .._steps import StepRule
    from ..engines import Engine, Runner
    from ..engines._base import DirectionalRunner

# Each round of the compiled loop lasts about this long, so that the progress bar moves and
# Ctrl-C is answered promptly without the per-round overhead showing.
ROUND_SECONDS = 0.25
# Rounds stay small enough that their index and step arrays cost no memory to speak of.
MAX_ROUND = 1 << 16
PROGRESS_AFTER_SECONDS = 3.0


class LocalExecutor:
    """Runs ``engine``'s kernel for ``cost`` around ``theta`` on up to ``n_threads`` threads.

    Inside a foreign thread pool where the engine cannot start a parallel region, the run is
    serial (one chunk) instead of failing.
    """

    def __init__(self, engine: "Engine", cost: "Cost", theta: np.ndarray, n_threads: int) -> None:
        self.engine, self.cost, self.theta = engine, cost, theta
        self.parallel = engine.parallel_allowed()
        self.n_chunks = engine.n_chunks(n_threads) if self.parallel else 1

    @contextlib.contextmanager
    def open(self) -> Iterator["LocalSession"]:
        """The work copies and the thread state of a run, for as long as the block lasts.

        On leaving the block normally, every copy of theta must be bitwise as it was (a cost
        that writes into its input is an error); the copies are freed either way.
        """
        work = np.empty((self.n_chunks, self.theta.shape[0]), dtype=self.theta.dtype)
        work[:] = self.theta
        run = self.engine.make_runner(self.cost, work, self.parallel)
        session = LocalSession(self, run, work)
        try:
            with blas_limited(), self.engine.thread_state(self.n_chunks):
                # Ctrl-C waits for the compiler to finish: interrupted half-way, it can leave
                # its state corrupt (the next compilation crashes the process).
                with interrupts_deferred():
                    session.compile_seconds = self.engine.warm_up(
                        run, self.cost, work, self.parallel
                    )
                yield session
            check_restored(work, self.theta, self.cost.layout)
        finally:
            session.close()


class LocalSession:
    """An open run of a :class:`LocalExecutor`: central differences along given indices."""

    def __init__(self, executor: LocalExecutor, run: "Runner", work: np.ndarray) -> None:
        self.executor = executor
        self.compile_seconds = 0.0
        self._run: "Runner | None" = run
        self._work: np.ndarray | None = work
        self._failed = np.empty(work.shape[0], dtype=np.int64)
        self._directional: tuple[np.ndarray, "DirectionalRunner"] | None = None

    def close(self) -> None:
        self._run = self._work = None  # free the per-thread copies at once
        self._directional = None

    def directional(
        self, dtheta: np.ndarray, lo: np.ndarray, hi: np.ndarray, seeds: np.ndarray,
        kinds: np.ndarray, steps: np.ndarray, out: np.ndarray,
    ) -> None:
        """Directional differences, one task per row of ``out``, spread over the threads.

        Task t moves ``theta[lo[t]:hi[t]]`` by +/- ``steps[t]`` along the seeded direction
        ``seeds[t]`` (``kinds[t]``: Gaussian-like or signs, relative steps or not) and writes
        ``J+ - J-``, the analytic prediction over the represented moves and their squared norm
        (see ``engines._numba_kernels._directional_differences``). Failures are reported as
        for :meth:`differences`, naming the parameter block that was moved.
        """
        assert self._work is not None, "the session is closed"
        executor, failed = self.executor, self._failed
        if self._directional is None or self._directional[0] is not dtheta:
            run = executor.engine.make_directional_runner(
                executor.cost, self._work, executor.theta, dtheta, executor.parallel
            )
            self._directional = (dtheta, run)
        run = self._directional[1]
        try:
            run(lo, hi, seeds, kinds, steps, out, failed)
        except (CostError, KeyboardInterrupt):
            self._work[:] = executor.theta
            raise
        except Exception as error:  # raised inside compiled code
            self._work[:] = executor.theta
            raise CostError(
                f"the cost raised {type(error).__name__} in compiled code while a block was "
                f"moved along a random direction: {error}"
            ) from error
        if np.any(failed >= 0):
            t = int(failed[failed >= 0].min())
            _describe_directional_failure(executor, int(lo[t]), int(hi[t]), float(steps[t]))

    def differences(self, indices: np.ndarray, steps: np.ndarray, approx: np.ndarray) -> None:
        """``approx[k]``: the central difference along ``indices[k]`` at ``steps[k]``.

        A cost that raised or was not finite is reported with the component it happened at.
        """
        assert self._run is not None and self._work is not None, "the session is closed"
        executor, failed = self.executor, self._failed
        try:
            self._run(indices, steps, approx, failed)
        except CostError:
            raise
        except Exception as error:  # raised inside compiled code: find the index in Python
            self._work[:] = executor.theta
            _locate_error(executor, indices, steps, error)
        if np.count_nonzero(failed >= 0):  # any (counting costs less than .any())
            k = int(failed[failed >= 0].min())
            describe_failure(executor.cost, executor.theta, int(indices[k]), float(steps[k]))
        aborted = _aborted_at(self._work, executor.theta, indices)
        if aborted is not None:
            # A copy of theta was left moved at an index of this round: either a chunk stopped
            # between moving theta[i] and restoring it (the cost raised in a worker thread,
            # where compiled code drops the exception), or the cost writes into its input.
            # The reference loop raises the first; the restoration check names the second.
            _rerun_in_python(executor, indices[aborted:aborted + 1], steps[aborted:aborted + 1])
            check_restored(self._work, executor.theta, executor.cost.layout)

    def sweep(
        self, steps: "StepRule", approx: np.ndarray, seconds_per_cost: float,
        progress: bool | None,
    ) -> None:
        """Central differences along every component of theta, into ``approx``, in rounds."""
        n, n_chunks = self.executor.theta.shape[0], self.executor.n_chunks
        seconds_per_index = 2.0 * max(seconds_per_cost, 1e-8) / n_chunks
        show = progress if progress is not None else n * seconds_per_index > PROGRESS_AFTER_SECONDS
        bar = progress_bar(n) if show else None
        done = 0
        try:
            while done < n:
                size = round_size(n - done, n_chunks, seconds_per_index)
                start, stop = done, done + size
                started = time.perf_counter()
                self.differences(
                    np.arange(start, stop, dtype=np.int64), steps(start, stop), approx[start:stop]
                )
                # Size the next round from what this one really took.
                seconds_per_index = max((time.perf_counter() - started) / size, 1e-9)
                done = stop
                if bar is not None:
                    bar.update(size)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"fastgc check interrupted after {done} of {n} components; the caller's arrays "
                "are untouched"
            ) from None
        finally:
            if bar is not None:
                bar.close()


def _describe_directional_failure(
    executor: LocalExecutor, lo: int, hi: int, step: float
) -> None:
    """Raise the :class:`CostError` saying where a directional difference had no value."""
    layout = executor.cost.layout
    where = (
        f"theta[{lo}:{hi}] ({where_in_params(layout, lo)} to {where_in_params(layout, hi - 1)})"
        if hi > lo else f"the empty range theta[{lo}:{hi}]"
    )
    raise CostError(
        f"the cost was not finite, or every move vanished, when {where} was moved by "
        f"+/-{step:g} along a random direction; it must stay finite near the parameters",
        flat_index=lo if hi > lo else None,
    )


def round_size(remaining: int, n_chunks: int, seconds_per_index: float) -> int:
    """How many indices the next round takes: about ``ROUND_SECONDS`` of work, at least one
    per chunk, so that Ctrl-C (seen between rounds) is answered within about a round even
    when one evaluation of the cost takes tens of milliseconds."""
    return int(min(remaining, MAX_ROUND, max(n_chunks, ROUND_SECONDS / seconds_per_index)))


def progress_bar(total: int, unit: str = "param", initial: int = 0):
    if sys.stderr is None:  # pythonw, services: there is nowhere to draw the bar
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fastgc", unit=unit, leave=False, initial=initial)


# Unsigned integers of each float's width, to compare floats bit for bit.
_BITS = {4: np.dtype(np.uint32), 8: np.dtype(np.uint64)}


def _aborted_at(work: np.ndarray, theta: np.ndarray, indices: np.ndarray) -> int | None:
    """The first position in ``indices`` where a copy of theta was left moved, or None."""
    size = indices.shape[0]
    if size:
        first, last = int(indices[0]), int(indices[-1])
        # A sweep's round is a range: compare it in place, and look closer only when
        # something moved.
        if last - first + 1 == size and _same_bits(work[:, first:last + 1],
                                                   theta[first:last + 1]):
            return None
    integer = _BITS[theta.dtype.itemsize]
    work_bits, theta_bits = work.view(integer), theta.view(integer)
    moved = work_bits[:, indices] != theta_bits[indices]
    if not moved.any():
        return None
    return int(np.flatnonzero(moved.any(axis=0))[0])


# Up to this many components, comparing bytes costs less than an array of flags (beyond, the
# copies of the bytes cost more).
_BYTES_AT_MOST = 1 << 12


def _same_bits(rows: np.ndarray, reference: np.ndarray) -> bool:
    """Whether every row of ``rows`` is bitwise ``reference`` (so -0.0 and NaN payloads
    count)."""
    if reference.shape[0] <= _BYTES_AT_MOST:
        expected = reference.tobytes()
        return all(row.tobytes() == expected for row in rows)
    integer = _BITS[reference.dtype.itemsize]
    return not (rows.view(integer) != reference.view(integer)).any()  # rows broadcast


def _rerun_in_python(executor: LocalExecutor, indices: np.ndarray, steps: np.ndarray) -> None:
    """Run ``indices`` in the reference loop, which raises a :class:`CostError` naming the
    component where the cost raises, if it does."""
    scratch = executor.theta[np.newaxis].copy()
    run = get_engine("python").make_runner(executor.cost, scratch)
    run(indices, steps, np.empty(indices.shape[0]), np.empty(1, dtype=np.int64))


def _locate_error(
    executor: LocalExecutor, indices: np.ndarray, steps: np.ndarray, error: Exception
) -> None:
    """Re-run the round in the reference loop, which names the component that raised."""
    _rerun_in_python(executor, indices, steps)
    raise CostError(
        f"the cost raised {type(error).__name__} in compiled code: {exception_text(error)}"
    ) from error


def check_restored(work: np.ndarray, theta: np.ndarray, layout: "Layout") -> None:
    """Every row of ``work`` is bitwise ``theta``, or a :class:`CostError` naming the first
    component the cost wrote into."""
    if not _same_bits(work, theta):
        # Bitwise, so that -0.0 and NaN payloads count; the first change of the first copy.
        integer = _BITS[theta.dtype.itemsize]
        unequal = work.view(integer) != theta.view(integer)
        i = int(np.flatnonzero(unequal)[0]) % theta.shape[0]
        raise CostError(
            f"the cost wrote into the parameters it was given ({where_in_params(layout, i)} "
            "changed): treat them as read-only",
            flat_index=i, location=layout.locate(i),
        )
