"""fastgc against the usual ways of checking gradients, on the same MLP cost, in one process.

    python benchmarks/compare.py [--sizes 100,2000,20000,200000] [--threads 1,2] [--markdown]
                                 [--budget 15] [--fastgc-budget 200] [--sample-seconds 5]
    python benchmarks/compare.py --plans [--large]   # check plans: see benchmarks/plans.py
    python benchmarks/compare.py --executors [--sizes 20000,200000]

With ``--executors``, only the executor rows run: the NumPy MLP cost checked by the serial
Python engine in this process, by ``executor="processes"`` with 2 workers, and on a Dask
``LocalCluster`` of 1 and of 2 worker processes (one thread each), with the per-task overhead
of each executor and its share of a task at the default chunk size. Up to 20k parameters a
row is a whole check; above, ``bench_executors.SAMPLE`` evenly spaced indices through the
executor's session (startup and shipping included), since a whole one-core check takes
minutes there. BLAS runs on one thread in every process (this one and each worker); each row
is the best of two runs.

Methods (all with eps = 1e-7, central differences, every index covered):

- fastgc: ``fastgc.check`` with the numba engine and the njit cost (a whole check: validation,
  noise floor, every index, per-parameter norms, re-examination);
- course loop: for each i, copy theta into thetaplus and thetaminus, perturb, evaluate the NumPy
  cost twice, store (the lecture's loop);
- scipy: ``scipy.optimize._numdiff.approx_derivative(method="3-point")`` on the NumPy cost;
- torch: ``torch.autograd.gradcheck(fast_mode=False)`` on a float64 torch version (if installed);
- torch module: the same network as an ``nn.Module`` (Linear and ReLU layers), checked by
  ``fastgc.torch.check_module`` (one evaluation at a time, torch's intra-op threads at p; and,
  for p > 1, ``n_threads=p`` evaluations side by side with torch on one thread each) and by
  ``torch.autograd.gradcheck(fast_mode=False)`` over the module's parameters through
  ``torch.func.functional_call``; for p > 1, also ``check_module(executor="processes",
  n_workers=p)``: p worker processes, torch on one intra-op thread in each, timed as a whole
  check (starting the workers and importing torch in each included); the "x torch gradcheck
  (module)" notes give the ratios;
- numdifftools: ``numdifftools.Gradient(method="central")`` (if installed; small sizes only);
- T_lim: the physical limit 2 n t_J / p, with t_J one evaluation of the njit cost on one core,
  timed from a compiled loop as fastgc's kernel calls it.

Every row runs with BLAS (and torch) capped at the row's thread count p, so a 1-thread row uses
one core, cost included. A baseline whose full run would exceed ``--budget`` seconds is run on the
full problem but stopped after about ``--sample-seconds`` (every index costs the same two cost
evaluations, and the method's own per-index work, such as SciPy's copies of theta, is kept), and
the time is scaled to all n; a fastgc check predicted to exceed ``--fastgc-budget`` seconds is
timed as its compiled kernel on an evenly spaced sample of indices, scaled likewise. The
"extrapolated" column (a "~" in the Markdown table) says which rows were scaled.

Runs predicted to last under 0.1 s (every method alike) are repeated for about a second and
the best time kept. The defaults run in about five minutes on two cores. At ~200k parameters every baseline is
extrapolated (a full run takes 4 to 8 minutes each), and so is fastgc's 1-thread check (about
2 x 200k x 0.65 ms = 4.4 minutes); its 2-thread check runs in full.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks import _models  # noqa: E402  (also puts the source tree on the path if needed)
from benchmarks import _first_check  # noqa: E402

import fastgc  # noqa: E402

EPS = _models.EPS
FASTGC = "fastgc (numba)"
LIMIT = "T_lim = 2 n t_J / p"
TORCH_MODULE_FASTGC = "fastgc.torch check_module"
TORCH_MODULE_GRADCHECK = "torch gradcheck on the nn.Module (fast_mode=False)"
TORCH_MODULE_PROCESSES = TORCH_MODULE_FASTGC + ' executor="processes" n_workers={p}'


@dataclass
class Row:
    method: str
    n: int
    threads: int
    seconds: float
    extrapolated: bool


# ---------------------------------------------------------------- timing helpers

# Runs shorter than this are repeated for about SHORT_RUN_SECONDS (every method alike), so that
# a millisecond check is not judged on three samples of a shared machine.
SHORT_RUN = 0.1
SHORT_RUN_SECONDS = 1.0


def best_of(function, repeats=3, seconds=0.0):
    """The best time of at least ``repeats`` calls, repeated until ``seconds`` have passed."""
    best = float("inf")
    started_all = time.perf_counter()
    calls = 0
    while calls < repeats or (time.perf_counter() - started_all < seconds and calls < 10_000):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
        calls += 1
    return best


def repeat_for(predicted):
    """Seconds to keep repeating a run predicted to last ``predicted`` seconds."""
    return SHORT_RUN_SECONDS if predicted < SHORT_RUN else 0.0


def sample_indices(n, m):
    return np.unique(np.linspace(0, n - 1, max(1, min(n, m))).astype(np.int64))


class _Enough(Exception):
    """Raised from inside a cost to stop a baseline after the indices it was allowed."""


class Counted:
    """A cost that raises :class:`_Enough` once called more than ``allowed`` times."""

    def __init__(self, cost):
        self.cost = cost
        self.allowed = None
        self.calls = 0

    def start(self, allowed):
        self.allowed, self.calls = allowed, 0

    def __call__(self, *arguments):
        self.calls += 1
        if self.allowed is not None and self.calls > self.allowed:
            raise _Enough
        return self.cost(*arguments)


def timed_baseline(run, n, budget, sample_seconds, minimum=8):
    """(seconds for every index, extrapolated?) of a baseline ``run(count)``.

    ``run(None)`` differentiates along every index; ``run(count)`` stops after the first
    ``count`` indices. Runs of 4 and 12 indices predict the full time (set-up plus per index);
    if it exceeds ``budget``, a stopped run of about ``sample_seconds`` is scaled to all n.
    """
    run(min(n, 2))
    few, more = min(n, 4), min(n, 12)
    seconds_few = best_of(lambda: run(few), 2)
    seconds_more = best_of(lambda: run(more), 1)
    per_index = max((seconds_more - seconds_few) / max(more - few, 1), seconds_more / more / 4)
    predicted = max(seconds_few - few * per_index, 0.0) + n * per_index
    if predicted <= budget:
        repeats = 3 if predicted < budget / 10 else 1
        return best_of(lambda: run(None), repeats, repeat_for(predicted)), False
    count = min(n, max(minimum, int(sample_seconds / per_index)))
    return best_of(lambda: run(count), 1) * n / count, True


# ---------------------------------------------------------------- the methods

def course_loop(mlp):
    theta, args = mlp.theta, mlp.args

    def run(count):
        count = theta.shape[0] if count is None else count
        gradapprox = np.empty(count)
        for i in range(count):
            thetaplus = np.copy(theta)
            thetaplus[i] = thetaplus[i] + EPS
            J_plus = _models.numpy_cost(thetaplus, *args)
            thetaminus = np.copy(theta)
            thetaminus[i] = thetaminus[i] - EPS
            J_minus = _models.numpy_cost(thetaminus, *args)
            gradapprox[i] = (J_plus - J_minus) / (2 * EPS)
        return gradapprox

    return run


def stoppable(method, counted):
    """run(count) of a method that evaluates ``counted`` once, then twice per index in order."""

    def run(count):
        counted.start(None if count is None else 1 + 2 * count)
        try:
            return method()
        except _Enough:
            return None

    return run


def scipy_3_point(mlp):
    from scipy.optimize._numdiff import approx_derivative

    theta, args = mlp.theta, mlp.args
    cost = Counted(_models.numpy_cost)
    return stoppable(lambda: approx_derivative(lambda x: cost(x, *args), theta,
                                               method="3-point", abs_step=EPS), cost)


def torch_gradcheck(mlp):
    import torch

    theta0 = torch.from_numpy(mlp.theta.copy())
    X = torch.from_numpy(mlp.X)
    labels = torch.from_numpy(mlp.labels)
    shapes = [(int(o), int(i)) for i, o in zip(mlp.widths[:-1], mlp.widths[1:])]

    def torch_cost(theta):
        A, offset = X, 0
        for layer, (n_out, n_in) in enumerate(shapes):
            W = theta[offset : offset + n_out * n_in].reshape(n_out, n_in)
            offset += n_out * n_in
            b = theta[offset : offset + n_out]
            offset += n_out
            Z = W @ A + b[:, None]
            A = torch.relu(Z) if layer < len(shapes) - 1 else Z
        return torch.nn.functional.cross_entropy(A.T, labels)

    cost = Counted(torch_cost)

    def method():
        x = theta0.clone().requires_grad_(True)
        passed = torch.autograd.gradcheck(cost, (x,), eps=EPS, atol=1e-5, rtol=1e-3,
                                          raise_exception=False, fast_mode=False)
        assert passed, "torch gradcheck rejected the correct gradient"

    return stoppable(method, cost)


def torch_module(mlp):
    """The MLP as a float64 ``nn.Module`` taking examples in rows, and its data."""
    import torch

    layers, offset = [], 0
    widths = [int(w) for w in mlp.widths]
    for layer, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        linear = torch.nn.Linear(n_in, n_out, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(
                mlp.theta[offset : offset + n_out * n_in].reshape(n_out, n_in)))
            offset += n_out * n_in
            linear.bias.copy_(torch.from_numpy(mlp.theta[offset : offset + n_out]))
            offset += n_out
        layers.append(linear)
        if layer < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    return (torch.nn.Sequential(*layers), torch.from_numpy(mlp.X.T.copy()),
            torch.from_numpy(mlp.labels))


def _stopped_by_count(error):
    """Whether ``error`` (a fastgc error from a stopped cost) was caused by :class:`_Enough`."""
    while error is not None:
        if isinstance(error, _Enough):
            return True
        error = error.__cause__ or error.__context__
    return False


def fastgc_torch_module(mlp, n_threads=None, n_workers=None):
    """run(count) of ``fastgc.torch.check_module`` on the module (stopped after ``count``
    indices: the closure is called once for the gradients, twice for the baseline, then
    twice per index). With ``n_workers``, the check runs on that many worker processes
    (``executor="processes"``, torch on one thread in each), and only in full: ``count`` must
    be None, since each worker counts its own calls."""
    import torch

    import fastgc.torch

    module, X, labels = torch_module(mlp)
    def loss(m):
        return torch.nn.functional.cross_entropy(m(X), labels)

    on_workers = {} if n_workers is None else {"executor": "processes", "n_workers": n_workers}
    # Shipped to the workers by value: a closure of this script's own classes would be
    # pickled by reference, which fails where the script is not importable.
    closure = loss if on_workers else Counted(loss)

    def run(count):
        if on_workers and count is not None:
            raise ValueError("a check on worker processes is timed in full only")
        if not on_workers:
            closure.start(None if count is None else 3 + 2 * count)
        try:
            result = fastgc.torch.check_module(module, closure, eps=EPS, n_threads=n_threads,
                                               progress=False, **on_workers)
        except fastgc.FastGCError as error:
            if _stopped_by_count(error):
                return None
            raise
        assert result.verdict == "correct", str(result)
        return result

    return run


def torch_module_on_workers(mlp, p, rows, budget, notes):
    """The row of ``check_module(executor="processes", n_workers=p)``: a whole check, worker
    start-up and torch's import in each worker included, best of two; run only when the
    one-process check of the same module took at most ``budget`` seconds in full."""
    serial = next(r for r in rows if (r.method, r.n, r.threads) == (TORCH_MODULE_FASTGC, mlp.n, p))
    if serial.extrapolated or serial.seconds > budget:
        notes.append(f"{TORCH_MODULE_PROCESSES.format(p=p)} at n={mlp.n:,}: skipped (the "
                     f"one-process check takes {serial.seconds:.0f} s, over --budget)")
        return []
    run = fastgc_torch_module(mlp, n_workers=p)
    seconds = best_of(lambda: run(None), 2)
    return [Row(TORCH_MODULE_PROCESSES.format(p=p), mlp.n, p, seconds, False)]


def torch_gradcheck_module(mlp):
    """run(count) of ``torch.autograd.gradcheck(fast_mode=False)`` on the module's parameters."""
    import torch

    module, X, labels = torch_module(mlp)
    names = [name for name, _ in module.named_parameters()]
    parameters = tuple(p.detach().clone() for p in module.parameters())

    def loss(*values):
        out = torch.func.functional_call(module, dict(zip(names, values)), (X,))
        return torch.nn.functional.cross_entropy(out, labels)

    cost = Counted(loss)

    def method():
        inputs = tuple(p.clone().requires_grad_(True) for p in parameters)
        passed = torch.autograd.gradcheck(cost, inputs, eps=EPS, atol=1e-5, rtol=1e-3,
                                          raise_exception=False, fast_mode=False)
        assert passed, "torch gradcheck rejected the correct gradient"

    return stoppable(method, cost)


