"""fastgc against the usual ways of checking gradients, on the same MLP cost, in one process.

    python benchmarks/compare.py [--sizes 100,2000,20000,200000] [--threads 1,2] [--budget 4]

Methods (all with eps = 1e-7, central differences, every index covered):

- fastgc: ``fastgc.check`` with the numba engine and the njit cost;
- course loop: for each i, copy theta into thetaplus and thetaminus, perturb, evaluate the NumPy
  cost twice, store (the lecture's loop);
- scipy: ``scipy.optimize._numdiff.approx_derivative(method="3-point")`` on the NumPy cost;
- torch: ``torch.autograd.gradcheck(fast_mode=False)`` on a float64 torch version (if installed);
- numdifftools: ``numdifftools.Gradient(method="central")`` (if installed; small sizes only);
- T_lim: the physical limit 2 n t_J / p, with t_J one compiled cost evaluation on one core.

A method whose full run would exceed ``--budget`` seconds is timed on an evenly spaced sample of
indices and extrapolated linearly to every index; the "extrapolated" column says so. BLAS (and
torch) threads are capped at the row's thread count.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks import _models  # noqa: E402  (also puts the source tree on the path if needed)

import fastgc  # noqa: E402

EPS = _models.EPS


# ---------------------------------------------------------------- timing helpers

def best_of(function, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def sample_indices(n, m):
    return np.unique(np.linspace(0, n - 1, max(1, min(n, m))).astype(np.int64))


def timed_full_or_sampled(run, n, seconds_per_index_guess, budget, minimum=8):
    """(seconds for every index, extrapolated?) of ``run(indices)``."""
    if n * seconds_per_index_guess <= budget:
        indices = np.arange(n, dtype=np.int64)
        repeats = 3 if n * seconds_per_index_guess < 0.3 * budget / 3 else 1
        return best_of(lambda: run(indices), repeats), False
    m = max(minimum, int(budget / max(seconds_per_index_guess, 1e-9)))
    indices = sample_indices(n, m)
    seconds = best_of(lambda: run(indices), 1)
    return seconds * n / indices.shape[0], True


def probe_seconds_per_index(run, n, count=4):
    indices = sample_indices(n, count)
    run(indices[:1])
    return best_of(lambda: run(indices), 2) / indices.shape[0]


# ---------------------------------------------------------------- the methods

def course_loop(mlp):
    theta, args = mlp.theta, mlp.args

    def run(indices):
        gradapprox = np.empty(indices.shape[0])
        for k, i in enumerate(indices):
            thetaplus = np.copy(theta)
            thetaplus[i] = thetaplus[i] + EPS
            J_plus = _models.numpy_cost(thetaplus, *args)
            thetaminus = np.copy(theta)
            thetaminus[i] = thetaminus[i] - EPS
            J_minus = _models.numpy_cost(thetaminus, *args)
            gradapprox[k] = (J_plus - J_minus) / (2 * EPS)
        return gradapprox

    return run


def scipy_3_point(mlp):
    from scipy.optimize._numdiff import approx_derivative

    theta, args = mlp.theta, mlp.args

    def run(indices):
        if indices.shape[0] == theta.shape[0]:
            return approx_derivative(lambda x: _models.numpy_cost(x, *args), theta,
                                     method="3-point", abs_step=EPS)
        scratch = theta.copy()

        def on_sample(x):  # the cost as a function of the sampled entries only
            scratch[indices] = x
            return _models.numpy_cost(scratch, *args)

        return approx_derivative(on_sample, theta[indices], method="3-point", abs_step=EPS)

    return run


def torch_gradcheck(mlp, grads):
    import torch

    theta0 = torch.from_numpy(mlp.theta.copy())
    X = torch.from_numpy(mlp.X)
    labels = torch.from_numpy(mlp.labels)
    shapes = [(int(o), int(i)) for i, o in zip(mlp.widths[:-1], mlp.widths[1:])]

    def cost(theta):
        A, offset = X, 0
        for layer, (n_out, n_in) in enumerate(shapes):
            W = theta[offset : offset + n_out * n_in].reshape(n_out, n_in)
            offset += n_out * n_in
            b = theta[offset : offset + n_out]
            offset += n_out
            Z = W @ A + b[:, None]
            A = torch.relu(Z) if layer < len(shapes) - 1 else Z
        return torch.nn.functional.cross_entropy(A.T, labels)

    def run(indices):
        if indices.shape[0] == mlp.n:
            x = theta0.clone().requires_grad_(True)
            function = cost
        else:
            index = torch.from_numpy(indices)
            x = theta0[index].clone().requires_grad_(True)

            def function(sub):
                return cost(theta0.index_put((index,), sub))

        return torch.autograd.gradcheck(function, (x,), eps=EPS, atol=1e-5, rtol=1e-3,
                                        raise_exception=False, fast_mode=False)

    return run


def numdifftools_gradient(mlp):
    import numdifftools

    theta, args = mlp.theta, mlp.args

    def run(indices):
        scratch = theta.copy()

        def on_sample(x):
            scratch[indices] = x
            return _models.numpy_cost(scratch, *args)

        return numdifftools.Gradient(on_sample, step=EPS, method="central")(theta[indices])

    return run


def fastgc_runner(mlp, grads, n_threads):
    """run(indices): the numba engine kernel a check runs, under a check's thread state."""
    from fastgc._engines import Cost, make_runner
    from fastgc._layout import flatten
    from fastgc._threads import numba_threads

    theta, layout = flatten(mlp.theta)
    cost = Cost.classify(_models.numba_cost(), mlp.args, layout)
    work = np.empty((n_threads, layout.size))
    work[:] = theta
    kernel = make_runner("numba", cost, work)
    failed = np.empty(n_threads, dtype=np.int64)

    def run(indices):
        approx = np.empty(indices.shape[0])
        with numba_threads(n_threads):
            kernel(indices, np.full(indices.shape[0], EPS), approx, failed)
        return approx

    return run


