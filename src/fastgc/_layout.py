"""Flattening parameter structures into one vector theta, and back.

A :class:`Layout` remembers the names, shapes and offsets of the blocks of theta and the
structure they came from (a dict, nested dicts, a list or tuple, or one array), so that
gradients given in the same structure can be matched block by block and results can be
reported by parameter name.
"""

from __future__ import annotations

import bisect
import numbers
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from ._errors import InvalidDtypeError, InvalidInputError
from ._validation import exception_text, where_in_params

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# A tree node is ("leaf", None), ("dict", ((key, node), ...)) or ("list"/"tuple", (node, ...)).
_Node = tuple


@dataclass(frozen=True, eq=False)
class Layout:
    """Where each parameter lives in the flat vector theta.

    Attributes
    ----------
    names : tuple of str
        Parameter names in flattening order ("W1", "b1", ...; nested keys joined with ".").
    shapes : tuple of tuple of int
        The shape of each parameter.
    offsets : ndarray of int64, shape (n_parameters + 1,)
        ``theta[offsets[k]:offsets[k + 1]]`` holds parameter ``names[k]`` in C order.
    dtype : numpy.dtype
        The common dtype of the parameters (float32 or float64).

    Examples
    --------
    >>> import numpy as np, fastgc
    >>> theta, layout = fastgc.flatten({"W1": np.ones((2, 3)), "b1": np.zeros((2, 1))})
    >>> layout.names, theta.shape
    (('W1', 'b1'), (8,))
    >>> layout.locate(4)
    ('W1', (1, 1))
    >>> layout.unflatten(theta)["b1"].shape
    (2, 1)
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: np.ndarray
    dtype: np.dtype
    _tree: _Node

    @property
    def size(self) -> int:
        """Total number of scalars in theta."""
        return int(self.offsets[-1])

    @property
    def is_flat(self) -> bool:
        """True when the parameters were given as one array (the cost takes it as is)."""
        return self._tree[0] == "leaf"

    def block(self, name: str) -> slice:
        """The slice of theta that holds parameter ``name``."""
        try:
            k = self.names.index(name)
        except ValueError:
            raise InvalidInputError(
                f"no parameter named {name!r}; the parameters are {list(self.names)}"
            ) from None
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))

    def unflatten(self, theta: np.ndarray) -> Any:
        """Views of ``theta`` arranged in the structure the parameters were given in.

        ``theta`` must be a contiguous 1-D array of length :attr:`size`; the result shares its
        memory, so writing into theta is seen through the views and nothing is copied.
        """
        theta = np.asarray(theta)
        if theta.ndim != 1 or theta.shape[0] != self.size:
            raise InvalidInputError(
                f"theta must be a 1-D array of length {self.size}, got shape {theta.shape}"
            )
        views = iter(
            theta[self.offsets[k] : self.offsets[k + 1]].reshape(shape)
            for k, shape in enumerate(self.shapes)
        )
        return _rebuild(self._tree, views)

    def locate(self, flat_index: int) -> tuple[str, tuple[int, ...]]:
        """The parameter name and the index within it of ``theta[flat_index]``."""
        flat_index = int(flat_index)
        if not 0 <= flat_index < self.size:
            raise InvalidInputError(
                f"flat_index must be in [0, {self.size}), got {flat_index}"
            )
        bounds = self.offsets.tolist()  # one index: Python's bisect costs less than NumPy's
        k = bisect.bisect_right(bounds, flat_index) - 1
        return self.names[k], _unravel(flat_index - bounds[k], self.shapes[k])

    def index_within(self, block: int, position: int) -> tuple[int, ...]:
        """The index in parameter number ``block`` of its element ``position`` (C order):
        what :meth:`locate` gives for a flat index already known to lie in that block."""
        return _unravel(position, self.shapes[block])

    def flat_index(self, name: str, index: tuple[int, ...] | int = ()) -> int:
        """The position in theta of ``params[name][index]`` (inverse of :meth:`locate`)."""
        block = self.block(name)
        shape = self.shapes[self.names.index(name)]
        index = (index,) if isinstance(index, (int, np.integer)) else tuple(index)
        if not shape and not index:
            return block.start
        try:
            return block.start + int(np.ravel_multi_index(index, shape))
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"index {index} is not within params[{name!r}] of shape {shape}"
            ) from None

    def block_of(self, flat_indices: np.ndarray) -> np.ndarray:
        """The parameter number of each flat index."""
        return np.searchsorted(self.offsets, flat_indices, side="right") - 1

    def __repr__(self) -> str:
        blocks = ", ".join(f"{name}{list(shape)}" for name, shape in zip(self.names, self.shapes))
        return f"Layout({blocks}; n={self.size}, dtype={self.dtype})"


def _unravel(position: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The index in C order of element ``position`` of an array of ``shape``."""
    index = []
    for size in reversed(shape):
        position, j = divmod(position, size)
        index.append(j)
    return tuple(reversed(index))


