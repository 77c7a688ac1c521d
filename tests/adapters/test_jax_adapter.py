"""fastgc.jax with the real JAX: pytrees, custom_vjp rules, 64-bit mode left as it was."""

from __future__ import annotations

import threading

import numpy as np
import pytest

jax = pytest.importorskip("jax")  # in the test extra: a missing jax is a broken install
jnp = pytest.importorskip("jax.numpy")

import fastgc  # noqa: E402
import fastgc.jax  # noqa: E402


def make_softplus(flip):
    @jax.custom_vjp
    def softplus(x):
        return jnp.logaddexp(x, 0.0)

    def forward(x):
        return softplus(x), x

    def backward(x, g):
        return ((-1.0 if flip else 1.0) * g * jax.nn.sigmoid(x),)

    softplus.defvjp(forward, backward)
    return softplus


softplus, softplus_flipped = make_softplus(False), make_softplus(True)


def make_params():
    rng = np.random.default_rng(6)
    return {
        "layers": [
            {"w": rng.standard_normal((3, 4)).astype(np.float32), "b": np.zeros(4, np.float32)},
            {"w": rng.standard_normal((4, 2)).astype(np.float32), "b": np.zeros(2, np.float32)},
        ],
        "scale": np.float32(0.8),
        "n_layers": 2,  # not a float: passed through, not checked
    }


X = np.linspace(-1.0, 1.0, 15).reshape(5, 3)


def make_loss(activation):
    def loss(p, X):
        h = X
        for k, layer in enumerate(p["layers"]):
            h = h @ layer["w"] + layer["b"]
            if k < p["n_layers"] - 1:
                h = activation(h)
        return p["scale"] * jnp.mean(h**2)

    return loss


def snapshot(params):
    leaves = jax.tree_util.tree_leaves(params)
    return [(np.asarray(leaf).dtype, np.asarray(leaf).tobytes()) for leaf in leaves]


def check(*arguments, **options):
    return fastgc.jax.check(*arguments, progress=False, **options)


def test_a_correct_custom_vjp_passes_with_names_from_the_paths():
    params = make_params()
    before = snapshot(params)
    assert jax.config.jax_enable_x64 is False
    result = check(make_loss(softplus), params, args=(X,))
    assert result.verdict == "correct", str(result)
    assert list(result.per_parameter) == [
        "layers.0.b", "layers.0.w", "layers.1.b", "layers.1.w", "scale"]  # pytree order
    assert result.layout.dtype == np.float64
    assert snapshot(params) == before
    assert jax.config.jax_enable_x64 is False
    assert jnp.ones(2).dtype == jnp.float32  # 64-bit mode was on only around evaluations


def test_a_custom_vjp_with_a_sign_flip_is_a_bug_in_the_layer_before_it():
    result = check(make_loss(softplus_flipped), make_params(), args=(X,))
    assert result.verdict == "bug"
    bugs = {name for name, p in result.per_parameter.items() if p.verdict == "bug"}
    assert bugs == {"layers.0.w", "layers.0.b"}


def test_verdicts_and_values_are_the_same_at_one_and_two_threads():
    one = check(make_loss(softplus_flipped), make_params(), args=(X,), n_threads=1)
    two = check(make_loss(softplus_flipped), make_params(), args=(X,), n_threads=2)
    assert (one.engine, two.engine, two.n_threads) == ("python", "cython", 2)
    assert one.verdict == two.verdict == "bug"
    np.testing.assert_array_equal(one.approx, two.approx)


def test_given_gradients_are_checked_instead_of_jax_grad():
    params = make_params()
    loss = make_loss(jnp.tanh)
    with fastgc.jax.x64():
        exact = jax.grad(loss, allow_int=True)(params, X)
    good = {"layers": exact["layers"], "scale": exact["scale"]}
    assert check(loss, params, good, args=(X,)).verdict == "correct"
    wrong = {"layers": [exact["layers"][0], {**exact["layers"][1], "b": -exact["layers"][1]["b"]}],
             "scale": exact["scale"]}
    result = check(loss, params, wrong, args=(X,))
    assert result.verdict == "bug" and result.worst_parameter().name == "layers.1.b"
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"grads has no leaf for parameter\(s\) \['scale'\]"):
        check(loss, params, {"layers": exact["layers"]}, args=(X,))


def test_has_aux_and_a_loss_that_only_runs_without_jit():
    def loss(p):
        value = jnp.sum(jnp.sin(p["w"]))
        return value, {"value": value}

    params = {"w": jnp.array([0.3, -0.2, 1.0])}
    assert check(loss, params, has_aux=True).verdict == "correct"

    def branching(p):
        if p["w"][0] > 0:  # Python control flow on a value
            return jnp.sum(p["w"] ** 2)
        return jnp.sum(p["w"])

    with pytest.raises(fastgc.CostError, match="pass jit=False"):
        check(branching, params)
    assert check(branching, params, jit=False).verdict == "correct"


def test_loss_mistakes_are_explained():
    params = {"w": jnp.array([0.3, -0.2])}
    with pytest.raises(fastgc.CostTypeError, match=r"returned a float32 value in 64-bit mode"):
        check(lambda p: jnp.sum(p["w"] ** 2).astype(jnp.float32), params,
              {"w": np.array([0.6, -0.4])})
    with pytest.raises(fastgc.CostTypeError, match=r"array of shape \(2,\)"):
        check(lambda p: p["w"] ** 2, params, {"w": np.zeros(2)})
    with pytest.raises(fastgc.CostError, match="the loss raised"):
        check(lambda p: p["nope"], params)
    with pytest.raises(fastgc.InvalidInputError, match="no floating-point leaves"):
        check(lambda p: 0.0, {"n": 3})
    with pytest.raises(fastgc.InvalidInputError, match="args must be a tuple"):
        check(lambda p, x: 0.0, params, args=[1])


def test_a_single_array_is_named_params():
    result = check(lambda w: jnp.sum(jnp.cos(w)), jnp.linspace(0.0, 1.0, 4))
    assert list(result.per_parameter) == ["params"] and result.verdict == "correct"


def test_64_bit_mode_is_local_to_the_thread_that_evaluates():
    seen = []
    with fastgc.jax.x64():
        assert jnp.ones(1).dtype == jnp.float64
        worker = threading.Thread(target=lambda: seen.append(jnp.ones(1).dtype))
        worker.start()
        worker.join()
    assert seen == [jnp.float32]


def test_low_precision_leaves_are_checked_in_float64():
    params = {"w": jnp.array([0.5, -0.25], dtype=jnp.bfloat16), "h": jnp.array([1.5], jnp.float16)}
    result = check(lambda p: jnp.sum(p["w"] ** 2) * jnp.sum(p["h"]), params)
    assert list(result.per_parameter) == ["h", "w"] and result.verdict == "correct"
