"""Check plans: the full plan unchanged, the screen and the sampled plan against the full
check on the battery of networks, localisation of planted bugs, coverage, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import fastgc
import models
import networks
from conftest import TWO_THREADS, require_engine

CASES = networks.all_cases()
KINKED = networks.kinked_cases()


def wide_mlp(seed=0, dtype=np.float64, n_in=100, n_hidden=64, n_out=10, m=32):
    """A tanh / softmax MLP of about 7000 parameters: a cost and exact gradients."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_in, m)).astype(dtype)
    Y = np.eye(n_out, dtype=dtype)[:, rng.integers(0, n_out, m)]
    params = {
        "W1": (rng.standard_normal((n_hidden, n_in)) / np.sqrt(n_in)).astype(dtype),
        "b1": (0.1 * rng.standard_normal((n_hidden, 1))).astype(dtype),
        "W2": (rng.standard_normal((n_out, n_hidden)) / np.sqrt(n_hidden)).astype(dtype),
        "b2": (0.1 * rng.standard_normal((n_out, 1))).astype(dtype),
    }

    def cost(p):
        A1 = np.tanh(p["W1"] @ X + p["b1"])
        Z = p["W2"] @ A1 + p["b2"]
        Z = Z - Z.max(axis=0, keepdims=True)
        return float(-np.sum(Y * (Z - np.log(np.exp(Z).sum(axis=0, keepdims=True)))) / m)

    def grads(p):
        A1 = np.tanh(p["W1"] @ X + p["b1"])
        Z = p["W2"] @ A1 + p["b2"]
        P = np.exp(Z - Z.max(axis=0, keepdims=True))
        P /= P.sum(axis=0, keepdims=True)
        dZ2 = (P - Y) / m
        dZ1 = (p["W2"].T @ dZ2) * (1 - A1**2)
        return {"dW1": dZ1 @ X.T, "db1": dZ1.sum(axis=1, keepdims=True),
                "dW2": dZ2 @ A1.T, "db2": dZ2.sum(axis=1, keepdims=True)}

    return params, cost, grads


def with_bug(grads, name, change):
    def buggy(p):
        g = grads(p)
        g[name] = change(g[name].copy())
        return g
    return buggy


def set_entry(index, factor):
    def change(g):
        g[index] *= factor
        return g
    return change


# --------------------------------------------------------------------------------------------
# The full plan


def test_full_plan_is_the_default_bit_for_bit():
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y, "one_element")
    default = fastgc.check(models.cost, params, grads, args=(X, Y), progress=False)
    for plan in ("full", fastgc.Full()):
        result = fastgc.check(models.cost, params, grads, args=(X, Y), progress=False,
                              plan=plan)
        assert result.approx.tobytes() == default.approx.tobytes()
        assert result.scores.tobytes() == default.scores.tobytes()
        assert result.verdict == default.verdict and result.difference == default.difference
        assert result.n_evaluations == default.n_evaluations
    assert default.plan == "full"
    assert {c.components for c in default.coverage.values()} == {
        p.shape[0] * (p.shape[1] if len(p.shape) > 1 else 1)
        for p in default.per_parameter.values()
    } or sum(c.components for c in default.coverage.values()) == default.layout.size
    assert sum(c.components for c in default.coverage.values()) == default.layout.size


# --------------------------------------------------------------------------------------------
# The battery, screened and sampled, against what the full check finds


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_screen_on_the_battery_finds_what_the_full_check_finds(case):
    result = fastgc.check(case.cost, case.params, case.grads, engine="python", progress=False,
                          plan="screen")
    flagged = {name for name, p in result.per_parameter.items() if p.verdict == "bug"}
    if case.buggy:
        assert result.verdict == "bug", str(result)
        assert result.worst_parameter().name in case.buggy, str(result)
        assert flagged <= case.buggy, str(result)
    else:
        assert result.verdict == "correct", str(result)
    assert result.plan == "screen" and set(result.coverage) == set(case.params)