def numdifftools_gradient(mlp):
    import numdifftools

    theta, args = mlp.theta, mlp.args

    def run(count):
        if count is None:
            return numdifftools.Gradient(lambda x: _models.numpy_cost(x, *args), step=EPS,
                                         method="central")(theta)
        scratch = theta.copy()  # the cost as a function of the first `count` entries only

        def on_sample(x):
            scratch[:count] = x
            return _models.numpy_cost(scratch, *args)

        return numdifftools.Gradient(on_sample, step=EPS, method="central")(theta[:count])

    return run


def fastgc_kernel(mlp, n_threads):
    """run(indices): the numba engine's kernel on the executor a check runs it on."""
    from fastgc._cost import Cost
    from fastgc._layout import flatten
    from fastgc.engines import get_engine
    from fastgc.executors import LocalExecutor

    theta, layout = flatten(mlp.theta)
    cost = Cost.classify(_models.numba_cost(), mlp.args, layout)
    executor = LocalExecutor(get_engine("numba"), cost, theta, n_threads)

    def run(indices):
        approx = np.empty(indices.shape[0])
        with executor.open() as session:
            session.differences(indices, np.full(indices.shape[0], EPS), approx)
        return approx

    return run


def time_fastgc(mlp, grads, n_threads, limit, fastgc_budget, sample_seconds):
    """(seconds of a full check, extrapolated?): the check itself when it is predicted to take
    at most ``fastgc_budget`` seconds, else the kernel on a sample lasting about
    ``sample_seconds``."""
    predicted = 1.15 * limit
    if predicted <= fastgc_budget:
        def check():
            result = fastgc.check(_models.numba_cost(), mlp.theta, grads, args=mlp.args,
                                  n_threads=n_threads, progress=False)
            assert result.verdict == "correct", result.verdict

        return best_of(check, 3 if predicted < fastgc_budget / 20 else 1,
                       repeat_for(predicted)), False
    run = fastgc_kernel(mlp, n_threads)
    run(sample_indices(mlp.n, 2 * n_threads))
    indices = sample_indices(mlp.n, max(16 * n_threads, int(sample_seconds / limit * mlp.n)))
    return best_of(lambda: run(indices), 1) * mlp.n / indices.shape[0], True


