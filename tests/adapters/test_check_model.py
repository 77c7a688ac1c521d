"""fastgc.check_model: cs231n's model.params and model.loss(X, y) -> (loss, grads)."""

from __future__ import annotations

import numpy as np
import pytest

import course_layers as L
import fastgc
from conftest import snapshot


@pytest.fixture
def data():
    rng = np.random.default_rng(8)
    return rng.standard_normal((7, 6)), rng.integers(0, 3, 7)


def test_model_is_correct_and_left_exactly_as_it_was(data):
    model = L.TwoLayerNet()
    mapping, arrays = model.params, dict(model.params)
    before = snapshot(model.params)
    result = fastgc.check_model(model, args=data, progress=False)
    assert result.verdict == "correct"
    assert list(result.per_parameter) == ["W1", "b1", "W2", "b2"]
    assert model.params is mapping and list(mapping) == list(arrays)
    assert all(mapping[name] is array for name, array in arrays.items())
    assert snapshot(model.params) == before


def test_model_with_a_wrong_b2(data):
    result = fastgc.check_model(L.TwoLayerNet(wrong_b2=True), args=data, progress=False)
    assert result.verdict == "bug" and result.worst_parameter().name == "b2"


def test_trainable_entries_and_other_attribute_names(data):
    class Net:
        def __init__(self):
            self.weights = L.TwoLayerNet().params
            self.weights["layers"] = 2  # not an array: left alone by default

        def forward_backward(self, X, y):
            inner = L.TwoLayerNet()
            inner.params = {k: v for k, v in self.weights.items() if k != "layers"}
            return inner.loss(X, y)

    net = Net()
    result = fastgc.check_model(net, args=data, params="weights", loss="forward_backward",
                                progress=False)
    assert result.verdict == "correct" and list(result.per_parameter) == ["W1", "b1", "W2", "b2"]
    subset = fastgc.check_model(net, args=data, params="weights", loss="forward_backward",
                                trainable=["W2", "b2"], progress=False)
    assert list(subset.per_parameter) == ["W2", "b2"]
    assert subset.ignored_gradients == ("W1", "b1")
    assert net.weights["layers"] == 2


def test_a_model_reading_its_own_copy_gets_the_zero_gradient_diagnosis(data):
    model = L.TwoLayerNet()
    frozen = {k: v.copy() for k, v in model.params.items()}
    original_loss = model.loss

    def stale_loss(X, y):  # reads arrays captured at construction, not model.params
        installed, model.params = model.params, frozen
        try:
            return original_loss(X, y)
        finally:
            model.params = installed

    model.loss = stale_loss
    result = fastgc.check_model(model, args=data, progress=False)
    assert result.verdict == "bug"
    assert "the numeric gradient is zero everywhere" in str(result)


def test_the_mapping_is_restored_when_the_loss_fails(data):
    model = L.TwoLayerNet()
    arrays = dict(model.params)
    calls = []
    original_loss = model.loss

    def failing_loss(X, y):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("out of memory")
        return original_loss(X, y)

    model.loss = failing_loss
    with pytest.raises(fastgc.CostError, match="out of memory"):
        fastgc.check_model(model, args=data, progress=False)
    assert all(model.params[name] is array for name, array in arrays.items())


def test_model_errors(data):
    model = L.TwoLayerNet()
    with pytest.raises(fastgc.InvalidInputError, match=r"runs on one thread; got n_threads=2"):
        fastgc.check_model(model, args=data, n_threads=2)
    with pytest.raises(fastgc.InvalidInputError, match=r"model.weights must be a dict"):
        fastgc.check_model(model, args=data, params="weights")
    with pytest.raises(fastgc.InvalidInputError, match=r"model.fit must be a method"):
        fastgc.check_model(model, args=data, loss="fit")
    with pytest.raises(fastgc.InvalidInputError, match=r"trainable names \['W3'\]"):
        fastgc.check_model(model, args=data, trainable=["W3"])
    with pytest.raises(fastgc.InvalidInputError, match=r"args must be a tuple"):
        fastgc.check_model(model, args=list(data))
