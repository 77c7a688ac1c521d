"""The serial replay: a few differences of a parallel run evaluated again, one at a time.

The kernels are bitwise invariant to the thread count, so a deterministic cost gives the same
bits whichever thread evaluated it. A cost that keeps shared state (a cache of activations, a
scratch buffer in its arguments) or that is not a function of the parameters it is handed
gives other numbers, and no verdict can be drawn from them.

Two kinds of numbers are replayed, each through the Python reference kernel on a private copy
of theta: a sample of the central differences of components (:func:`confirm_reproducible`,
among the components a partial plan differenced one by one), and a sample of the directional
differences a plan ran through the session (:func:`confirm_directions_reproducible`, the
screen's random directions and its localisation), whose ``J+ - J-`` must come back bit for
bit. A screen in which every block passes differences no component at all, so without the
second replay its numbers would never be confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .._errors import IrreproducibleCostError
from .._validation import where_in_params
from ..engines import get_engine

if TYPE_CHECKING:
    from .._cost import Cost
    from .._steps import StepRule

# The most disagreeing components, where a corrupted value shows first, and a few spread
# over theta: 2 * (REPLAY_WORST + REPLAY_SPREAD) serial evaluations at most.
REPLAY_WORST = 4
REPLAY_SPREAD = 4
# Disagreements are ranked this many components at a time.
CHUNK = 1 << 16
# Directional rows replayed: the most disagreeing ones, then rows spread over the others, up
# to REPLAY_ROWS in all (2 * REPLAY_ROWS serial evaluations at most).
REPLAY_ROWS_WORST = 2
REPLAY_ROWS = 4


def replay_sample(
    approx: np.ndarray, dtheta: np.ndarray, among: np.ndarray | None = None
) -> np.ndarray:
    """The indices to replay: the ``REPLAY_WORST`` most disagreeing, and ``REPLAY_SPREAD``
    evenly spread ones.

    Parameters
    ----------
    approx, dtheta : ndarray of float64, shape (n,)
        Numeric and analytic gradients.
    among : ndarray of bool, shape (n,), optional
        The components that were differenced one by one (a partial plan); default all.

    Returns
    -------
    ndarray of int64
        Distinct indices in increasing order.
    """
    if among is not None:
        where = np.flatnonzero(among)
        return where[replay_sample(approx[where], dtheta[where])]
    worst = _most_disagreeing(approx, dtheta, REPLAY_WORST)
    spread = spread_indices(approx.shape[0], REPLAY_SPREAD)
    return np.array(sorted(set(worst.tolist()).union(spread)), dtype=np.int64)


def spread_indices(n: int, count: int) -> list[int]:
    """``count`` (at most ``n``) indices evenly spread over ``0 .. n - 1``, the first and the
    last among them: ``np.linspace(0, n - 1, min(count, n)).astype(np.int64)``, the same
    products in the same floating point, without its NumPy calls on a few numbers.

    Parameters
    ----------
    n : int
        The number of components.
    count : int
        How many indices, at most.

    Returns
    -------
    list of int
        In increasing order, possibly repeated where ``n`` is small.
    """
    count = min(count, n)
    if count < 2:
        return [0] * count
    step = (n - 1) / (count - 1)
    return [int(j * step) for j in range(count - 1)] + [n - 1]


def _most_disagreeing(approx: np.ndarray, dtheta: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` indices of largest relative disagreement (ties to the lower index), found
    chunk by chunk so that no n-sized temporary is made."""
    candidates, scores = [], []
    for start in range(0, approx.shape[0], CHUNK):
        a = approx[start:start + CHUNK]
        d = np.asarray(dtheta[start:start + CHUNK], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            relative = np.abs(a - d) / (np.abs(a) + np.abs(d))
        # NaN (0 / 0, or a NaN gradient) and inf count as no disagreement; a ratio of
        # magnitudes is never negative.
        relative = np.where(relative < np.inf, relative, 0.0)
        top = np.argsort(-relative, kind="stable")[:k]  # by disagreement, ties by index
        if start == 0 and approx.shape[0] <= CHUNK:  # one chunk: these are the k
            return top
        top.sort()
        candidates.append(top + start)
        scores.append(relative[top])
    if not candidates:
        return np.empty(0, dtype=np.int64)
    candidates_, scores_ = np.concatenate(candidates), np.concatenate(scores)
    return candidates_[np.argsort(-scores_, kind="stable")[:k]]


def confirm_reproducible(
    cost: "Cost", theta: np.ndarray, steps: "StepRule", approx: np.ndarray,
    dtheta: np.ndarray, among: np.ndarray | None = None, workers: bool = False,
) -> int:
    """Replay a sample of ``approx`` serially; raise if any difference comes back other.

    Parameters
    ----------
    cost : Cost
    theta : ndarray, shape (n,)
        The flat parameters (copied once, never modified).
    steps : StepRule
    approx, dtheta : ndarray of float64, shape (n,)
        The differences of the run, and the analytic gradient (to pick the sample).
    among : ndarray of bool, shape (n,), optional
        The components the run differenced one by one, when it did not do them all.
    workers : bool
        Whether the numbers came from worker processes (the error's advice differs).

    Returns
    -------
    int
        How many evaluations of the cost the replay took.

    Raises
    ------
    IrreproducibleCostError
        Naming the indices and both values.
    """
    indices = replay_sample(approx, dtheta, among)
    if not indices.size:
        return 0
    scratch = theta[np.newaxis].copy()
    run = get_engine("python").make_runner(cost, scratch)
    again = np.empty(indices.shape[0])
    failed = np.empty(1, dtype=np.int64)
    run(indices, steps.take(indices), again, failed)
    first = approx[indices]
    positions = _mismatches(first, again, int(failed[0]))
    if positions:
        _raise_irreproducible(cost, indices, first, again, positions, int(failed[0]), workers)
    return 2 * indices.shape[0]


def _mismatches(first: np.ndarray, again: np.ndarray, failed_at: int) -> list[int]:
    """Positions where the replay gave other bits, then the one where it failed (-1: none);
    the replay stopped there, so nothing after it is compared."""
    replayed = first.shape[0] if failed_at < 0 else failed_at
    if failed_at < 0 and first.tobytes() == again.tobytes():  # the usual case: every bit back
        return []
    differ = np.flatnonzero(first[:replayed].view(np.uint64) != again[:replayed].view(np.uint64))
    return differ.tolist() + ([failed_at] if failed_at >= 0 else [])


@dataclass(repr=False)
class DirectionalRows:
    """The directional tasks a plan ran through its session, batch by batch, with what they
    gave: the arguments of ``session.directional`` and a copy of its ``out`` (J+ - J-, the
    prediction, the squared norm of the move). A screen runs a handful per block."""

    batches: list[tuple[np.ndarray, ...]] = field(default_factory=list)

    def record(self, lo: np.ndarray, hi: np.ndarray, seeds: np.ndarray, kinds: np.ndarray,
               steps: np.ndarray, out: np.ndarray) -> None:
        """Keep one batch: int64 ``lo``, ``hi`` and ``kinds``, uint64 ``seeds``, float64
        ``steps`` of shape (t,) and ``out`` of shape (t, 3), as the session was given them."""
        if lo.shape[0]:
            self.batches.append(tuple(np.array(a, copy=True)
                                      for a in (lo, hi, seeds, kinds, steps, out)))

    def __len__(self) -> int:
        return sum(batch[0].shape[0] for batch in self.batches)

    def __repr__(self) -> str:
        return f"<DirectionalRows: {len(self)} rows in {len(self.batches)} batches>"

    def arrays(self) -> tuple[np.ndarray, ...]:
        """Every batch's ``lo, hi, seeds, kinds, steps, out``, joined in the order they ran."""
        if not self.batches:
            return (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint64),
                    np.empty(0, np.int64), np.empty(0), np.empty((0, 3)))
        return tuple(np.concatenate(column) for column in zip(*self.batches))


