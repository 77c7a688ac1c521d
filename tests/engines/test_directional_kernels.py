"""The directional kernels: seeded random directions within index ranges, in every engine.

Each engine runs ``directional_differences`` on its own kernel (Numba, the extension's C-cost
and Python-cost loops, the pure-Python reference); for one cost they must agree to the bit with
the reference, give the same bits for any thread count, put every row of the work copies back,
and predict J+ - J- from the analytic gradient over the moves actually represented.
"""

import numpy as np
import pytest

import models
from conftest import TWO_THREADS, require_engine
from fastgc import CostError
from fastgc._cost import Cost, CostKind, analytic_gradients
from fastgc._layout import flatten
from fastgc.engines import _reference, get_engine
from fastgc.executors import LocalExecutor

DTYPES = [np.float64, np.float32]


class Tasks:
    """Ranges inside and across blocks, both kinds of entries, relative steps, a huge seed."""

    def __init__(self, dtype):
        self.lo = np.array([0, 20, 25, 0, 40, 7], np.int64)
        self.hi = np.array([20, 25, 40, 43, 43, 8], np.int64)
        self.seeds = np.array([1, 2, 3, 2**63 + 5, 7, 11], np.uint64)
        self.kinds = np.array([0, 1, 2, 3, 1, 0], np.int64)
        self.steps = np.full(6, 1e-6 if dtype == np.float64 else 1e-2)

    def run(self, case, dtype, n_threads, bug=None):
        params, X, Y = models.make_mlp(0, dtype)
        theta, layout = flatten(params)
        dtheta, _ = analytic_gradients(models.grads(params, X, Y, bug), theta, layout, (X, Y))
        function, args = case.cost_for(X, Y)
        cost = Cost.classify(function, args, layout)
        executor = LocalExecutor(get_engine(case.engine), cost, theta, n_threads)
        out = np.full((self.lo.shape[0], 3), -123.25)
        before = theta.copy()
        with executor.open() as session:  # checks on leaving that every copy came back
            session.directional(dtheta, self.lo, self.hi, self.seeds, self.kinds, self.steps,
                                out)
        assert theta.tobytes() == before.tobytes()
        return out, (theta, dtheta, cost, X, Y)


def reference(tasks, theta, dtheta, evaluate_row):
    work = theta[np.newaxis].copy()
    out = np.full((tasks.lo.shape[0], 3), -123.25)
    failed = np.zeros(1, np.int64)
    _reference.directional_differences(
        lambda chunk, i: evaluate_row(work[chunk]), work, theta, dtheta, tasks.lo, tasks.hi,
        tasks.seeds, tasks.kinds, tasks.steps, out, failed,
    )
    assert failed[0] == -1
    assert work[0].tobytes() == theta.tobytes()
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_directional_matches_reference_and_thread_counts_bitwise(engine, dtype):
    tasks = Tasks(dtype)
    out, (theta, dtheta, cost, X, Y) = tasks.run(engine, dtype, 1)
    out_parallel, _ = tasks.run(engine, dtype, TWO_THREADS)
    assert out.tobytes() == out_parallel.tobytes()
    if engine.cost_kind is CostKind.C and dtype == np.float32:
        return  # the C test cost computes in float64: another cost than the njit one
    if engine.cost_kind is CostKind.PYTHON:
        expected = reference(tasks, theta, dtheta, lambda row: cost.value_at(row, 0))
    else:
        flat_cost = models.numba_cost()
        expected = reference(tasks, theta, dtheta, lambda row: flat_cost(row, X, Y))
    assert out.tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_directional_prediction_agrees_for_correct_gradients_only(engine, dtype):
    tasks = Tasks(dtype)
    correct, _ = tasks.run(engine, dtype, TWO_THREADS)
    relative = np.abs(correct[:, 0] - correct[:, 1]) / np.abs(correct[:, 1])
    assert np.all(relative < (1e-7 if dtype == np.float64 else 2e-3))
    buggy, _ = tasks.run(engine, dtype, TWO_THREADS, bug="dW2_doubled")
    relative = np.abs(buggy[:, 0] - buggy[:, 1]) / np.abs(buggy[:, 1])
    # Tasks 2 and 3 move W2 (flat 25..39); the others do not touch it.
    assert np.all(relative[[2, 3]] > 0.05)
    assert np.all(relative[[0, 1, 4, 5]] < (1e-7 if dtype == np.float64 else 2e-3))


def test_direction_entries_are_signs_or_unit_variance_and_agree_with_numba():
    from fastgc.engines import _numba_kernels

    seeds = [0, 1, 2**64 - 1, 12345678901234567]
    for kind in (0, 1):
        values = np.array([_reference.direction_entry(s, i, kind)
                           for s in seeds for i in range(2000)])
        compiled = np.array([_numba_kernels.direction_entry(np.uint64(s), i, kind)
                             for s in seeds for i in range(0, 2000, 97)])
        np.testing.assert_array_equal(compiled, values.reshape(4, 2000)[:, ::97].ravel())
        if kind == 0:
            assert set(np.unique(values)) == {-1.0, 1.0}
        assert abs(values.mean()) < 0.05 and abs(values.var() - 1.0) < 0.06


def test_relative_steps_scale_each_move_by_theta():
    """kind & 2 moves entry i by h v_i max(1, |theta_i|): for J = sum theta_i, J+ - J- is
    2 h sum v_i max(1, |theta_i|), and the prediction with dtheta = 1 says the same."""
    theta = np.array([0.5, -3.0, 10.0, 0.0])
    work = theta[np.newaxis].copy()
    out, failed = np.zeros((1, 3)), np.zeros(1, np.int64)
    _reference.directional_differences(
        lambda chunk, i: float(work[chunk].sum()), work, theta, np.ones(4),
        np.array([0]), np.array([4]), np.array([9], np.uint64), np.array([2]),
        np.array([2.0**-10]), out, failed,
    )
    signs = np.array([_reference.direction_entry(9, i, 2) for i in range(4)])
    expected = 2 * 2.0**-10 * np.sum(signs * np.maximum(1, np.abs(theta)))
    assert out[0, 0] == pytest.approx(expected, rel=1e-12)
    assert out[0, 1] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("engine_name", ["cython", "python"])
def test_directional_non_finite_cost_names_the_range(engine_name):
    require_engine(engine_name)
    params, X, Y = models.make_mlp(0)
    theta, layout = flatten(params)

    def cost(p, X, Y):
        return float("nan") if p["b2"][0, 0] > params["b2"][0, 0] + 0.5 else models.cost(p, X, Y)

    classified = Cost.classify(cost, (X, Y), layout)
    executor = LocalExecutor(get_engine(engine_name), classified, theta, 1)
    out = np.zeros((1, 3))
    with executor.open() as session:
        with pytest.raises(CostError, match=r"theta\[40:43\] \(params\['b2'\]\[0, 0\] to"):
            session.directional(np.zeros(43), np.array([40]), np.array([43]),
                                np.array([1], np.uint64), np.array([0]), np.array([1.0]), out)
