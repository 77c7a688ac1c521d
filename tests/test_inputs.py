"""Bad input, failing costs, interruption and thread counts: fastgc's own errors, arrays untouched.

Every failure below must raise an exception of fastgc's own whose message names the parameter
(and the index where there is one), and must leave the caller's params and grads byte for byte
as they were. Cost failures run on every engine and kind of cost, since each engine evaluates
the cost differently.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastgc
from conftest import ENGINE_CASES, EngineCase, require_engine, snapshot
from fastgc._threads import resolve_n_threads, usable_threads

# A two-parameter tanh model over fixed inputs; W1[1, 2] is exactly 0.5 so that a cost can
# misbehave only while that one component is moved up (theta[6] > 0.5).
X = np.linspace(-1.0, 1.0, 4).reshape(4, 1)
TRIGGER_FLAT, TRIGGER = 6, ("W1", (1, 2))

# What the test cost does, selected by an int argument so that one compiled kernel serves all.
OK, RAISE_AT, WRITE, NAN_AT, NAN_BASE, INF_BASE, RAISE_BASE = range(7)


def make_params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    W1 = rng.standard_normal((3, 4)) * 0.5
    W1[1, 2] = 0.5
    return {"W1": W1, "b1": rng.standard_normal((3, 1)) * 0.1}


def exact_grads(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    A = np.tanh(params["W1"] @ X + params["b1"])
    dZ = 2 * A * (1 - A**2)
    return {"dW1": dZ @ X.T, "db1": dZ}


def plain_cost(p):
    return float(np.sum(np.tanh(p["W1"] @ X + p["b1"]) ** 2))


def py_cost(p, mode):
    if mode == RAISE_BASE or (mode == RAISE_AT and p["W1"][1, 2] > 0.5):
        raise ValueError("boom inside the cost")
    if mode == WRITE:
        p["b1"][1, 0] = 7.0
    value = float(np.sum(np.tanh(p["W1"] @ X + p["b1"]) ** 2))
    if mode == NAN_BASE or (mode == NAN_AT and p["W1"][1, 2] > 0.5):
        return math.nan
    if mode == INF_BASE:
        return math.inf
    return value


_compiled: dict[str, object] = {}


def njit_cost():
    """``py_cost`` as an @njit function of the flat theta (W1 then b1, C order)."""
    if "njit" not in _compiled:
        import numba

        @numba.njit(cache=False)
        def flat_cost(theta, mode):  # loops, not W1 @ X: much quicker to compile
            if mode == RAISE_BASE or (mode == RAISE_AT and theta[TRIGGER_FLAT] > 0.5):
                raise ValueError("boom inside the cost")
            if mode == WRITE:
                theta[13] = 7.0
            value = 0.0
            for row in range(3):
                z = theta[12 + row]
                for column in range(4):
                    z += theta[4 * row + column] * X[column, 0]
                value += np.tanh(z) ** 2
            if mode == NAN_BASE or (mode == NAN_AT and theta[TRIGGER_FLAT] > 0.5):
                return np.nan
            if mode == INF_BASE:
                return np.inf
            return value

        _compiled["njit"] = flat_cost
    return _compiled["njit"]


def c_cost():
    """The same as a Numba @cfunc; ``void *data`` points to the int64 mode."""
    if "cfunc" not in _compiled:
        import numba
        from numba import types

        flat_cost = njit_cost()
        signature = types.float64(types.CPointer(types.float64), types.intp, types.voidptr)

        @numba.cfunc(signature)
        def cost_c(theta_pointer, n, data):
            mode = numba.carray(data, (1,), dtype=np.int64)[0]
            return flat_cost(numba.carray(theta_pointer, (n,)), mode)

        _compiled["cfunc"] = cost_c
    return _compiled["cfunc"]


def faulty(case: EngineCase, mode: int):
    """(cost, args) of the test cost for an engine case, misbehaving as ``mode`` says."""
    if case.cost_kind == "njit":
        return njit_cost(), (mode,)
    if case.cost_kind == "cfunc":
        return c_cost(), (np.array([mode], dtype=np.int64),)
    return py_cost, (mode,)


def check_faulty(case: EngineCase, params, grads, mode: int, **options):
    cost, args = faulty(case, mode)
    return fastgc.check(cost, params, grads, args=args, engine=case.engine, progress=False,
                        **options)


# A C cost cannot raise a Python exception: these cases run on the other three.
RAISING_CASES = [case for case in ENGINE_CASES if case.cost_kind != "cfunc"]


@pytest.fixture(params=RAISING_CASES, ids=lambda case: f"{case.engine}-{case.cost_kind}")
def raising_engine(request) -> EngineCase:
    case: EngineCase = request.param
    require_engine(case.engine)
    if case.cost_kind == "njit":
        require_engine("numba")
    return case


@pytest.fixture
def inputs():
    params = make_params()
    grads = exact_grads(params)
    return params, grads, (snapshot(params), snapshot(grads))


@pytest.fixture(autouse=True)
def no_thread_default():
    fastgc.set_num_threads(None)
    yield
    fastgc.set_num_threads(None)


def assert_untouched(params, grads, before) -> None:
    assert (snapshot(params), snapshot(grads)) == before


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


def test_cost_writing_into_its_input(engine, inputs):
    params, grads, before = inputs
    with pytest.raises(
        fastgc.CostError, match=r"wrote into the parameters .*params\['b1'\]\[1, 0\] changed"
    ) as raised:
        check_faulty(engine, params, grads, WRITE)
    assert raised.value.location == ("b1", (1, 0))
    assert_untouched(params, grads, before)


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
# Gradients that do not match the parameters.


def test_grads_missing_a_parameter(engine, inputs):
    params, grads, before = inputs
    partial = {"dW1": grads["dW1"]}
    cost, args = faulty(engine, OK)
    with pytest.raises(
        fastgc.InvalidInputError,
        match=r"no gradient for parameter 'b1' \(expected key 'b1' or 'db1'",
    ):
        fastgc.check(cost, params, partial, args=args, engine=engine.engine, progress=False)
    assert_untouched(params, grads, before)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda g: {**g, "W1": g["dW1"]}, r"has both 'W1' and 'dW1'"),
        (
            lambda g: {**g, "dW1": np.zeros((4, 3))},
            r"grads\['dW1'\] has shape \(4, 3\) but params\['W1'\] has shape \(3, 4\)",
        ),
        (
            lambda g: {**g, "db1": np.zeros(3)},
            r"grads\['db1'\] has shape \(3,\) but params\['b1'\] has shape \(3, 1\)",
        ),
        (lambda g: np.zeros(14), r"grads has shape \(14,\) but the parameters need \(15,\)"),
        (lambda g: np.zeros(16), r"grads has shape \(16,\) but the parameters need \(15,\)"),
        (lambda g: [g["dW1"], g["db1"]], r"grads must be a dict like the parameters, got list"),
        (lambda g: np.zeros((15, 1)), r"grads must be a dict like the parameters, got ndarray"),
    ],
    ids=["both-W1-and-dW1", "shape-W1", "shape-b1", "short-flat", "long-flat",
         "list-for-dict", "2d-for-dict"],
)
def test_grads_not_matching_the_parameters(inputs, edit, message):
    params, grads, before = inputs
    with pytest.raises(fastgc.InvalidInputError, match=message):
        fastgc.check(plain_cost, params, edit(grads), engine="python", progress=False)
    assert_untouched(params, grads, before)


def test_extra_gradient_entries_are_ignored_and_reported(inputs):
    # An entry matching no parameter (an intermediate such as dZ2) used to be an error; when
    # every parameter has its gradient it is now ignored and listed in the report.
    params, grads, before = inputs
    extended = {**grads, "dW3": np.zeros(2)}
    result = fastgc.check(plain_cost, params, extended, engine="python", progress=False)
    assert result.verdict == "correct"
    assert result.ignored_gradients == ("dW3",)
    assert "ignored gradient entries (they match no parameter): dW3" in str(result)
    assert_untouched(params, grads, before)


def test_grads_list_of_the_wrong_length(inputs):
    params, grads, _ = inputs
    as_list = [params["W1"], params["b1"]]
    grads_list = [grads["dW1"], grads["db1"]]
    before = snapshot(as_list), snapshot(grads_list)

    def cost(p):
        return plain_cost({"W1": p[0], "b1": p[1]})

    for wrong in (grads_list[:1], grads_list + [np.zeros(1)]):
        with pytest.raises(
            fastgc.InvalidInputError,
            match=rf"grads must be a list of 2 gradients like the parameters, got {len(wrong)}",
        ):
            fastgc.check(cost, as_list, wrong, engine="python", progress=False)
    assert (snapshot(as_list), snapshot(grads_list)) == before
    assert fastgc.check(cost, as_list, grads_list, engine="python", progress=False).passed


def test_flat_theta_needs_grads_of_its_own_shape():
    theta = np.linspace(-1.0, 1.0, 6)

    def cost(t):
        return float(np.sum(t**3))

    with pytest.raises(fastgc.InvalidInputError, match=r"grads has shape \(5,\) .* \(6,\)"):
        fastgc.check(cost, theta, np.zeros(5), engine="python", progress=False)
    with pytest.raises(fastgc.InvalidInputError, match=r"params is one array, so grads must"):
        fastgc.check(cost, theta, {"dtheta": 3 * theta**2}, engine="python", progress=False)


def test_grads_callable_that_raises(inputs):
    params, grads, before = inputs

    def broken(p):
        raise KeyError("dW9")

    with pytest.raises(fastgc.InvalidInputError, match=r"grads\(params\) raised KeyError"):
        fastgc.check(plain_cost, params, broken, engine="python", progress=False)
    assert_untouched(params, grads, before)


BAD_DTYPES = [
    (np.int64, "integer"),
    (np.uint8, "unsigned integer"),
    (np.bool_, "boolean"),
    (np.complex128, "complex"),
    (object, "object"),
    (np.float16, "floating"),
]


@pytest.mark.parametrize("dtype, kind", BAD_DTYPES, ids=[k for _, k in BAD_DTYPES])
def test_params_with_an_unsupported_dtype(inputs, dtype, kind):
    params, grads, _ = inputs
    params = {**params, "b1": params["b1"].astype(dtype)}
    before = snapshot(params), snapshot(grads)
    with pytest.raises(
        fastgc.InvalidDtypeError,
        match=rf"params\['b1'\] has {kind} dtype {np.dtype(dtype)}; fastgc needs float32 or "
        "float64",
    ) as raised:
        fastgc.check(plain_cost, params, grads, engine="python", progress=False)
    if dtype is np.float16:
        assert "float16 is too coarse" in str(raised.value)
    assert_untouched(params, grads, before)


@pytest.mark.parametrize("dtype, kind", BAD_DTYPES, ids=[k for _, k in BAD_DTYPES])
def test_grads_with_an_unsupported_dtype(inputs, dtype, kind):
    params, grads, _ = inputs
    grads = {**grads, "dW1": grads["dW1"].astype(dtype)}
    before = snapshot(params), snapshot(grads)
    with pytest.raises(fastgc.InvalidDtypeError, match=rf"grads\['dW1'\] has {kind} dtype"):
        fastgc.check(plain_cost, params, grads, engine="python", progress=False)
    assert_untouched(params, grads, before)


def test_float32_grads_for_float64_params_are_accepted(inputs):
    params, grads, before = inputs
    grads32 = {k: v.astype(np.float32) for k, v in grads.items()}
    result = fastgc.check(plain_cost, params, grads32, engine="python", progress=False)
    assert result.layout.dtype == np.float64
    assert result.verdict != "bug"
    assert_untouched(params, grads, before)


def test_params_mixing_float32_and_float64_name_both(inputs):
    params, grads, _ = inputs
    params = {"W1": params["W1"].astype(np.float32), "b1": params["b1"]}
    before = snapshot(params), snapshot(grads)
    with pytest.raises(
        fastgc.InvalidDtypeError,
        match=r"params mix float dtypes: 'W1' is float32 but 'b1' is float64",
    ):
        fastgc.check(plain_cost, params, grads, engine="python", progress=False)
    assert_untouched(params, grads, before)


def test_ragged_lists_are_refused(inputs):
    params, grads, before = inputs
    ragged = {"W1": [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6]], "b1": params["b1"]}
    with pytest.raises(fastgc.InvalidInputError, match=r"params\['W1'\] cannot be read as an"):
        fastgc.check(plain_cost, ragged, grads, engine="python", progress=False)
    ragged_grads = {"dW1": [[0.0] * 4, [0.0] * 4, [0.0] * 3], "db1": grads["db1"]}
    with pytest.raises(fastgc.InvalidInputError, match=r"grads\['dW1'\] cannot be read as an"):
        fastgc.check(plain_cost, params, ragged_grads, engine="python", progress=False)
    assert_untouched(params, grads, before)


def test_nested_lists_of_numbers_are_one_array(inputs):
    params, grads, _ = inputs
    as_lists = {"W1": params["W1"].tolist(), "b1": params["b1"].tolist()}
    result = fastgc.check(plain_cost, as_lists, grads, engine="python", progress=False)
    assert result.layout.names == ("W1", "b1")
    assert result.layout.shapes == ((3, 4), (3, 1))
    assert result.verdict == "correct"


def test_parameter_names_must_be_unique_after_joining(inputs):
    params, grads, before = inputs
    clash = {"layer.W": params["W1"], "layer": {"W": params["W1"]}, "b1": params["b1"]}
    with pytest.raises(fastgc.InvalidInputError, match=r"more than one parameter .*'layer\.W'"):
        fastgc.flatten(clash)
    assert_untouched(params, grads, before)


@pytest.mark.parametrize(
    "value, where, shown",
    [
        (np.nan, ("W1", (1, 2)), "nan"),
        (np.inf, ("b1", (1, 0)), "inf"),
        (-np.inf, ("W1", (0, 0)), "-inf"),
    ],
)
def test_non_finite_params_name_parameter_and_index(engine, inputs, value, where, shown):
    params, grads, _ = inputs
    name, index = where
    params[name][index] = value
    params["b1"][2, 0] = np.nan  # a second, later one: the first is named, both are counted
    before = snapshot(params), snapshot(grads)
    cost, args = faulty(engine, OK)
    with pytest.raises(
        fastgc.InvalidInputError,
        match=rf"params\['{name}'\]\[{index[0]}, {index[1]}\] is {shown}: parameters must be "
        r"finite \(2 non-finite value\(s\) in all\)",
    ):
        fastgc.check(cost, params, grads, args=args, engine=engine.engine, progress=False)
    assert_untouched(params, grads, before)


def test_non_finite_flat_theta_names_the_index():
    theta = np.array([0.5, np.nan, 1.0])
    before = snapshot(theta)
    with pytest.raises(fastgc.InvalidInputError, match=r"\[1\] is nan"):
        fastgc.check(lambda t: float(t.sum()), theta, np.ones(3), engine="python",
                     progress=False)
    assert snapshot(theta) == before


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "params is empty"),
        ([], "params is empty"),
        ({"a": {}}, "params is empty"),
        (np.array([]), "params hold no values"),
        ({"W1": np.empty((0, 3)), "b1": np.empty(0)}, "params hold no values"),
    ],
    ids=["empty-dict", "empty-list", "dict-of-empty-dict", "empty-array", "dict-of-empty"],
)
def test_empty_params(params, message):
    before = snapshot(params)
    with pytest.raises(fastgc.InvalidInputError, match=message):
        fastgc.check(lambda p: 0.0, params, params, engine="python", progress=False)
    assert snapshot(params) == before


@pytest.mark.parametrize("value", [None, "W1", b"W1"], ids=["None", "str", "bytes"])
def test_a_parameter_that_is_not_an_array(inputs, value):
    params, grads, _ = inputs
    with pytest.raises(fastgc.InvalidDtypeError, match=r"params\['b1'\] is "):
        fastgc.check(plain_cost, {**params, "b1": value}, grads, engine="python",
                     progress=False)


# --------------------------------------------------------------------------------------------
# Options.


def check_option(inputs, **options):
    params, grads, before = inputs
    try:
        return fastgc.check(plain_cost, params, grads, **{"engine": "python", "progress": False,
                                                          **options})
    finally:
        assert_untouched(params, grads, before)


@pytest.mark.parametrize("eps", [0.0, -1e-7, math.nan, math.inf, -math.inf])
def test_eps_not_positive_and_finite(inputs, eps):
    with pytest.raises(fastgc.InvalidInputError, match=r"eps must be positive and finite"):
        check_option(inputs, eps=eps)


@pytest.mark.parametrize("eps", ["1e-7", True, [1e-7], 1j])
def test_eps_not_a_number(inputs, eps):
    with pytest.raises(fastgc.InvalidInputError, match=r"eps must be a positive float, got"):
        check_option(inputs, eps=eps)


@pytest.mark.parametrize(
    "thresholds",
    [(1e-3, 1e-7), (1e-3, 1e-3), (-1e-7, 1e-3), (0.0, 1e-3), (1e-7, math.inf),
     (math.nan, 1e-3), (1e-7,), (1e-7, 1e-3, 1e-1), 1e-7, None, ("a", "b")],
    ids=["reversed", "equal", "negative", "zero", "inf", "nan", "one", "three", "scalar",
         "None", "strings"],
)
def test_bad_thresholds(inputs, thresholds):
    with pytest.raises(fastgc.InvalidInputError, match=r"thresholds must"):
        check_option(inputs, thresholds=thresholds)


@pytest.mark.parametrize(
    "n_threads, message",
    [
        (0, r"n_threads must not be 0"),
        (1.5, r"n_threads must be None or an int, got float 1.5"),
        ("2", r"n_threads must be None or an int, got str '2'"),
        (True, r"n_threads must be None or an int, got bool True"),
        (-10_000, r"n_threads=-10000 counts back past the"),
    ],
)
def test_bad_n_threads(inputs, n_threads, message):
    with pytest.raises(fastgc.InvalidInputError, match=message):
        check_option(inputs, n_threads=n_threads)


@pytest.mark.parametrize("engine_name", ["fortran", "", 3])
def test_unknown_engine(inputs, engine_name):
    with pytest.raises(fastgc.InvalidInputError, match=r"engine must be one of"):
        check_option(inputs, engine=engine_name)


def test_numba_engine_with_a_plain_python_cost_says_what_to_pass(inputs):
    require_engine("numba")
    with pytest.raises(
        fastgc.EngineError,
        match=r"engine='numba' runs a cost compiled with @numba.njit .* this cost is a Python "
        r"callable\. Pass engine='cython' or engine='python'",
    ):
        check_option(inputs, engine="numba")


def test_numba_engine_with_a_c_cost_says_what_to_pass(inputs):
    require_engine("numba")
    params, grads, before = inputs
    with pytest.raises(fastgc.EngineError, match=r"this cost is a C-level function"):
        fastgc.check(c_cost(), params, grads, args=(np.array([OK]),), engine="numba",
                     progress=False)
    assert_untouched(params, grads, before)


def test_reseed_with_a_parallel_engine(inputs):
    with pytest.raises(fastgc.EngineError, match=r"reseed .* pass engine='python'"):
        check_option(inputs, engine="cython", reseed=lambda: None)


@pytest.mark.parametrize("args", [[X], X, None, "X"], ids=["list", "array", "None", "str"])
def test_args_not_a_tuple(inputs, args):
    with pytest.raises(fastgc.InvalidInputError, match=r"args must be a tuple .* args=\(X,\)"):
        check_option(inputs, args=args)


@pytest.mark.parametrize("progress", [1, 0, "yes", np.ones(1)], ids=["1", "0", "str", "array"])
def test_progress_not_a_bool(inputs, progress):
    with pytest.raises(fastgc.InvalidInputError, match=r"progress must be None, True or False"):
        check_option(inputs, progress=progress)


@pytest.mark.parametrize("cost", [None, "cost", 3.0, np.ones(3)], ids=["None", "str", "float",
                                                                       "array"])
def test_cost_not_callable(inputs, cost):
    params, grads, before = inputs
    with pytest.raises(fastgc.InvalidInputError, match=r"cost must be callable"):
        fastgc.check(cost, params, grads, engine="python", progress=False)
    assert_untouched(params, grads, before)


@pytest.mark.parametrize("hook", ["signature", "reseed"])
def test_hooks_not_callable(inputs, hook):
    with pytest.raises(fastgc.InvalidInputError, match=rf"{hook} must be callable, got str"):
        check_option(inputs, **{hook: "relu masks"})


# --------------------------------------------------------------------------------------------
# Ctrl-C from inside the cost.


@pytest.mark.parametrize("engine_name, n_threads", [("python", 1), ("cython", 2), ("cython", 1)])
def test_keyboard_interrupt_leaves_everything_clean(inputs, engine_name, n_threads):
    require_engine(engine_name)
    from threadpoolctl import threadpool_info

    params, grads, before = inputs
    reference = fastgc.check(plain_cost, params, grads, engine=engine_name, n_threads=n_threads,
                             progress=False)
    calls = 0

    def interrupted_cost(p):
        nonlocal calls
        calls += 1
        if calls == 7:
            raise KeyboardInterrupt
        return plain_cost(p)

    numba_threads = None
    if engine_status_ok("numba"):
        import numba

        numba_threads = numba.get_num_threads()
    fastgc_threads = fastgc.get_num_threads()
    pools = threadpool_info()

    with pytest.raises(KeyboardInterrupt, match=r"fastgc check interrupted after \d+ of 15"):
        fastgc.check(interrupted_cost, params, grads, engine=engine_name, n_threads=n_threads,
                     progress=False)
    assert calls >= 7
    assert_untouched(params, grads, before)
    assert fastgc.get_num_threads() == fastgc_threads
    assert threadpool_info() == pools
    if numba_threads is not None:
        import numba

        assert numba.get_num_threads() == numba_threads

    again = fastgc.check(interrupted_cost, params, grads, engine=engine_name,
                         n_threads=n_threads, progress=False)
    assert again.verdict == reference.verdict == "correct"
    np.testing.assert_array_equal(again.approx, reference.approx)
    assert again.difference == reference.difference
    assert_untouched(params, grads, before)


def engine_status_ok(name: str) -> bool:
    from fastgc._engines import engine_status

    return engine_status(name) is None


# --------------------------------------------------------------------------------------------
# Thread counts.


@pytest.fixture
def clean_thread_env(monkeypatch):
    for variable in ("FASTGC_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_thread_count_none_positive_and_negative(clean_thread_env):
    maximum = usable_threads()
    assert maximum >= 1
    assert resolve_n_threads(None) == maximum
    assert fastgc.get_num_threads() == maximum
    assert resolve_n_threads(1) == 1
    assert resolve_n_threads(np.int64(1)) == 1
    assert resolve_n_threads(maximum) == maximum
    assert resolve_n_threads(-1) == maximum
    assert resolve_n_threads(-maximum) == 1
    with pytest.raises(fastgc.InvalidInputError, match=rf"n_threads=-{maximum + 1} counts back"):
        resolve_n_threads(-(maximum + 1))


@pytest.mark.parametrize("bad", [0, 1.5, "2", True, False, 2.0])
def test_thread_count_refused(clean_thread_env, bad):
    with pytest.raises(fastgc.InvalidInputError, match=r"n_threads must"):
        resolve_n_threads(bad)
    with pytest.raises(fastgc.InvalidInputError, match=r"n_threads must"):
        fastgc.set_num_threads(bad)
    with pytest.raises(fastgc.InvalidInputError, match=r"n_threads must"):
        with fastgc.threads(bad):
            pass  # pragma: no cover
    assert fastgc.get_num_threads() == usable_threads()


def test_thread_count_above_the_maximum_is_clamped_with_a_warning(clean_thread_env):
    maximum = usable_threads()
    with pytest.warns(fastgc.FastGCWarning, match=rf"n_threads={maximum + 3} is more than the "
                                                  rf"{maximum} usable"):
        assert resolve_n_threads(maximum + 3) == maximum


def test_check_clamps_threads_with_a_warning_pointing_at_the_caller(clean_thread_env, inputs):
    require_engine("cython")
    params, grads, before = inputs
    maximum = usable_threads()
    with pytest.warns(fastgc.FastGCWarning, match="usable") as caught:
        result = fastgc.check(plain_cost, params, grads, engine="cython",
                              n_threads=maximum + 1, progress=False)
    assert result.n_threads == maximum
    assert caught[0].filename == __file__
    assert_untouched(params, grads, before)


def test_thread_limit_from_the_environment(clean_thread_env):
    clean_thread_env.setenv("OMP_NUM_THREADS", "1")
    assert usable_threads() == 1
    assert resolve_n_threads(None) == 1
    assert resolve_n_threads(-1) == 1
    clean_thread_env.delenv("OMP_NUM_THREADS")
    clean_thread_env.setenv("NUMBA_NUM_THREADS", "1")
    assert usable_threads() == 1


def test_fastgc_num_threads_variable(clean_thread_env):
    maximum = usable_threads()
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "1")
    assert fastgc.get_num_threads() == 1
    assert resolve_n_threads(None) == 1
    assert resolve_n_threads(-1) == maximum  # an explicit count wins over the variable
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "-1")
    assert fastgc.get_num_threads() == maximum
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "  ")
    assert fastgc.get_num_threads() == maximum
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "two")
    with pytest.raises(fastgc.InvalidInputError, match=r"FASTGC_NUM_THREADS must be an integer, "
                                                       r"got 'two'"):
        fastgc.get_num_threads()
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "0")
    with pytest.raises(fastgc.InvalidInputError, match=r"FASTGC_NUM_THREADS must not be 0"):
        fastgc.get_num_threads()


def test_set_num_threads_default_and_its_precedence(clean_thread_env):
    maximum = usable_threads()
    clean_thread_env.setenv("FASTGC_NUM_THREADS", str(maximum))
    fastgc.set_num_threads(1)
    assert fastgc.get_num_threads() == 1  # the default wins over the variable
    assert resolve_n_threads(-1) == maximum  # an explicit count wins over the default
    fastgc.set_num_threads(-1)
    assert fastgc.get_num_threads() == maximum
    fastgc.set_num_threads(None)
    assert fastgc.get_num_threads() == maximum


def test_threads_context_manager_restores_even_on_error(clean_thread_env):
    maximum = usable_threads()
    fastgc.set_num_threads(-1)
    with fastgc.threads(1) as count:
        assert count == 1
        assert fastgc.get_num_threads() == 1
        with fastgc.threads(None) as inner:
            assert inner == maximum
        assert fastgc.get_num_threads() == 1
    assert fastgc.get_num_threads() == maximum
    with pytest.raises(RuntimeError, match="inside"):
        with fastgc.threads(1):
            raise RuntimeError("inside")
    assert fastgc.get_num_threads() == maximum
    with pytest.raises(fastgc.InvalidInputError, match="counts back past"):
        with fastgc.threads(-(maximum + 1)):
            pass  # pragma: no cover
    assert fastgc.get_num_threads() == maximum
