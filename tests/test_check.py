"""The check end to end, run on every engine against analytic gradients and planted bugs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgc
import models
from conftest import TWO_THREADS, check, require_engine, run, snapshot
from fastgc import engines as _engines


def lecture_loop(cost, params, args, eps=1e-7):
    """An independent implementation of the lecture recipe (copies theta twice per index)."""
    names = list(params)
    theta = np.concatenate([params[k].reshape(-1) for k in names])
    shapes = [params[k].shape for k in names]

    def unflatten(vector):
        out, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            out[name] = vector[start : start + size].reshape(shape)
            start += size
        return out

    approx = np.empty_like(theta)
    for i in range(theta.size):
        plus = theta.copy()
        plus[i] += eps
        minus = theta.copy()
        minus[i] -= eps
        approx[i] = (cost(unflatten(plus), *args) - cost(unflatten(minus), *args)) / (2 * eps)
    return approx


def lecture_difference(approx, dtheta):
    return np.linalg.norm(approx - dtheta) / (np.linalg.norm(approx) + np.linalg.norm(dtheta))


def test_correct_mlp_is_correct(engine, mlp):
    params, X, Y = mlp
    result = run(engine, params, X, Y, models.grads(params, X, Y))
    assert result.verdict is fastgc.Verdict.CORRECT
    assert result.verdict == "correct"
    assert result.difference < 1e-7
    assert result.engine == engine.engine
    assert list(result.per_parameter) == ["W1", "b1", "W2", "b2"]
    assert all(p.verdict == "correct" for p in result.per_parameter.values())
    numeric = result.numerical_grads
    for name, value in params.items():
        assert numeric[name].shape == value.shape
        np.testing.assert_allclose(
            numeric[name], models.grads(params, X, Y)["d" + name], rtol=1e-5, atol=1e-8
        )
    assert result.passed
    assert result.raise_if_failed() is result


@pytest.mark.parametrize(
    "bug, parameter", [("dW2_doubled", "W2"), ("db1_sign", "b1"), ("one_element", "W1")]
)
def test_planted_bug_is_found_and_located(engine, mlp, bug, parameter):
    params, X, Y = mlp
    result = run(engine, params, X, Y, models.grads(params, X, Y, bug=bug))
    assert result.verdict == "bug"
    assert result.worst_parameter().name == parameter
    assert result.per_parameter[parameter].verdict == "bug"
    others = [p for name, p in result.per_parameter.items() if name != parameter]
    assert all(p.verdict == "correct" for p in others)
    top = result.worst(3)[0]
    assert top.name == parameter
    if bug == "one_element":
        assert top.index == (2, 1)
        assert top.flat_index == result.layout.flat_index("W1", (2, 1))
        assert top.analytic == pytest.approx(1.5 * top.numeric, rel=1e-6)
    with pytest.raises(fastgc.GradientCheckError, match=parameter) as raised:
        result.raise_if_failed()
    assert raised.value.result is result


def test_difference_matches_independent_lecture_formula(engine, mlp):
    params, X, Y = mlp
    for bug in (None, "dW2_doubled"):
        dtheta_dict = models.grads(params, X, Y, bug=bug)
        result = run(engine, params, X, Y, dtheta_dict)
        approx = lecture_loop(models.cost, params, (X, Y))
        dtheta = np.concatenate([v.reshape(-1) for v in dtheta_dict.values()])
        np.testing.assert_allclose(result.approx, approx, rtol=1e-6, atol=1e-9)
        expected = lecture_difference(approx, dtheta)
        if bug is None:
            assert result.difference < 1e-7 and expected < 1e-7
        else:
            assert result.difference == pytest.approx(expected, rel=1e-6)


def test_threads_give_bitwise_identical_results(engine, mlp):
    params, X, Y = mlp
    grads = models.grads(params, X, Y, bug="db1_sign")
    one = run(engine, params, X, Y, grads, n_threads=1)
    two = run(engine, params, X, Y, grads, n_threads=2)
    assert two.n_threads == (2 if engine.parallel and fastgc.get_num_threads() >= 2 else 1)
    np.testing.assert_array_equal(one.approx, two.approx)
    assert one.difference == two.difference


def test_engines_agree_bitwise_with_the_reference(engine, mlp):
    # The same cost run by the pure-Python reference loop: same arithmetic, same bits.
    params, X, Y = mlp
    grads = models.grads(params, X, Y)
    cost, args = engine.cost_for(X, Y)
    reference = fastgc.check(cost, params, grads, args=args, engine="python", progress=False)
    result = run(engine, params, X, Y, grads, n_threads=2)
    np.testing.assert_array_equal(result.approx, reference.approx)
    assert result.difference == reference.difference


def test_callers_arrays_untouched_and_accepted_layouts(engine, mlp):
    params, X, Y = mlp
    grads = models.grads(params, X, Y)
    odd = {
        "W1": np.asfortranarray(params["W1"]),
        "b1": np.repeat(params["b1"], 2, axis=1)[:, ::2],  # non-contiguous view
        "W2": params["W2"].copy(),
        "b2": params["b2"].copy(),
    }
    odd["W2"].setflags(write=False)
    before = snapshot(odd), snapshot(grads)
    result = run(engine, odd, X, Y, grads)
    assert result.verdict == "correct"
    assert (snapshot(odd), snapshot(grads)) == before


def test_float32_network_has_no_false_alarm(engine):
    params, X, Y = models.make_mlp(3, dtype=np.float32)
    grads = models.grads(params, X, Y)
    result = run(engine, params, X, Y, grads)
    assert result.verdict == "correct"
    assert result.layout.dtype == np.float32
    assert result.numerical_grads["W1"].dtype == np.float32
    assert all(v.dtype == np.float32 for v in params.values())
    buggy = run(engine, params, X, Y, models.grads(params, X, Y, bug="db1_sign"))
    assert buggy.verdict == "bug" and buggy.worst_parameter().name == "b1"


def test_nan_in_analytic_gradients_is_a_bug_naming_components(engine, mlp):
    params, X, Y = mlp
    grads = models.grads(params, X, Y)
    grads["dW2"][1, 3] = np.nan
    grads["db2"][0, 0] = np.inf
    result = run(engine, params, X, Y, grads)
    assert result.verdict == "bug"
    assert result.per_parameter["W2"].verdict == "bug"
    assert result.per_parameter["W2"].n_non_finite == 1
    assert result.per_parameter["b2"].n_non_finite == 1
    worst = {(c.name, c.index) for c in result.worst(2)}
    assert worst == {("W2", (1, 3)), ("b2", (0, 0))}
    report = str(result)
    assert "NaN" in report and "W2[1, 3]" in report


def test_report_leads_with_verdict_and_worst_parameter(engine, mlp):
    params, X, Y = mlp
    result = run(engine, params, X, Y, models.grads(params, X, Y, bug="dW2_doubled"))
    report = str(result)
    first, second = report.splitlines()[:2]
    assert "BUG" in first
    assert "look first at W2" in second
    assert "step:" in report and "noise floor" in report
    assert f"engine {engine.engine}" in report


def random_mlp(seed: int, n_in: int, n_out: int, m: int, scale: float):
    """An MLP of models' fixed hidden width with the given shapes and random values."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_in, m))
    # Fortran order, as in models.make_mlp, so Numba reuses the kernel compiled for that layout.
    Y = np.asfortranarray(np.eye(n_out)[:, rng.integers(0, n_out, size=m)])
    params = {
        "W1": rng.standard_normal((models.N_HIDDEN, n_in)) * scale,
        "b1": rng.standard_normal((models.N_HIDDEN, 1)) * 0.1,
        "W2": rng.standard_normal((n_out, models.N_HIDDEN)) * scale,
        "b2": rng.standard_normal((n_out, 1)) * 0.1,
    }
    return params, X, Y


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_in=st.integers(1, 4),
    n_out=st.integers(2, 4),
    m=st.integers(2, 6),
    scale=st.floats(0.1, 2.0),
)
def test_engines_agree_and_threads_do_not_change_results(seed, n_in, n_out, m, scale):
    for name in _engines.ENGINES:
        require_engine(name)
    params, X, Y = random_mlp(seed, n_in, n_out, m, scale)
    cost = models.numba_cost()  # an njit cost every engine can call
    grads = models.grads(params, X, Y)
    approx = {}
    for engine in _engines.ENGINES:
        one = check(cost, params, grads, args=(X, Y), engine=engine, n_threads=1)
        two = check(cost, params, grads, args=(X, Y), engine=engine, n_threads=TWO_THREADS)
        assert one.engine == two.engine == engine
        np.testing.assert_array_equal(one.approx, two.approx, err_msg=engine)
        assert one.difference == two.difference
        assert one.verdict == "correct"
        approx[engine] = one.approx
    reference = approx["python"]
    for engine in ("numba", "cython"):
        np.testing.assert_allclose(approx[engine], reference, rtol=1e-12,
                                   atol=1e-12 * np.abs(reference).max(), err_msg=engine)


