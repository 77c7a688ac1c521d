"""JAX: check a loss over a pytree of parameters, with the gradients of ``jax.grad``.

Import it as ``fastgc.jax`` (``pip install "fastgc[jax]"``). Everything is evaluated in
float64: JAX's 64-bit mode is switched on around each evaluation only (see :func:`x64`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Iterator

import numpy as np

from .._check import check as check_gradients
from .._errors import CostError, CostTypeError, InvalidInputError
from .._optional import import_optional
from .._result import CheckResult
from .._threads import resolve_n_threads
from .._validation import exception_text

jax = import_optional("jax", "jax", purpose="fastgc.jax")

__all__ = ["check", "x64"]


def check(
    loss: Callable[..., Any],
    params: Any,
    grads: Any = None,
    *,
    args: tuple = (),
    has_aux: bool = False,
    jit: bool = True,
    n_threads: int | None = None,
    **options: Any,
) -> CheckResult:
    """Check the gradients of a JAX loss over a pytree of parameters.

    Parameters
    ----------
    loss : callable
        ``loss(params, *args) -> scalar`` (``(scalar, aux)`` with ``has_aux=True``), written
        with ``jax.numpy``.
    params : pytree
        The parameters: nested dicts, lists, tuples, named tuples or registered pytree nodes
        (flax/equinox modules) of arrays. Floating leaves are checked, in float64 whatever
        their dtype; other leaves are passed as they are.
    grads : pytree, optional
        The analytic gradients, in the structure of ``params``. Default: ``jax.grad(loss)``
        at the float64 parameters, so a ``jax.custom_vjp`` or ``custom_jvp`` rule inside the
        loss is what is checked.
    args : tuple, optional
        Further arguments of ``loss`` (the data).
    has_aux : bool, default False
        ``loss`` returns ``(value, aux)``; ``aux`` is ignored.
    jit : bool, default True
        Compile the loss with ``jax.jit`` (one compilation, then fast evaluations). Pass False
        for a loss with Python control flow on values.
    n_threads : int, optional
        Evaluations side by side (the loss is a pure function, so this is safe). Default 1
        (or the :func:`fastgc.set_num_threads` default): XLA already runs each evaluation on
        its own thread pool.
    **options
        Any further keyword argument of :func:`fastgc.check` (``eps``, ``thresholds``,
        ``engine``, ``progress``, ...).

    Returns
    -------
    CheckResult
        Parameters named by their pytree paths, joined with ".": ``"layers.0.w"``.

    Raises
    ------
    InvalidInputError
        ``params`` has no floating leaves, or ``grads`` does not match its structure.
    CostError
        The loss raised (or cannot be compiled), or does not return a float64 scalar.

    Notes
    -----
    64-bit mode (``jax_enable_x64``) is a global flag of JAX, read when arrays are made and
    functions traced. fastgc switches it on with JAX's thread-local context manager
    (``jax.enable_x64(True)``, ``jax.experimental.enable_x64()`` in older releases) around
    each evaluation only, so the rest of the program keeps its own setting, also while a check
    runs in another thread. Only where neither exists is the global flag set for the duration
    of the check and restored afterwards.

    Examples
    --------
    >>> import jax.numpy as jnp, fastgc.jax
    >>> params = {"w": jnp.array([0.5, -1.0]), "b": jnp.array(0.1)}
    >>> X = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    >>> def loss(p, X):
    ...     return jnp.mean(jnp.tanh(X @ p["w"] + p["b"]) ** 2)
    >>> result = fastgc.jax.check(loss, params, args=(X,), progress=False)
    >>> result.verdict, list(result.per_parameter)
    (<Verdict.CORRECT: 'correct'>, ['b', 'w'])
    """
    if not callable(loss):
        raise InvalidInputError(f"loss must be callable, got {type(loss).__name__}")
    if not isinstance(args, tuple):
        raise InvalidInputError(
            f"args must be a tuple of further loss arguments, got {type(args).__name__} "
            "(write args=(X, y), or args=(X,) for one)"
        )
    paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [path_name(path) for path, _ in paths]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidInputError(
            f"params give more than one leaf the name(s) {repeated} once their paths are "
            "joined with '.'; rename the keys"
        )
    leaves = [leaf for _, leaf in paths]
    floating = [k for k, leaf in enumerate(leaves) if _is_float(leaf)]
    if not floating:
        raise InvalidInputError(
            "params has no floating-point leaves: there is nothing to check"
        )
    checked = [names[k] for k in floating]
    with x64():
        values = {names[k]: np.array(leaves[k], dtype=np.float64) for k in floating}

    def function(*float_leaves: Any) -> Any:
        rebuilt = list(leaves)
        for k, value in zip(floating, float_leaves):
            rebuilt[k] = value
        out = loss(jax.tree_util.tree_unflatten(treedef, rebuilt), *args)
        return out[0] if has_aux else out

    with x64():
        evaluate = jax.jit(function) if jit else function
    if grads is None:
        analytic = _jax_gradients(function, values, checked, jit)
    else:
        analytic = _given_gradients(grads, treedef, names, checked)

    def cost(p: dict[str, np.ndarray]) -> float:
        with x64():
            try:
                value = evaluate(*(p[name] for name in checked))
            except Exception as error:
                raise CostError(_loss_failure(error, jit)) from error
            return _loss_value(value)

    cost(values)  # compiles, and says plainly what is wrong with the loss's value
    count = resolve_n_threads(n_threads, unset=1)
    if count == 1:
        options.setdefault("engine", "python")
    return check_gradients(cost, values, analytic, n_threads=count, **options)


def path_name(path: tuple) -> str:
    """A pytree path as a dotted name: ``("layers", 0, "w")`` -> ``"layers.0.w"``."""
    parts = []
    for entry in path:
        for attribute in ("key", "idx", "name"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
        else:
            parts.append(str(entry).strip(".[]'\""))
    return ".".join(parts) if parts else "params"


def x64() -> ContextManager[Any]:
    """A context in which JAX computes in float64, as thread-local as this JAX allows."""
    state = getattr(jax, "enable_x64", None)
    if state is not None and callable(state):
        manager = state(True)
        if hasattr(manager, "__enter__"):
            return manager
    try:
        from jax.experimental import enable_x64  # type: ignore[attr-defined]
    except ImportError:
        return _global_x64()
    return enable_x64()


@contextlib.contextmanager
def _global_x64() -> Iterator[None]:
    saved = bool(jax.config.read("jax_enable_x64"))
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", saved)


def _is_float(leaf: Any) -> bool:
    """Floating leaves, bfloat16 and float16 included (jnp knows them; NumPy does not)."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        return isinstance(leaf, float)
    return bool(jax.numpy.issubdtype(dtype, jax.numpy.floating))