# ---------------------------------------------------------------- the run

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

    return (f"{model}, {os.cpu_count()} logical cores ({fastgc._threads.usable_threads()} usable), "
            f"{platform.system()} {platform.machine()}; Python {platform.python_version()}, "
            f"numpy {np.__version__}, numba {numba.__version__}, fastgc {fastgc.__version__}")


def load_average():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def measure(sizes, threads, budget, fastgc_budget, sample_seconds, started_all):
    """The rows of the table, and one-core cost times per size."""
    from threadpoolctl import threadpool_limits

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

    # Compile the cost and fastgc's kernels for it once, on the smallest network.
    warm = _models.make_mlp(100)
    warm_grads = _models.numpy_grads(warm.theta, *warm.args)
    for p in threads:
        fastgc.check(_models.numba_cost(), warm.theta, warm_grads, args=warm.args,
                     n_threads=p, progress=False)

    rows, cost_times = [], []
    for size in sizes:
        mlp = _models.make_mlp(size)
        n = mlp.n
        grads = _models.numpy_grads(mlp.theta, *mlp.args)
        t_J = _models.cost_seconds(mlp, seconds=0.5)
        cost_times.append((n, t_J, _models.python_seconds(_models.numpy_cost, mlp, 0.5)))
        for p in threads:
            limit = 2 * n * t_J / p
            rows.append(Row(LIMIT, n, p, limit, False))
            methods = [("course loop (NumPy)", course_loop(mlp)),
                       ("scipy approx_derivative 3-point", scipy_3_point(mlp))]
            if torch is not None:
                methods.append(("torch gradcheck (fast_mode=False)", torch_gradcheck(mlp)))
                methods.append((TORCH_MODULE_GRADCHECK, torch_gradcheck_module(mlp)))
                methods.append((TORCH_MODULE_FASTGC, fastgc_torch_module(mlp)))
                if p > 1:
                    methods.append((f"{TORCH_MODULE_FASTGC} n_threads={p}",
                                    fastgc_torch_module(mlp, n_threads=p)))
            if have_numdifftools and n <= 2_500:
                methods.append(("numdifftools Gradient central", numdifftools_gradient(mlp)))
            with threadpool_limits(limits=p):
                if torch is not None:
                    torch.set_num_threads(p)
                seconds, extrapolated = time_fastgc(mlp, grads, p, limit, fastgc_budget,
                                                    sample_seconds)
                rows.append(Row(FASTGC, n, p, seconds, extrapolated))
                for name, run in methods:
                    seconds, extrapolated = timed_baseline(run, n, budget, sample_seconds)
                    rows.append(Row(name, n, p, seconds, extrapolated))
                if torch is not None and p > 1:
                    rows.extend(torch_module_on_workers(mlp, p, rows, budget, notes))
            print(f"  measured n={n:,} at {p} thread(s) "
                  f"({time.perf_counter() - started_all:.0f} s so far)",
                  file=sys.stderr, flush=True)
    return rows, cost_times, notes


