"""The asv suite in ``benchmarks/`` must import, name benchmarks, and run.

A benchmark that fails to import or whose setup breaks is silently dropped by asv; these tests
make such a breakage fail the test suite instead. They also check that the benchmark model's three
costs agree, and that ``benchmarks/compare.py`` measures, extrapolates and prints as it says.
"""

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

SUITE = Path(__file__).resolve().parents[1] / "benchmarks"
PREFIXES = ("time_", "peakmem_", "track_", "mem_", "timeraw_")


@pytest.fixture(scope="module")
def suite():
    sys.path.insert(0, str(SUITE))
    try:
        package = importlib.import_module("benchmarks")
        names = [info.name for info in pkgutil.iter_modules(package.__path__)
                 if not info.name.startswith("_")]
        yield {name: importlib.import_module(f"benchmarks.{name}") for name in names}
    finally:
        sys.path.remove(str(SUITE))


def _benchmark_methods(module):
    found = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module.__name__:
            continue
        found += [f"{cls.__name__}.{name}" for name in dir(cls) if name.startswith(PREFIXES)]
    return found


def test_suite_has_modules(suite):
    assert {"bench_check", "bench_overhead", "bench_large"} <= set(suite)


def test_every_module_defines_a_benchmark(suite):
    for name, module in suite.items():
        assert _benchmark_methods(module), f"benchmarks/{name}.py defines no benchmark"


def test_params_match_param_names(suite):
    for module in suite.values():
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if hasattr(cls, "params") and cls.__module__ == module.__name__:
                assert len(cls.params) == len(cls.param_names), cls.__name__


def test_a_cheap_check_benchmark_runs(suite):
    bench = suite["bench_check"].TimeCheck()
    bench.setup("numba", 100, 1)
    bench.time_check("numba", 100, 1)


def test_the_fixed_cost_benchmark_runs(suite):
    bench = suite["bench_overhead"].TrackFixedCost()
    bench.checks = 2
    bench.setup(1)
    assert np.isfinite(bench.track_fixed_us(1))


def test_accuracy_benchmark_reports_a_correct_network(suite):
    bench = suite["bench_check"].TrackAccuracy()
    bench.setup(100)
    assert bench.track_difference_correct(100) < 1e-7


def test_skipped_combinations_raise_not_implemented(suite):
    with pytest.raises(NotImplementedError):
        suite["bench_check"].TimeCheck().setup("python", 20_000, 1)


# ---------------------------------------------------------------- the shared model

@pytest.fixture(scope="module")
def models(suite):
    return importlib.import_module("benchmarks._models")


@pytest.mark.parametrize("size", [100, 2_000])
def test_the_three_costs_agree(models, size):
    import ctypes

    mlp = models.make_mlp(size)
    expected = models.numpy_cost(mlp.theta, *mlp.args)
    assert models.numba_cost()(mlp.theta, *mlp.args) == pytest.approx(expected, rel=1e-12)
    packed = mlp.packed()
    value = models.c_cost().ctypes(mlp.theta.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                                   mlp.n, packed.ctypes.data_as(ctypes.c_void_p))
    assert value == pytest.approx(expected, rel=1e-12)


def test_the_hand_written_gradient_is_the_cost_gradient(models):
    mlp = models.make_mlp(100)
    grads = models.numpy_grads(mlp.theta, *mlp.args)
    cost = models.numba_cost()
    for i in (0, 40, 72, 98):  # W1, b1, W2, b2
        plus, minus = mlp.theta.copy(), mlp.theta.copy()
        plus[i] += 1e-6
        minus[i] -= 1e-6
        approx = (cost(plus, *mlp.args) - cost(minus, *mlp.args)) / 2e-6
        assert approx == pytest.approx(grads[i], rel=1e-5, abs=1e-9)


def test_cost_times_are_one_evaluation(models):
    mlp = models.make_mlp(100)
    t_J = models.cost_seconds(mlp, seconds=0.02, rounds=2)
    assert 0.0 < t_J < 1e-3
    assert 0.0 < models.python_seconds(models.numpy_cost, mlp, seconds=0.01) < 1e-2


# ---------------------------------------------------------------- compare.py

