"""Recognizing costs that are C functions, which the Cython engine calls without the GIL.

Two kinds are recognized: Numba ``@cfunc`` objects and ctypes function pointers. The C cost for
a theta of dtype float64 is ``double cost(const double *theta, Py_ssize_t n, void *data)``; for
float32 it is ``double cost(const float *theta, Py_ssize_t n, void *data)``.

Numba is never imported here: a Numba ``@cfunc`` is recognized by its type, and when one is
passed Numba is already loaded.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

__all__ = ["c_cost_pointer", "is_c_cost"]

_C_NAME_OF_DTYPE = {np.dtype(np.float64): "double", np.dtype(np.float32): "float"}
_NUMBA = "Numba cfunc"
_CTYPES = "ctypes function pointer"
_CTYPES_OF_DTYPE = {np.dtype(np.float64): ctypes.c_double, np.dtype(np.float32): ctypes.c_float}


def _is_numba_cfunc(cost: Any) -> bool:
    """Whether ``cost`` is a ``numba.core.ccallback.CFunc``, without importing Numba."""
    cls = type(cost)
    return (
        cls.__name__ == "CFunc"
        and cls.__module__.startswith("numba")
        and hasattr(cost, "address")
        and hasattr(cost, "_sig")
    )


def _is_ctypes_pointer(cost: Any) -> bool:
    """Whether ``cost`` is a ctypes function pointer (``CFUNCTYPE(...)`` or a library function)."""
    return isinstance(cost, ctypes._CFuncPtr)


def is_c_cost(cost: Any) -> bool:
    """Whether ``cost`` is a C-level cost: a Numba ``@cfunc`` or a ctypes function pointer.

    The signature is not checked; see :func:`c_cost_pointer`.

    Parameters
    ----------
    cost : object
        Any object.

    Returns
    -------
    bool
        True for a Numba ``@cfunc`` object or an instance of ``ctypes._CFuncPtr``.

    Examples
    --------
    >>> import ctypes
    >>> prototype = ctypes.CFUNCTYPE(
    ...     ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t, ctypes.c_void_p
    ... )
    >>> is_c_cost(prototype(lambda theta, n, data: 0.0))
    True
    >>> is_c_cost(lambda theta: 0.0)
    False
    """
    return _is_numba_cfunc(cost) or _is_ctypes_pointer(cost)


def _expected_signature(dtype: np.dtype, kind: str) -> str:
    c_name = _C_NAME_OF_DTYPE[dtype]
    if kind == _NUMBA:
        spelled = f"float64(CPointer({dtype}), intp, voidptr)"
    else:
        spelled = f"CFUNCTYPE(c_double, POINTER(c_{c_name}), c_ssize_t, c_void_p)"
    return f"double (*)(const {c_name} *theta, Py_ssize_t n, void *data), that is {spelled}"


def _numba_signature_matches(signature: Any, dtype: np.dtype) -> bool:
    from numba.core import types  # Numba is loaded: ``signature`` comes from a compiled cfunc.

    element = types.float64 if dtype == np.float64 else types.float32
    args = tuple(signature.args)
    return (
        signature.return_type == types.float64
        and len(args) == 3
        and args[0] == types.CPointer(element)
        and args[1] == types.intp
        and args[2] == types.voidptr
    )


def _ctypes_name(ctype: Any) -> str:
    return "None" if ctype is None else getattr(ctype, "__name__", repr(ctype))


def _ctypes_signature(cost: Any) -> str:
    argtypes = cost.argtypes
    args = "unknown (argtypes not set)" if argtypes is None else ", ".join(
        _ctypes_name(arg) for arg in argtypes
    )
    return f"{_ctypes_name(cost.restype)} (*)({args})"


def _is_ssize_t(ctype: Any) -> bool:
    """Whether ``ctype`` is a signed ctypes integer of the size of a pointer (Py_ssize_t)."""
    signed = (ctypes.c_byte, ctypes.c_short, ctypes.c_int, ctypes.c_long, ctypes.c_longlong)
    return ctype in signed and ctypes.sizeof(ctype) == ctypes.sizeof(ctypes.c_void_p)


def _ctypes_signature_matches(cost: Any, dtype: np.dtype) -> bool:
    argtypes = cost.argtypes
    if argtypes is None or len(argtypes) != 3:
        return False
    return (
        cost.restype is ctypes.c_double
        and argtypes[0] is ctypes.POINTER(_CTYPES_OF_DTYPE[dtype])
        and _is_ssize_t(argtypes[1])
        and argtypes[2] is ctypes.c_void_p
    )


def c_cost_pointer(cost: Any, dtype: DTypeLike) -> int | None:
    """The address of a C-level cost after checking its signature, or None for any other cost.

    Parameters
    ----------
    cost : object
        A Numba ``@cfunc`` object, a ctypes function pointer, or anything else.
    dtype : float32 or float64 dtype-like
        The dtype of theta. The cost must be
        ``double cost(const double *theta, Py_ssize_t n, void *data)`` for float64 and
        ``double cost(const float *theta, Py_ssize_t n, void *data)`` for float32; in Numba
        terms ``float64(CPointer(float64 or float32), intp, voidptr)``, in ctypes terms
        ``CFUNCTYPE(c_double, POINTER(c_double or c_float), c_ssize_t, c_void_p)``.

    Returns
    -------
    int or None
        The function's address for a C-level cost with the right signature; None if ``cost``
        is not a C-level cost.

    Raises
    ------
    ValueError
        If ``dtype`` is neither float32 nor float64, or ``cost`` is a NULL ctypes pointer.
    TypeError
        If ``cost`` is a C-level cost whose signature does not match; the message states the
        expected and the received signature.

    Examples
    --------
    >>> import ctypes
    >>> prototype = ctypes.CFUNCTYPE(
    ...     ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t, ctypes.c_void_p
    ... )
    >>> cost = prototype(lambda theta, n, data: theta[0] ** 2)
    >>> c_cost_pointer(cost, "float64") == ctypes.cast(cost, ctypes.c_void_p).value
    True
    >>> c_cost_pointer(lambda theta: 0.0, "float64") is None
    True
    """
    if _is_numba_cfunc(cost):
        kind = _NUMBA
    elif _is_ctypes_pointer(cost):
        kind = _CTYPES
    else:
        return None

    resolved = np.dtype(dtype)
    if resolved not in _C_NAME_OF_DTYPE:
        raise ValueError(f"dtype must be float32 or float64, got {resolved}")

    if kind == _NUMBA:
        matches = _numba_signature_matches(cost._sig, resolved)
        received = str(cost._sig)
    else:
        matches = _ctypes_signature_matches(cost, resolved)
        received = _ctypes_signature(cost)
    if not matches:
        raise TypeError(
            f"a C cost for a {resolved} theta must have the signature "
            f"{_expected_signature(resolved, kind)}; the {kind} given has the signature {received}"
        )

    if kind == _NUMBA:
        return int(cost.address)
    address = ctypes.cast(cost, ctypes.c_void_p).value
    if not address:
        raise ValueError(f"cost must not be a NULL function pointer, got the {kind} {cost!r}")
    return int(address)
