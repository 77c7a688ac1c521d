"""The sampled plan: a stratified, seeded sample of components, a quota per block."""

from __future__ import annotations

import numbers

import numpy as np

from .._errors import InvalidInputError
from .._result import BlockCoverage
from ._base import Plan, PlanContext, PlanOutcome

SAMPLED_NOTE = (
    "sampled: each sampled component is judged exactly as in a full check; a pass says "
    "nothing about the components that were not sampled (a single wrong entry among them "
    "goes unseen), only that a block-wide error is unlikely"
)


class Sampled(Plan):
    """Central differences on ``per_block`` components of each block (all of a smaller one).

    Parameters
    ----------
    per_block : int, default 512
        Components sampled in each block, without replacement; a block no larger is checked
        whole.
    seed : int, default 0
        The sample, reproducible whatever the thread count or engine.

    Examples
    --------
    >>> import numpy as np, fastgc
    >>> w = np.linspace(-1.0, 1.0, 1000)
    >>> result = fastgc.check(lambda p: float(np.sum(p["w"] ** 3)), {"w": w},
    ...                       {"dw": 3 * w**2}, plan=fastgc.Sampled(per_block=50, seed=1),
    ...                       progress=False)
    >>> result.verdict, result.coverage["w"].components, result.evaluations < 2 * w.size
    (<Verdict.CORRECT: 'correct'>, 50, True)
    """

    name = "sampled"

    def __init__(self, per_block: int = 512, seed: int = 0) -> None:
        self.per_block = _positive_int("per_block", per_block)
        self.seed = _seed("seed", seed)

    def sample(self, layout, quota: int | None = None) -> list[np.ndarray]:
        """The sorted flat indices sampled in each block."""
        quota = self.per_block if quota is None else quota
        rng = np.random.default_rng(self.seed)
        chosen = []
        for k in range(len(layout.names)):
            lo, hi = int(layout.offsets[k]), int(layout.offsets[k + 1])
            if hi - lo <= quota:
                chosen.append(np.arange(lo, hi, dtype=np.int64))
            else:
                chosen.append(np.sort(rng.choice(hi - lo, quota, replace=False)).astype(
                    np.int64) + lo)
        return chosen

    def run(self, context: PlanContext) -> PlanOutcome:
        layout = context.layout
        chosen = self.sample(layout)
        indices = np.concatenate(chosen) if chosen else np.empty(0, np.int64)
        approx = context.dtheta.copy()
        context.expect(2 * indices.shape[0])
        try:
            approx[indices] = context.differences(indices)
        finally:
            context.close()
        checked = np.zeros(layout.size, dtype=bool)
        checked[indices] = True
        coverage = {}
        for name, picked, k in zip(layout.names, chosen, range(len(layout.names))):
            size = int(layout.offsets[k + 1] - layout.offsets[k])
            finding = "every component" if picked.size == size else "sample"
            coverage[name] = BlockCoverage(name, size, int(picked.size), 0, 2 * int(picked.size),
                                           0.0, finding)
        return PlanOutcome(approx, checked, coverage, context.evaluations, self.name,
                           notes=(SAMPLED_NOTE,))

    def __repr__(self) -> str:
        return f"fastgc.Sampled(per_block={self.per_block}, seed={self.seed})"


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _seed(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)
