"""Threads (``fastgc/_threads.py``): what ``n_threads`` means, the usable maximum and the
environment, the default set by ``set_num_threads`` and the ``threads`` context manager."""

from __future__ import annotations

import numpy as np
import pytest

import fastgc
from conftest import assert_untouched, check_option, require_engine
from costs import plain_cost
from fastgc._threads import resolve_n_threads, usable_threads

pytestmark = pytest.mark.usefixtures("no_thread_default")


@pytest.mark.parametrize(
    "n_threads, message",
    [
        (0, r"n_threads must not be 0"),
        (1.5, r"n_threads must be None or an int, got float 1.5"),
        ("2", r"n_threads must be None or an int, got str '2'"),
        (True, r"n_threads must be None or an int, got bool True"),
        (-10_000, r"n_threads=-10000 counts back past the"),
    ],
)
def test_bad_n_threads(inputs, n_threads, message):
    with pytest.raises(fastgc.InvalidInputError, match=message):
        check_option(inputs, n_threads=n_threads)


@pytest.fixture
def clean_thread_env(monkeypatch):
    for variable in ("FASTGC_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_thread_count_none_positive_and_negative(clean_thread_env):
    maximum = usable_threads()
    assert maximum >= 1
    assert resolve_n_threads(None) == maximum
    assert fastgc.get_num_threads() == maximum
    assert resolve_n_threads(1) == 1
    assert resolve_n_threads(np.int64(1)) == 1
    assert resolve_n_threads(maximum) == maximum
    assert resolve_n_threads(-1) == maximum
    assert resolve_n_threads(-maximum) == 1
    with pytest.raises(fastgc.InvalidInputError, match=rf"n_threads=-{maximum + 1} counts back"):
        resolve_n_threads(-(maximum + 1))


@pytest.mark.parametrize("bad", [0, 1.5, "2", True, False, 2.0])
def test_thread_count_refused(clean_thread_env, bad):
    with pytest.raises(fastgc.InvalidInputError, match=r"n_threads must"):
        resolve_n_threads(bad)
    with pytest.raises(fastgc.InvalidInputError, match=r"n_threads must"):
        fastgc.set_num_threads(bad)
    with pytest.raises(fastgc.InvalidInputError, match=r"n_threads must"):
        with fastgc.threads(bad):
            pass  # pragma: no cover
    assert fastgc.get_num_threads() == usable_threads()


def test_thread_count_above_the_maximum_is_clamped_with_a_warning(clean_thread_env):
    maximum = usable_threads()
    with pytest.warns(fastgc.FastGCWarning, match=rf"n_threads={maximum + 3} is more than the "
                                                  rf"{maximum} usable"):
        assert resolve_n_threads(maximum + 3) == maximum


def test_check_clamps_threads_with_a_warning_pointing_at_the_caller(clean_thread_env, inputs):
    require_engine("cython")
    params, grads, before = inputs
    maximum = usable_threads()
    with pytest.warns(fastgc.FastGCWarning, match="usable") as caught:
        result = fastgc.check(plain_cost, params, grads, engine="cython",
                              n_threads=maximum + 1, progress=False)
    assert result.n_threads == maximum
    assert caught[0].filename == __file__
    assert_untouched(params, grads, before)


def test_thread_limit_from_the_environment(clean_thread_env):
    clean_thread_env.setenv("OMP_NUM_THREADS", "1")
    assert usable_threads() == 1
    assert resolve_n_threads(None) == 1
    assert resolve_n_threads(-1) == 1
    clean_thread_env.delenv("OMP_NUM_THREADS")
    clean_thread_env.setenv("NUMBA_NUM_THREADS", "1")
    assert usable_threads() == 1


def test_fastgc_num_threads_variable(clean_thread_env):
    maximum = usable_threads()
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "1")
    assert fastgc.get_num_threads() == 1
    assert resolve_n_threads(None) == 1
    assert resolve_n_threads(-1) == maximum  # an explicit count wins over the variable
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "-1")
    assert fastgc.get_num_threads() == maximum
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "  ")
    assert fastgc.get_num_threads() == maximum
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "two")
    with pytest.raises(fastgc.InvalidInputError, match=r"FASTGC_NUM_THREADS must be an integer, "
                                                       r"got 'two'"):
        fastgc.get_num_threads()
    clean_thread_env.setenv("FASTGC_NUM_THREADS", "0")
    with pytest.raises(fastgc.InvalidInputError, match=r"FASTGC_NUM_THREADS must not be 0"):
        fastgc.get_num_threads()


def test_set_num_threads_default_and_its_precedence(clean_thread_env):
    maximum = usable_threads()
    clean_thread_env.setenv("FASTGC_NUM_THREADS", str(maximum))
    fastgc.set_num_threads(1)
    assert fastgc.get_num_threads() == 1  # the default wins over the variable
    assert resolve_n_threads(-1) == maximum  # an explicit count wins over the default
    fastgc.set_num_threads(-1)
    assert fastgc.get_num_threads() == maximum
    fastgc.set_num_threads(None)
    assert fastgc.get_num_threads() == maximum


def test_threads_context_manager_restores_even_on_error(clean_thread_env):
    maximum = usable_threads()
    fastgc.set_num_threads(-1)
    with fastgc.threads(1) as count:
        assert count == 1
        assert fastgc.get_num_threads() == 1
        with fastgc.threads(None) as inner:
            assert inner == maximum
        assert fastgc.get_num_threads() == 1
    assert fastgc.get_num_threads() == maximum
    with pytest.raises(RuntimeError, match="inside"):
        with fastgc.threads(1):
            raise RuntimeError("inside")
    assert fastgc.get_num_threads() == maximum
    with pytest.raises(fastgc.InvalidInputError, match="counts back past"):
        with fastgc.threads(-(maximum + 1)):
            pass  # pragma: no cover
    assert fastgc.get_num_threads() == maximum
