"""The worker plugin that installs a check's payload on every Dask worker, current and future.

Imported only when a check runs on a Dask cluster (it imports ``distributed``).
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from . import _worker


class PayloadPlugin(WorkerPlugin):
    """Loads the payload when a worker starts or joins; forgets it when removed."""

    def __init__(self, token: str, payload: bytes) -> None:
        self.token, self.payload = token, payload

    def setup(self, worker: object) -> None:
        try:
            _worker.install(self.token, self.payload)
        except Exception as error:  # raised to the caller by the first call that needs it
            _worker.FAILED[self.token] = error

    def teardown(self, worker: object) -> None:
        _worker.discard(self.token)