def flatten(params: Any) -> tuple[np.ndarray, Layout]:
    """Copy a parameter structure into one contiguous vector theta.

    Parameters
    ----------
    params : dict, nested dicts, list, tuple or ndarray
        Float arrays of any shape, all float32 or all float64. A dict's insertion order is the
        flattening order (W1, b1, ..., WL, bL); nested dict keys are joined with "."; list
        items are named by position. One array is taken as theta itself (named "theta").

    Returns
    -------
    theta : ndarray, shape (n,)
        A new C-contiguous copy, in the parameters' own dtype (never converted).
    layout : Layout
        Names, shapes and offsets, to map between theta and the structure.

    Raises
    ------
    InvalidInputError
        If there are no parameters, or a parameter holds NaN or Inf (named, with its index).
    InvalidDtypeError
        If a parameter is not float32/float64, or the parameters mix float dtypes.

    Examples
    --------
    >>> import numpy as np, fastgc
    >>> theta, layout = fastgc.flatten({"W1": np.arange(6.0).reshape(2, 3), "b1": np.ones(2)})
    >>> theta
    array([0., 1., 2., 3., 4., 5., 1., 1.])
    >>> layout.locate(7)
    ('b1', (1,))
    """
    tree, leaves = _walk(params, "params")
    if not leaves:
        raise InvalidInputError("params is empty: there is nothing to check")
    dtype = None
    first_name = None
    arrays = []
    names = tuple(name for name, _ in leaves)
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise InvalidInputError(
            f"params give more than one parameter the name(s) {repeated} (nested keys are "
            "joined with '.'); rename them so that every parameter has its own name"
        )
    for name, leaf in leaves:
        label = "params" if tree[0] == "leaf" else f"params[{name!r}]"
        if isinstance(leaf, np.matrix):
            raise InvalidInputError(
                f"{label} is a numpy.matrix: the cost is called with plain ndarray views, in "
                "which `*` multiplies elementwise, not as matrices; pass np.asarray(...) and "
                "write matrix products with `@`"
            )
        array = _as_float_array(leaf, label)
        if dtype is None:
            dtype, first_name = array.dtype, name
        elif array.dtype != dtype:
            raise InvalidDtypeError(
                f"params mix float dtypes: {first_name!r} is {dtype} but {name!r} is "
                f"{array.dtype}; give every parameter the same dtype"
            )
        arrays.append(array)
    bounds = [0]
    for array in arrays:
        bounds.append(bounds[-1] + array.size)
    if bounds[-1] == 0:
        raise InvalidInputError("params hold no values (every array is empty)")
    offsets = np.array(bounds, dtype=np.int64)
    theta = np.empty(bounds[-1], dtype=dtype)
    for k, array in enumerate(arrays):
        theta[bounds[k] : bounds[k + 1]] = array.reshape(-1)  # C order, any input layout
    layout = Layout(names, tuple(a.shape for a in arrays), offsets, np.dtype(dtype), tree)
    finite = np.isfinite(theta)
    if np.count_nonzero(finite) < theta.shape[0]:  # not all (cheaper than .all())
        bad = np.flatnonzero(~finite)
        raise InvalidInputError(
            f"{where_in_params(layout, bad[0])} is {theta[bad[0]]}: parameters must be finite "
            f"({bad.size} non-finite value(s) in all)"
        )
    return theta, layout


def flatten_like(grads: Any, layout: Layout, what: str = "grads") -> np.ndarray:
    """Flatten ``grads`` in the order of ``layout`` into a new float64 vector.

    ``grads`` is either a flat array of length ``layout.size`` or the same structure as the
    parameters, dict keys equal to the parameter names or carrying the "d" prefix ("dW1").
    Entries that match no parameter are ignored (see :func:`flatten_gradients`, which also
    returns their names). NaN and Inf are kept: they are a finding about the gradients, not an
    input error.
    """
    return flatten_gradients(grads, layout, what)[0]


