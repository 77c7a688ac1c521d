"""Fixtures and helpers the test files share.

The ``engine`` fixture runs the whole check suite once per engine and kind of cost; the
``kernel`` fixture runs the kernel-level suite once per implementation of
``central_differences``, each called the same way. This directory is on ``sys.path`` (pytest puts the directory of a conftest outside any package
there), so every test file imports ``models``, ``costs`` and ``conftest`` by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import fastgc

# Started from a shell's background job, the suite inherits SIGINT ignored, and its Ctrl-C
# tests would never see one: answer it as a terminal's foreground process does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
from fastgc import engines as _engines
from fastgc._cost import CostKind
from fastgc._threads import usable_threads
from fastgc.engines import engine_status

import models
from costs import C_SOURCE, exact_grads, make_params, plain_cost

# Where CI builds every engine, an unavailable one is a failure, never a silent skip.
REQUIRE_ALL = os.environ.get("FASTGC_REQUIRE_CYTHON") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Where CI installs everything (``REQUIRE_ALL``), any skip is a failure: an optional
    library missing from the test extra, a guard that should never fire there."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped where FASTGC_REQUIRE_CYTHON=1 requires it to run: " \
                          f"{report.longrepr}"


# Two threads where the machine has them, so that parallel runs really are parallel.
TWO_THREADS = min(2, usable_threads())


@dataclass(frozen=True)
class EngineCase:
    """An engine and the kind of cost it runs: ``cost_for(X, Y) -> (cost, args)``."""

    engine: str
    cost_kind: CostKind

    def cost_for(self, X: np.ndarray, Y: np.ndarray) -> tuple[Callable[..., Any], tuple]:
        if self.cost_kind == CostKind.NJIT:
            return models.numba_cost(), (X, Y)
        if self.cost_kind == CostKind.C:
            return models.c_cost(X, Y), ()
        return models.cost, (X, Y)

    @property
    def parallel(self) -> bool:
        return self.engine != "python"


ENGINE_CASES = [
    EngineCase("numba", CostKind.NJIT),
    EngineCase("cython", CostKind.C),
    EngineCase("cython", CostKind.PYTHON),
    EngineCase("python", CostKind.PYTHON),
]


def require_engine(name: str) -> None:
    reason = engine_status(name)
    if reason is not None:
        if REQUIRE_ALL:
            pytest.fail(f"engine {name} must be available here: {reason}")
        pytest.skip(f"engine {name} unavailable: {reason}")


@pytest.fixture(params=ENGINE_CASES, ids=lambda case: f"{case.engine}-{case.cost_kind.value}")
def engine(request) -> EngineCase:
    case: EngineCase = request.param
    require_engine(case.engine)
    if case.cost_kind in (CostKind.NJIT, CostKind.C):
        require_engine("numba")  # the test costs themselves are written with Numba
    return case


@dataclass(frozen=True)
class KernelCase:
    """One implementation of ``central_differences``, called as every other one is:
    ``case(cost, data, work, indices, steps, approx, failed, n_threads)``.

    ``cost`` is a ``costs.KernelCost`` and ``data`` the float64 array it reads (``args=(data,)``
    of the Numba kernels, ``void *data`` of the C kernel). The kernel fills ``approx`` and
    ``failed`` and must leave every row of ``work`` exactly as it was.
    """

    name: str
    engine: str  # the engine whose kernel this is
    run: Callable[..., None]

    def __call__(self, cost, data, work, indices, steps, approx, failed, n_threads) -> None:
        self.run(cost, data, work, indices, steps, approx, failed, n_threads)


def _python_evaluate(cost, data, work) -> Callable[[int, int], float]:
    """``evaluate(chunk, i)`` of the Python-cost kernels: the compiled cost of row ``chunk``."""
    function = cost.njit

    def evaluate(chunk, i):
        return function(work[chunk], data)

    return evaluate


def _numba_parallel(cost, data, work, indices, steps, approx, failed, n_threads):
    """The entry the numba engine runs: the cost through its address, on Numba's threads."""
    from fastgc._threads import numba_threads
    from fastgc.engines import _numba_kernels
    from fastgc.engines.numba import _cost_address, _first_class_functions_allowed

    with numba_threads(n_threads), _first_class_functions_allowed():
        address, cost_type, _ = _cost_address(cost.njit, (data,), work)
        _numba_kernels.central_differences_at(address, cost_type, (data,), work, indices, steps,
                                              approx, failed)


def _numba_serial(cost, data, work, indices, steps, approx, failed, n_threads):
    from fastgc.engines import _numba_kernels
    from fastgc.engines.numba import _cost_address, _first_class_functions_allowed

    with _first_class_functions_allowed():
        address, cost_type, _ = _cost_address(cost.njit, (data,), work)
        _numba_kernels.central_differences_serial_at(address, cost_type, (data,), work, indices,
                                                     steps, approx, failed)


