"""Scoring: per-component scores, per-block sums and verdicts, a chunk of theta at a time.

Each block gets the lecture's number recomputed with the re-examined values and the noise floor
subtracted, and a verdict; the overall verdict is the worst of them. Every operation runs over
a whole chunk, whatever the blocks in it (summed per block with ``reduceat``), so many small
parameters cost no more than one large one, and memory stays bounded whatever the size of theta.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np

from .._layout import Layout
from .._steps import UNIT_ROUNDOFF
from .._result import ParameterReport, Verdict, worst_verdict
from .evidence import Evidence

CHUNK = 1 << 14


# Agreement within the noise floor is no evidence where the floor is a large share of the
# component itself and not negligible next to the typical gradient (|theta| near 1e8 with the
# float64 step of 1e-7, say): such components are flagged once beyond the relative tolerance.
BLIND_SHARE = 0.1
RESOLUTION_FACTOR = 10.0
ZERO_ULPS = 64.0


def flag(
    evidence: Evidence, rtol: float, floor_scale: float, resolution: float = math.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Components beyond ``rtol * (|a| + |d|) + floor`` (or non-finite), and by how much.

    Also those beyond ``rtol * (|a| + |d|)`` whose floor hides the component (above
    ``BLIND_SHARE * (|a| + |d|)``) and is either above ``resolution`` or in a block whose
    floor hides most components while its analytic gradient is not zero.

    Parameters
    ----------
    evidence : Evidence
        The numeric and analytic gradients and the steps.
    rtol : float
        The relative tolerance.
    floor_scale : float
        The noise floor of component i is ``floor_scale / h_i``.
    resolution : float, default inf
        A floor above this (and above ``BLIND_SHARE * (|a| + |d|)``) cannot vouch for
        agreement (see :func:`resolution`).

    Returns
    -------
    flagged : ndarray of int64, shape (m,)
        Flat indices of the components outside their tolerance, in increasing order.
    ratio : ndarray of float64, shape (m,)
        Each one's error over its tolerance (NaN or inf where a value is not finite).
    """
    approx = evidence.approx
    # Needed only where the floor hides a component, which it rarely does: found when first
    # needed (it is a pass over all of theta, whatever the chunk).
    blind_blocks: np.ndarray | None = None
    flagged, ratios = [], []
    for start in range(0, approx.shape[0], CHUNK):
        stop = min(approx.shape[0], start + CHUNK)
        with np.errstate(invalid="ignore", over="ignore"):
            terms, blind_blocks = _flag_chunk(
                evidence, start, stop, rtol, floor_scale, resolution, blind_blocks
            )
            outside = np.flatnonzero(terms.outside)
        flagged.append(outside + start)
        ratios.append(
            terms.error[outside] / (terms.tolerance[outside] + floor_at(terms.floor, outside))
        )
    return np.concatenate(flagged), np.concatenate(ratios)


@dataclass
class _FlagTerms:
    """What :func:`flag` computes on a chunk, which scoring an agreeing chunk reuses."""

    error: np.ndarray  # |a - d|
    relative: np.ndarray  # |a| + |d|
    tolerance: np.ndarray  # rtol * (|a| + |d|)
    floor: float | np.ndarray  # the noise floor of each component (one float for equal steps)
    outside: np.ndarray  # of bool: flagged


def _flag_chunk(
    evidence: Evidence, start: int, stop: int, rtol: float, floor_scale: float,
    resolution: float, blind_blocks: np.ndarray | None,
) -> tuple[_FlagTerms, np.ndarray | None]:
    """:func:`flag` on the components start:stop (inside the caller's ``np.errstate``), and
    the blind blocks, found here when first needed."""
    a, d = evidence.approx[start:stop], evidence.dtheta[start:stop]
    error = np.abs(a - d)
    relative = np.abs(a)
    relative += np.abs(d)
    tolerance = rtol * relative
    floor = floor_scale / evidence.steps.over(start, stop)
    outside = ~(error <= tolerance + floor)  # NaN and Inf included
    if math.isfinite(resolution):
        hidden = floor > BLIND_SHARE * relative
        above = floor > resolution
        # One floor for the chunk (equal steps) is above the resolution or not: where it is
        # not, no component is blind but in a blind block.
        blind = hidden & above if isinstance(floor, np.ndarray) else (hidden if above else None)
        # Counting is cheaper than .any() on a chunk this size, with the same answer.
        if blind_blocks is None and np.count_nonzero(hidden):
            blind_blocks = _blind_blocks(evidence, floor_scale)
        if blind_blocks is not None and blind_blocks.any():
            blocks = evidence.layout.block_of(np.arange(start, stop))
            in_blind_block = hidden & blind_blocks[blocks]
            blind = in_blind_block if blind is None else blind | in_blind_block
        if blind is not None:
            outside |= blind & (error > tolerance)
    return _FlagTerms(error, relative, tolerance, floor, outside), blind_blocks