@pytest.fixture(scope="module")
def compare(suite):
    import importlib.util

    spec = importlib.util.spec_from_file_location("fastgc_compare", SUITE / "compare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_a_slow_baseline_is_stopped_and_extrapolated(compare):
    import time

    def baseline(n):  # 1 ms per index
        def run(count):
            time.sleep(0.001 * (n if count is None else count))

        return run

    seconds, extrapolated = compare.timed_baseline(baseline(1000), 1000, budget=0.05,
                                                         sample_seconds=0.05)
    assert extrapolated
    assert 0.9 < seconds < 2.0
    seconds, extrapolated = compare.timed_baseline(baseline(20), 20, budget=1.0,
                                                         sample_seconds=0.05)
    assert not extrapolated
    assert 0.015 < seconds < 0.2


def test_stopped_baselines_run_their_first_indices(compare, models):
    mlp = models.make_mlp(100)
    grads = models.numpy_grads(mlp.theta, *mlp.args)
    approx = compare.course_loop(mlp)(5)
    np.testing.assert_allclose(approx, grads[:5], rtol=1e-5, atol=1e-8)
    assert compare.scipy_3_point(mlp)(3) is None  # stopped by the evaluation count
    full = compare.scipy_3_point(mlp)(None)
    np.testing.assert_allclose(full, grads, rtol=1e-5, atol=1e-8)


def test_compare_measures_and_prints_markdown(compare, capsys):
    import time

    rows, cost_times, _ = compare.measure([100], [1], budget=0.5, fastgc_budget=5.0,
                                          sample_seconds=0.1, started_all=time.perf_counter())
    methods = {row.method for row in rows}
    assert {compare.FASTGC, compare.LIMIT, "course loop (NumPy)"} <= methods
    assert all(row.seconds > 0 and not row.extrapolated for row in rows)
    assert cost_times[0][0] == 99
    capsys.readouterr()
    compare.print_markdown(rows)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| method | params | threads | seconds | x fastgc | x T_lim |"
    assert len(lines) == 2 + len(rows)
    assert all(line.count("|") == 7 for line in lines)
    assert any(line.startswith("| fastgc (numba) | 99 | 1 |") and "| 1.00 |" in line
               for line in lines)


# ---------------------------------------------------------------- the torch module rows

def test_torch_module_rows_check_the_same_network_and_stop_when_told(compare, models):
    torch = pytest.importorskip("torch")
    mlp = models.make_mlp(100)
    module, X, labels = compare.torch_module(mlp)
    with torch.no_grad():
        value = torch.nn.functional.cross_entropy(module(X), labels).item()
    assert value == pytest.approx(models.numpy_cost(mlp.theta, *mlp.args), rel=1e-12)
    for run in (compare.fastgc_torch_module(mlp), compare.fastgc_torch_module(mlp, 2),
                compare.torch_gradcheck_module(mlp)):
        assert run(3) is None  # stopped after three indices
    result = compare.fastgc_torch_module(mlp)(None)
    assert result.verdict == "correct" and result.layout.size == mlp.n
    compare.torch_gradcheck_module(mlp)(None)  # asserts that gradcheck passes


def test_the_torch_benchmarks_run(suite):
    pytest.importorskip("torch")
    bench = suite["bench_torch"].TimeTorchCheckModule()
    bench.setup(100, 2, "side by side")
    bench.time_check_module(100, 2, "side by side")
    with pytest.raises(NotImplementedError):
        bench.setup(100, 1, "side by side")
    with pytest.raises(NotImplementedError):
        bench.setup(100, 2, "processes")


def test_the_torch_module_row_on_worker_processes_checks_in_full(compare, models):
    pytest.importorskip("torch")
    mlp = models.make_mlp(100)
    run = compare.fastgc_torch_module(mlp, n_workers=2)
    result = run(None)
    assert (result.executor, result.n_workers, result.verdict) == ("processes", 2, "correct")
    assert result.approx.tobytes() == compare.fastgc_torch_module(mlp)(None).approx.tobytes()
    with pytest.raises(ValueError, match="in full only"):
        run(3)


def test_the_plans_benchmark_runs_at_its_smallest_size(suite):
    plans = suite["bench_plans"]
    size = min(plans.SIZES)
    timing = plans.Plans()
    timing.setup("screen", size)
    timing.time_check("screen", size)
    found = plans.evidence([size])
    evidence = plans.PlanEvidence()
    for plan in plans.PLANS:
        assert evidence.track_evaluations(found, plan, size) < 0.02 * 2 * size
    assert evidence.track_localised(found, "screen", size) == 1.0  # the planted W3[17, 123]
    assert evidence.track_share_of_full_check(found, "screen", size) < 0.002


def test_the_first_check_benchmark_measures_new_processes(suite, tmp_path):
    first_check = importlib.import_module("benchmarks._first_check")
    cold = first_check.measure("readme", str(tmp_path))
    warm = first_check.measure("readme", str(tmp_path))  # the same cache directory, now filled
    keys = {"first", "second", "again", "first_cost_compile", "second_cost_compile"}
    assert set(cold) == set(warm) == keys
    assert any(tmp_path.rglob("*.nbi"))  # fastgc's kernels went to NUMBA_CACHE_DIR
    bench = suite["bench_first_check"].TrackFirstCheck()
    assert bench.track_first_check_seconds({("readme", "warm"): warm}, "readme", "warm",
                                           "second") == warm["second"]


def test_the_executor_benchmarks_run(suite):
    bench = suite["bench_executors"]
    overhead = bench.TrackTaskOverhead()
    overhead.setup("processes-2")
    try:
        assert 0.0 <= overhead.track_task_overhead("processes-2") < 1e3
    finally:
        overhead.teardown("processes-2")
    sample = bench.TimeExecutorSample()
    sample.setup("processes-2", 2_000)
    sample.time_sample("processes-2", 2_000)
    sample.teardown("processes-2", 2_000)
