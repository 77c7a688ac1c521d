"""``check_layer``: a layer's forward and backward with an upstream gradient (cs231n style)."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import numpy as np

from .._check import check
from .._errors import CostError, InvalidInputError
from .._result import CheckResult
from .._validation import exception_text


def check_layer(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    inputs: Mapping[str, Any] | Sequence[Any] | np.ndarray,
    dout: Any = None,
    *,
    args: tuple = (),
    wrt: Sequence[str] | None = None,
    seed: int = 0,
    **options: Any,
) -> CheckResult:
    """Check a layer's backward pass against its forward pass, for every input at once.

    The layer is the cs231n pattern: ``forward(*inputs, *args) -> (out, cache)`` and
    ``backward(dout, cache) -> (dx, dw, ...)``, the gradients in the order of the inputs. The
    checked scalar is ``J = sum(out * dout)``, whose gradient with respect to each input is
    what ``backward(dout, cache)`` returns.

    Parameters
    ----------
    forward : callable
        ``forward(*inputs, *args)`` returning ``(out, cache)``; a layer with several outputs
        returns ``(out1, out2, ..., cache)`` (an LSTM step: ``(next_h, next_c, cache)``).
    backward : callable
        ``backward(dout, cache)``, or ``backward(dout1, dout2, ..., cache)``, returning the
        gradients: a tuple in the order of the inputs (of all of them, or of the float ones),
        one array for a layer with one float input, or a dict keyed by input name (``"x"``
        or ``"dx"``; other entries are ignored and listed).
    inputs : dict, tuple or list of arrays, or one array
        The layer's inputs, passed positionally in this order. A dict names them; otherwise
        names come from ``forward``'s signature (``x``, ``w``, ``b``, ...). Float arrays are
        checked; others (integer labels, indices) are passed as they are. Never modified.
    dout : array or tuple of arrays, optional
        The upstream gradient, one per output. Default: seeded standard-normal values of the
        output's shape, so that every input's gradient is exercised.
    args : tuple, optional
        Further arguments of ``forward`` after the inputs, not checked (``bn_param``,
        ``conv_param``). Each evaluation gets its own deep copy, so a forward that updates
        running statistics in them neither drifts between evaluations nor changes yours.
    wrt : sequence of str, optional
        Check only these inputs (by name); the others are held constant.
    seed : int, default 0
        Seed of the random ``dout``.
    **options
        Any keyword argument of :func:`fastgc.check` (``eps``, ``thresholds``, ``n_threads``,
        ``engine``, ``progress``, ``executor``, ...).

    Returns
    -------
    CheckResult
        Named by the inputs: ``result.per_parameter["gamma"]``.

    Raises
    ------
    InvalidInputError
        Malformed inputs, ``dout``, ``wrt``, or gradients that cannot be matched to the inputs.
    CostError
        ``forward`` or ``backward`` raised, or did not return ``(out, cache)``.

    Examples
    --------
    >>> import numpy as np, fastgc
    >>> def affine_forward(x, w, b):
    ...     return x @ w + b, (x, w)
    >>> def affine_backward(dout, cache):
    ...     x, w = cache
    ...     return dout @ w.T, x.T @ dout, dout.sum(axis=0)
    >>> rng = np.random.default_rng(0)
    >>> x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), np.zeros(2)
    >>> result = fastgc.check_layer(affine_forward, affine_backward, (x, w, b), progress=False)
    >>> result.verdict, list(result.per_parameter)
    (<Verdict.CORRECT: 'correct'>, ['x', 'w', 'b'])
    """
    for name, function in (("forward", forward), ("backward", backward)):
        if not callable(function):
            raise InvalidInputError(f"{name} must be callable, got {type(function).__name__}")
    if not isinstance(args, tuple):
        raise InvalidInputError(
            f"args must be a tuple of further forward arguments, got {type(args).__name__} "
            "(write args=(bn_param,) for one)"
        )
    names, values = _name_inputs(forward, inputs, len(args))
    differentiable = [name for name, value in zip(names, values) if _is_float(value)]
    checked = _checked(names, differentiable, wrt)
    params = {name: value for name, value in zip(names, values) if name in checked}
    constants = {name: value for name, value in zip(names, values) if name not in checked}

    def run_forward(p: Mapping[str, Any]) -> tuple[list[Any], Any]:
        arguments = [p[name] if name in p else _private(constants[name]) for name in names]
        try:
            result = forward(*arguments, *copy.deepcopy(args))
        except Exception as error:
            raise CostError(
                f"forward raised {type(error).__name__}: {exception_text(error)}"
            ) from error
        return _split_forward(result)

    private_params = {name: np.array(value, copy=True) for name, value in params.items()}
    outs, cache = run_forward(private_params)
    douts = _upstream(dout, outs, seed)

    def cost(p: Mapping[str, Any]) -> float:
        outputs, _ = run_forward(p)
        total = 0.0
        for out, d in zip(outputs, douts):
            total += float(np.sum(np.multiply(out, d, dtype=np.float64)))
        return total

    try:
        returned = backward(*(d.copy() for d in douts), cache)  # backward may write into dout
    except Exception as error:
        raise CostError(
            f"backward raised {type(error).__name__}: {exception_text(error)}"
        ) from error
    grads = _match_gradients(returned, names, differentiable, checked)
    return check(cost, params, grads, **options)


def _is_float(value: Any) -> bool:
    """Float arrays are checked (float16 too, which fastgc then refuses with advice)."""
    return isinstance(value, (np.ndarray, np.floating, float)) and np.asarray(value).dtype.kind == "f"


def _private(value: Any) -> Any:
    """A copy of a constant input for one evaluation, so the layer cannot change the caller's."""
    return value.copy() if isinstance(value, np.ndarray) else copy.deepcopy(value)