def score_agreement(
    evidence: Evidence, rtol: float, floor_scale: float, resolution: float = math.inf
) -> tuple[np.ndarray, "_BlockTotals", int] | None:
    """For a theta of one chunk whose analytic gradient is finite and where :func:`flag`
    finds nothing: what :func:`score` gives with nothing re-examined, and what
    :func:`count_beyond` counts, from the flagging's own terms. None otherwise.

    Parameters
    ----------
    evidence : Evidence
    rtol : float
        The relative tolerance.
    floor_scale : float
        The noise floor of component i is ``floor_scale / h_i``.
    resolution : float, default inf
        As for :func:`flag`.

    Returns
    -------
    (scores, totals, beyond) or None
        The scores and block totals of :func:`score`, and the count of :func:`count_beyond`,
        bit for bit.
    """
    n = evidence.approx.shape[0]
    if n > CHUNK or np.count_nonzero(np.isfinite(evidence.dtheta)) < n:
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        terms, _ = _flag_chunk(evidence, 0, n, rtol, floor_scale, resolution, None)
    if np.count_nonzero(terms.outside):
        return None
    beyond = int(np.count_nonzero(terms.error > terms.tolerance))
    scores, totals = score(evidence, floor_scale, {}, set(), flagging=terms)
    return scores, totals, beyond


def _blind_blocks(evidence: Evidence, floor_scale: float) -> np.ndarray:
    """Per block, whether the floor hides most of its components (above ``BLIND_SHARE`` of
    ``|a| + |d|``) while its analytic gradient is not zero (beyond ``ZERO_ULPS`` units of
    round-off of the RMS gradient): the step sees nothing of such a block, however small its
    gradients are next to the others'."""
    layout, n_blocks = evidence.layout, len(evidence.layout.names)
    # Below this an analytic gradient is round-off of zero (a bias before a batch norm).
    n = max(evidence.approx.shape[0], 1)
    negligible = ZERO_ULPS * UNIT_ROUNDOFF[np.dtype(layout.dtype)] * math.sqrt(
        float(np.sum(evidence.block_norms[:, 2])) / n
    )
    hidden = np.zeros(n_blocks, dtype=np.int64)
    nonzero = np.zeros(n_blocks, dtype=np.int64)
    for start in range(0, evidence.approx.shape[0], CHUNK):
        stop = min(evidence.approx.shape[0], start + CHUNK)
        a, d = evidence.approx[start:stop], evidence.dtheta[start:stop]
        blocks = layout.block_of(np.arange(start, stop))
        with np.errstate(invalid="ignore", over="ignore"):
            floor = floor_scale / evidence.steps.over(start, stop)
            hides = floor > BLIND_SHARE * (np.abs(a) + np.abs(d))
        hidden += np.bincount(blocks[hides], minlength=n_blocks)
        nonzero += np.bincount(blocks[~(np.abs(d) <= negligible)], minlength=n_blocks)
    sizes = np.diff(layout.offsets)
    return (2 * hidden > sizes) & (nonzero > 0)


def count_beyond(evidence: Evidence, rtol: float) -> int:
    """How many finite components disagree by more than ``rtol * (|a| + |d|)``.

    Parameters
    ----------
    evidence : Evidence
    rtol : float

    Returns
    -------
    int
    """
    approx, dtheta, total = evidence.approx, evidence.dtheta, 0
    for start in range(0, approx.shape[0], CHUNK):
        a, d = approx[start:start + CHUNK], dtheta[start:start + CHUNK]
        with np.errstate(invalid="ignore", over="ignore"):
            total += int(np.count_nonzero(np.abs(a - d) > rtol * (np.abs(a) + np.abs(d))))
    return total


def floor_at(floor: float | np.ndarray, positions: np.ndarray) -> float | np.ndarray:
    """The floor at ``positions`` of a chunk (one float when the steps are all equal)."""
    return floor[positions] if isinstance(floor, np.ndarray) else floor


