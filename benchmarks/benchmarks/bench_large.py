"""Large networks: the time per index of a check, on a sample of indices.

A full check of ~200k parameters takes minutes and of ~1M hours (two cost evaluations of
O(n) work per index), so these benchmarks time the engine kernel a full check runs, on
``SAMPLE`` evenly spaced indices; the full-check time is ``n / SAMPLE`` times larger.
"""

import contextlib

import numpy as np

from . import _models

SAMPLE = 64


class TimeSampledIndices:
    params = (["numba"], [20_000, 200_000, 1_000_000], [1, 2])
    param_names = ["engine", "size", "n_threads"]
    number = 1
    repeat = (1, 5, 10.0)
    warmup_time = 0.0
    timeout = 120.0

    def setup(self, engine, size, n_threads):
        if size > 20_000 and n_threads != 2:
            raise NotImplementedError("above 20k parameters, benchmarked at 2 threads only")
        from fastgc._cost import Cost
        from fastgc._layout import flatten
        from fastgc.engines import get_engine
        from fastgc.executors import LocalExecutor

        mlp = _models.make_mlp(size)
        theta, layout = flatten(mlp.theta)
        cost = Cost.classify(_models.numba_cost(), mlp.args, layout)
        executor = LocalExecutor(get_engine(engine), cost, theta, n_threads)
        self.indices = np.unique(np.linspace(0, theta.shape[0] - 1, SAMPLE).astype(np.int64))
        self.steps = np.full(self.indices.shape[0], _models.EPS)
        self.approx = np.empty(self.indices.shape[0])
        # The session (work copies, thread state) stays open across the timed calls.
        self.stack = contextlib.ExitStack()
        self.session = self.stack.enter_context(executor.open())
        self.session.differences(self.indices[:2], self.steps[:2], self.approx[:2])  # compile

    def teardown(self, engine, size, n_threads):
        if hasattr(self, "stack"):
            self.stack.close()

    def time_sample(self, engine, size, n_threads):
        self.session.differences(self.indices, self.steps, self.approx)