def flatten_gradients(
    grads: Any, layout: Layout, what: str = "grads"
) -> tuple[np.ndarray, tuple[str, ...]]:
    """:func:`flatten_like`, and the names of the dict entries that match no parameter.

    A backward pass often returns intermediates (``dZ3``, ``dA2``) next to ``dW1``, ``db1``:
    when every parameter has its gradient, such extra entries are ignored and named in the
    second return value (nested keys joined with "."). When a parameter has no gradient, the
    error names the missing parameters and the entries that matched none.
    """
    if isinstance(grads, np.ndarray) and (layout.is_flat or grads.ndim == 1):
        array = _as_float_array(grads, what)
        if array.size != layout.size or (layout.is_flat and array.shape != layout.shapes[0]):
            expected = layout.shapes[0] if layout.is_flat else (layout.size,)
            raise InvalidInputError(
                f"{what} has shape {array.shape} but the parameters need {expected}"
            )
        return np.array(array.reshape(-1), dtype=np.float64), ()
    if layout.is_flat:
        raise InvalidInputError(
            f"params is one array, so {what} must be one array of shape {layout.shapes[0]}, "
            f"got {type(grads).__name__}"
        )
    ignored: list[str] = []
    leaves = dict(_match(layout._tree, grads, what, "", ignored))
    dtheta = np.empty(layout.size, dtype=np.float64)
    for k, (name, shape) in enumerate(zip(layout.names, layout.shapes)):
        label, leaf = leaves[name]
        array = _as_float_array(leaf, label)
        if array.shape != shape:
            raise InvalidInputError(
                f"{label} has shape {array.shape} but params[{name!r}] has shape {shape}"
            )
        dtheta[layout.offsets[k] : layout.offsets[k + 1]] = array.reshape(-1)
    return dtheta, tuple(ignored)


def _as_float_array(leaf: Any, label: str) -> np.ndarray:
    if isinstance(leaf, np.ma.MaskedArray):
        if np.ma.getmaskarray(leaf).any():
            first = tuple(int(j) for j in np.argwhere(np.ma.getmaskarray(leaf))[0])
            raise InvalidInputError(
                f"{label} is a masked array with masked entries (the first at {list(first)}): "
                "fastgc would read the values under the mask; fill them "
                "(array.filled(value)) or pass only the entries to check"
            )
        leaf = leaf.data  # nothing masked: the plain values
    try:
        array = np.asarray(leaf)
    except Exception as error:  # ragged lists and the like
        raise InvalidInputError(
            f"{label} cannot be read as an array: {exception_text(error)}"
        ) from error
    if array.dtype not in SUPPORTED_DTYPES:
        kind = {
            "i": "integer", "u": "unsigned integer", "b": "boolean", "c": "complex",
            "O": "object", "f": "floating",
        }.get(array.dtype.kind, "non-numeric")
        hint = (
            "float16 is too coarse for finite differences; use float32 or float64"
            if array.dtype == np.float16
            else "convert it with .astype(np.float64) (or float32)"
        )
        raise InvalidDtypeError(
            f"{label} has {kind} dtype {array.dtype}; fastgc needs float32 or float64 ({hint})"
        )
    return array


def _walk(node: Any, path: str, prefix: str = "") -> tuple[_Node, list[tuple[str, Any]]]:
    if type(node) is np.ndarray:  # the usual leaf, known without the slower Mapping test
        return ("leaf", None), [(prefix[:-1] if prefix else "theta", node)]
    if isinstance(node, Mapping):
        children, leaves = [], []
        for key, value in node.items():
            name = f"{prefix}{key}"
            child, child_leaves = _walk(value, f"{path}[{key!r}]", name + ".")
            children.append((key, child))
            leaves.extend(child_leaves)
        return ("dict", tuple(children)), leaves
    if isinstance(node, (list, tuple)) and not _is_nested_numbers(node):
        children, leaves = [], []
        for position, value in enumerate(node):
            name = f"{prefix}{position}"
            child, child_leaves = _walk(value, f"{path}[{position}]", name + ".")
            children.append(child)
            leaves.extend(child_leaves)
        return ("tuple" if isinstance(node, tuple) else "list", tuple(children)), leaves
    if node is None or isinstance(node, (str, bytes)):
        raise InvalidDtypeError(
            f"{path} is {type(node).__name__}, not an array of floats"
        )
    name = prefix[:-1] if prefix else "theta"
    return ("leaf", None), [(name, node)]


