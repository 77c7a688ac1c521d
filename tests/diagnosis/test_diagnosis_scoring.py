"""Per-parameter summaries against an independent, block-by-block computation.

The diagnosis scores theta a chunk at a time, summing over every block that meets a chunk at
once; these tests shrink the chunk so that blocks straddle chunk edges, add an empty parameter
and a scalar one, and compare each ParameterReport with plain NumPy on that block alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastgc
from fastgc.diagnosis import scoring

SHAPES = {"A": (3, 4), "empty": (0, 2), "s": (), "B": (17,), "C": (2, 3, 2)}


def problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
    weights = {name: rng.uniform(0.5, 2.0, shape) for name, shape in SHAPES.items()}

    def cost(p):
        return float(sum(np.sum(weights[k] * np.sin(p[k])) for k in p))

    def exact(p):
        return {k: weights[k] * np.cos(p[k]) for k in p}

    return params, cost, exact


def lecture(a: np.ndarray, d: np.ndarray) -> float:
    denominator = np.linalg.norm(a) + np.linalg.norm(d)
    return 0.0 if denominator == 0 else float(np.linalg.norm(a - d) / denominator)


def expected_reports(result, floor: float) -> dict:
    """Each block's summary from its own slice of approx and dtheta."""
    layout = result.layout
    reports = {}
    for k, name in enumerate(layout.names):
        lo, hi = int(layout.offsets[k]), int(layout.offsets[k + 1])
        a, d = result.approx[lo:hi], result.dtheta[lo:hi]
        finite = np.isfinite(d)
        raw = np.where(finite, np.abs(a - d), np.inf)
        if hi > lo:
            worst = int(np.argmax(raw))
            worst_index = tuple(int(j) for j in np.unravel_index(worst, SHAPES[name]))
            max_error = float(raw[worst])
        else:
            worst_index, max_error = (), 0.0
        residual = np.where(finite, np.maximum(np.abs(a - d) - floor, 0.0), 0.0)
        numeric, analytic = a[finite], d[finite]
        denominator = np.linalg.norm(numeric) + np.linalg.norm(analytic)
        adjusted = (
            math.inf if not finite.all()
            else 0.0 if denominator == 0 else float(np.linalg.norm(residual) / denominator)
        )
        reports[name] = dict(
            difference=lecture(a, d) if finite.all() else math.nan,
            adjusted=adjusted,
            max_error=max_error,
            worst_index=worst_index,
            n_non_finite=int((~finite).sum()),
        )
    return reports


@pytest.mark.parametrize("chunk", [3, 5, 7, 1 << 14])
@pytest.mark.parametrize("planted", ["none", "bugs", "nan"])
def test_per_parameter_summaries_match_a_block_by_block_computation(monkeypatch, chunk, planted):
    monkeypatch.setattr(scoring, "CHUNK", chunk)
    params, cost, exact = problem()
    grads = exact(params)
    if planted in ("bugs", "nan"):
        grads["B"][5] *= 3.0
        grads["C"][1, 2, 0] += 0.5
    if planted == "nan":
        grads["A"][2, 1] = np.nan
        grads["C"][0, 0, 1] = np.inf
    result = fastgc.check(cost, params, grads, engine="python", progress=False)
    assert result.labels or planted == "none"
    # No component was corrected by re-examination here except the planted ones, so the
    # adjusted numbers follow from approx, dtheta and the noise floor alone.
    unplanted = {i for i in result.corrected
                 if result.layout.locate(i) not in {("B", (5,)), ("C", (1, 2, 0))}}
    assert not unplanted
    expected = expected_reports(result, result.noise_floor)
    for name, report in result.per_parameter.items():
        want = expected[name]
        assert report.worst_index == want["worst_index"], name
        assert report.max_abs_error == pytest.approx(want["max_error"], rel=1e-12), name
        assert report.n_non_finite == want["n_non_finite"], name
        if not want["n_non_finite"]:
            assert report.difference == pytest.approx(want["difference"], rel=1e-12), name
        if want["n_non_finite"]:
            assert report.adjusted_difference == math.inf and report.verdict == "bug"
        elif planted == "none" or name not in ("B", "C"):
            assert report.adjusted_difference == pytest.approx(want["adjusted"], rel=1e-9,
                                                               abs=1e-300), name
            assert report.verdict == "correct", name
    if planted != "none":
        assert result.per_parameter["B"].verdict == "bug"
        assert result.per_parameter["C"].verdict == "bug"
        assert result.per_parameter["B"].worst_index == (5,)
    assert result.per_parameter["empty"].n_disagreeing == 0
    assert result.per_parameter["empty"].verdict == "correct"


