"""The ``engine`` fixture: the whole check suite runs once per engine and kind of cost."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

import models
from fastgc._cost import CostKind
from fastgc.engines import engine_status

# Where CI builds every engine, an unavailable one is a failure, never a silent skip.
REQUIRE_ALL = os.environ.get("FASTGC_REQUIRE_CYTHON") == "1"


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
