"""What fastgc adds around the cost: per-index overhead and first-call compilation."""

import time

import fastgc

from . import _models

N_TRIVIAL = 1_000_000


class TrackOverhead:
    """Seconds of a full check of a cost reading one entry, per index, in nanoseconds."""

    params = ([1, 2],)
    param_names = ["n_threads"]
    unit = "ns per index"
    timeout = 120.0

    def setup(self, n_threads):
        self.cost = _models.trivial_cost()
        self.theta, self.grads = _models.trivial_problem(N_TRIVIAL)
        small_theta, small_grads = _models.trivial_problem(16)
        fastgc.check(self.cost, small_theta, small_grads, n_threads=n_threads, progress=False)

    def track_ns_per_index(self, n_threads):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            fastgc.check(self.cost, self.theta, self.grads, n_threads=n_threads, progress=False)
            best = min(best, time.perf_counter() - started)
        return best / N_TRIVIAL * 1e9


class TimeOverhead:
    """Wall time of the same full check of the one-entry cost over 1e6 indices."""

    params = ([1, 2],)
    param_names = ["n_threads"]
    number = 1
    repeat = (3, 10, 10.0)
    timeout = 120.0

    def setup(self, n_threads):
        TrackOverhead.setup(self, n_threads)

    def time_check_trivial_1e6(self, n_threads):
        fastgc.check(self.cost, self.theta, self.grads, n_threads=n_threads, progress=False)


class TrackCompile:
    """``compile_seconds`` of the first check of a never-compiled njit MLP cost."""

    unit = "seconds"
    timeout = 120.0
    number = 1
    repeat = 1

    def setup(self):
        self.mlp = _models.make_mlp(100)
        self.grads = _models.numpy_grads(self.mlp.theta, *self.mlp.args)
        self.cost = _models.fresh_numba_cost()

    def track_compile_seconds(self):
        result = fastgc.check(self.cost, self.mlp.theta, self.grads, args=self.mlp.args,
                              progress=False)
        return result.compile_seconds


class TrackFixedCost:
    """What a full check of the 99-parameter MLP costs beyond its evaluations, per check, in
    microseconds: validation, baseline, thread and BLAS set-up, the plan, the serial replay of
    a parallel run, diagnosis and report. The evaluations are counted at ``t_J`` each, the two
    baseline ones serially and the 2n of the sweep spread over the threads."""

    params = ([1, 2],)
    param_names = ["n_threads"]
    unit = "us per check"
    timeout = 120.0
    checks = 100

    def setup(self, n_threads):
        self.mlp = _models.make_mlp(100)
        self.grads = _models.numpy_grads(self.mlp.theta, *self.mlp.args)
        self.cost = _models.numba_cost()
        self._check(n_threads)  # compile (or load) the cost and the kernels
        t_J = _models.cost_seconds(self.mlp, seconds=0.25)
        self.evaluation_seconds = 2 * t_J + 2 * self.mlp.n * t_J / n_threads

    def _check(self, n_threads):
        fastgc.check(self.cost, self.mlp.theta, self.grads, args=self.mlp.args,
                     n_threads=n_threads, engine="numba", progress=False)

    def track_fixed_us(self, n_threads):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(self.checks):
                self._check(n_threads)
            best = min(best, (time.perf_counter() - started) / self.checks)
        return (best - self.evaluation_seconds) * 1e6