def test_chunking_does_not_change_the_result(monkeypatch):
    params, cost, exact = problem(1)
    grads = exact(params)
    grads["B"][3] *= 1.5
    whole = fastgc.check(cost, params, grads, engine="python", progress=False)
    monkeypatch.setattr(scoring, "CHUNK", 4)
    chunked = fastgc.check(cost, params, grads, engine="python", progress=False)
    assert chunked.verdict == whole.verdict
    np.testing.assert_array_equal(chunked.scores, whole.scores)
    for name in SHAPES:
        a, b = whole.per_parameter[name], chunked.per_parameter[name]
        assert (a.verdict, a.worst_index, a.max_abs_error, a.n_disagreeing) == (
            b.verdict, b.worst_index, b.max_abs_error, b.n_disagreeing)
        assert a.adjusted_difference == pytest.approx(b.adjusted_difference, rel=1e-12)


def _diagnosis_fields(result) -> tuple:
    """Every field the diagnosis decides, floats and arrays as their bits."""
    reports = tuple(
        (p.name, p.shape, p.difference.hex(), p.adjusted_difference.hex(), p.verdict,
         p.max_abs_error.hex(), p.worst_index, p.n_disagreeing, p.n_non_finite, p.n_unresolved)
        for p in result.per_parameter.values()
    )
    return (result.verdict, result.difference.hex(), reports, result.scores.tobytes(),
            result.noise_floor.hex(), result.labels, result.corrected, result.explained,
            result.thresholds, result.n_evaluations, str(result).split("cost evaluations")[0])


def _checks_both_ways(monkeypatch, run):
    """``run()`` with the shortcut for agreeing components, then with it declined; and how
    often it was taken."""
    import fastgc.diagnosis as diagnosis

    taken = []
    shortcut = scoring.score_agreement

    def counted(*args, **kwargs):
        found = shortcut(*args, **kwargs)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(diagnosis, "score_agreement", counted)
    fast = run()
    monkeypatch.setattr(diagnosis, "score_agreement", lambda *args, **kwargs: None)
    return fast, run(), any(taken)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_shortcut_for_agreement_gives_the_general_diagnosis_bit_for_bit(monkeypatch, dtype):
    params, cost, exact = problem(2)
    params = {k: v.astype(dtype) for k, v in params.items()}
    # A large constant in J raises the noise floor above some differences, so "within the
    # noise floor" is counted as well.
    for offset in (0.0, 300.0):
        def shifted(p, offset=offset):
            return cost(p) + offset

        fast, general, taken = _checks_both_ways(
            monkeypatch, lambda: fastgc.check(shifted, params, exact(params), engine="python",
                                              progress=False))
        assert taken
        assert fast.verdict == "correct"
        assert _diagnosis_fields(fast) == _diagnosis_fields(general)
    if dtype == np.float64:  # the shifted cost: some components agree only within the floor
        assert fast.explained["within the noise floor"] > 0


def test_the_shortcut_declines_a_non_finite_gradient_the_floor_would_hide(monkeypatch):
    params, cost, exact = problem(3)
    grads = exact(params)
    grads["B"][4] = np.inf  # |a - inf| <= rtol * inf: not flagged, yet not finite
    fast, general, taken = _checks_both_ways(
        monkeypatch, lambda: fastgc.check(cost, params, grads, engine="python", progress=False))
    assert not taken
    assert fast.per_parameter["B"].n_non_finite == 1 and fast.verdict == "bug"
    assert _diagnosis_fields(fast) == _diagnosis_fields(general)
