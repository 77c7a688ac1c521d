"""``check_fn``: a function that returns the loss and its gradients together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import numpy as np

from .._check import check
from .._errors import CostError, InvalidInputError
from .._result import CheckResult
from .._validation import exception_text


def check_fn(
    loss_and_grads: Callable[..., tuple[Any, Any]],
    params: Any,
    *,
    args: tuple = (),
    **options: Any,
) -> CheckResult:
    """Check a function that returns ``(loss, grads)``, the common shape of course code.

    ``loss_and_grads(params, *args)`` is called once at ``params`` for the analytic gradients;
    the finite differences use only the loss it returns.

    Parameters
    ----------
    loss_and_grads : callable
        ``loss_and_grads(params, *args) -> (loss, grads)``: a float loss and the gradients in
        the structure of ``params`` (dict keys ``"W1"`` or ``"dW1"``; entries that match no
        parameter, such as ``"dZ2"``, are ignored and listed in the report). For dict
        parameters, a list or tuple of gradients in the order of the dict also works.
    params : dict, nested dicts, list, tuple or ndarray
        The parameters, as for :func:`fastgc.check`. Never modified.
    args : tuple, optional
        Extra arguments of ``loss_and_grads`` (the data: ``args=(X, y)``).
    **options
        Any keyword argument of :func:`fastgc.check` (``eps``, ``thresholds``, ``n_threads``,
        ``engine``, ``progress``, ``signature``, ``reseed``, ``executor``, ``n_workers``).

    Returns
    -------
    CheckResult

    Raises
    ------
    InvalidInputError
        ``loss_and_grads`` is not callable or does not return a pair.
    CostError
        As for :func:`fastgc.check`.

    Examples
    --------
    >>> import numpy as np, fastgc
    >>> X = np.array([[1.0, 2.0], [0.5, -1.0]])
    >>> def loss_and_grads(p, X):
    ...     r = X @ p["w"] - 1.0
    ...     return float(r @ r), {"dw": 2 * X.T @ r, "dr": r}   # dr: an intermediate
    >>> result = fastgc.check_fn(loss_and_grads, {"w": np.array([0.3, -0.2])}, args=(X,),
    ...                          progress=False)
    >>> result.verdict, result.ignored_gradients
    (<Verdict.CORRECT: 'correct'>, ('dr',))
    """
    if not callable(loss_and_grads):
        raise InvalidInputError(
            "loss_and_grads must be callable, loss_and_grads(params, *args) -> (loss, grads); "
            f"got {type(loss_and_grads).__name__}"
        )
    if not isinstance(args, tuple):
        raise InvalidInputError(
            f"args must be a tuple of extra arguments, got {type(args).__name__} "
            "(write args=(X, y), or args=(X,) for one)"
        )

    def cost(p: Any, *a: Any) -> Any:
        return split_loss_and_grads(loss_and_grads(p, *a), "loss_and_grads")[0]

    grads = analytic_once(loss_and_grads, params, args, "loss_and_grads")
    return check(cost, params, align_gradients(grads, params), args=args, **options)


def analytic_once(
    loss_and_grads: Callable[..., Any], params: Any, args: tuple, what: str
) -> Any:
    """The gradients ``loss_and_grads`` returns at a private copy of ``params``."""
    from .._layout import flatten

    theta, layout = flatten(params)
    private = layout.unflatten(theta)
    try:
        value = loss_and_grads(private, *args)
    except Exception as error:
        raise CostError(
            f"{what} raised {type(error).__name__} at the unperturbed parameters: "
            f"{exception_text(error)}"
        ) from error
    return split_loss_and_grads(value, what)[1]


def split_loss_and_grads(value: Any, what: str) -> tuple[Any, Any]:
    """``(loss, grads)`` from what ``what`` returned, or an error saying what it returned.

    A loss held in an array of one element (``np.dot(Y, np.log(A).T)`` gives shape (1, 1))
    is that element, its dtype kept.
    """
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        shape = (
            f"a {type(value).__name__} of {len(value)} items"
            if isinstance(value, (tuple, list)) else type(value).__name__
        )
        raise CostError(f"{what} must return a pair (loss, grads), got {shape}")
    loss = value[0]
    if isinstance(loss, np.ndarray) and loss.size == 1 and loss.ndim > 0:
        loss = loss.reshape(())
    return loss, value[1]


def align_gradients(grads: Any, params: Any) -> Any:
    """Gradients given as a list or tuple, for dict parameters, keyed like the parameters."""
    if (
        isinstance(params, Mapping)
        and isinstance(grads, (list, tuple))
        and len(grads) == len(params)
    ):
        return dict(zip(params, grads))
    return grads