def resolution(evidence: Evidence, bug: float) -> float:
    """The largest noise floor that still vouches for agreement: ``RESOLUTION_FACTOR * bug``
    times the RMS of the analytic gradient, so that an error of that share of a typical
    component stays visible (inf where the gradient is not finite or theta is empty).

    Parameters
    ----------
    evidence : Evidence
    bug : float
        The effective bug threshold.

    Returns
    -------
    float
    """
    n = evidence.approx.shape[0]
    squared = float(evidence.block_norms[:, 2].sum())
    if n == 0 or not math.isfinite(squared):
        return math.inf
    return RESOLUTION_FACTOR * bug * math.sqrt(squared / n)


_NO_INDICES = np.empty(0, dtype=np.int64)
_NO_INDICES.flags.writeable = False
_NOWHERE = slice(0, 0)


@dataclass
class _Sparse:
    """Re-examined values and unjudged components, looked up a chunk at a time."""

    corrected: dict[int, float]
    unjudged: set[int]

    def __post_init__(self) -> None:
        self.corrected_at = self.unjudged_at = _NO_INDICES  # the usual case: nothing to look up
        if self.corrected:
            self.corrected_at = np.array(sorted(self.corrected), dtype=np.int64)
            self.corrected_values = np.array([self.corrected[i] for i in self.corrected_at])
        if self.unjudged:
            self.unjudged_at = np.array(sorted(self.unjudged), dtype=np.int64)

    def within(self, positions: np.ndarray, start: int, stop: int) -> slice:
        if not positions.size:
            return _NOWHERE
        return slice(*np.searchsorted(positions, [start, stop]).tolist())

    def substituted(self, estimate: np.ndarray, start: int, stop: int) -> np.ndarray:
        """``estimate`` (the chunk start:stop) with the re-examined values in place; the
        array itself when none falls in the chunk."""
        found = self.within(self.corrected_at, start, stop)
        if found.stop <= found.start:
            return estimate
        numeric = estimate.copy()
        numeric[self.corrected_at[found] - start] = self.corrected_values[found]
        return numeric

    def floor(self, floor: float | np.ndarray, start: int, stop: int) -> float | np.ndarray:
        """The noise floor of the chunk start:stop, zero where a re-examined value replaces
        the difference at h: its own uncertainty, far below that floor, was judged already."""
        found = self.within(self.corrected_at, start, stop)
        if found.stop <= found.start:
            return floor
        chunk_floor = np.array(np.broadcast_to(floor, (stop - start,)), dtype=np.float64)
        chunk_floor[self.corrected_at[found] - start] = 0.0
        return chunk_floor

    def clear_unjudged(self, residual: np.ndarray, start: int, stop: int) -> None:
        """Zero the residual (of the chunk start:stop) of the components not judged."""
        skipped = self.within(self.unjudged_at, start, stop)
        if skipped.stop > skipped.start:
            residual[self.unjudged_at[skipped] - start] = 0.0


# ``finite`` of a chunk whose analytic gradient is finite throughout (never read then).
_ALL_FINITE = np.ones(0, dtype=bool)


@dataclass
class _ChunkTerms:
    """What one chunk contributes to the per-block totals."""

    raw_error: np.ndarray  # |approx - dtheta|, inf where dtheta is not finite
    squares: np.ndarray  # (3, chunk): residual, corrected numeric, analytic, squared
    finite: np.ndarray  # where dtheta is finite
    all_finite: bool


@dataclass
class _BlockTotals:
    """Per-block results of :func:`score`, one row or entry per parameter."""

    squares: np.ndarray  # (n_blocks, 3): residual, corrected numeric, analytic, squared norms
    max_error: np.ndarray  # the largest raw |approx - dtheta| (inf where dtheta is not finite)
    worst: np.ndarray  # the flat index where it occurs
    n_non_finite: np.ndarray  # components whose analytic gradient is NaN or Inf

    @classmethod
    def zeros(cls, offsets: np.ndarray) -> "_BlockTotals":
        n_blocks = offsets.shape[0] - 1
        return cls(
            squares=np.zeros((n_blocks, 3)),
            max_error=np.zeros(n_blocks),
            worst=offsets[:-1].copy(),
            n_non_finite=np.zeros(n_blocks, dtype=np.int64),
        )

    def add(self, terms: _ChunkTerms, bounds: list[int], start: int, stop: int) -> None:
        """Add the chunk start:stop to the totals of every block it meets."""
        blocks_here, begins_here = _blocks_meeting(bounds, start, stop)
        first, last = blocks_here[0], blocks_here[-1]
        # Without empty blocks among them, the blocks are a slice: no fancy indexing.
        blocks = (slice(first, last + 1) if last - first + 1 == len(blocks_here)
                  else np.array(blocks_here))
        self.squares[blocks] += np.add.reduceat(terms.squares, begins_here, axis=1).T
        if not terms.all_finite:
            self.n_non_finite[blocks] += np.add.reduceat(~terms.finite, begins_here,
                                                         dtype=np.int64)
        # The worst component of each block: argmax takes the first on ties, and a NaN first.
        raw_error = terms.raw_error
        ends = begins_here[1:] + [stop - start]
        for block, lo, hi in zip(blocks_here, begins_here, ends):
            worst = lo + int(raw_error[lo:hi].argmax())
            candidate = float(raw_error[worst])
            if candidate > self.max_error[block] or math.isnan(candidate):
                self.max_error[block], self.worst[block] = candidate, start + worst


