"""fastgc's share of the first check in a new process, beyond the user's own compilation.

:func:`measure` runs :data:`SCRIPT` in a fresh interpreter with ``NUMBA_CACHE_DIR`` set to a
given directory (empty: a cold cache; used once already: a warm one). The script compiles the
cost itself first, by calling it, as the user's program would, so that what the check then
takes is fastgc's share: its kernels (compiled, or loaded from the cache) and the check's own
evaluations. It then does the same for a second cost with the same argument types.

Two costs: the README's ``@numba.njit`` example (a 2-layer network of 31 parameters) and the
benchmark MLP of about 2,000 parameters (:mod:`._models`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

COSTS = ("readme", "mlp")

SCRIPT = r'''
import json, sys, time
import numba
import numpy as np
import fastgc

def readme_problem():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((4, 8)), (rng.random((1, 8)) > 0.5).astype(float)
    params = {"W1": rng.standard_normal((5, 4)), "b1": np.zeros((5, 1)),
              "W2": rng.standard_normal((1, 5)), "b2": np.zeros((1, 1))}
    m = X.shape[1]
    A1 = np.tanh(params["W1"] @ X + params["b1"])
    A2 = 1 / (1 + np.exp(-(params["W2"] @ A1 + params["b2"])))
    dZ2 = (A2 - Y) / m
    dZ1 = (params["W2"].T @ dZ2) * (1 - A1**2)
    grads = {"dW1": dZ1 @ X.T, "db1": dZ1.sum(1, keepdims=True),
             "dW2": dZ2 @ A1.T, "db2": dZ2.sum(1, keepdims=True)}
    theta, layout = fastgc.flatten(params)
    (o0, o1, o2, o3, o4) = layout.offsets

    def flat_cost(theta, X, Y):
        W1 = theta[o0:o1].reshape(5, 4); b1 = theta[o1:o2].reshape(5, 1)
        W2 = theta[o2:o3].reshape(1, 5); b2 = theta[o3:o4].reshape(1, 1)
        A1 = np.tanh(W1 @ X + b1)
        A2 = 1 / (1 + np.exp(-(W2 @ A1 + b2)))
        return -np.mean(Y * np.log(A2) + (1 - Y) * np.log(1 - A2))

    return params, grads, (X, Y), flat_cost

def mlp_problem():
    from benchmarks import _models
    mlp = _models.make_mlp(2_000)
    return (mlp.theta, _models.numpy_grads(mlp.theta, *mlp.args), mlp.args,
            _models.numba_cost().py_func)

params, grads, args, function = {"readme": readme_problem, "mlp": mlp_problem}[sys.argv[1]]()
theta = fastgc.flatten(params)[0]
seconds = {}
for name in ("first", "second"):
    cost = numba.njit(nogil=True)(function)  # a new dispatcher: the second is another cost
    started = time.perf_counter()
    cost(theta.copy(), *args)  # the user's own compilation, not fastgc's
    seconds[name + "_cost_compile"] = time.perf_counter() - started
    started = time.perf_counter()
    result = fastgc.check(cost, params, grads, args=args, n_threads=2, progress=False)
    seconds[name] = time.perf_counter() - started
    assert result.verdict == "correct", result
started = time.perf_counter()
fastgc.check(cost, params, grads, args=args, n_threads=2, progress=False)
seconds["again"] = time.perf_counter() - started  # the evaluations, nothing compiled
print(json.dumps(seconds))
'''


def measure(cost: str, cache_dir: str) -> dict:
    """Seconds of the first check (``first``), of the first check of a second cost with the
    same argument types (``second``), of a check with nothing to compile (``again``), and
    of the user's own compilation of each cost, in a new process caching in ``cache_dir``."""
    suite = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = os.path.join(os.path.dirname(suite), "src")
    paths = [suite, source, os.environ.get("PYTHONPATH", "")]
    environment = {**os.environ, "NUMBA_CACHE_DIR": cache_dir,
                   "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    environment.pop("FASTGC_ENGINE", None)
    completed = subprocess.run([sys.executable, "-c", SCRIPT, cost], capture_output=True,
                               text=True, env=environment, timeout=300, cwd=cache_dir)
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr)
    return json.loads(completed.stdout.splitlines()[-1])
