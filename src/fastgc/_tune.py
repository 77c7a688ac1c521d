"""``fastgc.suggest_threads``: time the check on the user's own cost at several thread counts.

The timings run on the same executor as :func:`fastgc.check` (private copies of theta, the
engine's thread count and the BLAS cap, all restored on exit, and the same restoration check),
on a sample of indices, so the throughput measured is the throughput a check will get.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np

from ._cost import Cost, measure_baseline
from ._errors import InvalidInputError
from ._layout import flatten
from ._steps import choose_steps
from ._threads import count_threads, usable_threads
from ._validation import validate_args, validate_positive_int, validate_positive_number
from .engines import Engine, resolve_engine
from .executors import LocalExecutor

# Counts within this fraction of the best throughput are as good as the best.
TOLERANCE = 0.05


class ThreadTiming(NamedTuple):
    """One row of the table: a thread count, its throughput and its speedup."""

    n_threads: int
    indices_per_second: float
    speedup: float


@dataclass(frozen=True)
class ThreadSuggestion:
    """What :func:`suggest_threads` measured, and the count it recommends.

    Attributes
    ----------
    table : dict of int to ThreadTiming
        Per candidate thread count: indices checked per second (two cost evaluations each) and
        the speedup over the smallest candidate (1 thread by default).
    recommended : int
        The smallest count whose throughput is within 5% of the best one.
    engine : str
        The engine timed (as :func:`fastgc.check` would choose it).
    n_parameters : int
        Size of the flattened parameters.
    sample_size : int
        Indices timed per run (the best of ``repeats`` runs is kept).
    repeats : int
        Timed runs per count.
    note : str
        Why the counts cannot differ, when they cannot (empty otherwise).
    """

    table: dict
    recommended: int
    engine: str
    n_parameters: int
    sample_size: int
    repeats: int
    note: str = ""

    def seconds_for_full_check(self, n_threads: int | None = None) -> float:
        """Estimated seconds of the finite differences of a full check at ``n_threads``."""
        row = self.table[self.recommended if n_threads is None else n_threads]
        return self.n_parameters / row.indices_per_second

    def __str__(self) -> str:
        lines = [
            f"fastgc thread timings: engine {self.engine}, {self.n_parameters:,} parameters, "
            f"{self.sample_size:,} indices per run, best of {self.repeats}",
            f"{'threads':>8} {'indices/s':>12} {'speedup':>8} {'full check':>11}",
        ]
        for count, row in sorted(self.table.items()):
            mark = "  <- recommended" if count == self.recommended else ""
            lines.append(
                f"{count:>8} {row.indices_per_second:>12,.0f} {row.speedup:>7.2f}x "
                f"{_seconds(self.seconds_for_full_check(count)):>11}{mark}"
            )
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def suggest_threads(
    cost: Callable[..., float],
    params: Any,
    *,
    args: tuple = (),
    candidates: Iterable[int] | None = None,
    sample: int = 2048,
    seconds: float = 2.0,
    repeats: int = 3,
    engine: str | None = None,
) -> ThreadSuggestion:
    """Time the check of this cost at each candidate thread count and suggest the best one.

    A sample of indices is checked (cost at theta[i] + h and theta[i] - h on per-thread copies,
    exactly as :func:`fastgc.check` does) at every count, after a warm-up run that also
    compiles the kernel; the best of ``repeats`` runs is kept. The caller's arrays and the
    Numba thread count are left as they were.

    Parameters
    ----------
    cost : callable
        As for :func:`fastgc.check`.
    params : dict, nested dicts, list, tuple or ndarray
        As for :func:`fastgc.check`; never modified.
    args : tuple, optional
        Extra arguments of ``cost``.
    candidates : iterable of int, optional
        Thread counts to time, each between 1 and the usable maximum (negative counts back
        from it, as ``n_threads``). Default: every count from 1 to the usable maximum.
    sample : int, default 2048
        At most this many indices per run (fewer when the cost is slow; see ``seconds``).
    seconds : float, default 2.0
        Rough budget of the timed runs, compilation excluded. The sample is sized so that all
        runs at 1 thread would take about this long.
    repeats : int, default 3
        Timed runs per count; the fastest is kept.
    engine : {"auto", "numba", "cython", "python"}, optional
        As for :func:`fastgc.check`.

    Returns
    -------
    ThreadSuggestion
        ``table`` (per count: indices/s and speedup), ``recommended`` (the smallest count within
        5% of the best throughput); ``print(suggestion)`` shows the table.

    Raises
    ------
    InvalidInputError
        A candidate is 0, not an int or above the usable maximum; ``sample``, ``seconds`` or
        ``repeats`` is not positive.
    CostError
        The cost raised or was not finite at a sampled index.

    Examples
    --------
    >>> import numba, numpy as np, fastgc
    >>> @numba.njit
    ... def cost(theta, X):
    ...     return np.sum(np.tanh(X @ theta) ** 2)
    >>> X = np.random.default_rng(0).standard_normal((64, 200))
    >>> suggestion = fastgc.suggest_threads(cost, np.zeros(200), args=(X,), seconds=0.2)
    >>> suggestion.recommended in suggestion.table
    True
    >>> print(suggestion)  # doctest: +ELLIPSIS
    fastgc thread timings: engine numba, 200 parameters, ...
    """
    theta, layout = flatten(params)
    args = validate_args(args)
    counts = _candidates(candidates)
    sample = validate_positive_int(sample, "sample")
    repeats = validate_positive_int(repeats, "repeats")
    seconds = validate_positive_number(seconds, "seconds")

    cost_ = Cost.classify(cost, args, layout)
    engine_ = resolve_engine(engine, cost_)
    seconds_per_cost = measure_baseline(cost_, theta).seconds
    n = layout.size
    per_run = seconds / (len(counts) * repeats)
    size = int(per_run / (2.0 * max(seconds_per_cost, 1e-8)))
    size = min(n, sample, max(size, 8 * max(counts)))
    indices = np.unique(np.linspace(0, n - 1, size).astype(np.int64))
    steps = choose_steps(theta, None).take(indices)

    best: dict[int, float] = {}
    parallel = True
    for count in counts:
        executor = LocalExecutor(engine_, cost_, theta, count)
        parallel = executor.parallel
        best[count] = _best_seconds(executor, indices, steps, repeats)
    base = best[counts[0]]
    table = {
        count: ThreadTiming(count, indices.shape[0] / best[count], base / best[count])
        for count in counts
    }
    top = max(row.indices_per_second for row in table.values())
    recommended = min(
        count for count, row in table.items()
        if row.indices_per_second >= (1.0 - TOLERANCE) * top
    )
    return ThreadSuggestion(table, recommended, engine_.name, n, int(indices.shape[0]),
                            repeats, _serial_note(engine_, parallel))


def _serial_note(engine: Engine, parallel: bool) -> str:
    """Why the thread counts cannot differ, when they cannot."""
    if engine.serial:
        return f"the {engine.name} engine is serial: every count runs on one thread"
    if not parallel:
        return ("called from a foreign thread pool with Numba's workqueue layer: the check "
                "runs serially here")
    return ""


def _candidates(candidates: Iterable[int] | None) -> list[int]:
    maximum = usable_threads()
    if candidates is None:
        return list(range(1, maximum + 1))
    try:
        given = list(candidates)
    except TypeError:
        raise InvalidInputError(
            f"candidates must be an iterable of thread counts, got {type(candidates).__name__}"
        ) from None
    if not given:
        raise InvalidInputError("candidates must name at least one thread count, got none")
    return sorted({count_threads(value, "candidates", clamp=False) for value in given})


def _best_seconds(
    executor: LocalExecutor, indices: np.ndarray, steps: np.ndarray, repeats: int
) -> float:
    """Fastest of ``repeats`` runs over ``indices``, after a warm-up run."""
    approx = np.empty(indices.shape[0], dtype=np.float64)
    warm = min(indices.shape[0], 2 * executor.n_chunks)
    timings = []
    with executor.open() as session:
        session.differences(indices[:warm], steps[:warm], approx[:warm])
        for _ in range(repeats):
            started = time.perf_counter()
            session.differences(indices, steps, approx)
            timings.append(time.perf_counter() - started)
    return min(timings)


def _seconds(value: float) -> str:
    if value < 1.0:
        return f"{value * 1e3:.1f} ms"
    if value < 120.0:
        return f"{value:.2f} s"
    return f"{value / 60.0:.1f} min"


def example_mlp(
    n_parameters: int, seed: int = 0, batch: int = 64
) -> tuple[Callable, np.ndarray, tuple]:
    """A Numba cost to time: one ReLU hidden layer, softmax cross-entropy, ``batch`` examples.

    The hidden layer is as wide as the input and there are 10 classes; the width is chosen so
    that the parameter count is close to ``n_parameters``. Returns ``(cost, theta, args)`` with
    ``cost(theta, *args)`` an ``@numba.njit`` function. Used by ``python -m fastgc tune``.
    """
    if isinstance(n_parameters, bool) or not isinstance(n_parameters, int) or n_parameters < 1:
        raise InvalidInputError(f"n_parameters must be a positive int, got {n_parameters!r}")
    classes = 10
    # width**2 + width (layer 1) + classes * width + classes (layer 2) = n_parameters
    discriminant = (1 + classes) ** 2 + 4 * max(0, n_parameters - classes)
    width = max(1, round((discriminant**0.5 - (1 + classes)) / 2))
    rng = np.random.default_rng(seed)
    theta = np.concatenate([
        rng.standard_normal(width * width) * np.sqrt(2.0 / width), np.zeros(width),
        rng.standard_normal(classes * width) * np.sqrt(1.0 / width), np.zeros(classes),
    ])
    X = rng.standard_normal((width, batch))
    labels = rng.integers(0, classes, size=batch)
    return _example_cost(), theta, (X, labels, width, classes)


def _example_cost() -> Callable:
    import numba

    @numba.njit(nogil=True)
    def cost(theta, X, labels, width, classes):  # pragma: no cover - compiled
        m = X.shape[1]
        hidden = np.empty((width, m))
        for j in range(width):
            row = hidden[j]
            row[:] = theta[width * width + j]
            for k in range(width):
                w = theta[j * width + k]
                for e in range(m):
                    row[e] += w * X[k, e]
            for e in range(m):
                row[e] = max(row[e], 0.0)
        start = width * width + width
        total = 0.0
        logits = np.empty(classes)
        for e in range(m):
            for c in range(classes):
                z = theta[start + classes * width + c]
                for k in range(width):
                    z += theta[start + c * width + k] * hidden[k, e]
                logits[c] = z
            top = logits.max()
            total += np.log(np.sum(np.exp(logits - top))) + top - logits[labels[e]]
        return total / m

    return cost
