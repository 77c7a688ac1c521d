"""Flattening parameter structures into theta and back (``fastgc/_layout.py``), ``fastgc.check``
on each structure, and the params and grads it refuses.

Every refusal must raise an exception of fastgc's own whose message names the parameter (and
the index where there is one), and must leave the caller's params and grads byte for byte as
they were.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgc
from conftest import assert_untouched, require_engine, snapshot
from costs import OK, faulty, plain_cost
from fastgc._layout import flatten_like

pytestmark = pytest.mark.usefixtures("no_thread_default")


def every_index_round_trips(layout: fastgc.Layout) -> None:
    """locate and flat_index are inverse over all of theta."""
    for i in range(layout.size):
        name, index = layout.locate(i)
        assert layout.flat_index(name, index) == i
        block = layout.block(name)
        assert block.start <= i < block.stop
        assert int(layout.block_of(np.array([i]))[0]) == layout.names.index(name)


def test_dict_round_trip():
    W1 = np.arange(6.0).reshape(2, 3)
    b1 = np.array([[10.0], [11.0]])
    W2 = np.array([[20.0, 21.0]])
    params = {"W1": W1, "b1": b1, "W2": W2}
    theta, layout = fastgc.flatten(params)
    np.testing.assert_array_equal(theta, [0, 1, 2, 3, 4, 5, 10, 11, 20, 21])
    assert layout.names == ("W1", "b1", "W2")
    assert layout.shapes == ((2, 3), (2, 1), (1, 2))
    np.testing.assert_array_equal(layout.offsets, [0, 6, 8, 10])
    assert layout.offsets.dtype == np.int64
    assert layout.size == 10 and not layout.is_flat
    assert layout.block("b1") == slice(6, 8)
    assert layout.locate(4) == ("W1", (1, 1))
    assert layout.locate(7) == ("b1", (1, 0))
    assert layout.locate(9) == ("W2", (0, 1))
    assert layout.flat_index("W2", (0, 1)) == 9
    np.testing.assert_array_equal(layout.block_of(np.array([0, 5, 6, 9])), [0, 0, 1, 2])
    back = layout.unflatten(theta)
    assert list(back) == ["W1", "b1", "W2"]
    for name, value in params.items():
        np.testing.assert_array_equal(back[name], value)
        assert back[name].shape == value.shape
    assert repr(layout) == "Layout(W1[2, 3], b1[2, 1], W2[1, 2]; n=10, dtype=float64)"
    every_index_round_trips(layout)


def test_nested_dicts_join_names_with_dots():
    params = {
        "layer1": {"W": np.ones((2, 2)), "b": np.full(2, 2.0)},
        "layer2": {"W": np.full((1, 2), 3.0), "extra": {"gain": np.array(4.0)}},
    }
    theta, layout = fastgc.flatten(params)
    assert layout.names == ("layer1.W", "layer1.b", "layer2.W", "layer2.extra.gain")
    assert layout.shapes == ((2, 2), (2,), (1, 2), ())
    np.testing.assert_array_equal(theta, [1, 1, 1, 1, 2, 2, 3, 3, 4])
    assert layout.locate(5) == ("layer1.b", (1,))
    assert layout.locate(8) == ("layer2.extra.gain", ())
    assert layout.flat_index("layer2.extra.gain") == 8
    back = layout.unflatten(theta)
    assert set(back) == {"layer1", "layer2"}
    assert list(back["layer2"]) == ["W", "extra"]
    np.testing.assert_array_equal(back["layer1"]["b"], params["layer1"]["b"])
    assert back["layer2"]["extra"]["gain"].shape == ()
    every_index_round_trips(layout)


@pytest.mark.parametrize("container", [list, tuple])
def test_lists_and_tuples_name_items_by_position(container):
    params = container([np.arange(3.0), np.ones((2, 2)), [np.zeros(1), np.full(2, 5.0)]])
    theta, layout = fastgc.flatten(params)
    assert layout.names == ("0", "1", "2.0", "2.1")
    np.testing.assert_array_equal(theta, [0, 1, 2, 1, 1, 1, 1, 0, 5, 5])
    back = layout.unflatten(theta)
    assert type(back) is container
    assert type(back[2]) is list
    np.testing.assert_array_equal(back[1], params[1])
    assert layout.locate(4) == ("1", (0, 1))
    every_index_round_trips(layout)


def test_single_1d_theta():
    params = np.linspace(0.0, 1.0, 5)
    theta, layout = fastgc.flatten(params)
    assert layout.is_flat
    assert layout.names == ("theta",) and layout.shapes == ((5,),)
    np.testing.assert_array_equal(theta, params)
    assert layout.locate(3) == ("theta", (3,))
    assert layout.flat_index("theta", 3) == 3
    back = layout.unflatten(theta)
    assert isinstance(back, np.ndarray) and back.shape == (5,)
    assert np.shares_memory(back, theta)
    every_index_round_trips(layout)


def test_single_2d_array():
    params = np.arange(12.0).reshape(3, 4)
    theta, layout = fastgc.flatten(params)
    assert layout.is_flat and layout.shapes == ((3, 4),)
    np.testing.assert_array_equal(theta, np.arange(12.0))
    assert layout.locate(5) == ("theta", (1, 1))
    back = layout.unflatten(theta)
    assert back.shape == (3, 4)
    np.testing.assert_array_equal(back, params)
    every_index_round_trips(layout)


def test_unflatten_returns_views_into_theta():
    params = {"W": np.zeros((2, 3)), "b": {"c": np.zeros(2)}}
    theta, layout = fastgc.flatten(params)
    views = layout.unflatten(theta)
    assert np.shares_memory(views["W"], theta) and np.shares_memory(views["b"]["c"], theta)
    views["W"][1, 2] = 7.0
    assert theta[layout.flat_index("W", (1, 2))] == 7.0
    theta[layout.flat_index("b.c", 1)] = -3.0
    assert views["b"]["c"][1] == -3.0
    assert params["W"][1, 2] == 0.0 and params["b"]["c"][1] == 0.0  # theta was a copy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_theta_is_a_copy_in_the_params_own_dtype(dtype):
    params = {"W": np.ones((2, 2), dtype=dtype), "b": np.zeros(2, dtype=dtype)}
    before = snapshot(params)
    theta, layout = fastgc.flatten(params)
    assert theta.dtype == dtype and layout.dtype == dtype
    assert theta.flags.c_contiguous and theta.flags.writeable
    assert not any(np.shares_memory(theta, value) for value in params.values())
    theta[:] = 5.0
    assert snapshot(params) == before
    assert layout.unflatten(theta)["W"].dtype == dtype
    # Gradients are always compared in float64, whatever the parameters' dtype.
    dtheta = flatten_like({"dW": np.ones((2, 2), dtype=np.float32), "db": np.zeros(2)}, layout)
    assert dtheta.dtype == np.float64


def test_fortran_ordered_and_strided_inputs_flatten_in_c_order():
    base = np.arange(24.0).reshape(4, 6)
    fortran = np.asfortranarray(base[:2, :3])
    strided = base[::2, 1::2]
    transposed = base[:3, :2].T
    params = {"F": fortran, "S": strided, "T": transposed}
    assert not fortran.flags.c_contiguous and not strided.flags.contiguous
    theta, layout = fastgc.flatten(params)
    expected = np.concatenate([a.ravel(order="C") for a in params.values()])
    np.testing.assert_array_equal(theta, expected)
    back = layout.unflatten(theta)
    for name, value in params.items():
        np.testing.assert_array_equal(back[name], value)
        assert back[name].flags.c_contiguous
    grads = {"dF": fortran * 2, "S": strided * 2, "dT": transposed * 2}
    np.testing.assert_array_equal(flatten_like(grads, layout), 2 * expected)


def test_grads_match_with_d_prefix_at_every_level():
    params = {"layer1": {"W": np.ones((2, 2)), "b": np.ones(2)}, "out": np.ones(3)}
    _, layout = fastgc.flatten(params)
    expected = np.arange(9.0)
    W, b, out = expected[:4].reshape(2, 2), expected[4:6], expected[6:]
    for grads in (
        {"layer1": {"W": W, "b": b}, "out": out},
        {"dlayer1": {"dW": W, "db": b}, "dout": out},
        {"layer1": {"dW": W, "b": b}, "dout": out},
    ):
        np.testing.assert_array_equal(flatten_like(grads, layout), expected)
    np.testing.assert_array_equal(flatten_like(expected, layout), expected)  # flat dtheta
    with pytest.raises(fastgc.InvalidInputError, match=r"grads\['layer1'\] has no gradient for "
                                                       r"parameter 'layer1\.b'"):
        flatten_like({"layer1": {"dW": W}, "out": out}, layout)
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"grads\['dlayer1'\]\['db'\] has shape \(3,\)"):
        flatten_like({"dlayer1": {"dW": W, "db": np.ones(3)}, "out": out}, layout)


def test_gradient_nans_are_kept_not_refused():
    _, layout = fastgc.flatten({"W": np.ones(3)})
    dtheta = flatten_like({"dW": np.array([1.0, np.nan, np.inf])}, layout)
    assert np.isnan(dtheta[1]) and np.isinf(dtheta[2])


def test_layout_lookups_refuse_bad_names_and_indices():
    theta, layout = fastgc.flatten({"W": np.ones((2, 3)), "s": np.array(1.0)})
    with pytest.raises(fastgc.InvalidInputError, match=r"no parameter named 'V'; the parameters "
                                                       r"are \['W', 's'\]"):
        layout.block("V")
    with pytest.raises(fastgc.InvalidInputError, match=r"no parameter named 'V'"):
        layout.flat_index("V", (0, 0))
    for bad in (-1, 7):
        with pytest.raises(fastgc.InvalidInputError, match=r"flat_index must be in \[0, 7\)"):
            layout.locate(bad)
    for index in ((2, 0), (0, 3), (1,), (0, 0, 0), (-1, 0)):
        with pytest.raises(fastgc.InvalidInputError,
                           match=r"is not within params\['W'\] of shape \(2, 3\)"):
            layout.flat_index("W", index)
    with pytest.raises(fastgc.InvalidInputError, match=r"params\['s'\] of shape \(\)"):
        layout.flat_index("s", (4,))
    assert layout.flat_index("s") == 6 and layout.locate(6) == ("s", ())
    for wrong in (theta[:-1], theta.reshape(7, 1), np.zeros(8)):
        with pytest.raises(fastgc.InvalidInputError, match=r"theta must be a 1-D array of "
                                                           r"length 7"):
            layout.unflatten(wrong)


# --------------------------------------------------------------------------------------------
# fastgc.check on each structure: the cost receives the structure it was given.

rng = np.random.default_rng(11)
X = rng.standard_normal((3, 5))
W_VALUE = rng.standard_normal((2, 3)) * 0.7
B_VALUE = rng.standard_normal((2, 1)) * 0.2


def forward(W, b):
    return float(np.sum(np.tanh(W @ X + b) ** 2) / X.shape[1])


def backward(W, b):
    A = np.tanh(W @ X + b)
    dZ = 2 * A * (1 - A**2) / X.shape[1]
    return dZ @ X.T, dZ.sum(axis=1, keepdims=True)


def flat_forward(theta):
    return forward(theta[:6].reshape(2, 3), theta[6:].reshape(2, 1))


def flat_backward(theta):
    dW, db = backward(theta[:6].reshape(2, 3), theta[6:].reshape(2, 1))
    return np.concatenate([dW.ravel(), db.ravel()])


STRUCTURES = {
    # name: (params, cost of the structure, its gradients as a function of params, the names)
    "dict": (
        lambda: {"W": W_VALUE.copy(), "b": B_VALUE.copy()},
        lambda p: forward(p["W"], p["b"]),
        lambda p: dict(zip(("dW", "db"), backward(p["W"], p["b"]))),
        ("W", "b"),
    ),
    "nested": (
        lambda: {"layer1": {"W": W_VALUE.copy(), "b": B_VALUE.copy()}},
        lambda p: forward(p["layer1"]["W"], p["layer1"]["b"]),
        lambda p: {"dlayer1": dict(zip(("dW", "db"), backward(p["layer1"]["W"],
                                                              p["layer1"]["b"])))},
        ("layer1.W", "layer1.b"),
    ),
    "list": (
        lambda: [W_VALUE.copy(), B_VALUE.copy()],
        lambda p: forward(p[0], p[1]),
        lambda p: list(backward(p[0], p[1])),
        ("0", "1"),
    ),
    "tuple": (
        lambda: (W_VALUE.copy(), B_VALUE.copy()),
        lambda p: forward(*p),
        lambda p: tuple(backward(*p)),
        ("0", "1"),
    ),
    "theta-1d": (
        lambda: np.concatenate([W_VALUE.ravel(), B_VALUE.ravel()]),
        flat_forward,
        flat_backward,
        ("theta",),
    ),
    "array-2d": (
        lambda: np.concatenate([W_VALUE, B_VALUE], axis=1),  # columns 0-2 are W, column 3 b
        lambda p: forward(p[:, :3], p[:, 3:]),
        lambda p: np.concatenate(backward(p[:, :3], p[:, 3:]), axis=1),
        ("theta",),
    ),
}


def break_one(grads):
    """The same gradients with one component of the first parameter doubled."""
    if isinstance(grads, np.ndarray):
        broken = grads.copy()
        broken.reshape(-1)[1] *= 2.0
        return broken
    if isinstance(grads, dict):
        key = next(iter(grads))
        return {**grads, key: break_one(grads[key])}
    return type(grads)([break_one(grads[0]), *grads[1:]])


def structure_kind(value):
    if isinstance(value, dict):
        return {key: structure_kind(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(structure_kind(item) for item in value)
    return (type(value).__name__, np.shape(value))


@pytest.mark.parametrize("engine_name", ["python", "cython"])
@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_check_accepts_each_structure_end_to_end(structure, engine_name):
    require_engine(engine_name)
    make, cost_of, grads_of, names = STRUCTURES[structure]
    params = make()
    grads = grads_of(params)
    before = snapshot(params), snapshot(grads)
    seen = []

    def cost(p):
        seen.append(structure_kind(p))
        return cost_of(p)

    result = fastgc.check(cost, params, grads, engine=engine_name, progress=False)
    assert result.verdict == "correct", str(result)
    assert result.layout.names == names
    assert list(result.per_parameter) == list(names)
    assert seen and all(kind == structure_kind(params) for kind in seen)
    numeric = result.numerical_grads
    assert structure_kind(numeric) == structure_kind(params)

    buggy = fastgc.check(cost, params, break_one(grads), engine=engine_name, progress=False)
    assert buggy.verdict == "bug"
    top = buggy.worst(1)[0]
    assert top.name == names[0] and top.flat_index == 1
    assert top.index == buggy.layout.locate(1)[1]

    # A callable gradient receives the same structure as the cost.
    assert fastgc.check(cost, params, grads_of, engine=engine_name, progress=False).passed
    assert (snapshot(params), snapshot(grads)) == before


def test_check_accepts_a_flat_dtheta_for_structured_params():
    make, cost_of, grads_of, _ = STRUCTURES["nested"]
    params = make()
    grads = grads_of(params)["dlayer1"]
    dtheta = np.concatenate([grads["dW"].ravel(), grads["db"].ravel()])
    result = fastgc.check(cost_of, params, dtheta, engine="python", progress=False)
    assert result.verdict == "correct"


def test_float32_structure_stays_float32_end_to_end():
    params = {"W": W_VALUE.astype(np.float32), "b": B_VALUE.astype(np.float32)}
    before = snapshot(params)
    seen = set()

    def cost(p):
        seen.update(str(value.dtype) for value in p.values())
        return forward(p["W"].astype(np.float64), p["b"].astype(np.float64))

    grads = dict(zip(("dW", "db"), backward(params["W"].astype(np.float64),
                                            params["b"].astype(np.float64))))
    result = fastgc.check(cost, params, grads, engine="python", progress=False)
    assert seen == {"float32"}
    assert result.layout.dtype == np.float32
    assert result.numerical_grads["W"].dtype == np.float32
    assert result.verdict == "correct"
    assert snapshot(params) == before


# --------------------------------------------------------------------------------------------
# Property: any dict of shapes round-trips.

NAMES = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
SHAPES = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
LEAVES = st.dictionaries(NAMES, SHAPES, min_size=1, max_size=4)
TREES = st.dictionaries(NAMES, st.one_of(SHAPES, LEAVES), min_size=1, max_size=4)


def build(tree, counter):
    params = {}
    for key, spec in tree.items():
        if isinstance(spec, dict):
            params[key] = build(spec, counter)
        else:
            size = int(np.prod(spec, dtype=np.int64))
            params[key] = np.arange(counter[0], counter[0] + size, dtype=np.float64).reshape(spec)
            counter[0] += size
    return params


def leaves(params, prefix=""):
    for key, value in params.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@settings(max_examples=60, deadline=None, database=None)
@given(tree=TREES, fortran=st.booleans())
def test_random_dicts_round_trip(tree, fortran):
    params = build(tree, [0])
    named = list(leaves(params))
    if len({name for name, _ in named}) != len(named):  # "a.b" and {"a": {"b"}} clash
        with pytest.raises(fastgc.InvalidInputError, match="more than one parameter"):
            fastgc.flatten(params)
        return
    if fortran:
        params = {key: np.asarray(value, order="F") if isinstance(value, np.ndarray) else value
                  for key, value in params.items()}
    theta, layout = fastgc.flatten(params)
    # Values were numbered in flattening order, so theta is 0, 1, ..., n - 1.
    np.testing.assert_array_equal(theta, np.arange(layout.size, dtype=np.float64))
    assert layout.names == tuple(name for name, _ in named)
    assert layout.shapes == tuple(value.shape for _, value in named)
    back = dict(leaves(layout.unflatten(theta)))
    for name, value in named:
        np.testing.assert_array_equal(back[name], value)
        assert np.shares_memory(back[name], theta)
        for index in np.ndindex(value.shape):
            i = layout.flat_index(name, index)
            assert theta[i] == value[index]
            assert layout.locate(i) == (name, index)
    every_index_round_trips(layout)


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


# --------------------------------------------------------------------------------------------
# Parameters and gradients that are not float arrays, or not finite, or empty.


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
# Array types whose meaning a plain ndarray would change.


def test_a_masked_parameter_with_masked_entries_is_refused(inputs):
    params, grads, before = inputs
    mask = np.zeros(params["W1"].shape, dtype=bool)
    mask[2, 1] = True
    masked = {**params, "W1": np.ma.masked_array(params["W1"], mask=mask)}
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"params\['W1'\] is a masked array with masked entries "
                       r"\(the first at \[2, 1\]\)"):
        fastgc.check(plain_cost, masked, grads, engine="python", progress=False)
    masked_grads = {**grads, "db1": np.ma.masked_array(grads["db1"], mask=[[0], [1], [0]])}
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"grads\['db1'\] is a masked array with masked entries"):
        fastgc.check(plain_cost, params, masked_grads, engine="python", progress=False)
    assert_untouched(params, grads, before)


def test_a_masked_array_with_nothing_masked_is_its_values(inputs):
    params, grads, _ = inputs
    plain = fastgc.check(plain_cost, params, grads, engine="python", progress=False)
    unmasked = {name: np.ma.masked_array(value) for name, value in params.items()}
    result = fastgc.check(plain_cost, unmasked, grads, engine="python", progress=False)
    np.testing.assert_array_equal(result.approx, plain.approx)


def matrix(array):
    with warnings.catch_warnings():  # NumPy discourages the class; users still pass it
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.matrix(array)


def test_a_matrix_parameter_is_refused_naming_it(inputs):
    params, grads, before = inputs
    as_matrix = {**params, "b1": matrix(params["b1"])}
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"params\['b1'\] is a numpy.matrix: .* `\*` multiplies "
                       "elementwise"):
        fastgc.check(plain_cost, as_matrix, grads, engine="python", progress=False)
    with pytest.raises(fastgc.InvalidInputError, match=r"^params is a numpy.matrix"):
        fastgc.flatten(matrix(params["W1"]))
    assert_untouched(params, grads, before)


def test_matrix_gradients_are_read_as_their_values(inputs):
    # Only the parameters' type changes what the cost computes; a gradient is just numbers.
    params, grads, _ = inputs
    plain = fastgc.check(plain_cost, params, grads, engine="python", progress=False)
    result = fastgc.check(plain_cost, params, {k: matrix(v) for k, v in grads.items()},
                          engine="python", progress=False)
    assert result.verdict == plain.verdict == "correct"
    assert result.difference == plain.difference
