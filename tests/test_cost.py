"""The cost (``fastgc/_cost.py``): how it is classified and called, what it may return, and
what is said when it fails.

Every failure below must raise an exception of fastgc's own whose message names the parameter
(and the index where there is one), and must leave the caller's params and grads byte for byte
as they were. Cost failures run on every engine and kind of cost, since each engine
evaluates the cost differently.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastgc
from conftest import ENGINE_CASES, EngineCase, assert_untouched, check, require_engine
from costs import (INF_BASE, NAN_AT, NAN_BASE, OK, RAISE_AT, RAISE_BASE, TRIGGER, TRIGGER_FLAT,
                   check_faulty, load_sine_cost, plain_cost, sine_problem)
from fastgc._cost import CostKind

pytestmark = pytest.mark.usefixtures("no_thread_default")

# A C cost cannot raise a Python exception: these cases run on the other three.
RAISING_CASES = [case for case in ENGINE_CASES if case.cost_kind != CostKind.C]


@pytest.fixture(params=RAISING_CASES, ids=lambda case: f"{case.engine}-{case.cost_kind.value}")
def raising_engine(request) -> EngineCase:
    case: EngineCase = request.param
    require_engine(case.engine)
    if case.cost_kind == CostKind.NJIT:
        require_engine("numba")
    return case


# --------------------------------------------------------------------------------------------
# The test cost itself is right when it behaves.


def test_well_behaved_test_cost_is_correct(engine, inputs):
    params, grads, before = inputs
    result = check_faulty(engine, params, grads, OK)
    assert result.verdict == "correct"
    assert result.engine == engine.engine
    assert_untouched(params, grads, before)


# --------------------------------------------------------------------------------------------
# Costs that fail, on every engine.


def test_cost_raising_at_the_unperturbed_point(raising_engine, inputs):
    params, grads, before = inputs
    with pytest.raises(fastgc.CostError, match=r"raised ValueError at the unperturbed") as raised:
        check_faulty(raising_engine, params, grads, RAISE_BASE)
    assert "boom inside the cost" in str(raised.value)
    assert isinstance(raised.value.__cause__, ValueError)
    assert_untouched(params, grads, before)


def test_cost_raising_when_one_component_is_perturbed(raising_engine, inputs):
    params, grads, before = inputs
    with pytest.raises(
        fastgc.CostError,
        match=r"raised ValueError: boom inside the cost \(while theta\[6\], "
        r"params\['W1'\]\[1, 2\], was perturbed\)",
    ) as raised:
        check_faulty(raising_engine, params, grads, RAISE_AT, n_threads=2)
    # For the numba engine the exception comes out of compiled code without an index; the
    # index is found by re-running the same cost in Python, which yields the same message.
    assert "in compiled code" not in str(raised.value)
    assert raised.value.flat_index == TRIGGER_FLAT
    assert raised.value.location == TRIGGER
    assert isinstance(raised.value.__cause__, ValueError)
    assert_untouched(params, grads, before)


@pytest.mark.parametrize("mode, shown", [(NAN_BASE, "nan"), (INF_BASE, "inf")])
def test_cost_not_finite_at_the_unperturbed_point(engine, inputs, mode, shown):
    params, grads, before = inputs
    with pytest.raises(fastgc.CostError, match=rf"the cost is {shown} at the unperturbed"):
        check_faulty(engine, params, grads, mode)
    assert_untouched(params, grads, before)


def test_cost_nan_when_one_component_is_perturbed(engine, inputs):
    params, grads, before = inputs
    with pytest.raises(
        fastgc.CostError,
        match=r"returned nan when theta\[6\] \(params\['W1'\]\[1, 2\]\) was moved by \+",
    ) as raised:
        check_faulty(engine, params, grads, NAN_AT, n_threads=2)
    assert raised.value.flat_index == TRIGGER_FLAT
    assert raised.value.location == TRIGGER
    assert_untouched(params, grads, before)


# --------------------------------------------------------------------------------------------
# Costs that return something other than a float.


@pytest.mark.parametrize(
    "returned, message",
    [
        (lambda v: np.full(2, v), r"returned an array of shape \(2,\) at the unperturbed"),
        (lambda v: np.full((1, 1), v), r"returned an array of shape \(1, 1\)"),
        (lambda v: 3, r"returned int 3 at the unperturbed .* must return a float"),
        (lambda v: np.int64(3), r"returned int64 np.int64\(3\)"),
        (lambda v: True, r"returned bool True"),
        (lambda v: "0.5", r"returned str '0.5'"),
        (lambda v: None, r"returned NoneType None"),
        (lambda v: complex(v, 1), r"returned complex"),
    ],
    ids=["vector", "matrix", "int", "np.int64", "bool", "str", "None", "complex"],
)
def test_cost_returning_a_non_float(inputs, returned, message):
    params, grads, before = inputs

    def cost(p):
        return returned(plain_cost(p))

    with pytest.raises(fastgc.CostTypeError, match=message):
        fastgc.check(cost, params, grads, engine="python", progress=False)
    assert issubclass(fastgc.CostTypeError, fastgc.CostError)
    assert_untouched(params, grads, before)


class TensorRequiringGrad:
    """Stands for a torch tensor that requires grad: ``np.asarray`` of it raises."""

    def __array__(self, *args, **kwargs):
        raise RuntimeError("Can't call numpy() on Tensor that requires grad.")


def test_cost_returning_something_unreadable_as_an_array(inputs):
    params, grads, before = inputs
    with pytest.raises(fastgc.CostTypeError,
                       match=r"returned a TensorRequiringGrad that cannot be read as a number at "
                       r"the unperturbed parameters \(RuntimeError: Can't call numpy\(\)"):
        fastgc.check(lambda p: TensorRequiringGrad(), params, grads, engine="python",
                     progress=False)
    assert_untouched(params, grads, before)


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("no message")


@pytest.mark.parametrize("when", ["baseline", "perturbed"])
def test_cost_raising_an_exception_whose_message_cannot_be_read(inputs, when):
    params, grads, before = inputs
    calls = [0]

    def cost(p):
        calls[0] += 1
        if when == "baseline" or calls[0] > 2:
            raise UnprintableError()
        return plain_cost(p)

    with pytest.raises(fastgc.CostError,
                       match=r"the cost raised UnprintableError.*<the message could not be "
                       r"read: its __str__ raised RuntimeError>") as raised:
        fastgc.check(cost, params, grads, engine="python", progress=False)
    assert isinstance(raised.value.__cause__, UnprintableError)
    assert_untouched(params, grads, before)


def test_cost_returning_a_float_as_0d_array_or_numpy_scalar_is_fine(inputs):
    params, grads, before = inputs
    for wrap in (np.asarray, np.float64, lambda v: np.asarray([v]).reshape(())):
        result = fastgc.check(lambda p, w=wrap: w(plain_cost(p)), params, grads,
                              engine="python", progress=False)
        assert result.verdict == "correct"
    assert_untouched(params, grads, before)


def test_float32_cost_value_for_float64_params_is_refused(inputs):
    params, grads, before = inputs

    def cost(p):
        return np.float32(plain_cost(p))

    try:
        with pytest.raises(fastgc.CostTypeError, match=r"float32 .* float64 param"):
            fastgc.check(cost, params, grads, engine="python", progress=False)
    finally:
        assert_untouched(params, grads, before)


@pytest.mark.parametrize("engine_name", ["python", "cython"])
def test_cost_returning_none_only_when_perturbed_names_the_index(inputs, engine_name):
    require_engine(engine_name)
    params, grads, before = inputs

    def cost(p):
        return None if p["W1"][1, 2] < 0.5 else plain_cost(p)

    with pytest.raises(
        fastgc.CostTypeError,
        match=r"returned NoneType None with theta\[6\] \(params\['W1'\]\[1, 2\]\) perturbed",
    ) as raised:
        fastgc.check(cost, params, grads, engine=engine_name, progress=False)
    assert raised.value.flat_index == TRIGGER_FLAT
    assert_untouched(params, grads, before)


def test_njit_cost_returning_an_int_or_array_is_refused(inputs):
    require_engine("numba")
    import numba

    params, grads, before = inputs

    @numba.njit(cache=False)
    def int_cost(theta):
        return 1

    @numba.njit(cache=False)
    def array_cost(theta):
        return theta[:3] * 2.0

    with pytest.raises(fastgc.CostTypeError, match=r"returned int 1 at the unperturbed"):
        fastgc.check(int_cost, params, grads, engine="numba", progress=False)
    with pytest.raises(fastgc.CostTypeError, match=r"returned an array of shape \(3,\)"):
        fastgc.check(array_cost, params, grads, engine="numba", progress=False)
    assert_untouched(params, grads, before)


# --------------------------------------------------------------------------------------------
# What is not a cost, gradients that fail, and a C cost's data.


@pytest.mark.parametrize("cost", [None, "cost", 3.0, np.ones(3)], ids=["None", "str", "float",
                                                                       "array"])
def test_cost_not_callable(inputs, cost):
    params, grads, before = inputs
    with pytest.raises(fastgc.InvalidInputError, match=r"cost must be callable"):
        fastgc.check(cost, params, grads, engine="python", progress=False)
    assert_untouched(params, grads, before)


def test_grads_callable_that_raises(inputs):
    params, grads, before = inputs

    def broken(p):
        raise KeyError("dW9")

    with pytest.raises(fastgc.InvalidInputError, match=r"grads\(params\) raised KeyError"):
        fastgc.check(plain_cost, params, broken, engine="python", progress=False)
    assert_untouched(params, grads, before)


def test_strided_data_array_of_a_c_cost_is_rejected(c_library):
    # The C cost reads `void *data` without strides; a strided view would be read wrongly.
    params, a, grads = sine_problem()
    strided = np.repeat(a, 2)[::2]
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"args=\(array,\) of a C-level cost .* must be contiguous"):
        check(load_sine_cost(c_library), params, grads, args=(strided,))
    assert check(load_sine_cost(c_library), params, grads,
                 args=(np.ascontiguousarray(strided),)).verdict == "correct"


@pytest.mark.parametrize("engine_name,n_threads", [("python", 1), ("cython", 1), ("cython", 2)])
def test_a_cost_that_rebinds_an_entry_of_its_params_is_an_error(engine_name, n_threads):
    require_engine(engine_name)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3, 5))
    params = {"W1": rng.standard_normal((4, 3)), "W2": rng.standard_normal((1, 4))}

    def cost(p):
        p["W1"] = p["W1"] * 1.0  # a common way to "copy" inside a cost
        return float(np.sum((p["W2"] @ np.tanh(p["W1"] @ X)) ** 2))

    def grads(p):
        A = np.tanh(p["W1"] @ X)
        out = p["W2"] @ A
        return {"dW1": ((p["W2"].T @ (2 * out)) * (1 - A**2)) @ X.T, "dW2": 2 * out @ A.T}

    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(fastgc.CostError, match=r"replaced params\['W1'\]") as caught:
        fastgc.check(cost, params, grads, engine=engine_name, n_threads=n_threads,
                     progress=False)
    assert caught.value.location[0] == "W1"
    assert all(np.array_equal(params[k], before[k]) for k in params)

    def copying_cost(p):
        W1 = p["W1"] * 1.0  # a local name: fine
        return float(np.sum((p["W2"] @ np.tanh(W1 @ X)) ** 2))

    result = fastgc.check(copying_cost, params, grads, engine=engine_name, progress=False)
    assert result.verdict == "correct", str(result)