def direction_replay_sample(out: np.ndarray) -> np.ndarray:
    """The directional rows to replay: the ``REPLAY_ROWS_WORST`` whose ``J+ - J-`` disagrees
    most with its prediction (relatively; ties to the earlier row), then rows evenly spread
    over the others, ``min(REPLAY_ROWS, t)`` in all.

    Parameters
    ----------
    out : ndarray of float64, shape (t, 3)
        The directional kernels' output: J+ - J-, the prediction, the squared move.

    Returns
    -------
    ndarray of int64
        Distinct row numbers in increasing order.
    """
    # J+ - J- against its prediction, ranked as components are against their gradient.
    worst = _most_disagreeing(out[:, 0], out[:, 1], REPLAY_ROWS_WORST)
    others = np.setdiff1d(np.arange(out.shape[0]), worst)
    wanted = min(REPLAY_ROWS, out.shape[0]) - worst.shape[0]
    # (m - 1) / (wanted - 1) >= 1 apart when wanted <= m: distinct picks.
    spread = others[spread_indices(others.shape[0], wanted)]
    return np.unique(np.concatenate([worst, spread]).astype(np.int64))


def confirm_directions_reproducible(
    cost: "Cost", theta: np.ndarray, dtheta: np.ndarray, rows: DirectionalRows,
    workers: bool = False,
) -> int:
    """Replay a sample of the directional rows serially; raise if a ``J+ - J-`` comes back
    other.

    Parameters
    ----------
    cost : Cost
    theta : ndarray, shape (n,)
        The flat parameters (copied once, never modified).
    dtheta : ndarray, shape (n,)
        The analytic gradient the rows were run with.
    rows : DirectionalRows
        What the plan ran through the session (nothing for a plan that moves no direction).
    workers : bool
        Whether the numbers came from worker processes (the error's advice differs).

    Returns
    -------
    int
        How many evaluations of the cost the replay took (2 per row replayed).

    Raises
    ------
    IrreproducibleCostError
        Naming the ranges moved (their parameter) and both values of ``J+ - J-``.
    """
    if not len(rows):
        return 0
    lo, hi, seeds, kinds, steps, out = rows.arrays()
    picked = direction_replay_sample(out)
    private = theta.copy()
    scratch = private[np.newaxis].copy()
    run = get_engine("python").make_directional_runner(cost, scratch, private, dtheta)
    again = np.empty((picked.shape[0], 3))
    failed = np.empty(1, dtype=np.int64)
    run(lo[picked], hi[picked], seeds[picked], kinds[picked], steps[picked], again, failed)
    first, replayed = out[picked, 0], np.ascontiguousarray(again[:, 0])
    positions = _mismatches(first, replayed, int(failed[0]))
    if positions:
        serial = [float(replayed[k]) if k != failed[0] else float("nan") for k in positions]
        _raise_irreproducible_directions(cost, lo[picked], hi[picked], first, serial,
                                         positions, workers)
    return 2 * picked.shape[0]


