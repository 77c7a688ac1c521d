"""Scoring: per-component scores, per-block sums and verdicts, a chunk of theta at a time.

Each block gets the lecture's number recomputed with the re-examined values and the noise floor
subtracted, and a verdict; the overall verdict is the worst of them.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from .._layout import Layout
from .._result import ParameterReport, Verdict, worst_verdict
from .._steps import StepRule

CHUNK = 1 << 14


def flag(
    approx: np.ndarray, dtheta: np.ndarray, steps: StepRule, rtol: float, floor_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Components beyond ``rtol * (|a| + |d|) + floor`` (or non-finite), and by how much."""
    flagged, ratios = [], []
    for start in range(0, approx.shape[0], CHUNK):
        stop = min(approx.shape[0], start + CHUNK)
        a, d = approx[start:stop], dtheta[start:stop]
        with np.errstate(invalid="ignore", over="ignore"):
            error = np.abs(a - d)
            tolerance = np.abs(a)
            tolerance += np.abs(d)
            tolerance *= rtol
            tolerance += floor_scale / steps.over(start, stop)
            outside = np.flatnonzero(~(error <= tolerance))  # NaN and Inf included
        flagged.append(outside + start)
        ratios.append(error[outside] / tolerance[outside])
    return np.concatenate(flagged), np.concatenate(ratios)


@dataclass
class _Sparse:
    """Re-examined values and unjudged components, looked up a chunk at a time."""

    corrected: dict[int, float]
    unjudged: set[int]

    def __post_init__(self) -> None:
        self.corrected_at = np.array(sorted(self.corrected), dtype=np.int64)
        self.corrected_values = np.array([self.corrected[i] for i in self.corrected_at])
        self.unjudged_at = np.array(sorted(self.unjudged), dtype=np.int64)

    def within(self, positions: np.ndarray, start: int, stop: int) -> slice:
        if not positions.size:
            return slice(0, 0)
        return slice(*np.searchsorted(positions, [start, stop]).tolist())


@dataclass
class _BlockTotals:
    """Per-block results of :func:`_score`, one row or entry per parameter."""

    squares: np.ndarray  # (n_blocks, 3): residual, corrected numeric, analytic, squared norms
    max_error: np.ndarray  # the largest raw |approx - dtheta| (inf where dtheta is not finite)
    worst: np.ndarray  # the flat index where it occurs
    n_non_finite: np.ndarray  # components whose analytic gradient is NaN or Inf


def score(
    approx: np.ndarray, dtheta: np.ndarray, steps: StepRule, floor_scale: float,
    corrected: dict[int, float], unjudged: set[int], offsets: np.ndarray,
) -> tuple[np.ndarray, _BlockTotals]:
    """Noise-aware per-component scores and per-block sums, a chunk of theta at a time.

    Every operation runs over a whole chunk, whatever the blocks in it (summed per block with
    ``reduceat``), so many small parameters cost no more than one large one.
    """
    sparse = _Sparse(corrected, unjudged)
    n, n_blocks = approx.shape[0], offsets.shape[0] - 1
    bounds = offsets.tolist()
    scores = np.zeros(n)
    totals = _BlockTotals(
        squares=np.zeros((n_blocks, 3)),
        max_error=np.zeros(n_blocks),
        worst=offsets[:-1].copy(),
        n_non_finite=np.zeros(n_blocks, dtype=np.int64),
    )
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        estimate, analytic = approx[start:stop], dtheta[start:stop]
        numeric = estimate
        found = sparse.within(sparse.corrected_at, start, stop)
        if found.stop > found.start:
            numeric = estimate.copy()
            numeric[sparse.corrected_at[found] - start] = sparse.corrected_values[found]
        finite = np.isfinite(analytic)
        all_finite = bool(finite.all())
        with np.errstate(invalid="ignore", over="ignore"):
            raw_error = np.abs(estimate - analytic)
            if not all_finite:
                raw_error[~finite] = np.inf
            residual = (raw_error if numeric is estimate else np.abs(numeric - analytic)) - (
                floor_scale / steps.over(start, stop)
            )
            np.maximum(residual, 0.0, out=residual)
            skipped = sparse.within(sparse.unjudged_at, start, stop)
            residual[sparse.unjudged_at[skipped] - start] = 0.0
            scale = np.abs(numeric)
            scale += np.abs(analytic)
            chunk_scores = scores[start:stop]
            np.divide(residual, scale, out=chunk_scores, where=scale > 0)
            if not all_finite:
                residual[~finite] = 0.0
                chunk_scores[~finite] = np.inf
                numeric = np.where(finite, numeric, 0.0)
                analytic = np.where(finite, analytic, 0.0)
            squares = np.empty((3, stop - start))
            np.multiply(residual, residual, out=squares[0])
            np.multiply(numeric, numeric, out=squares[1])
            np.multiply(analytic, analytic, out=squares[2])
        # The non-empty blocks meeting this chunk, and where each begins in it.
        first = bisect.bisect_right(bounds, start) - 1
        last = bisect.bisect_left(bounds, stop)
        blocks_here, begins_here = [], []
        for block in range(first, last):
            lo, hi = max(bounds[block], start), min(bounds[block + 1], stop)
            if hi > lo:
                blocks_here.append(block)
                begins_here.append(lo - start)
        blocks, begins = np.array(blocks_here), np.array(begins_here)
        totals.squares[blocks] += np.add.reduceat(squares, begins, axis=1).T
        if not all_finite:
            totals.n_non_finite[blocks] += np.add.reduceat(~finite, begins, dtype=np.int64)
        # The worst component of each block: argmax takes the first on ties, and a NaN first.
        ends = begins_here[1:] + [stop - start]
        for block, lo, hi in zip(blocks_here, begins_here, ends):
            worst = lo + int(np.argmax(raw_error[lo:hi]))
            candidate = float(raw_error[worst])
            if candidate > totals.max_error[block] or math.isnan(candidate):
                totals.max_error[block], totals.worst[block] = candidate, start + worst
    return scores, totals


