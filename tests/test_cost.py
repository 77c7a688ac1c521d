"""The cost (``fastgc/_cost.py``): how it is called and what it may return."""

from __future__ import annotations

import numpy as np
import pytest

import fastgc
from conftest import check
from costs import load_sine_cost, sine_problem


def test_strided_data_array_of_a_c_cost_is_rejected(c_library):
    # The C cost reads `void *data` without strides; a strided view would be read wrongly.
    params, a, grads = sine_problem()
    strided = np.repeat(a, 2)[::2]
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"args=\(array,\) of a C-level cost .* must be contiguous"):
        check(load_sine_cost(c_library), params, grads, args=(strided,))
    assert check(load_sine_cost(c_library), params, grads,
                 args=(np.ascontiguousarray(strided),)).verdict == "correct"
