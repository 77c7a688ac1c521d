"""One evaluation of the benchmark cost on one core: the t_J of the physical limit 2 n t_J / p.

The njit cost is timed from a compiled loop, as fastgc's kernel calls it; the NumPy cost from
Python, as the course loop and SciPy call it. A regression here moves every check time.
"""

from . import _models


class TrackCost:
    params = (["numba", "numpy"], [100, 2_000, 20_000])
    param_names = ["cost", "size"]
    unit = "microseconds"
    timeout = 120.0

    def setup(self, cost, size):
        self.mlp = _models.make_mlp(size)
        if cost == "numba":
            _models.cost_seconds(_models.make_mlp(100), seconds=0.01, rounds=1)  # compile

    def track_one_evaluation(self, cost, size):
        if cost == "numba":
            seconds = _models.cost_seconds(self.mlp, seconds=0.2)
        else:
            seconds = _models.python_seconds(_models.numpy_cost, self.mlp, seconds=0.2)
        return seconds * 1e6