def _is_nested_numbers(node: list | tuple) -> bool:
    """True for nested lists of plain numbers such as [[1.0, 2.0], [3.0, 4.0]].

    They are one array (read, or refused when ragged, by ``np.asarray``), not a structure of
    scalar parameters; a flat list of numbers stays a list of scalar parameters (w, b).
    """

    def numbers_only(item: Any) -> bool:
        if isinstance(item, (list, tuple)):
            return all(numbers_only(value) for value in item)
        return isinstance(item, (numbers.Number, np.generic))

    return any(isinstance(item, (list, tuple)) for item in node) and numbers_only(node)


def _rebuild(node: _Node, views: Iterator[np.ndarray]) -> Any:
    kind, children = node
    if kind == "leaf":
        return next(views)
    if kind == "dict":
        return {key: _rebuild(child, views) for key, child in children}
    items = [_rebuild(child, views) for child in children]
    return tuple(items) if kind == "tuple" else items


def _match(
    node: _Node, grads: Any, label: str, prefix: str, ignored: list[str]
) -> Iterator[tuple[str, tuple[str, Any]]]:
    """Yield (parameter name, (label, gradient leaf)) pairs, checking names and structure.

    Names of dict entries that match no parameter are appended to ``ignored``.
    """
    kind, children = node
    if kind == "leaf":
        yield prefix[:-1], (label, grads)
        return
    if kind == "dict":
        if not isinstance(grads, Mapping):
            raise InvalidInputError(
                f"{label} must be a dict like the parameters, got {type(grads).__name__}"
            )
        keys = [key for key, _ in children]
        chosen = _gradient_keys(keys, grads, label, prefix)
        for key, child in children:
            used = chosen[key]
            yield from _match(child, grads[used], f"{label}[{used!r}]", f"{prefix}{key}.", ignored)
        used_keys = set(chosen.values())
        ignored.extend(f"{prefix}{key}" for key in grads if key not in used_keys)
        return
    if not isinstance(grads, (list, tuple)) or len(grads) != len(children):
        length = len(grads) if isinstance(grads, (list, tuple)) else type(grads).__name__
        raise InvalidInputError(
            f"{label} must be a {kind} of {len(children)} gradients like the parameters, "
            f"got {length}"
        )
    for position, (child, value) in enumerate(zip(children, grads)):
        yield from _match(child, value, f"{label}[{position}]", f"{prefix}{position}.", ignored)


def _gradient_keys(keys: list, grads: Mapping, label: str, prefix: str) -> dict:
    """Which entry of ``grads`` holds the gradient of each parameter key of one dict level.

    Each parameter ``k`` takes ``grads[k]`` or ``grads["d" + k]``. An entry can serve one
    parameter only, so parameters legitimately named ``t`` and ``dt`` work both with the keys
    ``t``, ``dt`` and with ``dt``, ``ddt``: keys with a single possible entry are settled
    first, and each settled entry is withdrawn from the others. A key left with two entries
    is ambiguous; one left with none is missing.
    """
    options: dict = {}
    for key in keys:
        candidates = [key] if key in grads else []
        if isinstance(key, str) and f"d{key}" in grads:
            candidates.append(f"d{key}")
        options[key] = candidates
    chosen: dict = {}
    settled = True
    while settled:
        settled = False
        for key in keys:
            if key not in chosen and len(options[key]) == 1:
                entry = chosen[key] = options[key][0]
                settled = True
                for other in keys:
                    if other not in chosen and entry in options[other]:
                        options[other].remove(entry)
    for key in keys:
        if key not in chosen and len(options[key]) > 1:
            plain, d_key = options[key]
            raise InvalidInputError(
                f"{label} has both {plain!r} and {d_key!r}; keep one gradient per parameter"
            )
    missing = [key for key in keys if key not in chosen]
    if missing:
        used = set(chosen.values())
        unmatched = [key for key in grads if key not in used]

        def expected(key: Any) -> str:
            return f"{key!r} or {'d' + key!r}" if isinstance(key, str) else repr(key)

        first, rest = missing[0], missing[1:]
        also = "".join(f"; nor for {prefix + str(k)!r} ({expected(k)})" for k in rest)
        raise InvalidInputError(
            f"{label} has no gradient for parameter {prefix + str(first)!r} "
            f"(expected key {expected(first)}){also}; entries that match no parameter: "
            f"{unmatched}; it has {list(grads)}"
        )
    return chosen
