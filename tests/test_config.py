"""``fastgc.show_config`` (``fastgc/_config.py``): a line per engine, OpenMP and threads."""

from __future__ import annotations

import io

import fastgc
from conftest import require_engine
from fastgc import engines as _engines
from fastgc._threads import usable_threads


def test_show_config_reports_every_engine_and_openmp():
    for name in _engines.ENGINES:
        require_engine(name)
    from fastgc import _core

    output = io.StringIO()
    fastgc.show_config(file=output)
    text = output.getvalue()
    for name in _engines.ENGINES:
        assert f"engine {name:<7} available" in text
    assert "unavailable" not in text
    import numba

    assert f"numba {numba.__version__}, threading layer" in text
    if _core.openmp_enabled():
        assert f"cython extension: OpenMP on, {_core.openmp_max_threads()} thread(s)" in text
    else:
        assert "cython extension: OpenMP off" in text
    assert f"usable threads: {usable_threads()};" in text


def test_show_config_reports_the_executors():
    output = io.StringIO()
    fastgc.show_config(file=output)
    text = output.getvalue()
    assert "executor processes: available (start method forkserver)" in text
    assert "executor dask: available" in text and "with cloudpickle" in text