@pytest.mark.parametrize("case", KINKED, ids=[case.name for case in KINKED])
def test_screen_never_calls_a_kinked_correct_network_a_bug(case):
    result = fastgc.check(case.cost, case.params, case.grads, engine="python", progress=False,
                          plan="screen")
    if case.buggy:
        assert result.verdict != "correct", str(result)
        if case.dtype == np.float64:
            assert result.verdict == "bug", str(result)
            assert result.worst_parameter().name in case.buggy, str(result)
    else:
        assert result.verdict != "bug", str(result)


@pytest.mark.parametrize("case", CASES[::3], ids=[case.name for case in CASES[::3]])
def test_sampled_with_a_quota_above_every_block_is_the_full_check(case):
    full = fastgc.check(case.cost, case.params, case.grads, engine="python", progress=False)
    sampled = fastgc.check(case.cost, case.params, case.grads, engine="python",
                           progress=False, plan=fastgc.Sampled(per_block=10**6))
    assert sampled.approx.tobytes() == full.approx.tobytes()
    assert sampled.verdict == full.verdict
    assert all(c.components == c.size for c in sampled.coverage.values())


# --------------------------------------------------------------------------------------------
# Localisation and coverage on a wider network


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_screen_passes_a_correct_wide_network_cheaply(dtype):
    params, cost, grads = wide_mlp(dtype=dtype)
    result = fastgc.check(cost, params, grads, plan="screen", progress=False)
    assert result.verdict != "bug", str(result)
    if dtype == np.float64:
        assert result.verdict == "correct", str(result)
    n = result.layout.size
    # float32 directions cannot resolve small blocks, which are then checked one by one.
    assert result.evaluations < (0.05 if dtype == np.float64 else 0.2) * 2 * n
    for c in result.coverage.values():
        assert c.directions >= 4 and c.evaluations >= 8
        # A pass is reported with what it could have missed, unless checked whole.
        assert c.detection_limit > 0 or c.components == c.size
    assert "does not prove every component correct" in str(result)


@pytest.mark.parametrize("index", [(3, 17), (63, 99), (0, 0)])
def test_screen_localises_a_single_wrong_entry(index):
    params, cost, grads = wide_mlp()
    buggy = with_bug(grads, "dW1", set_entry(index, 1.5))
    result = fastgc.check(cost, params, buggy, plan="screen", progress=False)
    assert result.verdict == "bug", str(result)
    worst = result.worst(1)[0]
    assert (worst.name, worst.index) == ("W1", index)
    flagged = {name for name, p in result.per_parameter.items() if p.verdict == "bug"}
    assert flagged == {"W1"}
    assert result.evaluations < 400
    assert result.coverage["W1"].finding == "wrong entries located"


@pytest.mark.parametrize("block,factor", [("db1", 4.0), ("dW2", 2.0), ("db2", -1.0)])
def test_screen_names_a_block_wide_error(block, factor):
    params, cost, grads = wide_mlp()
    buggy = with_bug(grads, block, lambda g: factor * g)
    result = fastgc.check(cost, params, buggy, plan="screen", progress=False)
    flagged = {name for name, p in result.per_parameter.items() if p.verdict == "bug"}
    assert flagged == {block[1:]}, str(result)
    assert result.worst(1)[0].name == block[1:]
    assert result.evaluations < 300


def test_screen_of_a_nan_gradient_is_a_bug_naming_it():
    params, cost, grads = wide_mlp()
    buggy = with_bug(grads, "dW1", set_entry((5, 5), np.nan))
    result = fastgc.check(cost, params, buggy, plan="screen", progress=False)
    assert result.verdict == "bug"
    worst = result.worst(1)[0]
    assert (worst.name, worst.index) == ("W1", (5, 5))


