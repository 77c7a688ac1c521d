"""Tests of ``fastgc.suggest_threads`` and ``python -m fastgc tune``."""

import numpy as np
import pytest

import fastgc
from fastgc._threads import usable_threads
from fastgc._tune import TOLERANCE, example_mlp

numba = pytest.importorskip("numba")


@pytest.fixture(scope="module")
def mlp():
    return example_mlp(2_000)


def _assert_consistent(suggestion, candidates):
    assert sorted(suggestion.table) == sorted(candidates)
    for count, row in suggestion.table.items():
        assert row.n_threads == count
        assert row.indices_per_second > 0 and np.isfinite(row.indices_per_second)
    assert suggestion.recommended in candidates
    best = max(row.indices_per_second for row in suggestion.table.values())
    good = [c for c, row in suggestion.table.items()
            if row.indices_per_second >= (1 - TOLERANCE) * best]
    assert suggestion.recommended == min(good)
    smallest = min(candidates)
    assert suggestion.table[smallest].speedup == pytest.approx(1.0)
    for row in suggestion.table.values():
        expected = row.indices_per_second / suggestion.table[smallest].indices_per_second
        assert row.speedup == pytest.approx(expected)


def test_table_has_every_candidate_and_recommendation_follows_the_rule(mlp):
    cost, theta, args = mlp
    before = numba.get_num_threads()
    suggestion = fastgc.suggest_threads(cost, theta, args=args, seconds=0.3)
    assert numba.get_num_threads() == before
    _assert_consistent(suggestion, list(range(1, usable_threads() + 1)))
    assert suggestion.engine == "numba"
    assert suggestion.n_parameters == theta.shape[0]
    assert 1 <= suggestion.sample_size <= theta.shape[0]
    text = str(suggestion)
    assert "recommended" in text
    for count in suggestion.table:
        assert f"\n{count:>8} " in text


def test_thread_state_restored_after_a_changed_count(mlp):
    cost, theta, args = mlp
    numba.set_num_threads(1)
    try:
        suggestion = fastgc.suggest_threads(cost, theta, args=args, candidates=[-1, 1],
                                            seconds=0.2)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    _assert_consistent(suggestion, sorted({1, usable_threads()}))


def test_inputs_are_not_modified(mlp):
    cost, theta, args = mlp
    saved = theta.copy()
    fastgc.suggest_threads(cost, theta, args=args, candidates=[1], seconds=0.1)
    assert np.array_equal(theta, saved)


def test_python_cost_runs_and_says_it_is_serial():
    X = np.random.default_rng(0).standard_normal((5, 4))

    def cost(theta):
        return float(np.sum(np.tanh(X @ theta) ** 2))

    suggestion = fastgc.suggest_threads(cost, np.ones(4), engine="python", seconds=0.05)
    _assert_consistent(suggestion, list(range(1, usable_threads() + 1)))
    assert "serial" in str(suggestion)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"candidates": [0]}, "candidates must not be 0"),
        ({"candidates": [10_000]}, "more than the"),
        ({"candidates": []}, "at least one"),
        ({"candidates": ["2"]}, "candidates must be None or an int"),
        ({"sample": 0}, "sample must be a positive int"),
        ({"seconds": -1.0}, "seconds must be a positive number"),
        ({"repeats": 0}, "repeats must be a positive int"),
    ],
)
def test_invalid_options_are_named(mlp, options, match):
    cost, theta, args = mlp
    with pytest.raises(fastgc.InvalidInputError, match=match):
        fastgc.suggest_threads(cost, theta, args=args, **options)


def test_command_line_prints_the_table(capsys):
    from fastgc.__main__ import main

    assert main(["tune", "--params", "500", "--seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "indices/s" in out and "recommended" in out
