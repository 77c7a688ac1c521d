"""The serial replay: a few differences of a parallel run evaluated again, one at a time.

The kernels are bitwise invariant to the thread count, so a deterministic cost gives the same
bits whichever thread evaluated it. A cost that keeps shared state (a cache of activations, a
scratch buffer in its arguments) or that is not a function of the parameters it is handed
gives other numbers, and no verdict can be drawn from them.
"""

from __future__ import annotations

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
    dtheta: np.ndarray, among: np.ndarray | None = None,
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
    replayed = indices.shape[0] if failed[0] < 0 else int(failed[0])
    first = approx[indices]
    differ = np.flatnonzero(first[:replayed].view(np.uint64) != again[:replayed].view(np.uint64))
    if failed[0] >= 0 or differ.size:
        _raise_irreproducible(cost, indices, first, again, differ, int(failed[0]))
    return 2 * indices.shape[0]


def _raise_irreproducible(
    cost: "Cost", indices: np.ndarray, first: np.ndarray, again: np.ndarray,
    differ: np.ndarray, failed_at: int,
) -> None:
    positions = differ.tolist() + ([failed_at] if failed_at >= 0 else [])
    shown = [int(indices[k]) for k in positions]
    parallel = tuple(float(first[k]) for k in positions)
    serial = tuple(float(again[k]) if k != failed_at else float("nan") for k in positions)
    pairs = "; ".join(
        f"theta[{i}] ({where_in_params(cost.layout, i)}): {p!r} then {s!r}"
        for i, p, s in zip(shown[:5], parallel, serial)
    )
    raise IrreproducibleCostError(
        f"the cost gave other numbers when {len(shown)} of {indices.shape[0]} differences "
        f"were evaluated again, one at a time, at the same parameters ({pairs}). The check "
        "runs on several threads and its kernels give the same bits on any thread, so the "
        "cost is not thread-safe (a cache of activations, a scratch buffer or other state "
        "shared between calls) or not a function of the parameters it is given. Make it "
        "thread-safe, or pass n_threads=1",
        indices=tuple(shown), parallel=parallel, serial=serial,
        location=cost.layout.locate(shown[0]),
    )