# ---------------------------------------------------------------- report

def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import numba

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {model}, {os.cpu_count()} logical cores ({fastgc._threads.usable_threads()}"
            f" usable), {platform.system()} {platform.machine()}; Python "
            f"{platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
            f"fastgc {fastgc.__version__}; load average {load:.2f} at start")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,2000,20000,200000")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--budget", type=float, default=4.0,
                        help="seconds per measurement before sampling (default 4)")
    options = parser.parse_args(argv)
    sizes = [int(s) for s in options.sizes.split(",")]
    threads = [int(t) for t in options.threads.split(",")]
    budget = options.budget
    unknown = [s for s in sizes if s not in _models.WIDTHS]
    if unknown:
        parser.error(f"--sizes must be among {sorted(_models.WIDTHS)}, got {unknown}")

    from threadpoolctl import threadpool_limits

    print(machine(), flush=True)
    started_all = time.perf_counter()
    notes = []
    try:
        import torch
    except ImportError:
        torch = None
        notes.append("torch is not installed: the torch gradcheck rows are skipped "
                      "(pip install torch)")
    try:
        import numdifftools  # noqa: F401
        have_numdifftools = True
    except ImportError:
        have_numdifftools = False
        notes.append("numdifftools is not installed: its rows are skipped")

    rows = []  # (method, n, threads, seconds, extrapolated)
    fastgc_seconds, limits = {}, {}
    for size in sizes:
        mlp = _models.make_mlp(size)
        n = mlp.n
        grads = _models.numpy_grads(mlp.theta, *mlp.args)
        t_J = _models.cost_seconds(mlp, seconds=0.5, repeats=5000)
        for p in threads:
            limits[n, p] = 2 * n * t_J / p
            rows.append(("T_lim = 2 n t_J / p", n, p, limits[n, p], False))
            # fastgc: a full check when it fits the budget, else the kernel on a sample.
            warm = _models.make_mlp(100)
            warm_grads = _models.numpy_grads(warm.theta, *warm.args)
            fastgc.check(_models.numba_cost(), warm.theta, warm_grads, args=warm.args,
                         n_threads=p, progress=False)
            if limits[n, p] * 1.3 <= max(budget, 8.0):
                def check():
                    result = fastgc.check(_models.numba_cost(), mlp.theta, grads, args=mlp.args,
                                          n_threads=p, progress=False)
                    assert result.verdict == "correct", result.verdict

                seconds, extrapolated = best_of(check, 3 if limits[n, p] < 1 else 1), False
            else:
                run = fastgc_runner(mlp, grads, p)
                run(sample_indices(n, 2 * p))
                seconds, extrapolated = timed_full_or_sampled(
                    run, n, 2 * t_J / p, budget, minimum=8 * p)
            fastgc_seconds[n, p] = seconds
            rows.append(("fastgc (numba)", n, p, seconds, extrapolated))

            methods = [("course loop (NumPy)", course_loop(mlp)),
                       ("scipy approx_derivative 3-point", scipy_3_point(mlp))]
            if torch is not None:
                methods.append(("torch gradcheck (fast_mode=False)",
                                torch_gradcheck(mlp, grads)))
            if have_numdifftools and n <= 2_500:
                methods.append(("numdifftools Gradient central", numdifftools_gradient(mlp)))
            with threadpool_limits(limits=p):
                if torch is not None:
                    torch.set_num_threads(p)
                for name, run in methods:
                    guess = probe_seconds_per_index(run, n)
                    seconds, extrapolated = timed_full_or_sampled(run, n, guess, budget)
                    rows.append((name, n, p, seconds, extrapolated))
            print(f"  measured n={n:,} at {p} thread(s) "
                  f"({time.perf_counter() - started_all:.0f} s so far)",
                  file=sys.stderr, flush=True)

    print()
    header = (f"{'method':<34} {'n':>8} {'thr':>3} {'seconds':>10} {'extrapolated':>12} "
              f"{'x fastgc':>9} {'x T_lim':>8}")
    print(header)
    print("-" * len(header))
    for name, n, p, seconds, extrapolated in rows:
        print(f"{name:<34} {n:>8,} {p:>3} {seconds:>10.4g} {'yes' if extrapolated else 'no':>12} "
              f"{seconds / fastgc_seconds[n, p]:>9.2f} {seconds / limits[n, p]:>8.2f}")

    print()
    if 1 in threads and 2 in threads:
        for size in sizes:
            n = _models.make_mlp(size).n
            print(f"fastgc speedup 2 threads vs 1 at n={n:,}: "
                  f"{fastgc_seconds[n, 1] / fastgc_seconds[n, 2]:.2f}x")
    extras(threads)
    for note in notes:
        print("note:", note)
    print(f"note: 'extrapolated' = timed on an evenly spaced sample of indices, scaled to all n "
          f"(budget {budget:g} s per measurement); sampled scipy/torch/numdifftools runs "
          "differentiate a sub-vector of theta, which evaluates the same full cost per index")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"total {time.perf_counter() - started_all:.0f} s; load average {load:.2f} at the end "
          "(other processes on the machine distort the thread scaling)")
    return 0


