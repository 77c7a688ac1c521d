"""Checks of ``check``'s options and of the analytic gradients, and the one way of saying
where in ``params`` a component lives.

Everything here runs before any cost evaluation, so a malformed call fails at once with a
message that names the option (or the parameter and index) at fault.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Callable

from ._errors import InvalidInputError

if TYPE_CHECKING:
    from ._layout import Layout


def where_in_params(layout: "Layout", i: int) -> str:
    """``params['W1'][2, 1]``: where the flat component ``i`` lives in the user's structure."""
    name, index = layout.locate(i)
    return f"params[{name!r}]{list(index)}"


def exception_text(error: BaseException) -> str:
    """``str(error)``, or what can be said of it when its ``__str__`` itself raises."""
    try:
        return str(error)
    except Exception as inner:
        return f"<the message could not be read: its __str__ raised {type(inner).__name__}>"


def validate_args(args: Any) -> tuple:
    """The extra cost arguments, which must come as a tuple."""
    if not isinstance(args, tuple):
        raise InvalidInputError(
            f"args must be a tuple of extra cost arguments, got {type(args).__name__} "
            "(write args=(X, Y), or args=(X,) for one)"
        )
    return args


def validate_eps(eps: Any) -> float | None:
    """None (the dtype's default step) or a positive finite float."""
    if eps is None:
        return None
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise InvalidInputError(f"eps must be a positive float, got {type(eps).__name__} {eps!r}")
    if not math.isfinite(eps) or eps <= 0:
        raise InvalidInputError(f"eps must be positive and finite, got {eps!r}")
    return float(eps)


def validate_thresholds(thresholds: Any) -> tuple[float, float]:
    """Two numbers ``0 < correct < bug < inf``."""
    if isinstance(thresholds, (str, bytes)):  # "12" would read as (1.0, 2.0)
        raise InvalidInputError(
            f"thresholds must be two numbers (correct, bug), got {type(thresholds).__name__} "
            f"{thresholds!r}"
        )
    try:
        correct, bug = (float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"thresholds must be two numbers (correct, bug), got {thresholds!r}"
        ) from None
    if not (0 < correct < bug and math.isfinite(bug)):
        raise InvalidInputError(
            f"thresholds must satisfy 0 < correct < bug < inf, got {thresholds!r}"
        )
    return correct, bug


def validate_progress(progress: Any) -> bool | None:
    if progress is not None and not isinstance(progress, bool):
        raise InvalidInputError(f"progress must be None, True or False, got {progress!r}")
    return progress


def validate_hooks(**hooks: Any) -> None:
    """Each named hook is None or callable."""
    for name, hook in hooks.items():
        if hook is not None and not callable(hook):
            raise InvalidInputError(f"{name} must be callable, got {type(hook).__name__}")


def guarded_hook(hook: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``hook`` whose exceptions become an :class:`InvalidInputError` naming it."""

    def call(*args: Any) -> Any:
        try:
            return hook(*args)
        except Exception as error:
            raise InvalidInputError(
                f"the {name} hook raised {type(error).__name__}: {exception_text(error)}"
            ) from error

    return call


def validate_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive int, got {value!r}")
    return value


def validate_positive_number(value: Any, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    return float(value)