def extras(threads):
    """Lines on fastgc's per-index overhead, extra memory, compile time and import time."""
    lines = []
    cost = _models.trivial_cost()
    n = 1_000_000
    theta, grads = _models.trivial_problem(n)
    for p in threads:
        fastgc.check(cost, theta[:16], grads[:16], n_threads=p, progress=False)
        seconds = best_of(lambda: fastgc.check(cost, theta, grads, n_threads=p, progress=False))
        lines.append(f"per-index overhead of a whole check (cost returning 0.5*theta[0]+1, "
                     f"n=1e6) at {p} thread(s): {seconds / n * 1e9:.0f} ns")
    for p in threads:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        fastgc.check(cost, theta, grads, n_threads=p, progress=False)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        lines.append(f"extra memory of a check (NumPy allocations, n=1e6, float64) at {p} "
                     f"thread(s): {peak / (n * 8):.1f} x n x itemsize (goal <= {p + 4})")
    mlp = _models.make_mlp(100)
    result = fastgc.check(_models.fresh_numba_cost(), mlp.theta,
                          _models.numpy_grads(mlp.theta, *mlp.args), args=mlp.args,
                          progress=False)
    lines.append(f"compile time of a never-compiled njit cost (first check): "
                 f"{result.compile_seconds:.2f} s")
    lines.extend(first_check_lines())
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src")
    environment = dict(os.environ, PYTHONPATH=os.path.abspath(source) + os.pathsep
                       + os.environ.get("PYTHONPATH", ""))

    def python(code):
        return best_of(lambda: subprocess.run([sys.executable, "-c", code], check=True,
                                              env=environment), 5)

    empty, with_import = python("pass"), python("import fastgc")
    lines.append(f"import fastgc: {with_import - empty:.3f} s (interpreter start excluded)")
    return lines