class StatefulModel:
    """A model that keeps its activations between forward and loss, as layer classes do."""

    def __init__(self, X, Y):
        self.X, self.Y = X, Y

    def forward(self, params):
        self.A1 = np.tanh(params["W1"] @ self.X + params["b1"])
        self.Z2 = params["W2"] @ self.A1 + params["b2"]

    def loss(self):
        Z2 = self.Z2 - self.Z2.max(axis=0, keepdims=True)
        log_probs = Z2 - np.log(np.exp(Z2).sum(axis=0, keepdims=True))
        return float(-np.sum(self.Y * log_probs) / self.X.shape[1])

    def cost(self, params):
        self.forward(params)
        return self.loss()


def test_python_cost_runs_on_one_thread_unless_asked(mlp):
    params, X, Y = mlp
    grads = models.grads(params, X, Y)
    model = StatefulModel(X, Y)
    result = fastgc.check(model.cost, params, grads, progress=False)
    assert result.n_threads == 1 and result.verdict == "correct"
    with fastgc.threads(2):
        asked = fastgc.check(models.cost, params, grads, args=(X, Y), progress=False)
    usable = fastgc._threads.usable_threads()
    assert asked.n_threads == (min(2, usable) if asked.engine != "python" else 1)
    np.testing.assert_array_equal(asked.approx, fastgc.check(
        models.cost, params, grads, args=(X, Y), progress=False).approx)


