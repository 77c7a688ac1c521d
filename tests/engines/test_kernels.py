"""The kernels: the Cython extension ``fastgc._core``, its Numba twin
``fastgc.engines._numba_kernels`` and the pure-Python reference ``fastgc.engines._reference``.

The kernels must agree bit for bit with the pure-Python reference, give the same results for any
number of threads, and leave every row of ``work`` exactly as it was.

The ``kernel`` fixture runs the properties every kernel shares once per kernel: the Numba
kernel in parallel and serially, the extension's C-cost and Python-cost loops, the reference.
What only the extension does (argument checks, exceptions raised by a Python cost) is tested on
the extension itself. Without the compiled extension or Numba these tests are skipped, unless
``FASTGC_REQUIRE_CYTHON=1`` is set, in which case they fail.
"""

import ctypes
import importlib

import numpy as np
import pytest

from costs import (DTYPES, first_coordinate, kernel_cost, make_ctypes_cost, numba_cost_body,
                   python_cost)
from fastgc._ccost import c_cost_pointer
from fastgc.engines import _reference


# --------------------------------------------------------------------------------------------
# Helpers


def assert_bitwise_equal(actual, expected):
    """Same dtype, shape and bits (so NaN == NaN and 0.0 != -0.0)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    unsigned = np.dtype(f"u{actual.dtype.itemsize}")
    mismatch = np.flatnonzero(actual.view(unsigned) != expected.view(unsigned))
    assert mismatch.size == 0, (
        f"{mismatch.size} entries differ, first at {mismatch[0]}: "
        f"{actual.ravel()[mismatch[0]]!r} != {expected.ravel()[mismatch[0]]!r}"
    )


class Problem:
    """A seeded theta, the coordinates to move, their steps and the output buffers."""

    def __init__(self, dtype, n_chunks, n=9, seed=0):
        rng = np.random.default_rng(seed)
        self.theta = rng.uniform(-1.5, 1.5, n).astype(dtype)
        # Repeats and an arbitrary order are allowed.
        self.indices = np.concatenate([rng.permutation(n), rng.integers(0, n, 4)]).astype(np.int64)
        scale = 1e-6 if dtype == np.float64 else 1e-3
        self.steps = scale * (1.0 + np.abs(self.theta[self.indices].astype(np.float64)))
        self.weights = rng.uniform(0.5, 2.0, n)
        self.n_chunks = n_chunks

    def buffers(self):
        """Fresh (work, approx, failed); approx is filled with a sentinel to see what is set."""
        work = np.tile(self.theta, (self.n_chunks, 1))
        approx = np.full(self.indices.shape[0], -123.25)
        failed = np.full(self.n_chunks, -7, dtype=np.int64)
        return work, approx, failed

    def reference(self, cost_of_row):
        """``fastgc.engines._reference.central_differences`` with ``evaluate`` = cost of the row."""
        work, approx, failed = self.buffers()

        def evaluate(chunk, i):
            return cost_of_row(work[chunk])

        _reference.central_differences(evaluate, work, self.indices, self.steps, approx, failed)
        assert_bitwise_equal(work, np.tile(self.theta, (self.n_chunks, 1)))
        return approx, failed

    def run(self, kernel, cost, n_threads):
        """``kernel`` (a case of the ``kernel`` fixture) on fresh buffers, reading the weights."""
        work, approx, failed = self.buffers()
        kernel(cost, self.weights, work, self.indices, self.steps, approx, failed, n_threads)
        # Every private copy is restored exactly.
        assert_bitwise_equal(work, np.tile(self.theta, (self.n_chunks, 1)))
        return approx, failed

    def run_c(self, address, n_threads, data_address=None):
        from fastgc import _core as core

        work, approx, failed = self.buffers()
        if data_address is None:
            data_address = self.weights.ctypes.data
        core.central_differences_c(
            address, data_address, work, self.indices, self.steps, approx, failed, n_threads
        )
        # Every private copy is restored exactly.
        assert_bitwise_equal(work, np.tile(self.theta, (self.n_chunks, 1)))
        return approx, failed


# --------------------------------------------------------------------------------------------
# central_differences: every kernel, through the ``kernel`` fixture


def cost_of_row(cost, weights):
    """The cost of one row as the reference oracle calls it: the compiled ``njit`` from Python."""
    return lambda row: cost.njit(row, weights)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_kernel_matches_reference(kernel, dtype, n_threads):
    problem = Problem(dtype, n_chunks=n_threads)
    cost = kernel_cost(numba_cost_body, dtype)

    approx, failed = problem.run(kernel, cost, n_threads)
    expected_approx, expected_failed = problem.reference(cost_of_row(cost, problem.weights))
    assert_bitwise_equal(failed, expected_failed)
    assert_bitwise_equal(approx, expected_approx)
    assert np.all(failed == -1)
    assert np.all(np.isfinite(approx))
    # A sanity check of the values themselves: d/dx (w sin x + x^3 / 4) = w cos x + 3 x^2 / 4.
    x = problem.theta[problem.indices].astype(np.float64)
    exact = problem.weights[problem.indices] * np.cos(x) + 0.75 * x * x
    tolerance = 1e-6 if dtype == np.float64 else 1e-2
    np.testing.assert_allclose(approx, exact, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_kernel_restores_every_row_bitwise(kernel, dtype):
    """theta + h - 2h + h need not give theta back (-0.0 comes back as 0.0, 0.1 as
    0.1 - 1 ulp): the saved value itself is put back."""
    problem = Problem(dtype, n_chunks=2, seed=13)
    problem.theta[:3] = [-0.0, 0.1, 1e-30]
    problem.steps = np.full(problem.indices.shape[0], 0.3)
    cost = kernel_cost(numba_cost_body, dtype)

    approx, failed = problem.run(kernel, cost, n_threads=2)  # asserts every row came back
    expected_approx, expected_failed = problem.reference(cost_of_row(cost, problem.weights))
    assert_bitwise_equal(failed, expected_failed)
    assert_bitwise_equal(approx, expected_approx)
    assert np.all(failed == -1)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_kernel_identical_across_thread_and_chunk_counts(kernel, dtype):
    cost = kernel_cost(numba_cost_body, dtype)
    results = []
    for n_threads, n_chunks in [(1, 1), (2, 2), (1, 3), (2, 3), (2, 5)]:
        problem = Problem(dtype, n_chunks=n_chunks, seed=2)
        approx, failed = problem.run(kernel, cost, n_threads)
        assert np.all(failed == -1)
        results.append(approx)
    for approx in results[1:]:
        assert_bitwise_equal(approx, results[0])


def test_kernel_more_threads_than_chunks_and_empty_indices(kernel):
    problem = Problem(np.float64, n_chunks=2, seed=3)
    cost = kernel_cost(numba_cost_body, np.float64)
    approx, failed = problem.run(kernel, cost, n_threads=8)
    assert np.all(failed == -1)
    assert np.all(approx != -123.25)

    work, _, failed = problem.buffers()
    empty_i, empty_d = np.empty(0, np.int64), np.empty(0)
    kernel(cost, problem.weights, work, empty_i, empty_d, empty_d, failed, 2)
    assert np.all(failed == -1)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_kernel_non_finite_cost_sets_failed_and_stops_the_chunk(kernel, dtype, n_threads):
    n = 8
    problem = Problem(dtype, n_chunks=2, n=n, seed=4)
    problem.indices = np.arange(n, dtype=np.int64)
    problem.steps = np.full(n, 0.1)
    problem.theta[3] = 0.45  # theta[3] + 0.1 crosses 0.5, where the cost returns NaN
    cost = kernel_cost(numba_cost_body, dtype, nan_index=3, nan_above=0.5)

    approx, failed = problem.run(kernel, cost, n_threads)
    expected_approx, expected_failed = problem.reference(cost_of_row(cost, problem.weights))
    assert_bitwise_equal(failed, expected_failed)
    assert_bitwise_equal(approx, expected_approx)
    # Chunk 0 covers positions 0..3 and stops at 3; chunk 1 (4..7) completes.
    np.testing.assert_array_equal(failed, [3, -1])
    assert approx[3] == -123.25
    assert np.all(np.isfinite(approx))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_kernel_vanishing_step_sets_failed(kernel, dtype):
    problem = Problem(dtype, n_chunks=1, n=5, seed=5)
    problem.indices = np.arange(5, dtype=np.int64)
    problem.theta[:] = 1.0
    problem.steps = np.array([1e-3, 1e-3, 1e-30, 1e-3, 1e-3])  # 1 +- 1e-30 rounds to 1
    cost = kernel_cost(numba_cost_body, dtype)

    approx, failed = problem.run(kernel, cost, n_threads=1)
    expected_approx, expected_failed = problem.reference(cost_of_row(cost, problem.weights))
    assert_bitwise_equal(approx, expected_approx)
    np.testing.assert_array_equal(failed, [2])
    np.testing.assert_array_equal(expected_failed, [2])
    assert np.all(approx[2:] == -123.25)


def test_kernel_uses_the_represented_step(kernel):
    """In float32, theta +- h is rounded; the quotient divides by the step actually taken."""
    theta = np.array([1.0], dtype=np.float32)
    step = 1e-7  # theta +- step rounds to 1 + 2**-23 and 1 - 2**-23, not to 1 +- 1e-7
    work = theta.reshape(1, 1).copy()
    approx, failed = np.zeros(1), np.zeros(1, np.int64)
    kernel(kernel_cost(first_coordinate, np.float32), np.ones(1), work, np.zeros(1, np.int64),
           np.array([step]), approx, failed, 1)
    # J is the identity, so dividing by the represented step gives exactly 1.
    assert failed[0] == -1
    assert approx[0] == 1.0
    assert work[0, 0] == np.float32(1.0)


# --------------------------------------------------------------------------------------------
# central_differences_c


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_c_ctypes_cost_matches_reference(core, dtype, n_threads):
    problem = Problem(dtype, n_chunks=n_threads, seed=1)
    cost = make_ctypes_cost(dtype, problem.weights)
    address = c_cost_pointer(cost, dtype)
    assert address == ctypes.cast(cost, ctypes.c_void_p).value

    approx, failed = problem.run_c(address, n_threads, data_address=0)
    expected_approx, expected_failed = problem.reference(
        lambda row: python_cost(row, problem.weights)
    )
    assert_bitwise_equal(failed, expected_failed)
    assert_bitwise_equal(approx, expected_approx)
    assert np.all(failed == -1)


def test_c_validates_cheap_things(core):
    work = np.zeros((2, 4))
    indices = np.array([0, 1, 2], np.int64)
    steps, approx = np.ones(3), np.zeros(3)
    failed = np.zeros(2, np.int64)
    cost = make_ctypes_cost(np.float64, np.ones(4))
    address = c_cost_pointer(cost, np.float64)
    call = core.central_differences_c

    with pytest.raises(ValueError, match=r"n_threads must be >= 1, got 0"):
        call(address, 0, work, indices, steps, approx, failed, 0)
    with pytest.raises(ValueError, match=r"steps must have the length of indices \(3\), got 2"):
        call(address, 0, work, indices, steps[:2], approx, failed, 1)
    with pytest.raises(ValueError, match=r"approx must have the length of indices \(3\), got 4"):
        call(address, 0, work, indices, steps, np.zeros(4), failed, 1)
    with pytest.raises(ValueError, match=r"failed must have length work.shape\[0\] \(2\), got 3"):
        call(address, 0, work, indices, steps, approx, np.zeros(3, np.int64), 1)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\).*got 4 at position 1"):
        call(address, 0, work, np.array([0, 4, 1], np.int64), steps, approx, failed, 1)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\).*got -1 at position 2"):
        call(address, 0, work, np.array([0, 1, -1], np.int64), steps, approx, failed, 1)
    with pytest.raises(ValueError, match=r"cost_address must be a non-null function address"):
        call(0, 0, work, indices, steps, approx, failed, 1)
    with pytest.raises(ValueError, match=r"work must have at least one row"):
        call(address, 0, np.zeros((0, 4)), indices, steps, approx, np.zeros(0, np.int64), 1)
    # Wrong dtypes or non-contiguous arrays are refused by the typed memoryviews.
    with pytest.raises(ValueError):
        call(address, 0, work, indices.astype(np.int32), steps, approx, failed, 1)
    with pytest.raises(ValueError):
        call(address, 0, np.zeros((4, 2)).T, indices, steps, approx, failed, 1)
    with pytest.raises(TypeError):
        call(address, 0, work.astype(np.int64), indices, steps, approx, failed, 1)


# --------------------------------------------------------------------------------------------
# central_differences_py


@pytest.mark.parametrize("n_threads", [1, 2])
def test_py_non_finite_cost_sets_failed(core, n_threads):
    problem = Problem(np.float64, n_chunks=2, n=6, seed=8)
    problem.indices = np.arange(6, dtype=np.int64)
    problem.steps = np.full(6, 1e-3)
    work, approx, failed = problem.buffers()

    def evaluate(chunk, i):
        return np.inf if i == 4 and work[chunk, 4] < problem.theta[4] else 1.0

    core.central_differences_py(
        evaluate, work, problem.indices, problem.steps, approx, failed, n_threads
    )
    np.testing.assert_array_equal(failed, [-1, 4])
    assert_bitwise_equal(work, np.tile(problem.theta, (2, 1)))


class CostError(Exception):
    pass


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("error_type", [CostError, KeyboardInterrupt])
@pytest.mark.parametrize("failing_call", [1, 2, 7])
def test_py_exception_propagates_unchanged_and_restores_work(
    core, dtype, n_threads, error_type, failing_call
):
    problem = Problem(dtype, n_chunks=n_threads, seed=9)
    work, approx, failed = problem.buffers()
    error = error_type("raised by the cost")
    calls = 0

    def evaluate(chunk, i):
        nonlocal calls
        calls += 1
        if calls == failing_call:
            raise error
        return python_cost(work[chunk], problem.weights)

    with pytest.raises(error_type) as info:
        core.central_differences_py(
            evaluate, work, problem.indices, problem.steps, approx, failed, n_threads
        )
    assert info.value is error
    # The traceback still reaches the frame that raised.
    assert info.traceback[-1].name == "evaluate"
    # No thread calls the cost once it has raised.
    assert calls == failing_call
    assert_bitwise_equal(work, np.tile(problem.theta, (n_threads, 1)))


def test_py_bad_return_value_propagates(core):
    problem = Problem(np.float64, n_chunks=1, seed=10)
    work, approx, failed = problem.buffers()
    with pytest.raises(TypeError, match="real number"):
        core.central_differences_py(
            lambda chunk, i: "not a number", work, problem.indices, problem.steps, approx,
            failed, 1,
        )
    assert_bitwise_equal(work, np.tile(problem.theta, (1, 1)))


def test_py_validates_cheap_things(core):
    work = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match=r"n_threads must be >= 1, got -1"):
        core.central_differences_py(
            lambda chunk, i: 0.0, work, np.zeros(1, np.int64), np.ones(1), np.zeros(1),
            np.zeros(1, np.int64), -1,
        )


# --------------------------------------------------------------------------------------------
# block_norms


def test_block_norms_matches_reference_bitwise(core):
    rng = np.random.default_rng(11)
    m = 40
    approx = rng.normal(size=m) * 10.0 ** rng.integers(-8, 8, m)
    dtheta = approx + rng.normal(size=m) * 1e-7
    offsets = np.array([0, 3, 3, 17, 39, 40], np.int64)
    norms = np.full((5, 3), np.nan)
    expected = np.full((5, 3), np.nan)

    core.block_norms(approx, dtheta, offsets, norms)
    _reference.block_norms(approx, dtheta, offsets, expected)
    assert_bitwise_equal(norms, expected)
    np.testing.assert_array_equal(norms[1], [0.0, 0.0, 0.0])


def test_block_norms_propagates_non_finite(core):
    approx = np.array([1.0, np.nan, 2.0, np.inf])
    dtheta = np.array([1.0, 0.0, 2.0, 0.0])
    offsets = np.array([0, 2, 4], np.int64)
    norms = np.zeros((2, 3))
    expected = np.zeros((2, 3))
    core.block_norms(approx, dtheta, offsets, norms)
    _reference.block_norms(approx, dtheta, offsets, expected)
    assert_bitwise_equal(norms, expected)
    assert np.isnan(norms[0, 0]) and np.isinf(norms[1, 1])


def test_block_norms_matches_numba_twin(core, numba):
    kernels = importlib.import_module("fastgc.engines._numba_kernels")
    rng = np.random.default_rng(12)
    approx, dtheta = rng.normal(size=25), rng.normal(size=25)
    offsets = np.array([0, 10, 11, 25], np.int64)
    norms, expected = np.zeros((3, 3)), np.zeros((3, 3))
    core.block_norms(approx, dtheta, offsets, norms)
    kernels.block_norms(approx, dtheta, offsets, expected)
    assert_bitwise_equal(norms, expected)


def test_block_norms_validates_shapes(core):
    approx, dtheta = np.zeros(4), np.zeros(4)
    with pytest.raises(ValueError, match=r"dtheta must have the length of approx \(4\), got 3"):
        core.block_norms(approx, np.zeros(3), np.array([0, 4], np.int64), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"norms must have shape \(2, 3\), got \(1, 3\)"):
        core.block_norms(approx, dtheta, np.array([0, 2, 4], np.int64), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"offsets must be non-decreasing within \[0, 4\]"):
        core.block_norms(approx, dtheta, np.array([0, 3, 2], np.int64), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"got 5 at position 1"):
        core.block_norms(approx, dtheta, np.array([0, 5], np.int64), np.zeros((1, 3)))
