"""C-level costs (``fastgc/_ccost.py``): a ctypes or ``@cfunc`` cost is recognised, and a wrong
signature is refused with the expected and the received signature."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import fastgc
from conftest import check
from costs import load_sine_cost, sine_problem


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
