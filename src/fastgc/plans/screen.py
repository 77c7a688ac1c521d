"""The screen plan: a few random directions per block, then localisation where they disagree.

Per block, ``directions`` seeded Gaussian-like directions restricted to it; the directional
difference ``J(theta + h v) - J(theta - h v)`` against the analytic prediction over the moves
actually represented, judged as one component is in a full check (relative tolerance plus
the noise floor of the cost). A block that disagrees is re-screened with fresh directions at
another step before anything is reported (random directions cross kinks too); a confirmed
block is localised (:mod:`.localise`) and what is found is differenced component by
component, so ``worst(k)`` names the wrong entries exactly as a full check does.
"""

from __future__ import annotations

import numpy as np

from .._result import BlockCoverage, Verdict
from ..diagnosis import Noise, measure_roundoff
from ..diagnosis.noise import roundoff_sample
from ._base import DirectionBatch, Plan, PlanContext, PlanOutcome, significant
from .._errors import InvalidInputError
from .complex_step import complex_directions
from .localise import UNRESOLVED_SAMPLE, Search, localise, spread
from .sampled import _positive_int, _seed

# The confirmation step, as a multiple of the first: larger where round-off dominates
# (float64), smaller where truncation and kinks do (float32's large steps).
CONFIRM_FACTOR = {np.dtype(np.float64): 4.0, np.dtype(np.float32): 0.5}
# Two estimates of a real gradient error agree whatever the step; truncation and kinks grow
# with it.
CONSISTENT = 4.0
NON_FINITE_SHOWN = 16
MOSTLY_WRONG = 0.75  # a sample this wrong is a block-wide error, not a wrong line
LINE_SAMPLE = 12  # entries of a suspected wrong column differenced

SCREEN_NOTE = (
    "screen: each block was differenced along a few random directions (a block passes when "
    "every direction agrees with backprop within round-off); a pass bounds the block's "
    "relative error by its detection limit but does not prove every component correct; "
    "disagreeing blocks were confirmed at another step and localised to components, which "
    "were differenced one by one"
)


class Screen(Plan):
    """Random directions per block, confirmation, localisation, components one by one.

    Parameters
    ----------
    directions : int, default 4
        Random directions per block (and again to confirm a block that disagrees).
    seed : int, default 0
        Every direction and sample, reproducible whatever the thread count or engine.

    Examples
    --------
    >>> import numpy as np, fastgc
    >>> w = np.linspace(-1.0, 1.0, 5000)
    >>> dw = 3 * w**2
    >>> dw[1234] += 0.5                      # one wrong entry
    >>> result = fastgc.check(lambda p: float(np.sum(p["w"] ** 3)), {"w": w}, {"dw": dw},
    ...                       plan="screen", progress=False)
    >>> result.verdict, result.worst(1)[0].index, result.evaluations < 2 * w.size
    (<Verdict.BUG: 'bug'>, (1234,), True)
    """

    name = "screen"
    moves_along_directions = True

    def __init__(self, directions: int = 4, seed: int = 0, complex_step: bool = False) -> None:
        self.directions = _positive_int("directions", directions)
        self.seed = _seed("seed", seed)
        if not isinstance(complex_step, bool):
            raise InvalidInputError(f"complex_step must be True or False, got "
                                    f"{complex_step!r}")
        self.complex_step = complex_step

    def run(self, context: PlanContext) -> PlanOutcome:
        try:
            return self._run(context)
        finally:
            context.close()

    def _run(self, context: PlanContext) -> PlanOutcome:
        layout, dtheta = context.layout, context.dtheta
        rng = np.random.default_rng(self.seed)
        noise, measured = _noise(context)
        rtol = context.thresholds[0]
        step = context.steps.eps
        screened, non_finite = _split_blocks(layout, dtheta)
        first = self._screen(context, screened, step, noise, rtol, rng)
        flagged = {k: screened[k] for k in screened if first.disagrees(k)}
        second_step = step * CONFIRM_FACTOR[layout.dtype]
        second = self._screen(context, flagged, second_step, noise, rtol, rng)
        confirmed = {k: flagged[k] for k in flagged if second.disagrees(k)}
        searches = localise(context, confirmed, noise, rtol, step, rng)
        components = {k: _with_mirrors(search.components(rng), layout, k) if search.wide
                      else search.components(rng) for k, search in searches.items()}
        # Blocks the directions cannot judge (a disagreement not confirmed, or a detection
        # limit above the bug threshold) are sampled, whole when small.
        unresolved = {
            k: bounds for k, bounds in screened.items() if k not in confirmed
            and (k in flagged or first.limit(k) >= context.thresholds[1])
        }
        for k, bounds in unresolved.items():
            components[k] = spread([bounds], UNRESOLVED_SAMPLE, rng)
        components.update(non_finite)
        indices = (np.unique(np.concatenate(list(components.values()))) if components
                   else np.empty(0, np.int64))
        approx = dtheta.copy()
        context.expect(2 * indices.shape[0])
        approx[indices] = context.differences(indices)
        checked = np.zeros(layout.size, dtype=bool)
        checked[indices] = True
        for k, found in _probe_lines(context, searches, components, approx, noise, step,
                                     rng).items():
            fresh = found[~checked[found]]
            approx[fresh] = context.differences(fresh)
            checked[fresh] = True
            components[k] = np.union1d(components[k], fresh)
        outcome = PlanOutcome(approx, checked, {}, context.evaluations, self.name,
                              notes=(SCREEN_NOTE,), measured_roundoff=measured,
                              directional_rows=context.directional_rows)
        _judge(outcome, layout, context.thresholds, (first, second), searches, components,
               non_finite)
        outcome.decided_blocks = frozenset(
            k for k, search in searches.items() if search.wide
            and outcome.block_verdicts.get(layout.names[k]) is Verdict.BUG)
        return outcome

    def _screen(self, context, blocks, step, noise, rtol, rng) -> "Screening":
        batch = context.batch(rng)
        for k, (lo, hi) in blocks.items():
            for _ in range(self.directions):
                batch.add(lo, hi, step, True, k)
        if self.complex_step:
            # Nothing is subtracted: the only floor is the cost's own relative precision.
            noise = Noise(0.0, 0.0)
            context.expect(batch.size)
            out = complex_directions(context, batch.freeze())
        else:
            context.expect(2 * batch.size)
            out = context.directions(batch.freeze())
        return Screening(batch, out, significant(out, noise, rtol), noise, rtol)

    def __repr__(self) -> str:
        extra = ", complex_step=True" if self.complex_step else ""
        return f"fastgc.Screen(directions={self.directions}, seed={self.seed}{extra})"


