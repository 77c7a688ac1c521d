"""``check_model``: an object that holds its parameters and computes ``(loss, grads)``."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Sequence

import numpy as np

from .._check import check
from .._errors import InvalidInputError
from .._result import CheckResult
from .functions import align_gradients, analytic_once, split_loss_and_grads


def check_model(
    model: Any,
    args: tuple = (),
    *,
    params: str = "params",
    loss: str = "loss",
    trainable: Sequence[str] | None = None,
    **options: Any,
) -> CheckResult:
    """Check a model object with a parameter mapping and a ``loss(*args) -> (loss, grads)``.

    This is the cs231n ``model.params`` / ``model.loss(X, y)`` pattern. During each
    evaluation fastgc's working values are installed into the mapping, in place of the
    model's arrays; the model's own arrays are put back afterwards (the same objects, never
    written to), so the mapping is exactly as before, also when the check fails.

    Parameters
    ----------
    model : object
        Holds the parameters in ``getattr(model, params)``, a dict of arrays, and computes
        ``getattr(model, loss)(*args) -> (loss, grads)`` from them.
    args : tuple, optional
        The arguments of the loss method (the data: ``args=(X, y)``).
    params : str, default "params"
        The attribute that holds the parameter mapping.
    loss : str, default "loss"
        The method that returns ``(loss, grads)``; ``grads`` keyed like the mapping (``"W1"``
        or ``"dW1"``; entries that match no checked parameter are ignored and listed).
    trainable : sequence of str, optional
        The entries to check. Default: every entry of the mapping that is a float32 or
        float64 NumPy array (others, such as integers or settings, are left alone).
    **options
        Any keyword argument of :func:`fastgc.check` except ``n_threads``: the model holds one
        set of parameters, so evaluations run one at a time.

    Returns
    -------
    CheckResult

    Raises
    ------
    InvalidInputError
        The attributes are missing or of the wrong kind, ``trainable`` names an unknown entry,
        or ``n_threads`` asks for more than one thread.

    Examples
    --------
    >>> import numpy as np, fastgc
    >>> class TwoLayerNet:
    ...     def __init__(self):
    ...         rng = np.random.default_rng(0)
    ...         self.params = {"W1": rng.standard_normal((3, 4)), "b1": np.zeros(4),
    ...                        "W2": rng.standard_normal((4, 1))}
    ...     def loss(self, X, y):
    ...         p = self.params
    ...         h = np.tanh(X @ p["W1"] + p["b1"])
    ...         r = h @ p["W2"] - y
    ...         dh = (r @ p["W2"].T) * (1 - h**2)
    ...         return float(np.sum(r**2) / 2), {"W1": X.T @ dh, "b1": dh.sum(0), "W2": h.T @ r}
    >>> X, y = np.linspace(-1, 1, 15).reshape(5, 3), np.ones((5, 1))
    >>> fastgc.check_model(TwoLayerNet(), args=(X, y), progress=False).verdict
    <Verdict.CORRECT: 'correct'>
    """
    if not isinstance(args, tuple):
        raise InvalidInputError(
            f"args must be a tuple of the loss method's arguments, got {type(args).__name__} "
            "(write args=(X, y), or args=(X,) for one)"
        )
    n_threads = options.pop("n_threads", None)
    if n_threads not in (None, 1):
        raise InvalidInputError(
            f"check_model evaluates one model, whose {params!r} mapping holds one set of "
            f"values at a time, so it runs on one thread; got n_threads={n_threads!r}"
        )
    mapping = getattr(model, params, None)
    if not isinstance(mapping, MutableMapping):
        raise InvalidInputError(
            f"model.{params} must be a dict of parameter arrays, got "
            f"{type(mapping).__name__}; pass params= naming the attribute that holds them"
        )
    method = getattr(model, loss, None)
    if not callable(method):
        raise InvalidInputError(
            f"model.{loss} must be a method returning (loss, grads), got "
            f"{type(method).__name__}; pass loss= naming it"
        )
    names = _trainable(mapping, params, trainable)
    checked = {name: mapping[name] for name in names}

    def loss_and_grads(p: dict[str, Any], *a: Any) -> Any:
        originals = {name: mapping[name] for name in names}
        try:
            for name in names:
                mapping[name] = p[name]
            return method(*a)
        finally:
            for name in names:
                mapping[name] = originals[name]

    what = f"model.{loss}"

    def cost(p: dict[str, Any], *a: Any) -> Any:
        return split_loss_and_grads(loss_and_grads(p, *a), what)[0]

    grads = align_gradients(analytic_once(loss_and_grads, checked, args, what), checked)
    return check(cost, checked, grads, args=args, n_threads=1, **options)


def _trainable(
    mapping: MutableMapping, attribute: str, trainable: Sequence[str] | None
) -> list[str]:
    if trainable is None:
        names = [
            name for name, value in mapping.items()
            if isinstance(value, np.ndarray) and value.dtype.kind == "f"
        ]
        if not names:
            raise InvalidInputError(
                f"model.{attribute} holds no float arrays (entries: {list(mapping)}); pass "
                "trainable= naming the entries to check"
            )
        return names
    if isinstance(trainable, str):
        trainable = (trainable,)
    unknown = [name for name in trainable if name not in mapping]
    if unknown:
        raise InvalidInputError(
            f"trainable names {unknown}, which model.{attribute} does not hold; its entries: "
            f"{list(mapping)}"
        )
    if not trainable:
        raise InvalidInputError("trainable is empty: name at least one entry to check")
    return [name for name in mapping if name in trainable]