# --------------------------------------------------------------------------------------------
# Memory of a float32 check: within (threads + 4) x n x 4 bytes, plus the float64 numeric
# gradients (n x 8 bytes), plus fixed-size working buffers (the README states the bound).

FIXED_BUFFERS = 2 << 20  # rounds of at most 65536 indices, diagnosis chunks of 16384


@pytest.mark.parametrize("engine_name", ["numba", "cython"])
@pytest.mark.parametrize("n_threads", sorted({1, TWO_THREADS}))
def test_float32_check_memory_stays_within_the_documented_bound(engine_name, n_threads):
    import tracemalloc

    import numba
    from numba import types

    require_engine(engine_name)
    n = 2_000_000
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(n).astype(np.float32)
    grads = np.zeros(n, dtype=np.float32)
    grads[0], grads[-1] = 2 * theta[0], 1.0

    if engine_name == "numba":
        @numba.njit(cache=False)
        def cost(t):  # touches two components: the check is all memory and no work
            return np.float64(t[0]) * t[0] + np.float64(t[t.shape[0] - 1])
    else:
        @numba.cfunc(types.float64(types.CPointer(types.float32), types.intp, types.voidptr))
        def cost(pointer, m, data):
            t = numba.carray(pointer, (m,))
            return np.float64(t[0]) * t[0] + np.float64(t[m - 1])

    small = theta[:64].copy()  # compiled, and the package's lazy imports done, beforehand
    fastgc.check(cost, small, np.zeros(64, np.float32), engine=engine_name,
                 n_threads=n_threads, progress=False)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        result = fastgc.check(cost, theta, grads, engine=engine_name, n_threads=n_threads,
                              progress=False)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert result.verdict == "correct"
    assert peak <= (n_threads + 4) * n * 4 + n * 8 + FIXED_BUFFERS, peak / (n * 4)
