"""What every plan shares: the context a check hands it, what it hands back, and the two
kinds of work it can ask the executor for (components one by one, random directions).

A plan decides *what* is differenced and how the results become evidence; it never branches
on an engine or an executor, and it evaluates the cost only through the session and the
prober it is given.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .._result import BlockCoverage, ParameterReport, Verdict, worst_verdict
from ..diagnosis import Noise
from ..executors.local import PROGRESS_AFTER_SECONDS, progress_bar, round_size
from ..executors.replay import DirectionalRows

if TYPE_CHECKING:
    from .._layout import Layout
    from .._steps import StepRule
    from ..diagnosis import Diagnosis, Prober
    from ..executors.local import LocalSession

# How the step of each entry shrinks with the size m of the range moved: m ** -SPREAD.
# float64's truncation is negligible even for a whole block moved by the full step per
# entry, so it shrinks slowly (a single wrong entry stays visible above round-off); float32's
# large steps shrink so that the move has about one component's length.
SPREAD = {np.dtype(np.float64): 0.25, np.dtype(np.float32): 0.5}
# Bits of the directional kernels' ``kinds`` (see engines._reference).
GAUSSIAN = 1
RELATIVE = 2


@dataclass
class PlanContext:
    """Everything a plan may use: the open session, the problem and how it is measured."""

    session: "LocalSession"
    theta: np.ndarray
    dtheta: np.ndarray
    layout: "Layout"
    steps: "StepRule"
    cost_at_theta: float
    seconds_per_cost: float
    n_chunks: int
    progress: bool | None
    thresholds: tuple[float, float]  # effective (correct, bug)
    prober: "Prober"
    evaluations: int = 0  # spent by the plan through the session
    expected: int = 0  # evaluations the plan has announced so far (see ``expect``)
    bar: object = None  # the progress bar over evaluations, once shown
    # Every directional row run through the session, for the serial replay after a parallel run.
    directional_rows: DirectionalRows = field(default_factory=DirectionalRows)

    def expect(self, evaluations: int) -> None:
        """Announce ``evaluations`` more to come. The bar over evaluations appears, as the
        full check's does, once the work announced is expected to take over 3 seconds."""
        self.expected += int(evaluations)
        if self.bar is not None:
            self.bar.total = max(self.expected, self.evaluations)
            self.bar.refresh()
        elif self._shows(self.expected):
            self.bar = progress_bar(self.expected, unit="eval", initial=self.evaluations)

    def _shows(self, evaluations: int) -> bool:
        if self.progress is not None:
            return self.progress
        seconds = evaluations * max(self.seconds_per_cost, 1e-8) / self.n_chunks
        return seconds > PROGRESS_AFTER_SECONDS

    def close(self) -> None:
        """Close the progress bar, if one was shown."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _advance(self, evaluations: int) -> None:
        self.evaluations += evaluations
        if self.bar is not None:
            if self.evaluations > self.bar.total:
                self.bar.total = self.evaluations
            self.bar.update(evaluations)

    def differences(self, indices: np.ndarray) -> np.ndarray:
        """Central differences along ``indices`` (int64), at the check's steps; in rounds
        when a bar is shown, so that it moves."""
        approx = np.empty(indices.shape[0])
        for start, stop in self._rounds(indices.shape[0], 2):
            with self._interruptible():
                self.session.differences(indices[start:stop],
                                         self.steps.take(indices[start:stop]),
                                         approx[start:stop])
            self._advance(2 * (stop - start))
        return approx

    def _rounds(self, tasks: int, evaluations_per_task: int) -> Iterator[tuple[int, int]]:
        """Slices of ``tasks`` run one after the other: all at once without a bar, else
        about ``ROUND_SECONDS`` each (at least one task per chunk)."""
        if self.bar is None:
            if tasks:
                yield 0, tasks
            return
        seconds_per_task = (evaluations_per_task * max(self.seconds_per_cost, 1e-8)
                            / self.n_chunks)
        done = 0
        while done < tasks:
            size = round_size(tasks - done, self.n_chunks, seconds_per_task)
            yield done, done + size
            done += size

    def batch(self, rng: np.random.Generator) -> "DirectionBatch":
        """An empty batch of directions, with this dtype's spread of the step."""
        return DirectionBatch(rng, SPREAD[self.layout.dtype])

    def directions(self, batch: "DirectionBatch") -> np.ndarray:
        """``out`` of the directional kernels for ``batch``: J+ - J-, prediction, |move|^2."""
        out = np.empty((batch.size, 3))
        kinds = batch.kinds | (RELATIVE if self.steps.relative else 0)
        for start, stop in self._rounds(batch.size, 2):
            # Each task's direction comes from its own seed: rounds change no number.
            part = slice(start, stop)
            with self._interruptible():
                self.session.directional(self.dtheta, batch.lo[part], batch.hi[part],
                                         batch.seeds[part], kinds[part], batch.steps[part],
                                         out[part])
            self._advance(2 * (stop - start))
        self.directional_rows.record(batch.lo, batch.hi, batch.seeds, kinds, batch.steps, out)
        return out

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        """Ctrl-C says how far the check got, as the full check's sweep does."""
        try:
            yield
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"fastgc check interrupted after {self.evaluations} cost evaluations of the "
                "plan; the caller's arrays are untouched"
            ) from None