class Screening:
    """One round of directions per block, and what each block's directions say."""

    def __init__(self, batch: DirectionBatch, out: np.ndarray, disagree: np.ndarray,
                 noise: Noise, rtol: float) -> None:
        self.rows: dict[int, list[int]] = {}
        for row, block in enumerate(batch.owners):
            self.rows.setdefault(block, []).append(row)
        self.out, self.disagree, self.noise, self.rtol = out, disagree, noise, rtol

    def directions(self, k: int) -> int:
        return len(self.rows.get(k, []))

    def disagrees(self, k: int) -> bool:
        return bool(self.disagree[self.rows[k]].any())

    def estimate(self, k: int) -> float:
        """The lecture's difference along the block's directions: ||D - P|| / (||D|| + ||P||),
        which estimates the block's own within a factor of a few."""
        out = self.out[self.rows[k]]
        delta, prediction = out[:, 0], out[:, 1]
        denominator = np.linalg.norm(delta) + np.linalg.norm(prediction)
        return float(np.linalg.norm(delta - prediction) / denominator) if denominator else 0.0

    def limit(self, k: int) -> float:
        """The relative error the directions could have missed: the tolerance over the size
        of the directional difference, at the median direction."""
        out = self.out[self.rows[k]]
        size = np.abs(out[:, 0]) + np.abs(out[:, 1])
        with np.errstate(divide="ignore"):
            return float(np.median(self.rtol + 2.0 * self.noise.bound / size))


def _noise(context: PlanContext) -> tuple[Noise, float]:
    """The noise of J, and the round-off behind it, measured on the components the full
    check's diagnosis measures it on (which then uses this measurement)."""
    sample = roundoff_sample(context.layout.size)
    measured = measure_roundoff(context.prober.near, context.cost_at_theta, sample,
                                context.steps)
    return Noise.estimate(context.cost_at_theta, context.layout.dtype, measured), measured