def test_screen_is_reproducible_and_leaves_the_callers_arrays_alone():
    params, cost, grads = wide_mlp()
    buggy = with_bug(grads, "dW1", set_entry((7, 7), 3.0))
    before = {k: v.copy() for k, v in params.items()}
    first = fastgc.check(cost, params, buggy, plan=fastgc.Screen(seed=3), progress=False)
    again = fastgc.check(cost, params, buggy, plan=fastgc.Screen(seed=3), progress=False,
                         n_threads=TWO_THREADS, engine="cython" if require_engine("cython")
                         is None else None)
    assert first.approx.tobytes() == again.approx.tobytes()
    # The same work per block; several threads add only the serial replay of a sample.
    assert first.coverage == again.coverage
    assert again.evaluations >= first.evaluations
    assert all(params[k].tobytes() == before[k].tobytes() for k in params)


def test_screen_across_engines_and_thread_counts_agrees_bitwise(engine):
    params, X, Y = models.make_mlp(0)
    grads = models.grads(params, X, Y, "dW2_doubled")
    cost, args = engine.cost_for(X, Y)
    results = [
        fastgc.check(cost, params, grads, args=args, engine=engine.engine, plan="screen",
                     n_threads=n, progress=False)
        for n in (1, TWO_THREADS)
    ]
    assert results[0].approx.tobytes() == results[1].approx.tobytes()
    assert results[0].verdict == "bug"
    assert results[0].worst_parameter().name == "W2"


def screen_outcome(params, cost, grads, n_threads):
    """The screen's outcome as ``check`` runs it, with the pieces a replay needs."""
    from fastgc._cost import Cost, analytic_gradients, measure_baseline
    from fastgc._layout import flatten
    from fastgc._steps import choose_steps
    from fastgc.diagnosis import Prober, effective_thresholds
    from fastgc.engines import resolve_engine
    from fastgc.executors import LocalExecutor
    from fastgc.plans import PlanContext

    theta, layout = flatten(params)
    cost_ = Cost.classify(cost, (), layout)
    dtheta = analytic_gradients(grads, theta, layout, ())[0]
    steps, baseline = choose_steps(theta, None), measure_baseline(cost_, theta)
    executor = LocalExecutor(resolve_engine("cython", cost_), cost_, theta, n_threads)
    with executor.open() as session:
        outcome = fastgc.Screen().run(PlanContext(
            session, theta, dtheta, layout, steps, baseline.value, baseline.seconds,
            executor.n_chunks, False, effective_thresholds((1e-7, 1e-3), layout.dtype),
            Prober(cost_.value_at, theta)))
    return outcome, cost_, theta, dtheta


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bug", [None, "one_entry", "block_wide"])
def test_the_screen_records_every_direction_it_ran_as_the_reference_kernel_gives_it(dtype,
                                                                                     bug):
    """Every directional row of the screen, its confirmation and its localisation is kept
    (coverage counts them per block), and each, run again serially through the reference
    kernel, gives the same out bit for bit: what the replay after a parallel run relies on."""
    from fastgc.engines import get_engine
    from fastgc.engines._reference import RELATIVE

    require_engine("cython")
    params, cost, grads = wide_mlp(dtype=dtype)
    if bug == "one_entry":
        grads = with_bug(grads, "dW1", set_entry((3, 17), 1.5))
    elif bug == "block_wide":
        grads = with_bug(grads, "dW2", lambda g: 2.0 * g)
    outcome, cost_, theta, dtheta = screen_outcome(params, cost, grads, TWO_THREADS)
    rows = outcome.directional_rows
    assert len(rows) == sum(c.directions for c in outcome.coverage.values())
    # Four blocks of four directions, and more where a bug is confirmed and localised.
    assert len(rows) >= 16 and (len(rows) > 16 or bug is None or dtype == np.float32)
    lo, hi, seeds, kinds, steps, out = rows.arrays()
    assert np.all((kinds & RELATIVE) == (RELATIVE if dtype == np.float32 else 0))
    again, failed = np.empty_like(out), np.empty(1, np.int64)
    scratch = theta[np.newaxis].copy()
    get_engine("python").make_directional_runner(cost_, scratch, theta, dtheta)(
        lo, hi, seeds, kinds, steps, again, failed)
    assert failed[0] == -1 and again.tobytes() == out.tobytes()