def _blocks_meeting(bounds: list[int], start: int, stop: int) -> tuple[list[int], list[int]]:
    """The non-empty blocks meeting the chunk start:stop, and where each begins in it."""
    first = bisect.bisect_right(bounds, start) - 1
    last = bisect.bisect_left(bounds, stop)
    blocks_here, begins_here = [], []
    for block in range(first, last):
        lo, hi = max(bounds[block], start), min(bounds[block + 1], stop)
        if hi > lo:
            blocks_here.append(block)
            begins_here.append(lo - start)
    return blocks_here, begins_here


def score(
    evidence: Evidence, floor_scale: float, corrected: dict[int, float], unjudged: set[int],
    flagging: _FlagTerms | None = None,
) -> tuple[np.ndarray, _BlockTotals]:
    """Noise-aware per-component scores and per-block sums, a chunk of theta at a time.

    Parameters
    ----------
    evidence : Evidence
        The numeric and analytic gradients, layout and steps.
    floor_scale : float
        The noise floor of component i is ``floor_scale / h_i``.
    corrected : dict of int to float
        Re-examined numeric values, used in place of ``approx``.
    unjudged : set of int
        Components that do not count against their block (their residual is zero).
    flagging : _FlagTerms, optional
        What :func:`flag` computed on all of theta, when it is one chunk whose analytic
        gradient is finite and nothing is re-examined (``corrected`` empty): its ``|a - d|``,
        ``|a| + |d|`` and floor are the ones scoring needs, so they are not computed again.

    Returns
    -------
    scores : ndarray of float64, shape (n,)
        ``max(|numeric - analytic| - floor, 0) / (|numeric| + |analytic|)`` (0 where both are
        zero or the component is unjudged, inf where dtheta is not finite).
    totals : _BlockTotals
        Per-block squared norms, largest raw error and where, and non-finite counts.
    """
    n, offsets = evidence.approx.shape[0], evidence.layout.offsets
    sparse = _Sparse(corrected, unjudged)
    bounds = offsets.tolist()
    scores = np.zeros(n)
    totals = _BlockTotals.zeros(offsets)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        terms = _score_chunk(evidence, floor_scale, sparse, start, stop, scores[start:stop],
                             flagging)
        totals.add(terms, bounds, start, stop)
    return scores, totals


def _score_chunk(
    evidence: Evidence, floor_scale: float, sparse: _Sparse, start: int, stop: int,
    chunk_scores: np.ndarray, flagging: _FlagTerms | None = None,
) -> _ChunkTerms:
    """Write the scores of components start:stop into ``chunk_scores``; return their terms
    (with ``flagging``, as :func:`score` says, its terms are taken as they are)."""
    estimate, analytic = evidence.approx[start:stop], evidence.dtheta[start:stop]
    numeric = sparse.substituted(estimate, start, stop)
    if flagging is not None:
        finite, all_finite = _ALL_FINITE, True
        raw_error, scale, floor = flagging.error, flagging.relative, flagging.floor
    else:
        finite = np.isfinite(analytic)
        all_finite = np.count_nonzero(finite) == finite.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):
        if flagging is None:
            raw_error = np.abs(estimate - analytic)
            if not all_finite:
                raw_error[~finite] = np.inf
            floor = sparse.floor(floor_scale / evidence.steps.over(start, stop), start, stop)
            # |numeric| + |analytic|: the same sum as the flagging's |a| + |d|.
            scale = np.abs(numeric)
            scale += np.abs(analytic)
        residual = (raw_error if numeric is estimate else np.abs(numeric - analytic)) - floor
        np.maximum(residual, 0.0, out=residual)
        sparse.clear_unjudged(residual, start, stop)
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
    return _ChunkTerms(raw_error, squares, finite, all_finite)


