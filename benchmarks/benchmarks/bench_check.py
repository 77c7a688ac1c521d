"""Full-check time per engine, size and thread count, and its peak memory."""

import numpy as np

import fastgc

from . import _models

# Skipped combinations: a full check that would take far longer than the suite allows, and
# thread counts the serial Python engine ignores.
SECONDS_PER_CHECK_LIMIT = 15.0


def _skip_if_too_slow(engine, size, n_threads):
    if engine == "python" and n_threads != 1:
        raise NotImplementedError("the python engine is serial")
    if engine == "python" and size > 2_000:
        raise NotImplementedError("a full Python-engine check takes minutes at this size")
    if size > 2_000 and (engine, n_threads) != ("numba", 2):
        raise NotImplementedError("at 20k parameters only numba on 2 threads is timed here, to "
                                  "keep `asv run --quick` short (compare.py times the rest)")


class TimeCheck:
    """``fastgc.check`` of the MLP, every index, with the correct gradient."""

    params = (["numba", "cython", "python"], [100, 2_000, 20_000], [1, 2])
    param_names = ["engine", "size", "n_threads"]
    number = 1
    repeat = (1, 5, 20.0)
    warmup_time = 0.0
    timeout = 120.0

    def setup(self, engine, size, n_threads):
        _skip_if_too_slow(engine, size, n_threads)
        self.mlp = _models.make_mlp(size)
        self.grads = _models.numpy_grads(self.mlp.theta, *self.mlp.args)
        self.cost, self.args = _models.engine_cost(engine, self.mlp)
        # Warm up: compile the cost and the engine's kernel for this cost on the smallest net.
        small = _models.make_mlp(100)
        cost, args = _models.engine_cost(engine, small)
        fastgc.check(cost, small.theta, _models.numpy_grads(small.theta, *small.args),
                     args=args, n_threads=n_threads, engine=engine, progress=False)

    def time_check(self, engine, size, n_threads):
        fastgc.check(self.cost, self.mlp.theta, self.grads, args=self.args,
                     n_threads=n_threads, engine=engine, progress=False)


class MemCheck:
    """Peak memory of a full check of a 1e6-parameter trivial cost (the buffers dominate)."""

    params = ([1, 2],)
    param_names = ["n_threads"]
    timeout = 120.0

    def setup(self, n_threads):
        self.cost = _models.trivial_cost()
        self.theta, self.grads = _models.trivial_problem(1_000_000)
        small_theta, small_grads = _models.trivial_problem(16)
        fastgc.check(self.cost, small_theta, small_grads, n_threads=n_threads, progress=False)

    def peakmem_check_trivial_1e6(self, n_threads):
        fastgc.check(self.cost, self.theta, self.grads, n_threads=n_threads, progress=False)


class TrackAccuracy:
    """The lecture difference fastgc reports on a correct network (float64, eps=1e-7)."""

    params = ([100, 2_000],)
    param_names = ["size"]
    unit = "relative difference"
    timeout = 120.0

    def setup(self, size):
        self.mlp = _models.make_mlp(size)
        self.grads = _models.numpy_grads(self.mlp.theta, *self.mlp.args)

    def track_difference_correct(self, size):
        result = fastgc.check(_models.numba_cost(), self.mlp.theta, self.grads,
                              args=self.mlp.args, progress=False)
        assert np.isfinite(result.difference)
        return result.difference
