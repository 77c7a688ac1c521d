"""Gradient tests for a hand-written layer, run by pytest like any other test.

Copy this file next to your layer's code and replace the layer. Run it with ``pytest``.
"""

import numpy as np
import pytest

import fastgc
from fastgc.testing import assert_gradients, assert_passed


def affine_forward(x, w, b):
    return x @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def affine_backward_with_a_bug(dout, cache):
    dx, dw, db = affine_backward(dout, cache)
    return dx, dw, dout.mean(axis=0)  # should be the sum over the batch


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)


def test_affine_layer(inputs):
    # Fails with the full report as the message on a bug or a suspicious verdict.
    assert_passed(fastgc.check_layer(affine_forward, affine_backward, inputs))


def test_the_planted_bug_is_caught(inputs):
    with pytest.raises(AssertionError, match="look first at b"):
        assert_passed(fastgc.check_layer(affine_forward, affine_backward_with_a_bug, inputs))


def test_a_cost_and_its_gradients(inputs):
    x, w, b = inputs

    def cost(p):
        return float(np.sum(np.tanh(x @ p["w"] + p["b"]) ** 2))

    def grads(p):
        a = np.tanh(x @ p["w"] + p["b"])
        dz = 2 * a * (1 - a**2)
        return {"dw": x.T @ dz, "db": dz.sum(axis=0)}

    assert_gradients(cost, {"w": w, "b": b}, grads)