@dataclass
class DirectionBatch:
    """Directional tasks built one at a time, run together (spread over the threads)."""

    rng: np.random.Generator
    spread: float
    lo: list = field(default_factory=list)
    hi: list = field(default_factory=list)
    steps_: list = field(default_factory=list)
    kinds_: list = field(default_factory=list)
    owners: list = field(default_factory=list)  # whatever the plan wants back per task

    def add(self, lo: int, hi: int, step: float, gaussian: bool, owner: object) -> None:
        """Queue a direction over ``theta[lo:hi]``; each entry moves by about
        ``step / (hi - lo) ** SPREAD``, so the whole move stays small in a large range."""
        self.lo.append(lo)
        self.hi.append(hi)
        self.steps_.append(step / max(hi - lo, 1) ** self.spread)
        self.kinds_.append(GAUSSIAN if gaussian else 0)
        self.owners.append(owner)

    @property
    def size(self) -> int:
        return len(self.lo)

    def freeze(self) -> "DirectionBatch":
        """Arrays for the kernel; the seeds are drawn now, in task order (reproducible)."""
        self.lo, self.hi = np.array(self.lo, np.int64), np.array(self.hi, np.int64)
        self.steps = np.array(self.steps_, np.float64)
        self.kinds = np.array(self.kinds_, np.int64)
        self.seeds = self.rng.integers(0, 2**64, size=self.size, dtype=np.uint64,
                                       endpoint=False)
        return self


def significant(out: np.ndarray, noise: Noise, rtol: float) -> np.ndarray:
    """Where the directional difference disagrees with the prediction beyond round-off.

    The same rule as for one component: ``|D - P| > rtol (|D| + |P|) + floor``, with the
    floor of a difference of two evaluations, each off by at most ``noise.bound``.
    """
    delta, prediction = out[:, 0], out[:, 1]
    with np.errstate(invalid="ignore"):
        tolerance = rtol * (np.abs(delta) + np.abs(prediction)) + 2.0 * noise.bound
        return ~(np.abs(delta - prediction) <= tolerance)


