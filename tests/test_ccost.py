"""C-level costs (``fastgc/_ccost.py``): a ctypes or ``@cfunc`` cost is recognised, and a wrong
signature is refused with the expected and the received signature."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import fastgc
from conftest import check
from costs import (C_FLOAT, DTYPES, load_sine_cost, make_numba_cost, numba_cost_body, python_cost,
                   sine_problem)
from fastgc._ccost import c_cost_pointer, is_c_cost


def test_ctypes_cost_with_the_wrong_signature_states_expected_and_received(c_library):
    params, a, grads = sine_problem()
    expected = (r"double \(\*\)\(const double \*theta, Py_ssize_t n, void \*data\), that is "
                r"CFUNCTYPE\(c_double, POINTER\(c_double\), c_ssize_t, c_void_p\)")
    float_pointer = load_sine_cost(
        c_library, argtypes=[ctypes.POINTER(ctypes.c_float), ctypes.c_ssize_t, ctypes.c_void_p]
    )
    with pytest.raises(fastgc.CostTypeError,
                       match=rf"float64 theta must have the signature {expected}; the ctypes "
                             r"function pointer given has the signature "
                             r"c_double \(\*\)\(LP_c_float, c_\w+, c_void_p\)$"):
        check(float_pointer, params, grads, args=(a,))
    untyped = load_sine_cost(c_library, restype=ctypes.c_double, argtypes=None)
    with pytest.raises(fastgc.FastGCError, match=r"given has the signature "
                                                 r"c_double \(\*\)\(unknown \(argtypes not set\)\)"):
        check(untyped, params, grads, args=(a,))
    # The right function for float64 is the wrong one for float32 parameters.
    params32 = {name: value.astype(np.float32) for name, value in params.items()}
    with pytest.raises(fastgc.CostTypeError,
                       match=r"float32 theta must have the signature double \(\*\)\(const "
                             r"float \*theta.*given has the signature c_double \(\*\)\("
                             r"LP_c_double"):
        check(load_sine_cost(c_library), params32, grads, args=(a,))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_ccost_accepts_right_signatures(numba, dtype):
    cfunc = make_numba_cost(numba, dtype)
    assert is_c_cost(cfunc)
    assert c_cost_pointer(cfunc, dtype) == cfunc.address
    assert c_cost_pointer(cfunc, np.dtype(dtype).name) == cfunc.address

    for size_type in (ctypes.c_ssize_t, ctypes.c_int64):
        prototype = ctypes.CFUNCTYPE(
            ctypes.c_double, ctypes.POINTER(C_FLOAT[dtype]), size_type, ctypes.c_void_p
        )
        cost = prototype(lambda theta, n, data: 0.0)
        assert is_c_cost(cost)
        assert c_cost_pointer(cost, dtype) == ctypes.cast(cost, ctypes.c_void_p).value


def test_ccost_rejects_wrong_numba_signatures(numba):
    from numba import types

    def body(theta, n, data):
        return 0.0

    float64_ptr, float32_ptr = types.CPointer(types.float64), types.CPointer(types.float32)
    wrong = {
        "float32 theta": types.float64(float32_ptr, types.intp, types.voidptr),
        "float32 result": types.float32(float64_ptr, types.intp, types.voidptr),
        "int32 n": types.float64(float64_ptr, types.int32, types.voidptr),
        "no data": types.float64(float64_ptr, types.intp),
    }
    for name, signature in wrong.items():
        if name == "no data":
            cfunc = numba.cfunc(signature)(lambda theta, n: 0.0)
        else:
            cfunc = numba.cfunc(signature)(body)
        assert is_c_cost(cfunc)
        with pytest.raises(TypeError) as info:
            c_cost_pointer(cfunc, np.float64)
        message = str(info.value)
        assert "const double *theta, Py_ssize_t n, void *data" in message
        assert "float64(CPointer(float64), intp, voidptr)" in message
        assert str(cfunc._sig) in message

    # The right signature for float64 is the wrong one for float32.
    cfunc = numba.cfunc(types.float64(float64_ptr, types.intp, types.voidptr))(body)
    with pytest.raises(TypeError, match=r"const float \*theta.*\(float64\*, int64, void\*\)"):
        c_cost_pointer(cfunc, np.float32)


def test_ccost_rejects_wrong_ctypes_signatures():
    c = ctypes
    wrong = [
        (c.c_double, c.POINTER(c.c_float), c.c_ssize_t, c.c_void_p),
        (c.c_float, c.POINTER(c.c_double), c.c_ssize_t, c.c_void_p),
        (c.c_double, c.POINTER(c.c_double), c.c_int32, c.c_void_p),
        (c.c_double, c.POINTER(c.c_double), c.c_size_t, c.c_void_p),
        (c.c_double, c.c_void_p, c.c_ssize_t, c.c_void_p),
        (c.c_double, c.POINTER(c.c_double), c.c_ssize_t),
    ]
    for restype, *argtypes in wrong:
        cost = c.CFUNCTYPE(restype, *argtypes)(lambda *args: 0)
        with pytest.raises(TypeError) as info:
            c_cost_pointer(cost, np.float64)
        message = str(info.value)
        assert "must have the signature double (*)(const double *theta" in message
        assert "CFUNCTYPE(c_double, POINTER(c_double), c_ssize_t, c_void_p)" in message
        assert f"{restype.__name__} (*)(" in message


def test_ccost_rejects_library_function_without_argtypes():
    libm = ctypes.CDLL(None)
    with pytest.raises(TypeError, match=r"has the signature c_int \(\*\)\(unknown"):
        c_cost_pointer(libm.cos, np.float64)


def test_ccost_null_pointer_and_bad_dtype():
    prototype = ctypes.CFUNCTYPE(
        ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t, ctypes.c_void_p
    )
    with pytest.raises(ValueError, match="NULL function pointer"):
        c_cost_pointer(prototype(), np.float64)
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got int64"):
        c_cost_pointer(prototype(lambda *args: 0.0), np.int64)


def test_ccost_returns_none_for_python_level_costs(numba):
    jitted = numba.njit(numba_cost_body)
    for cost in (python_cost, lambda theta: 0.0, jitted, None, 12345, np.sin):
        assert not is_c_cost(cost)
        assert c_cost_pointer(cost, np.float64) is None
