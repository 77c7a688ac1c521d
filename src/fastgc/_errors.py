"""Exceptions and warnings of fastgc."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._result import CheckResult


class FastGCError(Exception):
    """Base class of every error fastgc raises on purpose."""


class GradientCheckError(FastGCError, AssertionError):
    """The analytic gradients failed the check; ``result`` holds the full report (None for
    :class:`IrreproducibleCostError`, where no verdict could be given)."""

    def __init__(self, result: "CheckResult") -> None:
        self.result = result
        super().__init__(str(result))


class InvalidInputError(FastGCError, ValueError):
    """``params``, ``grads`` or an option is malformed (structure, shape, value)."""


class InvalidDtypeError(FastGCError, TypeError):
    """A parameter or gradient array does not have a supported floating dtype."""


class CostError(FastGCError, ValueError):
    """The cost raised, or returned something that is not a finite float scalar."""

    def __init__(self, message: str, *, flat_index: int | None = None, location: Any = None):
        self.flat_index = flat_index
        self.location = location
        super().__init__(message)


class IrreproducibleCostError(GradientCheckError, CostError):
    """The cost gave other values when the same differences were evaluated again serially:
    it is not thread-safe (shared caches, scratch buffers) or not a function of the
    parameters it is given, so no verdict can be drawn from its numbers.

    Attributes
    ----------
    indices : tuple of int
        The flat indices whose differences did not reproduce (for a directional difference,
        the first index of the range it moved).
    parallel, serial : tuple of float
        The differences of the check's run and of the serial re-evaluation, by index
        (``J+ - J-`` for a directional difference).
    result : None
        There is no verdict.
    """

    def __init__(
        self, message: str, *, indices: tuple[int, ...], parallel: tuple[float, ...],
        serial: tuple[float, ...], location: Any = None,
    ) -> None:
        Exception.__init__(self, message)
        self.result = None  # type: ignore[assignment]
        self.flat_index, self.location = indices[0], location
        self.indices, self.parallel, self.serial = indices, parallel, serial


class CostTypeError(CostError, TypeError):
    """The cost returned a value of the wrong type (not a float scalar)."""


class EngineError(FastGCError, RuntimeError):
    """The requested engine is not installed or cannot run the given cost."""


class MissingDependencyError(FastGCError, ImportError):
    """An optional dependency (torch, jax, matplotlib, ...) is needed and not installed.

    The message names the ``pip install "fastgc[extra]"`` command that installs it.
    """


class FastGCWarning(UserWarning):
    """A request fastgc had to adjust (for example a thread count above what is usable)."""


class ExecutorError(FastGCError, RuntimeError):
    """A check could not run on the requested executor: part of it cannot be sent to the
    workers, a worker computes the cost differently, or a worker was lost."""
