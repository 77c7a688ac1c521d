"""The asv suite in ``benchmarks/`` must import, name benchmarks, and run.

A benchmark that fails to import or whose setup breaks is silently dropped by asv; these tests
make such a breakage fail the test suite instead.
"""

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

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


def test_accuracy_benchmark_reports_a_correct_network(suite):
    bench = suite["bench_check"].TrackAccuracy()
    bench.setup(100)
    assert bench.track_difference_correct(100) < 1e-7


def test_skipped_combinations_raise_not_implemented(suite):
    with pytest.raises(NotImplementedError):
        suite["bench_check"].TimeCheck().setup("python", 20_000, 1)