def first_check_lines():
    """fastgc's share of the first check in a new process, cold and warm cache."""
    import shutil
    import tempfile

    names = {"readme": "the README's njit example (31 params)", "mlp": "the MLP (2,074 params)"}
    lines = []
    for cost in _first_check.COSTS:
        cache_dir = tempfile.mkdtemp(prefix="fastgc-first-check-")
        try:
            cold = _first_check.measure(cost, cache_dir)
            warm = _first_check.measure(cost, cache_dir)
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        lines.append(
            f"first check in a new process, {names[cost]}, beyond compiling the cost itself "
            f"({cold['first_cost_compile']:.2f} s): cold cache {cold['first']:.2f} s, warm "
            f"cache {warm['first']:.2f} s; a second cost with the same argument types "
            f"{cold['second']:.3f} s; a check with nothing to compile {warm['again']:.3f} s"
        )
    return lines


def summary(rows, cost_times, threads):
    """Lines on the cost times, fastgc's thread scaling and the torch module ratio."""
    fastgc_seconds = {(r.n, r.threads): r.seconds for r in rows if r.method == FASTGC}
    lines = []
    gradcheck = {(r.n, r.threads): r.seconds for r in rows if r.method == TORCH_MODULE_GRADCHECK}
    for r in rows:
        if r.method.startswith(TORCH_MODULE_FASTGC) and (r.n, r.threads) in gradcheck:
            lines.append(f"torch gradcheck (module) / {r.method} at n={r.n:,}, {r.threads} "
                         f"thread(s): {gradcheck[r.n, r.threads] / r.seconds:.2f}x")
    for n, t_J, t_numpy in cost_times:
        lines.append(f"one cost evaluation on one core at n={n:,}: njit {t_J * 1e6:.1f} us "
                     f"(t_J, compiled loop), NumPy {t_numpy * 1e6:.1f} us (from Python); "
                     f"NumPy / njit = {t_numpy / t_J:.2f}")
    if 1 in threads:
        for n, _, _ in cost_times:
            for p in threads:
                if p > 1:
                    lines.append(f"fastgc speedup {p} threads vs 1 at n={n:,}: "
                                 f"{fastgc_seconds[n, 1] / fastgc_seconds[n, p]:.2f}x")
    return lines


