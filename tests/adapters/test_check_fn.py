"""fastgc.check_fn: a function returning (loss, grads)."""

from __future__ import annotations

import numpy as np
import pytest

import course_layers as L
import fastgc
from conftest import snapshot


def test_softmax_loss_returning_loss_and_dx():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    result = fastgc.check_fn(L.softmax_loss, x, args=(y,), progress=False)
    assert result.verdict == "correct" and list(result.per_parameter) == ["theta"]


def course_params(rng):
    return {"W1": rng.standard_normal((3, 4)), "b1": np.zeros((3, 1)),
            "W2": rng.standard_normal((1, 3)), "b2": np.zeros((1, 1))}


def forward_backward(parameters, X, Y, wrong=False):
    """The course's forward and backward in one function: (cost, grads) with intermediates."""
    m = X.shape[1]
    Z1 = parameters["W1"] @ X + parameters["b1"]
    A1 = np.tanh(Z1)
    Z2 = parameters["W2"] @ A1 + parameters["b2"]
    A2 = 1 / (1 + np.exp(-Z2))
    cost = float(-np.mean(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)))
    dZ2 = A2 - Y
    dW2 = dZ2 @ A1.T / m
    db2 = dZ2.sum(axis=1, keepdims=True) / m
    dA1 = parameters["W2"].T @ dZ2
    dZ1 = dA1 * (1 - A1**2)
    dW1 = dZ1 @ X.T / m
    db1 = dZ1.sum(axis=1, keepdims=True) / m * (2.0 if wrong else 1.0)
    return cost, {"dZ2": dZ2, "dW2": dW2, "db2": db2, "dA1": dA1, "dZ1": dZ1, "dW1": dW1,
                  "db1": db1}


def test_course_gradients_with_intermediates():
    rng = np.random.default_rng(4)
    params = course_params(rng)
    X, Y = rng.standard_normal((4, 7)), (rng.random((1, 7)) > 0.5).astype(float)
    before = snapshot(params)
    good = fastgc.check_fn(forward_backward, params, args=(X, Y), progress=False)
    assert good.verdict == "correct"
    assert good.ignored_gradients == ("dZ2", "dA1", "dZ1")
    bad = fastgc.check_fn(lambda p, X, Y: forward_backward(p, X, Y, wrong=True), params,
                          args=(X, Y), progress=False)
    assert bad.verdict == "bug" and bad.worst_parameter().name == "b1"
    assert snapshot(params) == before


def test_the_gradients_are_computed_once():
    calls = []
    w = np.array([1.0, -2.0, 0.5])

    def loss_and_grads(p):
        calls.append(1)
        return float(np.sum(p["w"] ** 2)), {"w": 2 * p["w"]}

    result = fastgc.check_fn(loss_and_grads, {"w": w}, progress=False)
    assert result.verdict == "correct"
    assert len(calls) == result.n_evaluations + 1  # every evaluation, and the gradients once


def test_gradients_as_a_tuple_in_the_order_of_the_dict():
    w, b = np.array([1.0, -2.0]), np.array([0.5])
    result = fastgc.check_fn(lambda p: (float(np.sum(p["w"] ** 2) + 3 * p["b"][0]),
                                        (2 * p["w"], np.array([3.0]))),
                             {"w": w, "b": b}, progress=False)
    assert result.verdict == "correct" and list(result.per_parameter) == ["w", "b"]


def test_a_function_that_does_not_return_a_pair():
    with pytest.raises(fastgc.CostError,
                       match=r"loss_and_grads must return a pair \(loss, grads\), got float"):
        fastgc.check_fn(lambda p: 1.0, {"w": np.ones(2)}, progress=False)
    with pytest.raises(fastgc.CostError, match=r"got a tuple of 3 items"):
        fastgc.check_fn(lambda p: (1.0, {}, None), {"w": np.ones(2)}, progress=False)
    with pytest.raises(fastgc.CostError, match=r"loss_and_grads raised KeyError"):
        fastgc.check_fn(lambda p: p["nope"], {"w": np.ones(2)}, progress=False)
    with pytest.raises(fastgc.InvalidInputError, match=r"loss_and_grads must be callable"):
        fastgc.check_fn(3, {"w": np.ones(2)})
    with pytest.raises(fastgc.InvalidInputError, match=r"args must be a tuple"):
        fastgc.check_fn(lambda p, x: (0.0, p), {"w": np.ones(2)}, args=[1])


def test_a_loss_in_a_one_element_array_is_that_element():
    # The course's cost = -np.dot(Y, np.log(A).T) / m has shape (1, 1).
    Y = np.array([[1.0, 0.0, 1.0]])

    def loss_and_grads(p):
        A = 1 / (1 + np.exp(-p["w"] * np.array([[1.0, 2.0, -1.0]])))
        cost = -(np.dot(Y, np.log(A).T) + np.dot(1 - Y, np.log(1 - A).T)) / 3
        return cost, {"dw": np.sum((A - Y) * np.array([[1.0, 2.0, -1.0]])) / 3}

    result = fastgc.check_fn(loss_and_grads, {"w": np.array(0.4)}, progress=False)
    assert result.verdict == "correct"


def test_executor_is_forwarded_to_worker_processes():
    rng = np.random.default_rng(5)
    params = course_params(rng)
    X, Y = rng.standard_normal((4, 7)), (rng.random((1, 7)) > 0.5).astype(float)
    local = fastgc.check_fn(forward_backward, params, args=(X, Y), progress=False)
    remote = fastgc.check_fn(forward_backward, params, args=(X, Y), progress=False,
                             executor="processes", n_workers=2)
    assert (remote.executor, remote.n_workers) == ("processes", 2)
    assert remote.approx.tobytes() == local.approx.tobytes()
