"""The full plan: central differences along every component of theta (the default)."""

from __future__ import annotations

import numpy as np

from .._result import BlockCoverage
from ._base import Plan, PlanContext, PlanOutcome


class Full(Plan):
    """Every component differenced one by one: 2n cost evaluations, nothing left unchecked.

    Examples
    --------
    >>> import numpy as np, fastgc
    >>> w = np.array([1.0, 2.0])
    >>> result = fastgc.check(lambda p: float(np.sum(p["w"] ** 2)), {"w": w}, {"dw": 2 * w},
    ...                       plan=fastgc.Full(), progress=False)
    >>> result.plan, result.coverage["w"].components
    ('full', 2)
    """

    name = "full"

    def run(self, context: PlanContext) -> PlanOutcome:
        approx = np.empty(context.layout.size, dtype=np.float64)
        context.session.sweep(context.steps, approx, context.seconds_per_cost, context.progress)
        layout = context.layout
        bounds = layout.offsets.tolist()  # Python ints: no NumPy scalar per block
        coverage = {}
        for k, name in enumerate(layout.names):
            size = bounds[k + 1] - bounds[k]
            coverage[name] = BlockCoverage(name, size, size, 0, 2 * size, 0.0, "every component")
        return PlanOutcome(
            approx=approx,
            checked=None,
            coverage=coverage,
            evaluations=2 * layout.size,
            name=self.name,
        )