def _cython_c_cost(cost, data, work, indices, steps, approx, failed, n_threads):
    from fastgc import _core
    from fastgc._ccost import c_cost_pointer

    _core.central_differences_c(c_cost_pointer(cost.cfunc, work.dtype), data.ctypes.data, work,
                                indices, steps, approx, failed, n_threads)


def _cython_python_cost(cost, data, work, indices, steps, approx, failed, n_threads):
    from fastgc import _core

    _core.central_differences_py(_python_evaluate(cost, data, work), work, indices, steps,
                                 approx, failed, n_threads)


def _reference(cost, data, work, indices, steps, approx, failed, n_threads):
    from fastgc.engines import _reference

    _reference.central_differences(_python_evaluate(cost, data, work), work, indices, steps,
                                   approx, failed)


KERNEL_CASES = [
    KernelCase("numba-parallel", "numba", _numba_parallel),
    KernelCase("numba-serial", "numba", _numba_serial),
    KernelCase("cython-c-cost", "cython", _cython_c_cost),
    KernelCase("cython-python-cost", "cython", _cython_python_cost),
    KernelCase("reference", "python", _reference),
]


@pytest.fixture(params=KERNEL_CASES, ids=lambda case: case.name)
def kernel(request) -> KernelCase:
    case: KernelCase = request.param
    require_engine(case.engine)
    require_engine("numba")  # the kernels' test cost is compiled with Numba, in every form
    return case


def run(engine: EngineCase, params, X, Y, grads, **options):
    """``fastgc.check`` of the MLP ``models`` builds, by an engine case; no progress bar unless
    asked for."""
    cost, args = engine.cost_for(X, Y)
    options.setdefault("progress", False)
    return fastgc.check(cost, params, grads, args=args, engine=engine.engine, **options)


@pytest.fixture
def mlp():
    return models.make_mlp(0)


def snapshot(tree: Any) -> list[tuple[str, bytes, tuple, str]]:
    """Bytes, shape and dtype of every array in a structure, to prove nothing changed."""
    if isinstance(tree, dict):
        return [item for key in tree for item in snapshot(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [item for value in tree for item in snapshot(value)]
    array = np.asarray(tree)
    return [(str(array.dtype), array.tobytes(order="A"), array.shape, str(array.strides))]


def assert_untouched(params, grads, before) -> None:
    assert (snapshot(params), snapshot(grads)) == before


def check(cost, params, grads, **options):
    """``fastgc.check`` without the progress bar."""
    return fastgc.check(cost, params, grads, progress=False, **options)


def check_option(inputs, **options):
    """``fastgc.check`` of ``plain_cost`` on the ``inputs`` with ``options``, which must
    leave the inputs untouched whatever happens."""
    params, grads, before = inputs
    try:
        return fastgc.check(plain_cost, params, grads, **{"engine": "python", "progress": False,
                                                          **options})
    finally:
        assert_untouched(params, grads, before)


@pytest.fixture
def inputs():
    params = make_params()
    grads = exact_grads(params)
    return params, grads, (snapshot(params), snapshot(grads))


@pytest.fixture
def no_thread_default():
    fastgc.set_num_threads(None)
    yield
    fastgc.set_num_threads(None)


@pytest.fixture
def no_engine_variable(monkeypatch):
    """FASTGC_ENGINE unset, and its cached reading cleared before and after the test."""
    monkeypatch.delenv("FASTGC_ENGINE", raising=False)
    _engines.environment_engine.cache_clear()
    yield monkeypatch
    _engines.environment_engine.cache_clear()


@pytest.fixture(scope="session")
def c_library(tmp_path_factory) -> Path:
    """``sine_cost`` compiled with the system C compiler into a shared library."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc or gcc) on PATH to build the C-level test cost")
    directory = tmp_path_factory.mktemp("c_cost")
    source, library = directory / "sine_cost.c", directory / "libsine_cost.so"
    source.write_text(C_SOURCE)
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(source), "-lm"],
        check=True, capture_output=True,
    )
    return library


@pytest.fixture(scope="module")
def numba():
    """Numba itself, for tests that compile costs of their own; skipped when missing unless
    FASTGC_REQUIRE_CYTHON=1, as ``require_engine`` does."""
    require_engine("numba")
    import numba

    return numba


@pytest.fixture(scope="module")
def core():
    """The compiled extension ``fastgc._core``; skipped when it is not built unless
    FASTGC_REQUIRE_CYTHON=1, as ``require_engine`` does."""
    require_engine("cython")
    from fastgc import _core

    return _core