_ON_THREADS = (
    "The check ran on several threads and its kernels give the same bits on any thread, so "
    "the cost is not thread-safe (a cache of activations, a scratch buffer or other state "
    "shared between calls) or not a function of the parameters it is given. Make it "
    "thread-safe, or pass n_threads=1"
)
_ON_WORKERS = (
    "The check ran on worker processes, each of which gives the bits of this process for a "
    "cost of the parameters alone, so the cost depends on something else that differs "
    "between processes or calls (state kept between calls, the process id, a random number "
    "generator, threads inside a worker). Make it a function of its parameters, or run with "
    "executor='local'"
)


def _raise_irreproducible(
    cost: "Cost", indices: np.ndarray, first: np.ndarray, again: np.ndarray,
    positions: list[int], failed_at: int, workers: bool,
) -> None:
    shown = [int(indices[k]) for k in positions]
    parallel = tuple(float(first[k]) for k in positions)
    serial = tuple(float(again[k]) if k != failed_at else float("nan") for k in positions)
    pairs = "; ".join(
        f"theta[{i}] ({where_in_params(cost.layout, i)}): {p!r} then {s!r}"
        for i, p, s in zip(shown[:5], parallel, serial)
    )
    raise IrreproducibleCostError(
        f"the cost gave other numbers when {len(shown)} of {indices.shape[0]} differences "
        f"were evaluated again, one at a time, at the same parameters ({pairs}). "
        + (_ON_WORKERS if workers else _ON_THREADS),
        indices=tuple(shown), parallel=parallel, serial=serial,
        location=cost.layout.locate(shown[0]),
    )


def _raise_irreproducible_directions(
    cost: "Cost", lo: np.ndarray, hi: np.ndarray, first: np.ndarray, serial: list[float],
    positions: list[int], workers: bool,
) -> None:
    layout = cost.layout
    starts = tuple(int(lo[k]) for k in positions)
    parallel = tuple(float(first[k]) for k in positions)
    pairs = "; ".join(
        f"theta[{int(lo[k])}:{int(hi[k])}] ({where_in_params(layout, int(lo[k]))} to "
        f"{where_in_params(layout, int(hi[k]) - 1)}): {p!r} then {s!r}"
        for k, p, s in zip(positions[:5], parallel, serial)
    )
    raise IrreproducibleCostError(
        f"the cost gave other numbers when {len(positions)} of {lo.shape[0]} directional "
        "differences J(theta + h v) - J(theta - h v) (random directions within a block) were "
        f"evaluated again, one at a time, at the same parameters ({pairs}). "
        + (_ON_WORKERS if workers else _ON_THREADS),
        indices=starts, parallel=parallel, serial=tuple(serial),
        location=layout.locate(starts[0]),
    )
