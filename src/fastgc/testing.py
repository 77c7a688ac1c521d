"""Assertions for test suites: a gradient check that fails a test with the report.

>>> import numpy as np
>>> from fastgc.testing import assert_gradients
>>> w = np.array([1.0, -2.0])
>>> result = assert_gradients(lambda p: float(np.sum(p["w"] ** 2)), {"w": w}, {"dw": 2 * w})
>>> result.verdict
<Verdict.CORRECT: 'correct'>
"""

from __future__ import annotations

from typing import Any, Callable

from ._check import check
from ._errors import GradientCheckError, InvalidInputError
from ._result import CheckResult, Verdict

__all__ = ["assert_gradients", "assert_passed"]

_ALLOWED = {
    None: Verdict.CORRECT, "suspicious": Verdict.SUSPICIOUS, "inconclusive": Verdict.INCONCLUSIVE
}


def assert_gradients(
    cost: Callable[..., float],
    params: Any,
    grads: Any,
    *,
    allow: str | None = None,
    **options: Any,
) -> CheckResult:
    """:func:`fastgc.check`, failing the test unless the gradients are correct.

    Parameters
    ----------
    cost, params, grads
        As for :func:`fastgc.check`.
    allow : {None, "suspicious", "inconclusive"}, optional
        By default a suspicious or inconclusive verdict fails as a bug does;
        ``allow="suspicious"`` lets a suspicious one pass, ``allow="inconclusive"`` both a
        suspicious and an inconclusive one (a bug always fails).
    **options
        Any keyword argument of :func:`fastgc.check` (``args``, ``eps``, ``n_threads``, ...).
        The progress bar is off unless ``progress=True`` is passed.

    Returns
    -------
    CheckResult
        When the check passes, for further assertions.

    Raises
    ------
    fastgc.GradientCheckError
        An ``AssertionError`` whose message is the full report, when the verdict is a bug, or
        suspicious or inconclusive and not allowed. ``error.result`` holds the result.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgc.testing import assert_gradients
    >>> w = np.array([1.0, -2.0])
    >>> assert_gradients(lambda p: float(np.sum(p["w"] ** 2)), {"w": w}, {"dw": -2 * w})
    Traceback (most recent call last):
    ...
    fastgc._errors.GradientCheckError: fastgc gradient check: BUG (backprop is almost surely wrong)
    ...
    """
    __tracebackhide__ = True  # pytest shows the test's line, not this one
    _allowed(allow)
    options.setdefault("progress", False)
    return assert_passed(check(cost, params, grads, **options), allow=allow)


def assert_passed(result: CheckResult, *, allow: str | None = None) -> CheckResult:
    """Fail unless ``result`` (from any fastgc check or adapter) is correct.

    For the adapters: ``assert_passed(fastgc.check_layer(forward, backward, inputs))``.
    ``allow`` is as for :func:`assert_gradients`.

    Examples
    --------
    >>> import numpy as np, fastgc
    >>> from fastgc.testing import assert_passed
    >>> result = fastgc.check_fn(lambda p: (float(p["w"] @ p["w"]), {"w": 2 * p["w"]}),
    ...                          {"w": np.array([3.0, 4.0])}, progress=False)
    >>> assert_passed(result).verdict
    <Verdict.CORRECT: 'correct'>
    """
    __tracebackhide__ = True
    worst_allowed = _allowed(allow)
    if not isinstance(result, CheckResult):
        raise InvalidInputError(
            f"assert_passed takes the CheckResult of a check, got {type(result).__name__}"
        )
    if result.verdict.severity > worst_allowed.severity:
        raise GradientCheckError(result)
    return result


def _allowed(allow: str | None) -> Verdict:
    if allow not in _ALLOWED:
        raise InvalidInputError(
            f"allow must be None, 'suspicious' or 'inconclusive', got {allow!r} (a bug verdict "
            "always fails)"
        )
    return _ALLOWED[allow]
