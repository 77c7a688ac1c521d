"""Check plans: what a check differences, and how the results become evidence.

- :class:`Full` (``plan="full"``, the default): every component, 2n evaluations;
- :class:`Screen` (``plan="screen"``): a few random directions per block, confirmation of a
  disagreeing block at another step, localisation by group testing, the found components
  differenced one by one;
- :class:`Sampled` (``plan="sampled"``): a stratified seeded sample, a quota per block;
- :class:`Budget` (``budget=seconds``): the full check if it fits, else the screen and then
  as large a sample as time allows.

:func:`resolve_plan` turns ``check``'s ``plan=`` and ``budget=`` into one of these objects.
"""

from __future__ import annotations

from typing import Any

from .._errors import InvalidInputError
from ._base import Plan, PlanContext, PlanOutcome
from .budget import Budget
from .full import Full
from .sampled import Sampled
from .screen import Screen

__all__ = ["Budget", "Full", "Plan", "PlanContext", "PlanOutcome", "Sampled", "Screen",
           "resolve_plan"]

_BY_NAME = {"full": Full, "screen": Screen, "sampled": Sampled}


def resolve_plan(plan: Any, budget: Any) -> Plan:
    """The plan object for ``check(plan=..., budget=...)``.

    Parameters
    ----------
    plan : None, {"full", "screen", "sampled"} or Plan
        None is "full" unless a budget is given.
    budget : float, optional
        Seconds; chooses the plan by the predicted time of a full check. Cannot be combined
        with an explicit plan.

    Returns
    -------
    Plan

    Raises
    ------
    InvalidInputError
        For an unknown plan name or type, or a plan and a budget together.
    """
    if budget is not None:
        if plan is not None:
            raise InvalidInputError(
                f"pass plan= or budget=, not both (got plan={plan!r}, budget={budget!r}): "
                "a budget chooses the plan"
            )
        return Budget(budget)
    if plan is None:
        return Full()
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, str) and plan in _BY_NAME:
        return _BY_NAME[plan]()
    raise InvalidInputError(
        f"plan must be one of {sorted(_BY_NAME)} or a plan object (fastgc.Full(), "
        f"fastgc.Screen(...), fastgc.Sampled(...)), got {plan!r}"
    )
