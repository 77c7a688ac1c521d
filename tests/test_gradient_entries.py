"""Gradient dicts with intermediates (dZ3, dA2, ...) and the zero-numeric-gradient diagnosis."""

from __future__ import annotations

import numpy as np
import pytest

import fastgc
from fastgc._layout import flatten_gradients, flatten_like


def layout_of(params):
    return fastgc.flatten(params)[1]


def test_course_intermediates_are_ignored_and_named():
    params = {"W1": np.ones((2, 2)), "b1": np.ones(2), "W2": np.ones((1, 2)), "b2": np.ones(1)}
    grads = {"dZ2": 1.0, "dW2": np.zeros((1, 2)), "db2": np.zeros(1), "dA1": np.ones(5),
             "dZ1": None, "dW1": np.zeros((2, 2)), "db1": np.zeros(2)}
    dtheta, ignored = flatten_gradients(grads, layout_of(params))
    assert ignored == ("dZ2", "dA1", "dZ1")  # in the order of the gradient dict
    assert dtheta.shape == (9,)
    np.testing.assert_array_equal(flatten_like(grads, layout_of(params)), dtheta)


def test_nested_intermediates_are_named_with_dots():
    params = {"layer": {"W": np.ones(2)}, "out": np.ones(1)}
    grads = {"layer": {"dW": np.ones(2), "dZ": 0.0}, "dout": np.ones(1), "cache": object()}
    assert flatten_gradients(grads, layout_of(params))[1] == ("layer.dZ", "cache")


def test_missing_gradient_names_missing_and_unmatched_entries():
    params = {"W1": np.ones(2), "b1": np.ones(1), "W2": np.ones(1)}
    with pytest.raises(
        fastgc.InvalidInputError,
        match=r"grads has no gradient for parameter 'b1' \(expected key 'b1' or 'db1'\); "
              r"nor for 'W2' \('W2' or 'dW2'\); entries that match no parameter: "
              r"\['dZ1', 'dA1'\]",
    ):
        flatten_gradients({"dW1": np.ones(2), "dZ1": 3.0, "dA1": 4.0}, layout_of(params))


@pytest.mark.parametrize("order", [("t", "dt"), ("dt", "t")])
@pytest.mark.parametrize("keys", [("t", "dt"), ("dt", "ddt")])
def test_parameters_named_t_and_dt(order, keys):
    sizes = {"t": 2, "dt": 3}
    params = {name: np.zeros(sizes[name]) for name in order}
    t_key, dt_key = keys
    grads = {t_key: np.full(2, 1.0), dt_key: np.full(3, 2.0)}
    dtheta, ignored = flatten_gradients(grads, layout_of(params))
    expected = {"t": [1.0] * 2, "dt": [2.0] * 3}
    np.testing.assert_array_equal(dtheta, np.concatenate([expected[name] for name in order]))
    assert ignored == ()


def test_two_candidate_entries_for_one_parameter_are_refused():
    params = {"t": np.zeros(2), "dt": np.zeros(3)}
    with pytest.raises(fastgc.InvalidInputError, match=r"has both 't' and 'dt'"):
        flatten_gradients({"t": np.ones(2), "dt": np.ones(3), "ddt": np.ones(3)},
                          layout_of(params))
    with pytest.raises(fastgc.InvalidInputError, match=r"has both 'W' and 'dW'"):
        flatten_gradients({"W": np.ones(2), "dW": np.ones(2)}, layout_of({"W": np.ones(2)}))


def test_check_lists_ignored_entries_in_result_report_and_dict():
    w = np.array([0.5, -1.0, 2.0])
    result = fastgc.check(lambda p: float(np.sum(p["w"] ** 3)), {"w": w},
                          {"dw": 3 * w**2, "dz": np.ones(4), "da": 0.0}, progress=False)
    assert result.verdict == "correct"
    assert result.ignored_gradients == ("dz", "da")
    assert "ignored gradient entries (they match no parameter): dz, da" in str(result)
    assert result.to_dict()["ignored_gradients"] == ["dz", "da"]


# --- a numeric gradient that is zero everywhere ----------------------------------------------

X = np.linspace(-1.0, 1.0, 12).reshape(3, 4)


def forward(p):
    return float(np.sum(np.tanh(p["W"] @ X + p["b"]) ** 2))


def backward(p):
    A = np.tanh(p["W"] @ X + p["b"])
    dZ = 2 * A * (1 - A**2)
    return {"dW": dZ @ X.T, "db": dZ.sum(axis=1, keepdims=True)}


def make_params():
    rng = np.random.default_rng(3)
    return {"W": rng.standard_normal((2, 3)), "b": rng.standard_normal((2, 1))}


def test_a_cost_reading_a_stale_copy_is_diagnosed_in_words():
    params = make_params()
    stale = {name: value.copy() for name, value in params.items()}
    result = fastgc.check(lambda p: forward(stale), params, backward(params), progress=False)
    assert result.verdict == "bug"
    text = str(result)
    assert "note: the numeric gradient is zero everywhere" in text
    assert "reads a copy made before the check" in text
    assert "float32" in text
    assert result.to_dict()["notes"][0].startswith("the numeric gradient is zero everywhere")


def test_one_parameter_read_from_a_stale_copy_is_named():
    params = make_params()
    stale_b = params["b"].copy()
    result = fastgc.check(lambda p: forward({"W": p["W"], "b": stale_b}), params,
                          backward(params), progress=False)
    assert result.per_parameter["W"].verdict == "correct"
    assert "note: the numeric gradient of b is zero everywhere, while backprop's is not" in str(
        result)


def test_a_float32_computation_that_rounds_every_change_away_is_diagnosed():
    params = make_params()
    X32 = X.astype(np.float32)

    def cost32(p):  # float64 parameters, every operation in float32
        A = np.tanh(p["W"].astype(np.float32) @ X32 + p["b"].astype(np.float32))
        return float(np.sum(A**2))

    result = fastgc.check(cost32, params, backward(params), progress=False)
    assert result.verdict == "bug"
    assert "compute in float64" in result.to_dict()["notes"][0]


def test_a_float32_computation_that_rounds_most_changes_away_is_diagnosed():
    # A float32 cost of about 100 (one ulp 7.6e-6): a step of 1e-7 changes it visibly only
    # along the one steep direction.
    slopes = np.concatenate([np.linspace(0.01, 10.0, 19), [500.0]])
    params = {"w": np.linspace(-0.5, 0.5, 20)}

    def cost32(p):
        return float(np.float32(100.0) + np.sum(slopes.astype(np.float32) * p["w"].astype(
            np.float32)))

    result = fastgc.check(cost32, params, {"dw": slopes}, progress=False)
    assert result.verdict == "bug"
    (note,) = result.to_dict()["notes"]
    assert note.startswith("the numeric gradient is exactly zero on ")
    assert "of the 20 components where backprop's is not" in note
    assert "float32" in note


def test_no_note_when_the_gradients_are_right_or_simply_wrong():
    params = make_params()
    assert fastgc.check(forward, params, backward(params), progress=False).to_dict()["notes"] == []
    wrong = {**backward(params), "db": -backward(params)["db"]}
    result = fastgc.check(forward, params, wrong, progress=False)
    assert result.verdict == "bug" and "note:" not in str(result)