def test_sampled_plan_reports_its_coverage():
    params, cost, grads = wide_mlp()
    buggy = with_bug(grads, "db1", lambda g: 4 * g)
    result = fastgc.check(cost, params, buggy, plan=fastgc.Sampled(per_block=40, seed=2),
                          progress=False)
    assert result.plan == "sampled"
    assert [c.components for c in result.coverage.values()] == [40, 40, 40, 10]
    assert result.evaluations < 0.05 * 2 * result.layout.size  # re-examination included
    assert {n for n, p in result.per_parameter.items() if p.verdict == "bug"} == {"b1"}
    assert "says nothing about the components that were not sampled" in str(result)


def test_budget_runs_the_full_check_when_it_fits_and_the_screen_otherwise():
    params, cost, grads = wide_mlp()
    roomy = fastgc.check(cost, params, grads, budget=1e6, progress=False)
    assert roomy.plan == "full"
    tight = fastgc.check(cost, params, grads, budget=1e-6, progress=False)
    assert tight.plan == "screen" and tight.verdict == "correct"
    assert tight.evaluations < roomy.evaluations


@pytest.mark.parametrize("kwargs,message", [
    ({"plan": "fast"}, r"plan must be one of \['full', 'sampled', 'screen'\].*got 'fast'"),
    ({"plan": 3}, r"plan must be one of .* got 3"),
    ({"plan": "screen", "budget": 10}, r"pass plan= or budget=, not both"),
    ({"budget": -1.0}, r"budget must be a positive number of seconds, got -1.0"),
    ({"budget": "soon"}, r"budget must be a positive number of seconds, got 'soon'"),
])
def test_bad_plan_arguments_are_clear_errors(kwargs, message):
    params, cost, grads = wide_mlp()
    with pytest.raises(fastgc.InvalidInputError, match=message):
        fastgc.check(cost, params, grads, progress=False, **kwargs)


@pytest.mark.parametrize("make,message", [
    (lambda: fastgc.Sampled(per_block=0), r"per_block must be a positive integer, got 0"),
    (lambda: fastgc.Sampled(seed=-1), r"seed must be a non-negative integer, got -1"),
    (lambda: fastgc.Screen(directions=1.5), r"directions must be a positive integer"),
])
def test_bad_plan_options_are_clear_errors(make, message):
    with pytest.raises(fastgc.InvalidInputError, match=message):
        make()


# --------------------------------------------------------------------------------------------
# What kind of bug


def _row(g):
    g[5] *= 1.3
    return g


def _column(g):
    g[:, 7] *= 1.3
    return g


PATTERNS = [
    ("dW1", set_entry((3, 17), 1.5), "a single wrong entry at [3, 17]", ("full", "screen")),
    ("db1", lambda g: 4 * g, "scaled by 4 (every checked component): a factor of 4 too many",
     ("full", "screen")),
    ("dW2", lambda g: -g, "sign flipped (every checked component)", ("full", "screen")),
    ("dW2", lambda g: 32 * g, "scaled by 32 (every checked component): a factor of 32 too "
     "many (the batch size? a 1/m)", ("full", "screen")),
    ("dW1", _row, "a wrong row: [5, :]", ("full", "screen")),
    ("dW1", _column, "a wrong column: [:, 7]", ("full", "screen")),
]


@pytest.mark.parametrize("block,change,expected,plans", PATTERNS,
                         ids=["entry", "x4", "sign", "batch", "row", "column"])
def test_the_kind_of_bug_is_named(block, change, expected, plans):
    params, cost, grads = wide_mlp()
    for plan in plans:
        result = fastgc.check(cost, params, with_bug(grads, block, change), plan=plan,
                              progress=False)
        assert fastgc.bug_patterns(result) == {block[1:]: expected}, plan
        assert f"kind of bug in {block[1:]}: {expected}" in str(result)


