"""The payload a check ships to its workers, and the clear error when part of it cannot go.

The payload holds the cost, its args and layout, theta, the step rule, the engine's name and
the thread count, and, when the plan moves blocks along random directions, the analytic
gradient dtheta (the directional kernels predict each difference from it).

The payload is pickled once in the caller (with cloudpickle when it is installed, which ships
closures, lambdas and functions defined in ``__main__`` or a notebook by value; else with the
standard pickle, which ships functions by reference to an importable module). Each part is
tried on its own first, so that the error names the part that failed.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._cost import CostKind
from .._errors import ExecutorError

if TYPE_CHECKING:
    from .._cost import Cost
    from .._steps import StepRule
    from ..engines import Engine


def _pickler_module() -> Any:
    try:
        import cloudpickle
    except ImportError:
        return pickle
    return cloudpickle


def ships_by_value() -> bool:
    """Whether functions of the main script travel by value (cloudpickle), not by name."""
    return _pickler_module() is not pickle


def new_token() -> str:
    """A name for one check's payload on the workers."""
    return f"fastgc-{uuid.uuid4().hex[:16]}"


def pack(
    cost: "Cost", theta: np.ndarray, steps: "StepRule", engine: "Engine",
    n_threads: int | None, where: str, dtheta: np.ndarray | None = None,
) -> bytes:
    """The payload of a check, as bytes, or an :class:`ExecutorError` naming what cannot be
    pickled (``where`` says where it was going: "worker processes", "the Dask cluster").
    ``dtheta`` goes along only for a plan that moves along directions (None: not needed)."""
    if cost.kind is CostKind.C:
        raise ExecutorError(
            f"a C-level cost is an address in this process and cannot be sent to {where}; "
            "run it with executor='local' (it already runs on every core without the GIL), "
            "or give the cost as a Python or @numba.njit function"
        )
    pickler = _pickler_module()
    parts = {"cost": cost.function, "args": cost.args, "reseed": cost.reseed}
    for name, part in parts.items():
        _try_pickle(pickler, name, part, where)
    shipped = {
        "function": cost.function, "args": cost.args, "layout": cost.layout,
        "kind": cost.kind, "reseed": cost.reseed, "theta": theta, "steps": steps,
        "engine": engine.name, "n_threads": n_threads, "dtheta": dtheta,
    }
    return pickler.dumps(shipped, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass(frozen=True)
class PayloadFile:
    """A payload written to a private file of this machine, for workers that outlive a check.

    fastgc's own pool is kept between checks, so its initializer cannot deliver each check's
    payload: its tasks carry this small handle instead, and a worker reads the file once per
    check (the caller removes it when the check ends).
    """

    path: str

    @classmethod
    def write(cls, payload: bytes) -> "PayloadFile":
        descriptor, path = tempfile.mkstemp(prefix="fastgc-payload-")  # readable by us only
        with os.fdopen(descriptor, "wb") as file:
            file.write(payload)
        return cls(path)

    def read(self) -> bytes:
        with open(self.path, "rb") as file:
            return file.read()

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _try_pickle(pickler: Any, name: str, part: Any, where: str) -> None:
    try:
        pickler.dump(part, io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        advice = (
            "define it at module level" if pickler is pickle
            else "make it hold no locks, open files, sockets or live connections"
        )
        hint = "" if pickler is not pickle else (
            " (or pip install cloudpickle, which also ships closures and lambdas)"
        )
        raise ExecutorError(
            f"the {name} cannot be pickled to send it to {where} "
            f"({type(error).__name__}: {error}): {advice}{hint}, or run the check with "
            "executor='local'"
        ) from error