def _jax_gradients(
    function: Callable[..., Any], values: dict[str, np.ndarray], checked: list[str], jit: bool
) -> dict[str, np.ndarray]:
    with x64():
        gradient = jax.grad(function, argnums=tuple(range(len(checked))))
        if jit:
            gradient = jax.jit(gradient)
        try:
            result = gradient(*(values[name] for name in checked))
        except Exception as error:
            raise CostError(_loss_failure(error, jit)) from error
        return {name: np.array(g, dtype=np.float64) for name, g in zip(checked, result)}


def _given_gradients(
    grads: Any, treedef: Any, names: list[str], checked: list[str]
) -> dict[str, np.ndarray]:
    paths, grads_treedef = jax.tree_util.tree_flatten_with_path(grads)
    given = {path_name(path): leaf for path, leaf in paths}
    missing = [name for name in checked if name not in given]
    if missing:
        raise InvalidInputError(
            f"grads has no leaf for parameter(s) {missing}: give the gradients in the "
            f"structure of params (its leaves: {names}; grads' leaves: {list(given)})"
        )
    return {name: np.asarray(leaf) for name, leaf in given.items()}


def _loss_value(value: Any) -> float:
    shape = getattr(value, "shape", None)
    if shape is None or getattr(value, "dtype", None) is None:
        raise CostTypeError(
            f"the loss must return a scalar JAX array, got {type(value).__name__}"
        )
    if tuple(shape) != ():
        raise CostTypeError(
            f"the loss returned an array of shape {tuple(shape)}; it must return one scalar "
            "(did you forget jnp.mean or jnp.sum? with has_aux=True it returns (value, aux))"
        )
    if np.dtype(value.dtype) != np.float64:
        raise CostTypeError(
            f"the loss returned a {value.dtype} value in 64-bit mode: part of it runs in "
            "lower precision (an explicit dtype=jnp.float32, or .astype(jnp.float32)?); "
            "leave the dtype to JAX or use float64"
        )
    return float(value)


def _loss_failure(error: Exception, jit: bool) -> str:
    message = f"the loss raised {type(error).__name__}: {exception_text(error)}"
    if jit and "tracer" in (type(error).__name__ + str(error)[:500]).lower():
        message += " (if it branches on values in Python, pass jit=False)"
    return message
