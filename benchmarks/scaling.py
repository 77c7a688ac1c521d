"""Full-check speedup from 1 to 2 threads, per compiled engine, on the benchmark MLP.

    python benchmarks/scaling.py [--size 20000]

BLAS inside the cost is capped at one thread in both runs (after SciPy's BLAS, which Numba
calls for ``@``, is loaded), so the ratio compares one core with two.
"""

from __future__ import annotations

import argparse

import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS Numba uses before capping it)
from threadpoolctl import threadpool_limits

import fastgc
from benchmarks import _models

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000, choices=sorted(_models.WIDTHS))
    size = parser.parse_args().size
    mlp = _models.make_mlp(size)
    grads = _models.numpy_grads(mlp.theta, *mlp.args)
    with threadpool_limits(limits=1, user_api="blas"):
        for engine in ("numba", "cython"):
            cost, args = _models.engine_cost(engine, mlp)
            seconds = {
                p: fastgc.check(cost, mlp.theta, grads, args=args, engine=engine, n_threads=p,
                                progress=False).seconds
                for p in (1, 2)
            }
            print(f"{engine:<7} n={mlp.n:,}: 2 threads vs 1 = {seconds[1] / seconds[2]:.2f}x")