def lecture_difference(norms: np.ndarray) -> float:
    """The lecture's number from summed squared norms (rows of ``block_norms``)."""
    return _lecture(*norms.sum(axis=0).tolist())


def _lecture(sum_difference: float, sum_approx: float, sum_dtheta: float) -> float:
    sum_difference, sum_approx, sum_dtheta = (
        float(sum_difference), float(sum_approx), float(sum_dtheta)
    )
    if not all(map(math.isfinite, (sum_difference, sum_approx, sum_dtheta))):
        return float("nan")
    denominator = math.sqrt(sum_approx) + math.sqrt(sum_dtheta)
    if denominator == 0.0:
        return 0.0
    return math.sqrt(sum_difference) / denominator


def _verdict(difference: float, correct: float, bug: float) -> Verdict:
    if not np.isfinite(difference) or difference >= bug:
        return Verdict.BUG
    if difference > correct:
        return Verdict.SUSPICIOUS
    return Verdict.CORRECT


def parameter_reports(
    layout: Layout, block_norms: np.ndarray, sums: _BlockTotals, scores: np.ndarray,
    flagged: np.ndarray, likely_bug: set[int], correct: float, bug: float,
) -> dict[str, ParameterReport]:
    """One :class:`ParameterReport` per block, in the order of ``layout``."""
    disagreeing = np.bincount(layout.block_of(flagged), minlength=len(layout.names))
    worst_bug_score: dict[int, float] = {}
    for i in likely_bug:
        block = int(layout.block_of(i))
        worst_bug_score[block] = max(worst_bug_score.get(block, 0.0), float(scores[i]))
    per_parameter = {}
    for k, (name, shape) in enumerate(zip(layout.names, layout.shapes)):
        if sums.n_non_finite[k]:
            adjusted, verdict = float("inf"), Verdict.BUG
        else:
            adjusted = _lecture(*sums.squares[k])
            verdict = _verdict(adjusted, correct, bug)
            if k in worst_bug_score:
                verdict = worst_verdict([verdict, _verdict(worst_bug_score[k], correct, bug)])
        per_parameter[name] = ParameterReport(
            name=name,
            shape=tuple(shape),
            difference=_lecture(*block_norms[k]),
            adjusted_difference=adjusted,
            verdict=verdict,
            max_abs_error=float(sums.max_error[k]),
            worst_index=(
                layout.locate(int(sums.worst[k]))[1] if layout.offsets[k + 1] > layout.offsets[k]
                else ()  # an empty parameter has no worst component
            ),
            n_disagreeing=int(disagreeing[k]),
            n_non_finite=int(sums.n_non_finite[k]),
        )
    return per_parameter


def overall_verdict(
    sums: _BlockTotals, per_parameter: dict[str, ParameterReport], correct: float, bug: float
) -> Verdict:
    """The verdict on all of theta at once, or the worst parameter's if that is worse."""
    any_non_finite = bool(sums.n_non_finite.any())
    totals = sums.squares.sum(axis=0)
    overall = Verdict.BUG if any_non_finite else _verdict(_lecture(*totals), correct, bug)
    return worst_verdict([overall] + [p.verdict for p in per_parameter.values()])
