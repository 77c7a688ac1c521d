"""The local run loop (``fastgc/executors/local.py``): the progress bar, Ctrl-C from inside the
cost (which leaves the arrays and every thread setting as they were), and the check that every
copy of theta came back bitwise, which catches a cost that writes into its input."""

from __future__ import annotations

import numpy as np
import pytest

import fastgc
import models
from conftest import assert_untouched, require_engine, run
from costs import WRITE, check_faulty, plain_cost

pytestmark = pytest.mark.usefixtures("no_thread_default")


# --------------------------------------------------------------------------------------------
# The progress bar.


def test_progress_bar_shows_and_changes_nothing(engine, mlp, capsys):
    params, X, Y = mlp
    grads = models.grads(params, X, Y)
    quiet = run(engine, params, X, Y, grads)
    capsys.readouterr()
    shown = run(engine, params, X, Y, grads, progress=True)
    err = capsys.readouterr().err
    assert "fastgc:" in err and f"/{quiet.layout.size} " in err  # a bar over all components
    np.testing.assert_array_equal(shown.approx, quiet.approx)
    assert shown.verdict == quiet.verdict


# --------------------------------------------------------------------------------------------
# The restoration check.


def test_cost_writing_into_its_input(engine, inputs):
    params, grads, before = inputs
    with pytest.raises(
        fastgc.CostError, match=r"wrote into the parameters .*params\['b1'\]\[1, 0\] changed"
    ) as raised:
        check_faulty(engine, params, grads, WRITE)
    assert raised.value.location == ("b1", (1, 0))
    assert_untouched(params, grads, before)


# --------------------------------------------------------------------------------------------
# Ctrl-C from inside the cost.


@pytest.mark.parametrize("engine_name, n_threads", [("python", 1), ("cython", 2), ("cython", 1)])
def test_keyboard_interrupt_leaves_everything_clean(inputs, engine_name, n_threads):
    require_engine(engine_name)
    from threadpoolctl import threadpool_info

    params, grads, before = inputs
    reference = fastgc.check(plain_cost, params, grads, engine=engine_name, n_threads=n_threads,
                             progress=False)
    calls = 0

    def interrupted_cost(p):
        nonlocal calls
        calls += 1
        if calls == 7:
            raise KeyboardInterrupt
        return plain_cost(p)

    numba_threads = None
    if engine_status_ok("numba"):
        import numba

        numba_threads = numba.get_num_threads()
    fastgc_threads = fastgc.get_num_threads()
    pools = threadpool_info()

    with pytest.raises(KeyboardInterrupt, match=r"fastgc check interrupted after \d+ of 15"):
        fastgc.check(interrupted_cost, params, grads, engine=engine_name, n_threads=n_threads,
                     progress=False)
    assert calls >= 7
    assert_untouched(params, grads, before)
    assert fastgc.get_num_threads() == fastgc_threads
    assert threadpool_info() == pools
    if numba_threads is not None:
        import numba

        assert numba.get_num_threads() == numba_threads

    again = fastgc.check(interrupted_cost, params, grads, engine=engine_name,
                         n_threads=n_threads, progress=False)
    assert again.verdict == reference.verdict == "correct"
    np.testing.assert_array_equal(again.approx, reference.approx)
    assert again.difference == reference.difference
    assert_untouched(params, grads, before)


def engine_status_ok(name: str) -> bool:
    from fastgc.engines import engine_status

    return engine_status(name) is None
