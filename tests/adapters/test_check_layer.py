"""fastgc.check_layer on cs231n-style layers: (out, cache) forward, backward(dout, cache)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import course_layers as L
import fastgc
from conftest import snapshot


def check_layer(*arguments, **options):
    return fastgc.check_layer(*arguments, progress=False, **options)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def test_affine_layer_is_correct_and_named_by_its_signature(rng):
    x, w, b = rng.standard_normal((4, 2, 3)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    before = snapshot([x, w, b])
    result = check_layer(L.affine_forward, L.affine_backward, (x, w, b))
    assert result.verdict == "correct"
    assert list(result.per_parameter) == ["x", "w", "b"]
    assert result.per_parameter["x"].shape == (4, 2, 3)
    assert snapshot([x, w, b]) == before


def test_affine_layer_with_a_wrong_db_points_at_b(rng):
    inputs = {"x": rng.standard_normal((4, 6)), "w": rng.standard_normal((6, 5)),
              "b": rng.standard_normal(5)}
    result = check_layer(L.affine_forward, L.affine_backward_wrong_db, inputs)
    assert result.verdict == "bug"
    assert result.worst_parameter().name == "b"
    assert result.per_parameter["x"].verdict == result.per_parameter["w"].verdict == "correct"
    assert "look first at b" in str(result)


def bn_inputs(rng):
    x = 3.0 + 2.0 * rng.standard_normal((8, 4))
    gamma, beta = 1.0 + 0.1 * rng.standard_normal(4), 0.1 * rng.standard_normal(4)
    bn_param = {"mode": "train", "running_mean": np.full(4, 0.5), "running_var": np.ones(4)}
    return x, gamma, beta, bn_param


def test_batchnorm_is_correct_and_its_running_statistics_are_left_alone(rng):
    x, gamma, beta, bn_param = bn_inputs(rng)
    saved = copy.deepcopy(bn_param)
    arrays = {name: bn_param[name] for name in ("running_mean", "running_var")}
    before = snapshot([x, gamma, beta, bn_param])
    result = check_layer(L.batchnorm_forward, L.batchnorm_backward, (x, gamma, beta),
                         args=(bn_param,))
    assert result.verdict == "correct"
    assert list(result.per_parameter) == ["x", "gamma", "beta"]
    # The forward updates running statistics in bn_param: each evaluation gets its own copy.
    assert snapshot([x, gamma, beta, bn_param]) == before
    assert bn_param.keys() == saved.keys() and bn_param["mode"] == "train"
    assert all(bn_param[name] is array for name, array in arrays.items())


def test_batchnorm_with_a_wrong_dgamma_is_a_bug_in_gamma_only(rng):
    x, gamma, beta, bn_param = bn_inputs(rng)
    result = check_layer(L.batchnorm_forward, L.batchnorm_backward_wrong_dgamma,
                         {"x": x, "gamma": gamma, "beta": beta}, args=(bn_param,))
    assert result.verdict == "bug"
    assert result.worst_parameter().name == "gamma"
    assert {name for name, p in result.per_parameter.items() if p.verdict == "bug"} == {"gamma"}


def test_batchnorm_in_test_mode(rng):
    x, gamma, beta, bn_param = bn_inputs(rng)
    bn_param["mode"] = "test"
    result = check_layer(L.batchnorm_forward, L.batchnorm_backward, (x, gamma, beta),
                         args=(bn_param,), wrt=("gamma", "beta"))
    assert result.verdict == "correct" and list(result.per_parameter) == ["gamma", "beta"]


def test_a_backward_that_writes_into_dout_is_checked_against_the_true_dout(rng):
    x = rng.standard_normal((5, 4))
    x[np.abs(x) < 0.05] = 0.3  # no component at the ReLU's kink
    result = check_layer(L.relu_forward, L.relu_backward, x)
    assert result.verdict == "correct" and list(result.per_parameter) == ["x"]


def test_a_given_dout_is_used_and_its_shape_checked(rng):
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    dout = np.zeros((3, 2))
    dout[:, 0] = 1.0
    result = check_layer(L.affine_forward, L.affine_backward, (x, w, b), dout)
    assert result.verdict == "correct"
    np.testing.assert_allclose(result.numerical_grads["b"], [3.0, 0.0], atol=1e-6)
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"dout has shape \(2, 3\) but the output has shape \(3, 2\)"):
        check_layer(L.affine_forward, L.affine_backward, (x, w, b), np.zeros((2, 3)))


def test_a_layer_with_two_outputs(rng):
    inputs = (rng.standard_normal((3, 4)), rng.standard_normal((3, 5)),
              rng.standard_normal((4, 5)) * 0.5, rng.standard_normal((5, 5)) * 0.5)
    good = check_layer(L.tanh_gate_forward, L.tanh_gate_backward, inputs)
    assert good.verdict == "correct"
    assert list(good.per_parameter) == ["x", "prev_h", "Wx", "Wh"]
    bad = check_layer(L.tanh_gate_forward, L.tanh_gate_backward_forgets_gate, inputs)
    assert bad.verdict == "bug"
    assert all(p.verdict == "bug" for p in bad.per_parameter.values())
    with pytest.raises(fastgc.InvalidInputError, match=r"forward returns 2 output\(s\), dout has 1"):
        check_layer(L.tanh_gate_forward, L.tanh_gate_backward, inputs, (np.ones((3, 5)),))


def test_integer_inputs_are_passed_but_not_checked(rng):
    x = np.array([[0, 3, 1], [2, 2, 0]])
    W = rng.standard_normal((4, 3))
    before = snapshot([x, W])
    result = check_layer(L.word_embedding_forward, L.word_embedding_backward, (x, W))
    assert result.verdict == "correct" and list(result.per_parameter) == ["W"]
    assert snapshot([x, W]) == before


def test_gradients_as_a_dict_with_intermediates(rng):
    def backward(dout, cache):
        dx, dw, db = L.affine_backward(dout, cache)
        return {"dx": dx, "dw": dw, "db": db, "dout": dout}

    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    result = check_layer(L.affine_forward, backward, (x, w, b))
    assert result.verdict == "correct" and result.ignored_gradients == ("dout",)


def test_layer_errors_say_what_to_do(rng):
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    with pytest.raises(fastgc.CostError, match=r"forward must return \(out, cache\).*got ndarray"):
        check_layer(lambda x, w, b: x @ w + b, L.affine_backward, (x, w, b))
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"backward returned 2 gradients, but the layer has 3 inputs "
                             r"\['x', 'w', 'b'\]"):
        check_layer(L.affine_forward, lambda d, c: L.affine_backward(d, c)[:2], (x, w, b))
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"backward returned None for the gradient of 'x'; pass wrt="):
        check_layer(L.affine_forward, lambda d, c: (None,) + L.affine_backward(d, c)[1:],
                    (x, w, b))
    result = check_layer(L.affine_forward, lambda d, c: (None,) + L.affine_backward(d, c)[1:],
                         (x, w, b), wrt=("w", "b"))
    assert result.verdict == "correct"
    with pytest.raises(fastgc.InvalidInputError, match=r"wrt names 'z', which is not an input"):
        check_layer(L.affine_forward, L.affine_backward, (x, w, b), wrt=("z",))
    with pytest.raises(fastgc.CostError, match=r"backward raised ZeroDivisionError"):
        check_layer(L.affine_forward, lambda d, c: 1 / 0, (x, w, b))
    with pytest.raises(fastgc.InvalidInputError, match=r"inputs must be a dict, a tuple"):
        check_layer(L.affine_forward, L.affine_backward, 3.0)