@dataclass
class PlanOutcome:
    """What a plan found: numeric values where it differenced components, and per block."""

    approx: np.ndarray  # numeric where checked, dtheta elsewhere (no disagreement)
    # bool per component: differenced one by one (None: every component, with no n-sized mask)
    checked: np.ndarray | None
    coverage: dict[str, BlockCoverage]
    evaluations: int
    name: str
    notes: tuple[str, ...] = ()
    # Verdicts the plan reached from directions alone, and the difference they estimate.
    block_verdicts: dict[str, Verdict] = field(default_factory=dict)
    block_estimates: dict[str, float] = field(default_factory=dict)
    # The round-off of J the plan measured (on ``roundoff_sample``, at the check's steps),
    # which the diagnosis then need not measure again.
    measured_roundoff: float | None = None
    # Blocks the plan's directions showed wrong as a whole (numbers, see Evidence).
    decided_blocks: frozenset = frozenset()
    # The directional rows the plan ran through the session (none for components alone).
    directional_rows: DirectionalRows = field(default_factory=DirectionalRows)

    def overall_difference(self, diagnosis: "Diagnosis", full: float) -> float:
        """The lecture's number over all of theta for a full check; for a partial one, the
        largest adjusted block difference (a sum over unchecked components would dilute
        it)."""
        if not self.partial:
            return full
        return max((p.adjusted_difference for p in diagnosis.per_parameter.values()),
                   default=0.0)

    @property
    def partial(self) -> bool:
        return self.checked is not None and not bool(self.checked.all())

    def merge(
        self, diagnosis: "Diagnosis", layout: "Layout", dtheta: np.ndarray
    ) -> "Diagnosis":
        """The diagnosis with partial blocks judged on what was checked, and the plan's own
        block verdicts where they are worse."""
        if not self.partial and not self.block_verdicts:
            return diagnosis
        per_parameter = {}
        for k, (name, report) in enumerate(diagnosis.per_parameter.items()):
            per_parameter[name] = self._merged_report(diagnosis, layout, dtheta, k, report)
        verdict = worst_verdict([diagnosis.verdict]
                                + [p.verdict for p in per_parameter.values()])
        return replace(diagnosis, per_parameter=per_parameter, verdict=verdict)

    def _merged_report(
        self, diagnosis: "Diagnosis", layout: "Layout", dtheta: np.ndarray, k: int,
        report: ParameterReport,
    ) -> ParameterReport:
        lo, hi = int(layout.offsets[k]), int(layout.offsets[k + 1])
        checked = (np.arange(lo, hi) if self.checked is None
                   else np.flatnonzero(self.checked[lo:hi]) + lo)
        verdict = report.verdict
        difference = self.block_estimates.get(report.name, 0.0)
        # A block that passed its directions disagrees by no more than round-off explains.
        adjusted = difference if report.name in self.block_verdicts else 0.0
        if checked.size and checked.size < hi - lo:
            difference, adjusted = _sample_differences(self.approx, dtheta, diagnosis, checked)
            verdict = worst_verdict([verdict, _verdict(adjusted, diagnosis.thresholds)])
        elif checked.size == hi - lo:
            difference, adjusted = report.difference, report.adjusted_difference
        if report.name in self.block_verdicts:
            from_directions = self.block_verdicts[report.name]
            if checked.size and from_directions is Verdict.BUG and (
                report.verdict is not Verdict.BUG
            ):
                # Components differenced one by one outrank directions, which cross kinks
                # wholesale: they leave the block suspicious, not a bug.
                from_directions = Verdict.SUSPICIOUS
            verdict = worst_verdict([verdict, from_directions])
            adjusted = max(adjusted, self.block_estimates.get(report.name, 0.0))
        if report.n_non_finite:
            adjusted, verdict = float("inf"), Verdict.BUG
        return replace(report, difference=difference, adjusted_difference=adjusted,
                       verdict=verdict)


def _sample_differences(
    approx: np.ndarray, dtheta_all: np.ndarray, diagnosis: "Diagnosis", checked: np.ndarray
) -> tuple[float, float]:
    """The lecture's difference over the checked components, raw and adjusted (re-examined
    values, noise floor subtracted), as the full check computes it over a whole block."""
    numeric = np.array([diagnosis.corrected.get(int(i), approx[i]) for i in checked])
    dtheta = dtheta_all[checked]
    raw = _lecture(approx[checked], dtheta, np.abs(approx[checked] - dtheta))
    residual = diagnosis.scores[checked] * (np.abs(numeric) + np.abs(dtheta))
    return raw, _lecture(numeric, dtheta, residual)


def _lecture(numeric: np.ndarray, analytic: np.ndarray, residual: np.ndarray) -> float:
    with np.errstate(invalid="ignore", over="ignore"):
        denominator = np.sqrt(np.sum(numeric**2)) + np.sqrt(np.sum(analytic**2))
        if not np.isfinite(denominator):
            return float("inf")
        if denominator == 0:
            return 0.0
        return float(np.sqrt(np.sum(residual**2)) / denominator)


def _verdict(difference: float, thresholds: tuple[float, float]) -> Verdict:
    correct, bug = thresholds
    if not np.isfinite(difference) or difference >= bug:
        return Verdict.BUG
    return Verdict.SUSPICIOUS if difference > correct else Verdict.CORRECT


class Plan:
    """One way of choosing what a check differences (see the subclasses)."""

    name = ""
    #: The plan moves whole ranges along random directions (``session.directional``).
    moves_along_directions = False

    def run(self, context: PlanContext) -> PlanOutcome:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<fastgc plan {self.name!r}>"