def _probe_lines(context, searches, components, approx, noise, step, rng):
    """Where a matrix's error looked block-wide but its sample is mostly right, the error
    may sit in one column (every row range holds a piece of it): localise it within one
    row, then sample the column found. Block number to the components to add."""
    layout, dtheta = context.layout, context.dtheta
    found = {}
    for k, search in searches.items():
        shape = layout.shapes[k]
        if not search.wide or len(shape) != 2 or min(shape) < 2:
            continue
        sampled = components[k]
        wrong = _disagreeing(context, approx, sampled, noise)
        if wrong.mean() >= MOSTLY_WRONG:
            continue
        lo, width = int(layout.offsets[k]), shape[1]
        row = (int(sampled[wrong][0]) - lo) // width if wrong.any() else int(
            rng.integers(shape[0]))
        rows = {k: (lo + row * width, lo + (row + 1) * width)}
        in_row = localise(context, rows, noise, context.thresholds[0], step, rng)[k]
        search.directions += in_row.directions
        picked = in_row.components(rng)
        approx[picked] = context.differences(picked)
        columns = (picked[_disagreeing(context, approx, picked, noise)] - lo) % width
        column_entries = [np.sort(rng.choice(shape[0], min(shape[0], LINE_SAMPLE),
                                             replace=False)) * width + lo + int(column)
                          for column in np.unique(columns)[:2]]
        found[k] = np.concatenate([picked] + column_entries).astype(np.int64)
    return found


def _disagreeing(context, approx, indices, noise) -> np.ndarray:
    """Which of ``indices`` disagree beyond the full check's tolerance (before
    re-examination)."""
    numeric, analytic = approx[indices], context.dtheta[indices]
    tolerance = (context.thresholds[0] * (np.abs(numeric) + np.abs(analytic))
                 + noise.bound / context.steps.take(indices))
    return np.abs(numeric - analytic) > tolerance


def _with_mirrors(indices: np.ndarray, layout, k: int) -> np.ndarray:
    """In a square matrix, entry [j, i] beside every sampled [i, j], so that a transposed
    gradient shows as one."""
    shape = layout.shapes[k]
    if len(shape) != 2 or shape[0] != shape[1]:
        return indices
    lo = int(layout.offsets[k])
    rows, columns = np.divmod(indices - lo, shape[1])
    return np.unique(np.concatenate([indices, lo + columns * shape[1] + rows]))


def _split_blocks(layout, dtheta):
    """Blocks to screen (number to flat range), and for blocks with a NaN or Inf in the
    gradient (a bug already) the first few such components."""
    screened, non_finite = {}, {}
    for k in range(len(layout.names)):
        lo, hi = int(layout.offsets[k]), int(layout.offsets[k + 1])
        if hi == lo:
            continue
        bad = np.flatnonzero(~np.isfinite(dtheta[lo:hi]))
        if bad.size:
            non_finite[k] = bad[:NON_FINITE_SHOWN].astype(np.int64) + lo
        else:
            screened[k] = (lo, hi)
    return screened, non_finite


def _judge(outcome, layout, thresholds, screenings, searches, components, non_finite):
    """Coverage per block, and the verdicts that directions alone support."""
    first, second = screenings
    for k, name in enumerate(layout.names):
        size = int(layout.offsets[k + 1] - layout.offsets[k])
        search: Search | None = searches.get(k)
        picked = int(components[k].shape[0]) if k in components else 0
        directions = first.directions(k) + second.directions(k) + (
            search.directions if search else 0)
        limit, finding = 0.0, "empty"
        if k in non_finite:
            finding = "NaN/Inf in the gradient"
        elif search is not None:
            finding = search.finding
            _judge_confirmed(outcome, name, thresholds, first.estimate(k), second.estimate(k))
        elif size:
            limit = first.limit(k) if picked < size else 0.0
            outcome.block_estimates[name] = first.estimate(k)
            finding = "passed the screen"
            if picked:
                finding = ("not confirmed at another step: sampled" if second.directions(k)
                           else "below the directions' resolution: sampled")
        outcome.coverage[name] = BlockCoverage(
            name, size, picked, directions, 2 * (directions + picked), limit, finding
        )


def _judge_confirmed(outcome, name, thresholds, first, second) -> None:
    """A block whose directions disagreed at two steps: a bug when both say so by about as
    much (a real error does not depend on the step; truncation and kinks grow with it)."""
    correct, bug = thresholds
    estimate = min(first, second)
    consistent = max(first, second) <= CONSISTENT * max(estimate, 1e-300)
    verdict = Verdict.BUG if estimate >= bug and consistent else Verdict.SUSPICIOUS
    if estimate > correct or verdict is Verdict.BUG:
        outcome.block_verdicts[name] = verdict
    outcome.block_estimates[name] = estimate
