"""The interface every engine implements.

An engine owns its kernels: it says whether it can run here and whether it can run a given
cost, how many private copies of theta it works on, and it makes the runner that does one
round of central differences. It knows nothing of rounds, progress, verdicts or reports; the
executor drives it and the diagnosis reads what it computed.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Callable, ContextManager

import numpy as np

if TYPE_CHECKING:
    from .._cost import Cost

# run(indices, steps, approx, failed): one round of the check on the engine's work copies.
Runner = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]
# run(lo, hi, seeds, kinds, steps, out, failed): one round of directional differences.
DirectionalRunner = Callable[..., None]


class Engine:
    """One way of running the finite-difference kernels (see the subclasses)."""

    name: str = ""
    #: Only an engine that calls the cost from Python, one evaluation at a time, can run
    #: the ``reseed`` hook before every evaluation.
    runs_hooks: bool = False
    #: The engine runs its chunks one after another, whatever the thread count.
    serial: bool = False

    @functools.cached_property
    def unavailable(self) -> str | None:
        """None when the engine can run in this process, else why not and what to do."""
        return self._why_unavailable()

    def _why_unavailable(self) -> str | None:
        return None

    def cannot_run(self, cost: "Cost") -> str | None:
        """None when this engine can run ``cost``, else the rest of a sentence saying why,
        beginning after "engine='name'"."""
        return None

    def n_chunks(self, n_threads: int) -> int:
        """How many private copies of theta (and parallel chunks) the engine works with."""
        return 1 if self.serial else n_threads

    def parallel_allowed(self) -> bool:
        """Whether a parallel region may start from the calling thread."""
        return True

    def thread_state(self, n_chunks: int) -> ContextManager[None]:
        """The engine's own thread settings for a run on ``n_chunks`` chunks, restored after."""
        return contextlib.nullcontext()

    def make_runner(self, cost: "Cost", work: np.ndarray, parallel: bool = True) -> Runner:
        """A function ``run(indices, steps, approx, failed)`` doing one round on ``work``."""
        raise NotImplementedError

    def make_directional_runner(
        self, cost: "Cost", work: np.ndarray, theta: np.ndarray, dtheta: np.ndarray,
        parallel: bool = True,
    ) -> DirectionalRunner:
        """A function ``run(lo, hi, seeds, kinds, steps, out, failed)`` doing one round of
        directional differences on ``work`` around the pristine ``theta`` (see
        ``_numba_kernels._directional_differences`` for the arguments)."""
        raise NotImplementedError

    def warm_up(self, run: Runner, cost: "Cost", work: np.ndarray, parallel: bool) -> float:
        """Compile what the run needs before timing starts; the seconds it took."""
        return 0.0

    def block_norms(
        self, approx: np.ndarray, dtheta: np.ndarray, offsets: np.ndarray
    ) -> np.ndarray:
        """Squared norms (difference, approx, dtheta) per block, by the engine's kernel."""
        norms = np.zeros((offsets.shape[0] - 1, 3))
        self._block_norms_kernel()(approx, dtheta, offsets, norms)
        return norms

    def _block_norms_kernel(self) -> Callable[..., None]:
        raise NotImplementedError

    def config_lines(self) -> list[str]:
        """Lines for ``show_config`` about this engine's set-up, when it is available."""
        return []

    def __repr__(self) -> str:
        return f"<fastgc engine {self.name!r}>"
