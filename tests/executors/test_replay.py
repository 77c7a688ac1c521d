"""The serial replay after a parallel run: numbers that cannot be reproduced are an error."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import fastgc
import models
from conftest import TWO_THREADS, require_engine, run
from fastgc.executors.replay import (
    REPLAY_ROWS,
    REPLAY_ROWS_WORST,
    REPLAY_SPREAD,
    REPLAY_WORST,
    direction_replay_sample,
    replay_sample,
    spread_indices,
)

pytestmark = pytest.mark.skipif(TWO_THREADS < 2, reason="needs two threads")

rng = np.random.default_rng(1)
X = rng.standard_normal((6, 40))
Y = rng.standard_normal((3, 40))
PARAMS = {"W1": rng.standard_normal((8, 6)) * 0.5, "W2": rng.standard_normal((3, 8)) * 0.5}


def grads(p):
    A = np.tanh(p["W1"] @ X)
    dZ = 2 * (p["W2"] @ A - Y) / X.shape[1]
    return {"dW1": ((p["W2"].T @ dZ) * (1 - A**2)) @ X.T, "dW2": dZ @ A.T}


class CachingLayer:
    """Keeps its activations between the forward pass and the loss: not thread-safe."""

    def __init__(self) -> None:
        self.cache: dict[str, np.ndarray] = {}

    def cost(self, p) -> float:
        self.cache["A"] = np.tanh(p["W1"] @ X)
        time.sleep(2e-4)  # the other thread runs meanwhile, and overwrites the cache
        return float(np.sum((p["W2"] @ self.cache["A"] - Y) ** 2) / X.shape[1])


def cost(p) -> float:
    return float(np.sum((p["W2"] @ np.tanh(p["W1"] @ X) - Y) ** 2) / X.shape[1])


class LastStarted:
    """Keeps a fingerprint of the parameters of the call that started last on the object, and
    lets it move J by round-off. Serially that is the call's own fingerprint, so J is exact and
    repeatable; on two threads another call's leaks in and moves J by a few units in the last
    place, so every direction of the screen still agrees with backprop: only a replay can tell.
    Each call waits (up to 5 ms) for the next call to start, so that the two threads' calls
    always overlap, however the scheduler runs them."""

    WEIGHTS = {name: np.random.default_rng(2).standard_normal(a.shape)
               for name, a in PARAMS.items()}

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = 0
        self.fingerprint = 0.0

    def cost(self, p) -> float:
        own = sum(float(np.vdot(self.WEIGHTS[name], p[name])) for name in PARAMS)
        with self.lock:
            self.started += 1
            mine, self.fingerprint = self.started, own
        deadline = time.monotonic() + 0.005
        while self.started == mine and time.monotonic() < deadline:
            time.sleep(1e-4)  # the other thread starts a call meanwhile
        return cost(p) + (self.fingerprint - own) * 1e-9


def test_a_thread_unsafe_cost_passing_every_block_of_the_screen_is_an_error():
    """The screen differences no component when every block passes, so the replay of its
    directions is all that stands between a thread-unsafe cost and a verdict."""
    require_engine("cython")
    serial = fastgc.check(LastStarted().cost, PARAMS, grads, plan="screen", n_threads=1,
                          engine="cython", progress=False)
    assert serial.verdict == "correct", str(serial)
    assert all(c.components == 0 and c.finding == "passed the screen"
               for c in serial.coverage.values())
    with pytest.raises(fastgc.IrreproducibleCostError, match="not thread-safe") as caught:
        fastgc.check(LastStarted().cost, PARAMS, grads, plan="screen", n_threads=2,
                     engine="cython", progress=False)
    error = caught.value
    message = str(error)
    assert "directional differences" in message and "n_threads=1" in message
    assert set(error.indices) <= {0, 48}  # the first entry of W1 and of W2
    assert len(error.indices) == len(error.parallel) == len(error.serial) <= REPLAY_ROWS
    assert all(p != s for p, s in zip(error.parallel, error.serial))
    assert repr(error.parallel[0]) in message and repr(error.serial[0]) in message
    assert error.location[0] in ("W1", "W2")
    assert f"params[{error.location[0]!r}][0, 0]" in message


def test_a_thread_safe_screen_on_two_threads_counts_the_replayed_directions():
    """Every evaluation is counted: the serial replay adds two per directional row replayed
    (the screen ran 4 directions per block, more than are replayed), and nothing else."""
    require_engine("cython")
    lock, calls = threading.Lock(), [0]

    def counted(p) -> float:
        with lock:
            calls[0] += 1
        return cost(p)

    serial = fastgc.check(counted, PARAMS, grads, plan="screen", n_threads=1,
                          engine="cython", progress=False)
    serial_calls, calls[0] = calls[0], 0
    result = fastgc.check(counted, PARAMS, grads, plan="screen", n_threads=2,
                          engine="cython", progress=False)
    assert result.verdict == serial.verdict == "correct"
    assert result.n_threads == 2 and result.approx.tobytes() == serial.approx.tobytes()
    assert all(c.components == 0 for c in result.coverage.values())
    assert result.coverage == serial.coverage
    assert result.evaluations == calls[0] == serial_calls + 2 * REPLAY_ROWS
    assert serial.evaluations == serial_calls


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_thread_safe_screen_on_two_threads_replays_bit_for_bit(engine, dtype):
    """The reference directional kernel gives the bits of every engine's (float32's relative
    steps too): a deterministic screen passes its replay, identical but for the count."""
    params, X_, Y_ = models.make_mlp(0, dtype)
    serial = run(engine, params, X_, Y_, models.grads(params, X_, Y_), plan="screen",
                 n_threads=1)
    result = run(engine, params, X_, Y_, models.grads(params, X_, Y_), plan="screen",
                 n_threads=2)
    assert result.approx.tobytes() == serial.approx.tobytes()
    assert result.verdict == serial.verdict and result.coverage == serial.coverage
    assert result.per_parameter == serial.per_parameter
    components = replay_sample(serial.approx, serial.dtheta, serial.checked).shape[0]
    # Four blocks of four directions each: more rows than are replayed.
    replayed = REPLAY_ROWS + components if engine.parallel else 0
    assert result.evaluations == serial.evaluations + 2 * replayed


def test_a_thread_unsafe_caching_cost_on_two_threads_is_an_error_naming_indices_and_values():
    require_engine("cython")
    with pytest.raises(fastgc.IrreproducibleCostError, match="not thread-safe") as caught:
        fastgc.check(CachingLayer().cost, PARAMS, grads, n_threads=2, engine="cython",
                     progress=False)
    error = caught.value
    assert isinstance(error, fastgc.GradientCheckError) and isinstance(error, fastgc.CostError)
    assert error.result is None and error.indices
    assert len(error.indices) == len(error.parallel) == len(error.serial)
    assert all(p != s for p, s in zip(error.parallel, error.serial))
    i = error.indices[0]
    assert f"theta[{i}]" in str(error) and repr(error.parallel[0]) in str(error)
    assert repr(error.serial[0]) in str(error)


def test_the_same_caching_cost_on_one_thread_is_checked():
    require_engine("cython")
    result = fastgc.check(CachingLayer().cost, PARAMS, grads, n_threads=1, engine="cython",
                          progress=False)
    assert result.verdict == "correct", str(result)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_thread_safe_cost_on_two_threads_replays_bit_for_bit(engine, dtype):
    params, X_, Y_ = models.make_mlp(0, dtype)
    result = run(engine, params, X_, Y_, models.grads(params, X_, Y_), n_threads=2)
    assert result.verdict == "correct", str(result)
    serial = run(engine, params, X_, Y_, models.grads(params, X_, Y_), n_threads=1)
    assert serial.approx.tobytes() == result.approx.tobytes()


def test_the_numba_engine_names_a_cost_sharing_a_scratch_buffer(numba):
    require_engine("numba")

    @numba.njit
    def cost(theta, scratch):
        for k in range(scratch.shape[0]):  # shared by every thread: a data race
            scratch[k] = np.sin(theta[k % theta.shape[0]] * (k + 1))
        total = 0.0
        for k in range(scratch.shape[0]):
            total += scratch[k] * scratch[k]
        return total

    theta = np.linspace(-1.0, 1.0, 64)

    def exact(theta_):
        k = np.arange(20000)
        arg = theta_[k % 64] * (k + 1)
        return np.bincount(k % 64, weights=2 * np.sin(arg) * np.cos(arg) * (k + 1), minlength=64)

    scratch = np.zeros(20000)
    with pytest.raises(fastgc.IrreproducibleCostError, match="not thread-safe"):
        fastgc.check(cost, theta, exact(theta), args=(scratch,), n_threads=2, engine="numba",
                     progress=False)
    serial = fastgc.check(cost, theta, exact(theta), args=(scratch,), n_threads=1,
                          engine="numba", progress=False)
    assert serial.verdict == "correct", str(serial)


def test_the_sample_holds_the_most_disagreeing_and_spread_components():
    approx = np.linspace(1.0, 2.0, 50)
    dtheta = approx.copy()
    dtheta[[7, 30]] *= 3.0
    sample = replay_sample(approx, dtheta)
    assert {7, 30, 0, 49} <= set(sample.tolist())
    assert sample.size <= REPLAY_WORST + REPLAY_SPREAD
    assert np.all(np.diff(sample) > 0)


def test_the_directional_sample_holds_the_most_disagreeing_and_spread_rows():
    out = np.ones((12, 3))
    out[:, 0] = np.linspace(1.0, 2.0, 12)
    out[:, 1] = out[:, 0]
    out[5, 1] *= 3.0
    out[9, 1] *= 1.5
    sample = direction_replay_sample(out)
    assert REPLAY_ROWS_WORST == 2 and sample.tolist() == [0, 5, 9, 11]
    assert direction_replay_sample(out[:3]).tolist() == [0, 1, 2]
    assert direction_replay_sample(out[:1]).tolist() == [0]
    assert direction_replay_sample(out[:0]).tolist() == []


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 10, 99, 1000, 12345, 2**31 + 7, 10**15 + 1])
def test_the_spread_components_are_those_of_linspace(n):
    for count in (1, 2, 3, 4, 5):
        expected = np.linspace(0, n - 1, min(count, n)).astype(np.int64).tolist()
        assert spread_indices(n, count) == expected


def test_the_most_disagreeing_come_first_ties_to_the_lower_index_nan_and_inf_last():
    approx = np.ones(12)
    dtheta = approx.copy()
    dtheta[[2, 5, 9]] = 2.0  # the same relative disagreement three times: ties
    dtheta[10] = 4.0  # the largest
    approx[3], dtheta[3] = 0.0, 0.0  # 0 / 0
    dtheta[6] = np.nan
    dtheta[8] = np.inf
    # Truth by hand: 10 first, then the tied 2, 5, 9 in index order; the worst REPLAY_WORST.
    worst = [10, 2, 5, 9][:REPLAY_WORST]
    expected = sorted(set(worst) | set(spread_indices(12, REPLAY_SPREAD)))
    assert replay_sample(approx, dtheta).tolist() == expected
    among = np.ones(12, dtype=bool)
    among[10] = False  # not differenced: not replayed
    assert 10 not in replay_sample(approx, dtheta, among).tolist()