def _name_inputs(
    forward: Callable[..., Any], inputs: Any, n_args: int
) -> tuple[list[str], list[Any]]:
    if isinstance(inputs, Mapping):
        names = [str(key) for key in inputs]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"inputs has keys that repeat as strings: {list(inputs)}")
        return names, list(inputs.values())
    if isinstance(inputs, np.ndarray):
        inputs = (inputs,)
    if not isinstance(inputs, (tuple, list)) or not inputs:
        raise InvalidInputError(
            "inputs must be a dict, a tuple or a list of the layer's input arrays (or one "
            f"array), got {type(inputs).__name__}" + (" of length 0" if not inputs else "")
        )
    return _signature_names(forward, len(inputs), n_args), list(inputs)


def _signature_names(function: Callable[..., Any], n: int, n_args: int) -> list[str]:
    """The names of ``function``'s first ``n`` positional parameters, else input0, input1..."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    positional = []
    for parameter in parameters:
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional.append(parameter.name)
        else:
            break
    if len(positional) >= n:
        return positional[:n]
    return [f"input{k}" for k in range(n)]


def _checked(names: list[str], differentiable: list[str], wrt: Sequence[str] | None) -> list[str]:
    if wrt is None:
        if not differentiable:
            raise InvalidInputError(
                f"none of the inputs {names} is a float array: there is nothing to check"
            )
        return differentiable
    if isinstance(wrt, str):
        wrt = (wrt,)
    for name in wrt:
        if name not in names:
            raise InvalidInputError(f"wrt names {name!r}, which is not an input; inputs: {names}")
        if name not in differentiable:
            raise InvalidInputError(
                f"wrt names {name!r}, which is not a float array"
            )
    if not wrt:
        raise InvalidInputError("wrt is empty: name at least one input to check")
    return [name for name in names if name in wrt]


def _split_forward(result: Any) -> tuple[list[Any], Any]:
    if not isinstance(result, tuple) or len(result) < 2:
        got = (
            f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        )
        raise CostError(
            f"forward must return (out, cache), or (out1, out2, ..., cache) for several "
            f"outputs; got {got}"
        )
    return list(result[:-1]), result[-1]


def _upstream(dout: Any, outs: list[Any], seed: int) -> list[np.ndarray]:
    shapes = [np.shape(out) for out in outs]
    if dout is None:
        rng = np.random.default_rng(seed)
        return [rng.standard_normal(shape) for shape in shapes]
    given = list(dout) if isinstance(dout, (tuple, list)) and len(outs) > 1 else [dout]
    if len(given) != len(outs):
        raise InvalidInputError(
            f"dout must give one upstream gradient per output: forward returns {len(outs)} "
            f"output(s), dout has {len(given)}"
        )
    douts = []
    for k, (d, shape) in enumerate(zip(given, shapes)):
        array = np.asarray(d, dtype=np.float64)
        if array.shape != shape:
            where = "dout" if len(outs) == 1 else f"dout[{k}]"
            raise InvalidInputError(
                f"{where} has shape {array.shape} but the output has shape {shape}"
            )
        douts.append(array)
    return douts


def _match_gradients(
    returned: Any, names: list[str], differentiable: list[str], checked: list[str]
) -> Any:
    """Gradients keyed by input name, for the checked inputs."""
    if isinstance(returned, Mapping):
        return returned  # matched by fastgc: "x" or "dx", other entries ignored
    if isinstance(returned, (tuple, list)):
        if len(returned) == len(names):
            by_name = dict(zip(names, returned))
        elif len(returned) == len(differentiable):
            by_name = dict(zip(differentiable, returned))
        else:
            raise InvalidInputError(
                f"backward returned {len(returned)} gradients, but the layer has "
                f"{len(names)} inputs {names} ({len(differentiable)} of them float: "
                f"{differentiable}); return one gradient per input, in their order"
            )
    elif len(differentiable) == 1:
        by_name = {differentiable[0]: returned}
    else:
        raise InvalidInputError(
            f"backward returned one {type(returned).__name__}, but the layer has "
            f"{len(differentiable)} float inputs {differentiable}; return one gradient per "
            "input, in their order"
        )
    for name in checked:
        if by_name[name] is None:
            raise InvalidInputError(
                f"backward returned None for the gradient of {name!r}; pass wrt= naming the "
                "inputs to check to leave it out"
            )
    return {name: by_name[name] for name in checked}