def test_a_transposed_and_a_missing_term_are_named():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 6))
    params = {"W": rng.standard_normal((6, 6))}

    def cost(p):
        return float(np.sum(A * p["W"]) + 0.5 * np.sum(p["W"] ** 2))

    exact = A + params["W"]
    transposed = fastgc.check(cost, params, {"dW": exact.T}, progress=False)
    assert fastgc.bug_patterns(transposed) == {
        "W": "transposed: the gradient of entry [i, j] sits at [j, i]"}
    missing = fastgc.check(cost, params, {"dW": A}, progress=False)
    assert fastgc.bug_patterns(missing)["W"].endswith("a missing or extra term")


# --------------------------------------------------------------------------------------------
# float32: the detection limit, and evaluating the cost in float64


def test_float32_screen_states_its_limit_and_upcast_finds_the_wrong_entry():
    params, cost, grads = wide_mlp(dtype=np.float32)
    buggy = with_bug(grads, "dW1", set_entry((3, 17), 1.5))
    before = {k: v.copy() for k, v in params.items()}
    plain = fastgc.check(cost, params, buggy, plan="screen", progress=False)
    # W1 is too large to check whole: sampled, with the limit of its directions stated.
    assert plain.coverage["W1"].components < plain.coverage["W1"].size
    assert plain.coverage["W1"].detection_limit > 1e-3
    upcast = fastgc.check(cost, params, buggy, plan="screen", progress=False, upcast=True)
    assert upcast.verdict == "bug"
    assert tuple(upcast.worst(1)[0][:2]) == ("W1", (3, 17))
    assert upcast.evaluations < 400
    correct = fastgc.check(cost, params, grads, plan="screen", progress=False, upcast=True)
    assert correct.verdict == "correct", str(correct)  # float32 gradients judged as such
    assert all(params[k].dtype == np.float32 and params[k].tobytes() == before[k].tobytes()
               for k in params)


def test_upcast_must_be_a_bool_and_leaves_float64_alone():
    params, cost, grads = wide_mlp()
    with pytest.raises(fastgc.InvalidInputError, match=r"upcast must be True or False, got 1"):
        fastgc.check(cost, params, grads, upcast=1, progress=False)
    same = fastgc.check(cost, params, grads, upcast=True, plan="screen", progress=False)
    plain = fastgc.check(cost, params, grads, plan="screen", progress=False)
    assert same.approx.tobytes() == plain.approx.tobytes()


def interrupted_at(cost, call):
    """``cost`` raising KeyboardInterrupt at its ``call``-th evaluation."""
    calls = 0

    def interrupted(p):
        nonlocal calls
        calls += 1
        if calls == call:
            raise KeyboardInterrupt
        return cost(p)

    return interrupted


@pytest.mark.parametrize("engine_name,n_threads", [("python", 1), ("cython", 2)])
def test_keyboard_interrupt_during_the_screen_leaves_everything_clean(engine_name, n_threads):
    require_engine(engine_name)
    params, cost, grads = wide_mlp()
    before = {k: v.copy() for k, v in params.items()}
    reference = fastgc.check(cost, params, grads, plan="screen", progress=False)
    interrupted = interrupted_at(cost, 60)  # inside the directions of the screen

    with pytest.raises(KeyboardInterrupt, match=r"fastgc check interrupted after \d+ cost "
                                                 r"evaluations of the plan"):
        fastgc.check(interrupted, params, grads, plan="screen", engine=engine_name,
                     n_threads=n_threads, progress=False)
    assert all(params[k].tobytes() == before[k].tobytes() for k in params)
    again = fastgc.check(interrupted, params, grads, plan="screen", engine=engine_name,
                         n_threads=n_threads, progress=False)
    assert again.approx.tobytes() == reference.approx.tobytes()
    assert again.verdict == "correct"


