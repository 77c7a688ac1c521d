"""Engines: the ways fastgc runs its finite-difference kernels, and the one place that picks
one.

Three engines run the same algorithm, kernel for kernel (``_numba_kernels``, the extension
``fastgc._core`` and ``_reference`` mirror each other), so they agree to the bit:

- ``numba`` (:class:`NumbaEngine`): an ``@numba.njit`` ``cost(theta, *args)`` runs inside a
  compiled ``prange``;
- ``cython`` (:class:`CythonEngine`): the OpenMP extension; a C-level cost runs without the
  GIL, any other callable with the GIL held;
- ``python`` (:class:`PythonEngine`): the pure-Python reference loop, serial; it runs every
  kind of cost.

:func:`resolve_engine` picks one: the ``engine`` argument, else the ``FASTGC_ENGINE``
environment variable (read once), else the first of numba, cython, python that is available
here and can run the cost.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from .._errors import EngineError, InvalidInputError
from ._base import Engine, Runner
from .cython import CythonEngine
from .numba import NumbaEngine
from .python import PythonEngine

if TYPE_CHECKING:
    from .._cost import Cost

__all__ = ["ENGINES", "Engine", "Runner", "engine_status", "get_engine", "resolve_engine"]

_REGISTRY: dict[str, Engine] = {
    engine.name: engine for engine in (NumbaEngine(), CythonEngine(), PythonEngine())
}
#: Engine names, in the order ``auto`` tries them.
ENGINES = tuple(_REGISTRY)
_CHOICES = ("auto",) + ENGINES


def get_engine(name: str) -> Engine:
    """The engine called ``name`` (one of :data:`ENGINES`)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidInputError(f"engine must be one of {_CHOICES}, got {name!r}") from None


def engine_status(name: str) -> str | None:
    """None when engine ``name`` can run here, else why it cannot and what to do."""
    return get_engine(name).unavailable


@functools.lru_cache(maxsize=1)
def environment_engine() -> str:
    """``FASTGC_ENGINE``, read once per process."""
    return os.environ.get("FASTGC_ENGINE", "auto").strip().lower() or "auto"


def resolve_engine(engine: str | None, cost: "Cost") -> Engine:
    """The engine that will run ``cost``, or an :class:`EngineError` saying why none can."""
    requested = "auto" if engine is None else str(engine).strip().lower()
    if cost.reseed is not None:
        return _engine_for_hooks(engine, requested)
    # Errors name where the request came from: the argument, or the environment variable.
    source = "engine"
    if requested == "auto":
        requested, source = environment_engine(), "FASTGC_ENGINE"
    if requested not in _CHOICES:
        raise InvalidInputError(f"{source} must be one of {_CHOICES}, got {requested!r}")
    if requested == "auto":
        return next(
            candidate for candidate in _REGISTRY.values()
            if candidate.unavailable is None and candidate.cannot_run(cost) is None
        )
    chosen = _REGISTRY[requested]
    if chosen.unavailable is not None:
        raise EngineError(f"{source}={requested!r} is not available: {chosen.unavailable}")
    reason = chosen.cannot_run(cost)
    if reason is not None:
        advice = "" if source == "engine" else " (or unset FASTGC_ENGINE)"
        raise EngineError(f"{source}={requested!r} {reason}{advice}")
    return chosen


def _engine_for_hooks(engine: str | None, requested: str) -> Engine:
    """A ``reseed`` hook runs before every evaluation: only a serial Python loop can do it."""
    chosen = next(candidate for candidate in _REGISTRY.values() if candidate.runs_hooks)
    if requested not in ("auto", chosen.name):
        raise EngineError(
            f"reseed is called before every evaluation, which only the serial Python engine "
            f"can do; pass engine={chosen.name!r} (or leave engine unset), not {engine!r}"
        )
    return chosen
