"""CheckResult.to_dict() and to_json(): everything the report shows, as data."""

from __future__ import annotations

import json

import numpy as np

import fastgc

X = np.linspace(-1.0, 1.0, 12).reshape(3, 4)


def cost(p):
    return float(np.sum(np.tanh(p["W"] @ X + p["b"]) ** 2))


def grads(p):
    A = np.tanh(p["W"] @ X + p["b"])
    dZ = 2 * A * (1 - A**2)
    return {"dW": dZ @ X.T, "db": dZ.sum(axis=1, keepdims=True)}


def make_params():
    rng = np.random.default_rng(5)
    return {"W": rng.standard_normal((2, 3)), "b": rng.standard_normal((2, 1))}


def test_to_dict_of_a_bug_holds_what_the_report_shows():
    params = make_params()
    wrong = {**grads(params), "db": -grads(params)["db"], "dZ": np.ones(3)}
    result = fastgc.check(cost, params, wrong, progress=False)
    data = result.to_dict()
    assert data["verdict"] == "bug"
    assert data["meaning"] == "backprop is almost surely wrong"
    assert data["look_first"]["parameter"] == "b"
    assert data["look_first"]["component"]["name"] == "b"
    assert data["difference"] == result.difference
    assert data["thresholds"] == {"correct": 1e-7, "bug": 1e-3}
    assert data["step"] == result.step_description
    assert data["n_parameters"] == 8 and data["dtype"] == "float64"
    assert [p["name"] for p in data["parameters"]] == ["W", "b"]
    b = data["parameters"][1]
    assert b["shape"] == [2, 1] and b["verdict"] == "bug"
    assert b["adjusted_difference"] == result.per_parameter["b"].adjusted_difference
    assert sum(data["reexamined"].values()) == len(result.labels)
    worst = data["worst_components"]
    assert worst and {c["name"] for c in worst} == {"b"}
    assert worst[0]["index"] in ([0, 0], [1, 0])
    assert data["ignored_gradients"] == ["dZ"]
    assert data["notes"] == []
    # Plain values only: a JSON round trip gives the same dict.
    assert json.loads(result.to_json()) == data


def test_to_dict_of_a_correct_check_has_no_look_first():
    params = make_params()
    data = fastgc.check(cost, params, grads(params), progress=False).to_dict(n_worst=3)
    assert data["verdict"] == "correct" and data["look_first"] is None
    assert len(data["worst_components"]) <= 3


def test_to_json_is_strict_json_and_writes_the_file(tmp_path):
    params = make_params()
    nan_grads = {**grads(params)}
    nan_grads["dW"] = nan_grads["dW"].copy()
    nan_grads["dW"][0, 1] = np.nan
    result = fastgc.check(cost, params, nan_grads, progress=False)
    path = tmp_path / "result.json"
    text = result.to_json(path)
    assert path.read_text() == text + "\n"
    # Strict JSON: no NaN or Infinity tokens; non-finite numbers are strings.
    data = json.loads(text, parse_constant=lambda token: (_ for _ in ()).throw(ValueError(token)))
    W = data["parameters"][0]
    assert W["verdict"] == "bug" and W["n_non_finite"] == 1
    assert W["adjusted_difference"] == "inf"
    assert data["worst_components"][0]["analytic"] == "nan"