def test_the_screen_names_a_transposed_square_gradient():
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((64, 16)), rng.standard_normal((64, 16))
    params = {"W1": rng.standard_normal((64, 64)) / 8, "b1": 0.1 * rng.standard_normal((64, 1)),
              "W2": rng.standard_normal((64, 64)) / 8}

    def cost(p):
        return float(0.5 * np.sum((p["W2"] @ np.tanh(p["W1"] @ X + p["b1"]) - Y) ** 2) / 16)

    def transposed(p):
        A1 = np.tanh(p["W1"] @ X + p["b1"])
        dZ = (p["W2"] @ A1 - Y) / 16
        dZ1 = (p["W2"].T @ dZ) * (1 - A1**2)
        return {"dW1": dZ1 @ X.T, "db1": dZ1.sum(1, keepdims=True), "dW2": (dZ @ A1.T).T}

    result = fastgc.check(cost, params, transposed, plan="screen", progress=False)
    flagged = {name for name, p in result.per_parameter.items() if p.verdict == "bug"}
    assert flagged == {"W2"}
    assert fastgc.bug_patterns(result) == {
        "W2": "transposed: the gradient of entry [i, j] sits at [j, i]"}
    assert result.evaluations < 0.05 * 2 * result.layout.size


# --------------------------------------------------------------------------------------------
# The progress bar of the partial plans


@pytest.mark.parametrize("plan", ["screen", fastgc.Sampled(per_block=200, seed=2),
                                  fastgc.Budget(1e-6)], ids=["screen", "sampled", "budget"])
@pytest.mark.parametrize("rounds", ["whole", "small"])
def test_partial_plans_show_a_bar_over_evaluations_and_change_nothing(plan, rounds, capsys,
                                                                     monkeypatch):
    params, cost, grads = wide_mlp()
    buggy = with_bug(grads, "dW1", set_entry((3, 17), 1.5))
    quiet = fastgc.check(cost, params, buggy, plan=plan, progress=False)
    capsys.readouterr()
    if rounds == "small":  # many rounds, each with a chunk's worth of tasks
        import fastgc.executors.local as local
        monkeypatch.setattr(local, "ROUND_SECONDS", 1e-12)
    shown = fastgc.check(cost, params, buggy, plan=plan, progress=True)
    err = capsys.readouterr().err
    assert "fastgc:" in err and "eval" in err, err
    import re
    done, total = map(int, re.findall(r"(\d+)/(\d+) \[", err)[-1])
    # A bar over the plan's evaluations (the baseline and the measurement of round-off come
    # on top); tqdm may not redraw the last update before the bar is cleared.
    assert done <= total and 0 < total <= shown.evaluations, err
    assert shown.approx.tobytes() == quiet.approx.tobytes()
    assert shown.evaluations == quiet.evaluations and shown.verdict == quiet.verdict
    assert {k: p.verdict for k, p in shown.per_parameter.items()} == {
        k: p.verdict for k, p in quiet.per_parameter.items()}
    assert shown.coverage == quiet.coverage


def test_partial_plans_show_no_bar_when_quick_or_refused(capsys):
    params, cost, grads = wide_mlp()
    for progress in (None, False):  # a check of well under 3 s shows none by default
        fastgc.check(cost, params, grads, plan="screen", progress=progress)
        assert "fastgc:" not in capsys.readouterr().err


def test_a_block_wide_error_is_confirmed_by_a_few_reexaminations_counted_honestly():
    params, cost, grads = wide_mlp()
    buggy = with_bug(grads, "db1", lambda g: 4.0 * g)
    calls = 0

    def counted(p):
        nonlocal calls
        calls += 1
        return cost(p)

    result = fastgc.check(counted, params, buggy, plan="screen", engine="python",
                          progress=False)
    assert {n for n, p in result.per_parameter.items() if p.verdict == "bug"} == {"b1"}
    assert result.evaluations == calls  # every evaluation counted, none hidden
    likely = [e for e in result.worst(50) if (e.label or "").startswith("likely bug")]
    assert len(likely) == 3 and {e.name for e in likely} == {"b1"}
    # Every sampled component of b1 disagrees, examined or not.
    sampled = [e for e in result.worst(50) if e.name == "b1"]
    assert len(sampled) == result.coverage["b1"].components
    assert all(abs(e.numeric - e.analytic) > 0.5 * abs(e.analytic) for e in sampled)