def lecture_difference(norms: np.ndarray) -> float:
    """The lecture's number from summed squared norms.

    Parameters
    ----------
    norms : ndarray of float64, shape (n_blocks, 3)
        Rows of ``block_norms``: squared norms of approx - dtheta, approx and dtheta.

    Returns
    -------
    float
        ``||approx - dtheta|| / (||approx|| + ||dtheta||)`` over all blocks; 0.0 when both
        gradients are zero, NaN when a sum is not finite.
    """
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
    if not math.isfinite(difference) or difference >= bug:
        return Verdict.BUG
    if difference > correct:
        return Verdict.SUSPICIOUS
    return Verdict.CORRECT


def parameter_reports(
    evidence: Evidence, totals: _BlockTotals, scores: np.ndarray, flagged: np.ndarray,
    likely_bug: set[int], thresholds: tuple[float, float],
    unresolved: AbstractSet[int] = frozenset(),
) -> dict[str, ParameterReport]:
    """One :class:`ParameterReport` per block, in the order of the layout.

    A block's verdict comes from its adjusted difference, made worse by the score of its worst
    likely bug: a single wrong entry in a large block is a bug however small its share. A
    block that is not a bug and holds ``unresolved`` components (disagreeing, with nothing to
    explain it) is inconclusive: the absence of a judgement is not agreement.
    """
    layout, (correct, bug) = evidence.layout, thresholds
    disagreeing = _count_per_block(layout, flagged)
    n_unresolved = _count_per_block(
        layout, np.fromiter(unresolved, dtype=np.int64, count=len(unresolved))
        if unresolved else _NO_INDICES
    )
    worst_bug_score = _worst_score_per_block(layout, likely_bug, scores)
    # Python floats and ints of the same values: read one at a time, they cost far less.
    squares, block_norms = totals.squares.tolist(), evidence.block_norms.tolist()
    n_non_finite, max_error = totals.n_non_finite.tolist(), totals.max_error.tolist()
    worst, offsets = totals.worst.tolist(), layout.offsets.tolist()
    per_parameter = {}
    for k, (name, shape) in enumerate(zip(layout.names, layout.shapes)):
        if n_non_finite[k]:
            adjusted, verdict = float("inf"), Verdict.BUG
        else:
            adjusted = _lecture(*squares[k])
            verdict = _verdict(adjusted, correct, bug)
            if k in worst_bug_score:
                verdict = worst_verdict([verdict, _verdict(worst_bug_score[k], correct, bug)])
            if n_unresolved[k] and verdict is not Verdict.BUG:
                verdict = Verdict.INCONCLUSIVE
        per_parameter[name] = ParameterReport(
            name=name,
            shape=tuple(shape),
            difference=_lecture(*block_norms[k]),
            adjusted_difference=adjusted,
            verdict=verdict,
            max_abs_error=max_error[k],
            worst_index=(
                layout.index_within(k, worst[k] - offsets[k]) if offsets[k + 1] > offsets[k]
                else ()  # an empty parameter has no worst component
            ),
            n_disagreeing=disagreeing[k],
            n_non_finite=n_non_finite[k],
            n_unresolved=n_unresolved[k],
        )
    return per_parameter


def _count_per_block(layout: Layout, flat_indices: np.ndarray) -> list[int]:
    """How many of ``flat_indices`` fall in each block of ``layout``."""
    if not flat_indices.size:  # the usual case: nothing disagrees
        return [0] * len(layout.names)
    return np.bincount(layout.block_of(flat_indices), minlength=len(layout.names)).tolist()


def _worst_score_per_block(
    layout: Layout, components: set[int], scores: np.ndarray
) -> dict[int, float]:
    worst: dict[int, float] = {}
    for i in components:
        block = int(layout.block_of(i))
        worst[block] = max(worst.get(block, 0.0), float(scores[i]))
    return worst


def overall_verdict(
    totals: _BlockTotals, per_parameter: dict[str, ParameterReport],
    thresholds: tuple[float, float],
) -> Verdict:
    """The verdict on all of theta at once, or the worst parameter's if that is worse."""
    correct, bug = thresholds
    any_non_finite = np.count_nonzero(totals.n_non_finite) > 0
    summed = totals.squares.sum(axis=0)
    overall = Verdict.BUG if any_non_finite else _verdict(_lecture(*summed.tolist()), correct, bug)
    return worst_verdict([overall] + [p.verdict for p in per_parameter.values()])