def extras(threads):
    """Per-index overhead, compile time, import time and extra memory of fastgc."""
    cost = _models.trivial_cost()
    n = 1_000_000
    theta, grads = _models.trivial_problem(n)
    for p in threads:
        fastgc.check(cost, theta[:16], grads[:16], n_threads=p, progress=False)
        seconds = best_of(lambda: fastgc.check(cost, theta, grads, n_threads=p, progress=False))
        print(f"per-index overhead (cost returning 0.5*theta[0]+1, n=1e6) at {p} thread(s): "
              f"{seconds / n * 1e9:.0f} ns")
    for p in threads:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        fastgc.check(cost, theta, grads, n_threads=p, progress=False)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        print(f"extra memory of a check (NumPy allocations, n=1e6, float64) at {p} thread(s): "
              f"{peak / (n * 8):.1f} x n x itemsize (goal <= {p + 4})")
    mlp = _models.make_mlp(100)
    result = fastgc.check(_models.fresh_numba_cost(), mlp.theta,
                          _models.numpy_grads(mlp.theta, *mlp.args), args=mlp.args,
                          progress=False)
    print(f"compile time of a never-compiled njit cost (first check): "
          f"{result.compile_seconds:.2f} s")
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src")
    environment = dict(os.environ, PYTHONPATH=os.path.abspath(source) + os.pathsep
                       + os.environ.get("PYTHONPATH", ""))

    def python(code):
        return best_of(lambda: subprocess.run([sys.executable, "-c", code], check=True,
                                              env=environment), 5)

    empty, with_import = python("pass"), python("import fastgc")
    print(f"import fastgc: {with_import - empty:.3f} s (interpreter start excluded)")


if __name__ == "__main__":
    sys.exit(main())