# --------------------------------------------------------------------------------------------
# The complex step


def complex_safe_mlp(dtype=np.float64):
    """``wide_mlp`` with a cost written for complex input too (no cast to float, no max)."""
    params, _, grads = wide_mlp(dtype=dtype)
    rng = np.random.default_rng(0)  # the data of wide_mlp(seed=0)
    X = rng.standard_normal((100, 32)).astype(dtype)
    Y = np.eye(10, dtype=dtype)[:, rng.integers(0, 10, 32)]

    def cost(p):
        Z = p["W2"] @ np.tanh(p["W1"] @ X + p["b1"]) + p["b2"]
        return -np.sum(Y * (Z - np.log(np.exp(Z).sum(axis=0, keepdims=True)))) / 32

    return params, cost, grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_complex_step_screen_finds_a_planted_bug_and_passes_a_correct_cost(dtype):
    params, cost, grads = complex_safe_mlp(dtype)
    screen = fastgc.Screen(complex_step=True)
    correct = fastgc.check(cost, params, grads, plan=screen, progress=False)
    assert correct.verdict == "correct", str(correct)
    buggy = fastgc.check(cost, params, with_bug(grads, "db2", lambda g: 2.0 * g),
                         plan=screen, progress=False)
    assert {n for n, p in buggy.per_parameter.items() if p.verdict == "bug"} == {"b2"}, (
        str(buggy))
    assert buggy.coverage["b2"].directions >= 8  # confirmed before it was reported


def test_complex_step_resolves_float32_blocks_plain_differences_cannot():
    params, cost, grads = complex_safe_mlp(np.float32)
    plain = fastgc.check(cost, params, grads, plan="screen", progress=False)
    complex_ = fastgc.check(cost, params, grads, plan=fastgc.Screen(complex_step=True),
                            progress=False)
    for name in params:
        limit = complex_.coverage[name].detection_limit
        assert 0 < limit < 1e-2 and complex_.coverage[name].components == 0
        # Plain float32 differences are far coarser: sampled instead, or a limit 10x larger.
        assert (plain.coverage[name].components > 0
                or plain.coverage[name].detection_limit > 10 * limit), name
    assert complex_.evaluations < plain.evaluations


def test_complex_step_says_clearly_when_the_cost_does_not_take_complex_input():
    params, cost, grads = complex_safe_mlp()
    with pytest.raises(fastgc.CostTypeError, match="complex_step=True: .*complex"):
        fastgc.check(lambda p: cost({k: np.asarray(v, float) for k, v in p.items()}), params,
                     grads, plan=fastgc.Screen(complex_step=True), progress=False)
    with pytest.raises(fastgc.InvalidInputError, match="complex_step must be True or False"):
        fastgc.Screen(complex_step=1)


def test_complex_step_refuses_a_compiled_cost_by_name():
    import numba

    @numba.njit
    def cubes(theta):
        return np.sum(theta**3)

    w = np.linspace(-1.0, 1.0, 50)
    with pytest.raises(fastgc.InvalidInputError, match="complex_step=True needs a Python cost"):
        fastgc.check(cubes, w, 3 * w**2, plan=fastgc.Screen(complex_step=True), progress=False)


def test_ctrl_c_under_the_bar_closes_it_and_says_how_far_the_plan_got(capsys):
    from tqdm import tqdm

    params, cost, grads = wide_mlp()
    before = {k: v.copy() for k, v in params.items()}
    interrupted = interrupted_at(cost, 60)  # inside the directions of the screen

    with pytest.raises(KeyboardInterrupt, match=r"interrupted after \d+ cost evaluations"):
        fastgc.check(interrupted, params, grads, plan="screen", engine="python", progress=True)
    assert "fastgc:" in capsys.readouterr().err
    assert not list(getattr(tqdm, "_instances", []))  # the bar was closed
    assert all(params[k].tobytes() == before[k].tobytes() for k in params)