def print_plain(rows):
    fastgc_seconds = {(r.n, r.threads): r.seconds for r in rows if r.method == FASTGC}
    limits = {(r.n, r.threads): r.seconds for r in rows if r.method == LIMIT}
    header = (f"{'method':<34} {'n':>8} {'thr':>3} {'seconds':>10} {'extrapolated':>12} "
              f"{'x fastgc':>9} {'x T_lim':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        key = (r.n, r.threads)
        print(f"{r.method:<34} {r.n:>8,} {r.threads:>3} {r.seconds:>10.4g} "
              f"{'yes' if r.extrapolated else 'no':>12} {r.seconds / fastgc_seconds[key]:>9.2f} "
              f"{r.seconds / limits[key]:>8.2f}")


def print_markdown(rows):
    fastgc_seconds = {(r.n, r.threads): r.seconds for r in rows if r.method == FASTGC}
    limits = {(r.n, r.threads): r.seconds for r in rows if r.method == LIMIT}
    print("| method | params | threads | seconds | x fastgc | x T_lim |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        key = (r.n, r.threads)
        seconds = ("~" if r.extrapolated else "") + f"{r.seconds:.3g}"
        print(f"| {r.method} | {r.n:,} | {r.threads} | {seconds} | "
              f"{r.seconds / fastgc_seconds[key]:.2f} | {r.seconds / limits[key]:.2f} |")


EXECUTOR_ROWS = {
    "local": "serial Python engine, this process",
    "processes-2": 'executor="processes", 2 workers',
    "dask-1": "Dask LocalCluster, 1 worker",
    "dask-2": "Dask LocalCluster, 2 workers",
}
FULL_CHECK_UP_TO = 20_000
EXECUTOR_REPEATS = 2


def measure_executors(sizes):
    """Rows (name, n, seconds, sampled) and summary lines of the executor comparison."""
    from benchmarks import bench_executors as bench
    from fastgc.executors._remote import TASK_SECONDS, TASKS_PER_WORKER

    rows, lines = [], []
    for size in sizes:
        mlp = _models.make_mlp(size)
        grads = _models.numpy_grads(mlp.theta, *mlp.args)
        t_J = _models.python_seconds(_models.numpy_cost, mlp, seconds=0.2)
        indices = np.linspace(0, mlp.n - 1, bench.SAMPLE).astype(np.int64)
        seconds = {}
        for name in EXECUTOR_ROWS:
            executor, n_workers, cluster = bench.start_executor(name)
            try:
                # The best of EXECUTOR_REPEATS: on a shared machine a free core comes and goes.
                if size <= FULL_CHECK_UP_TO:
                    runs = [bench.check_seconds(mlp, grads, executor, n_workers)
                            for _ in range(EXECUTOR_REPEATS)]
                else:
                    runs = [bench.sample_seconds(mlp, executor, n_workers, indices)
                            for _ in range(EXECUTOR_REPEATS)]
                seconds[name] = min(runs)
                if name.startswith("processes") and size == sizes[0]:
                    # fastgc keeps its pool between checks: the first run started it.
                    lines.append(f"n={mlp.n:,}: {EXECUTOR_ROWS[name]}, each run: "
                                 + ", ".join(f"{run:.3f} s" for run in runs)
                                 + " (the first starts the pool, the next take it over)")
                if name != "local" and size == sizes[0]:
                    overhead = bench.task_overhead_seconds(_models.make_mlp(2_000), executor,
                                                           n_workers)
                    lines.append(f"per-task overhead, {EXECUTOR_ROWS[name]}: "
                                 f"{overhead * 1e3:.2f} ms")
                    seconds[name + " overhead"] = overhead
            finally:
                bench.stop_executor(executor, cluster)
            rows.append((EXECUTOR_ROWS[name], mlp.n, seconds[name], size > FULL_CHECK_UP_TO))
        lines.append(f"n={mlp.n:,}: one NumPy cost evaluation {t_J * 1e6:.0f} us; processes "
                     f"(2) vs serial {seconds['local'] / seconds['processes-2']:.2f}x; Dask 2 "
                     f"vs 1 worker {seconds['dask-1'] / seconds['dask-2']:.2f}x")
        # The chunk rule: about TASK_SECONDS per task (twice that on Dask), at least 4 tasks
        # per worker slot, a multiple of the slots.
        for name, target in (("processes-2", TASK_SECONDS), ("dask-2", 2 * TASK_SECONDS)):
            count = max(TASKS_PER_WORKER * 2, math.ceil(2 * t_J * mlp.n / target))
            chunk = mlp.n // (2 * math.ceil(count / 2))
            task = chunk * 2 * t_J
            overhead = seconds.get(name + " overhead")
            if overhead is not None:
                lines.append(f"n={mlp.n:,}, default chunk {chunk} indices ({task:.2f} s per "
                             f"task): {EXECUTOR_ROWS[name]} overhead "
                             f"{100 * overhead / (task + overhead):.2f}% of a task")
    return rows, lines


def print_executors(rows, lines, markdown):
    if markdown:
        print("| executor | params | seconds |")
        print("|---|---:|---:|")
        for name, n, seconds, sampled in rows:
            print(f"| {name} | {n:,} | {seconds:.3g}{' (sample)' if sampled else ''} |")
        print()
        for line in lines:
            print(f"- {line}")
        return
    for name, n, seconds, sampled in rows:
        print(f"{name:<40} {n:>8,} {seconds:>9.3f} s{'  (sample)' if sampled else ''}")
    print()
    for line in lines:
        print(line)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--plans" in argv:  # screen vs torch's fast gradcheck and vs the full check
        import plans

        return plans.main([a for a in argv if a != "--plans"])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,2000,20000,200000")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--budget", type=float, default=15.0,
                        help="seconds a baseline may be predicted to run before it is stopped "
                             "early and extrapolated (default 15)")
    parser.add_argument("--fastgc-budget", type=float, default=200.0,
                        help="seconds a full fastgc check may be predicted to take before it "
                             "is timed on a sample of indices instead (default 200)")
    parser.add_argument("--sample-seconds", type=float, default=5.0,
                        help="about how long a stopped or sampled run lasts (default 5)")
    parser.add_argument("--markdown", action="store_true",
                        help="print the results as Markdown (a table and a list)")
    parser.add_argument("--executors", action="store_true",
                        help="only the executor rows: serial vs processes vs Dask workers on "
                             "the NumPy cost (default sizes 20000,200000)")
    options = parser.parse_args(argv)
    if options.executors:
        sizes = [int(s) for s in (options.sizes if argv_has(argv, "--sizes")
                                  else "20000,200000").split(",")]
        load_start = load_average()
        rows, lines = measure_executors(sizes)
        lines.append(f"machine: {machine()}; load average {load_start:.2f} at the start, "
                     f"{load_average():.2f} at the end (a shared machine distorts the ratios)")
        print_executors(rows, lines, options.markdown)
        return 0
    sizes = [int(s) for s in options.sizes.split(",")]
    threads = [int(t) for t in options.threads.split(",")]
    unknown = [s for s in sizes if s not in _models.WIDTHS]
    if unknown:
        parser.error(f"--sizes must be among {sorted(_models.WIDTHS)}, got {unknown}")

    load_start = load_average()
    print(f"machine: {machine()}; load average {load_start:.2f} at start", file=sys.stderr,
          flush=True)
    started_all = time.perf_counter()
    rows, cost_times, notes = measure(sizes, threads, options.budget, options.fastgc_budget,
                                      options.sample_seconds, started_all)
    lines = summary(rows, cost_times, threads) + extras(threads)
    total = time.perf_counter() - started_all
    notes.append("extrapolated: a baseline stopped after its first indices, or fastgc's kernel "
                 "on an evenly spaced sample of indices, its time scaled to all n (every index "
                 f"costs the same) from a run of about {options.sample_seconds:g} s; done when a "
                 f"full run was predicted to exceed {options.budget:g} s (baselines) or "
                 f"{options.fastgc_budget:g} s (fastgc)")
    notes.append(f"total {total:.0f} s; load average {load_start:.2f} at the start, "
                 f"{load_average():.2f} at the end (other processes distort thread scaling)")

    if options.markdown:
        print(f"Machine: {machine()}; load average {load_start:.2f} at the start.")
        print()
        print_markdown(rows)
        print()
        print("~ : extrapolated (see notes). T_lim = 2 n t_J / p, t_J = one compiled cost "
              "evaluation on one core.")
        print()
        for line in lines + notes:
            print(f"- {line}")
    else:
        print(f"machine: {machine()}")
        print()
        print_plain(rows)
        print()
        for line in lines:
            print(line)
        for note in notes:
            print("note:", note)
    return 0


def argv_has(argv, flag):
    return any(arg.split("=")[0] == flag for arg in (sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
