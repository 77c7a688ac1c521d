"""The budget chooser: the full check if it fits in the time given, else the screen, then
as large a sample as the time left allows."""

from __future__ import annotations

import numbers
import time

import numpy as np

from .._errors import InvalidInputError
from .._result import BlockCoverage
from ._base import Plan, PlanContext, PlanOutcome
from .full import Full
from .sampled import Sampled, _seed
from .screen import Screen


class Budget(Plan):
    """Choose by the time a full check is predicted to take.

    Parameters
    ----------
    seconds : float
        The time the check may take. The full check's time is predicted from the baseline
        evaluations (2n evaluations over the threads); if it fits it runs, else the screen
        runs and the time left samples more components in every block.
    seed : int, default 0
    """

    name = "budget"
    moves_along_directions = True  # when the full check does not fit, it screens

    def __init__(self, seconds: float, seed: int = 0) -> None:
        if (isinstance(seconds, bool) or not isinstance(seconds, numbers.Real)
                or not np.isfinite(seconds) or seconds <= 0):
            raise InvalidInputError(f"budget must be a positive number of seconds, got "
                                    f"{seconds!r}")
        self.seconds, self.seed = float(seconds), _seed("seed", seed)

    def predicted_full_seconds(self, context: PlanContext) -> float:
        return 2.0 * context.layout.size * context.seconds_per_cost / context.n_chunks

    def run(self, context: PlanContext) -> PlanOutcome:
        started = time.perf_counter()
        if self.predicted_full_seconds(context) <= self.seconds:
            return Full().run(context)
        outcome = Screen(seed=self.seed).run(context)
        left = self.seconds - (time.perf_counter() - started)
        affordable = int(left * context.n_chunks / (2.0 * max(context.seconds_per_cost, 1e-9)))
        quota = affordable // max(1, len(context.layout.names))
        if quota >= 1:
            _add_sample(context, outcome, Sampled(per_block=quota, seed=self.seed + 1))
        outcome.name = "screen+sampled" if quota >= 1 else "screen"
        return outcome

    def __repr__(self) -> str:
        return f"fastgc.Budget({self.seconds:g})"


def _add_sample(context: PlanContext, outcome: PlanOutcome, sampled: Sampled) -> None:
    """Difference a sample of the components the screen did not, into ``outcome``."""
    chosen = sampled.sample(context.layout)
    context.expect(2 * sum(int((~outcome.checked[c]).sum()) for c in chosen))
    try:
        _difference_sample(context, outcome, chosen)
    finally:
        context.close()
    outcome.evaluations = context.evaluations


def _difference_sample(context: PlanContext, outcome: PlanOutcome, chosen) -> None:
    for k, name in enumerate(context.layout.names):
        fresh = chosen[k][~outcome.checked[chosen[k]]]
        if not fresh.size:
            continue
        outcome.approx[fresh] = context.differences(fresh)
        outcome.checked[fresh] = True
        c = outcome.coverage[name]
        outcome.coverage[name] = BlockCoverage(
            c.name, c.size, c.components + int(fresh.size), c.directions,
            c.evaluations + 2 * int(fresh.size), c.detection_limit, c.finding + ", sampled",
        )
