"""A Dask cluster: ``executor=client`` with a ``dask.distributed.Client``.

The payload reaches every worker once through a worker plugin, registered for the check and
removed after it; a worker that joins or restarts mid-check (after another was killed) gets it
too, and Dask reschedules the tasks of a lost worker there, so the check completes with the
same result. Before any task, every worker's J(theta) is compared with the caller's. Tasks are
chunks of indices or of the screen's directional rows (the dtheta they are predicted from is
in the payload when the plan moves along directions). Each task runs on one thread of its
worker unless ``n_threads`` is given; a worker runs as many tasks of a compiled cost at once
as it has threads, and those of a Python cost one at a time (it may keep state, and the
threads of one process share its GIL: start workers with one thread each, ``dask worker
--nthreads 1``, and as many as there are cores). Ctrl-C cancels the outstanding tasks; the
cluster stays up. dask is an optional extra: ``pip install "fastgc[dask]"``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from .._errors import ExecutorError
from .._optional import import_optional
from . import _worker
from ._remote import TASK_SECONDS, Placement, RemoteExecutor, Task

if TYPE_CHECKING:
    from .._cost import Cost
    from .._steps import StepRule
    from ..engines import Engine


def is_dask_client(executor: object) -> bool:
    """True for a ``dask.distributed.Client``, recognised without importing Dask."""
    kind = type(executor)
    return kind.__module__.startswith("distributed") and kind.__name__ == "Client"


class DaskExecutor(RemoteExecutor):
    """The workers of the cluster ``client`` is connected to (see the module docstring)."""

    name = "dask"
    where = "the Dask cluster"
    task_seconds = 2 * TASK_SECONDS  # a Dask task costs milliseconds: make them longer

    def __init__(
        self, engine: "Engine", cost: "Cost", theta: np.ndarray, steps: "StepRule",
        caller_value: float, n_threads: int, client: Any, dtheta: np.ndarray | None = None,
    ) -> None:
        super().__init__(engine, cost, theta, steps, caller_value, n_threads, dtheta)
        self.client = client
        self._submitted = 0  # tasks submitted so far: each gets a key of its own
        self._distributed = import_optional("distributed", "dask", purpose="executor=client")
        workers = client.scheduler_info().get("workers", {})
        if not workers:
            raise ExecutorError(
                "the Dask cluster has no workers: start some (dask worker "
                "tcp://scheduler:8786) or wait for them (client.wait_for_workers(n))"
            )
        # A worker runs a Python cost's chunks one at a time (the cost may keep state, and
        # its threads would share one GIL); compiled chunks run on all its threads at once.
        self._threads = {
            address: 1 if cost.may_keep_state else int(info.get("nthreads", 1))
            for address, info in workers.items()
        }

    @property
    def n_workers(self) -> int:
        return len(self._threads)

    def _slots(self) -> int:
        # Every thread of every worker takes tasks: balance over all of them.
        return sum(self._threads.values())

    @property
    def placement(self) -> Placement:
        # A worker runs as many one-thread tasks at once as it has threads.
        per_worker = max(self._threads.values()) * self.n_chunks
        return Placement(self.name, self.n_workers, per_worker)

    @contextlib.contextmanager
    def _started(self, payload: bytes, token: str) -> Iterator[None]:
        from ._dask_plugin import PayloadPlugin

        self.client.register_plugin(PayloadPlugin(token, payload), name=token)
        try:
            self._compare_workers(token)
            yield
        finally:
            with contextlib.suppress(Exception):  # the cluster may be going away
                self.client.unregister_worker_plugin(token)

    def _compare_workers(self, token: str) -> None:
        """Every worker's J(theta) against the caller's, before any work."""
        reports = self.client.run(_worker.describe, token)
        for address, (value, n_threads) in sorted(reports.items()):
            self.accept(_worker.ChunkResult(np.empty(0), address, value, n_threads, 0.0))
        self.workers.clear()

    def _submit(self, task: Task) -> Any:
        function, arguments = task.call()
        # The worker plugin installed the payload: the task goes without it. A plan runs
        # several batches of tasks whose numbers start again at 0: keys must not repeat.
        self._submitted += 1
        return self.client.submit(
            function, self.token, None, *arguments,
            key=f"{self.token}-{self._submitted}-{task.number}", pure=False,
        )

    def _completed(self, futures: list) -> Iterable[Any]:
        return self._distributed.as_completed(futures)

    def _result(self, future: Any) -> Any:
        return future.result()

    def _cancel(self, futures: list) -> None:
        if futures:
            with contextlib.suppress(Exception):
                self.client.cancel(futures)

    def _recover(self, tasks: list[Task]) -> None:  # Dask reschedules lost tasks itself
        raise AssertionError("unreachable: Dask reports no lost worker to fastgc")
