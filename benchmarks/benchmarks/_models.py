"""The benchmark model: a multilayer perceptron whose parameters live in one flat theta.

Shared by the asv suite (``benchmarks/benchmarks/*.py``) and by ``benchmarks/compare.py`` so
that every measurement uses the same cost.

The network has ReLU hidden layers and a softmax cross-entropy output, averaged over a batch of
``BATCH`` examples stored in columns: ``Z = W @ A_prev + b`` with ``W`` of shape
``(n_out, n_in)``. Theta holds ``W1, b1, W2, b2, ...`` one after the other, each ``W`` in
row-major order. The parameter count is set by the layer widths (:data:`WIDTHS`).

Three versions of the same cost are provided:

- :func:`numba_cost`: an ``@numba.njit`` ``cost(theta, widths, X, labels)`` (fastgc's numba
  engine, and the one-core cost time ``t_J`` of the physical limit, :func:`cost_seconds`), written
  as a Numba user would for speed: each ``W`` a reshaped slice of theta multiplied with ``@``
  (BLAS), bias and ReLU added in one in-place pass, log-sum-exp fused per example;
- :func:`numpy_cost`: the same arithmetic with NumPy matrix products, as a course would write
  it (the course loop, SciPy, numdifftools, the Python engine);
- :func:`c_cost`: a Numba ``@cfunc`` with the C signature fastgc's Cython engine calls without
  the GIL, reading the data from one packed float64 buffer (:meth:`MLP.packed`).

Numba is imported on first use only, so importing this module is cheap.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

BATCH = 64
EPS = 1e-7

# Layer widths (inputs, hidden..., classes) per nominal parameter count.
WIDTHS = {
    100: (8, 8, 3),  # 99 parameters
    2_000: (32, 48, 10),  # 2,074
    20_000: (128, 144, 10),  # 20,026
    200_000: (512, 384, 10),  # 200,842
    1_000_000: (1024, 960, 10),  # 993,610
}


def n_parameters(widths: tuple[int, ...]) -> int:
    """Weights and biases of a perceptron with these layer widths."""
    return sum(n_out * n_in + n_out for n_in, n_out in zip(widths[:-1], widths[1:]))


@dataclass
class MLP:
    """Seeded parameters and data of one benchmark network.

    Attributes
    ----------
    widths : int64 ndarray, shape (L + 1,)
        Layer widths, inputs first.
    theta : float64 ndarray, shape (n,)
        The flat parameters.
    X : float64 ndarray, shape (widths[0], BATCH)
        Inputs, one example per column.
    labels : int64 ndarray, shape (BATCH,)
        The class of every example.
    """

    widths: np.ndarray
    theta: np.ndarray
    X: np.ndarray
    labels: np.ndarray

    @property
    def n(self) -> int:
        return self.theta.shape[0]

    @property
    def args(self) -> tuple:
        """Extra arguments of :func:`numba_cost` and :func:`numpy_cost`."""
        return (self.widths, self.X, self.labels)

    def packed(self) -> np.ndarray:
        """Widths, inputs and labels in one float64 buffer, the ``void *data`` of :func:`c_cost`."""
        header = np.array([len(self.widths), self.X.shape[1]], dtype=np.float64)
        parts = [header, self.widths.astype(np.float64), self.X.ravel()]
        return np.concatenate(parts + [self.labels.astype(np.float64)])


def make_mlp(size: int, seed: int = 0, batch: int = BATCH) -> MLP:
    """The network of nominal parameter count ``size`` (a key of :data:`WIDTHS`), seeded."""
    widths = np.array(WIDTHS[size], dtype=np.int64)
    rng = np.random.default_rng(seed)
    blocks = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        blocks.append(rng.standard_normal(n_out * n_in) * np.sqrt(2.0 / n_in))
        blocks.append(rng.standard_normal(n_out) * 0.1)
    X = rng.standard_normal((int(widths[0]), batch))
    labels = rng.integers(0, int(widths[-1]), size=batch).astype(np.int64)
    return MLP(widths, np.concatenate(blocks), X, labels)


def _blocks(theta: np.ndarray, widths: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) views into theta, layer by layer."""
    blocks, offset = [], 0
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        n_in, n_out = int(n_in), int(n_out)
        W = theta[offset : offset + n_out * n_in].reshape(n_out, n_in)
        offset += n_out * n_in
        blocks.append((W, theta[offset : offset + n_out]))
        offset += n_out
    return blocks


def numpy_cost(theta: np.ndarray, widths: np.ndarray, X: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy of the network, with NumPy matrix products."""
    blocks = _blocks(theta, widths)
    A = X
    for layer, (W, b) in enumerate(blocks):
        Z = W @ A + b[:, None]
        A = np.maximum(Z, 0.0) if layer < len(blocks) - 1 else Z
    top = A.max(axis=0)
    log_sum = np.log(np.exp(A - top).sum(axis=0)) + top
    m = X.shape[1]
    return float(np.sum(log_sum - A[labels, np.arange(m)]) / m)


def numpy_grads(
    theta: np.ndarray, widths: np.ndarray, X: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """The exact gradient of :func:`numpy_cost` (hand-written backprop), flat like theta."""
    blocks = _blocks(theta, widths)
    activations, pre = [X], []
    for layer, (W, b) in enumerate(blocks):
        Z = W @ activations[-1] + b[:, None]
        pre.append(Z)
        activations.append(np.maximum(Z, 0.0) if layer < len(blocks) - 1 else Z)
    m = X.shape[1]
    logits = activations[-1]
    probabilities = np.exp(logits - logits.max(axis=0))
    probabilities /= probabilities.sum(axis=0)
    dZ = probabilities
    dZ[labels, np.arange(m)] -= 1.0
    dZ /= m
    parts = []
    for layer in range(len(blocks) - 1, -1, -1):
        W, _ = blocks[layer]
        parts.append((dZ @ activations[layer].T, dZ.sum(axis=1)))
        if layer > 0:
            dZ = (W.T @ dZ) * (pre[layer - 1] > 0)
    return np.concatenate([part.ravel() for dW, db in reversed(parts) for part in (dW, db)])


@functools.lru_cache(maxsize=None)
def _numba_functions():
    import numba

    @numba.njit(nogil=True, cache=True)
    def cost(theta, widths, X, labels):
        m = X.shape[1]
        n_layers = widths.shape[0] - 1
        A = X
        offset = 0
        for layer in range(n_layers):
            n_in, n_out = widths[layer], widths[layer + 1]
            # A contiguous slice of a contiguous theta, reshaped: a C-contiguous float64 matrix,
            # so ``@`` is one BLAS dgemm (through SciPy).
            W = theta[offset : offset + n_out * n_in].reshape((n_out, n_in))
            offset += n_out * n_in
            Z = W @ A
            # The bias and, on hidden layers, the ReLU in one pass over Z, in place.
            hidden = layer < n_layers - 1
            for j in range(n_out):
                b = theta[offset + j]
                row = Z[j]
                for e in range(m):
                    z = row[e] + b
                    row[e] = 0.0 if hidden and z < 0.0 else z
            offset += n_out
            A = Z
        # Log-sum-exp and the label's logit, one example (column) at a time, no temporaries.
        n_classes = A.shape[0]
        total = 0.0
        for e in range(m):
            top = A[0, e]
            for j in range(1, n_classes):
                if A[j, e] > top:
                    top = A[j, e]
            s = 0.0
            for j in range(n_classes):
                s += np.exp(A[j, e] - top)
            total += np.log(s) + top - A[int(labels[e]), e]
        return total / m

    @numba.njit(nogil=True)  # takes the cost as an argument: nothing to cache
    def repeat_cost(cost, theta, args, count):
        """``count`` evaluations of ``cost`` from compiled code, as fastgc's kernel makes them
        (one entry of theta nudged and restored around each); the sum of the values."""
        total = 0.0
        n = theta.shape[0]
        for k in range(count):
            i = (k * 7919) % n
            saved = theta[i]
            theta[i] = saved + 1e-7
            total += cost(theta, *args)
            theta[i] = saved
        return total

    signature = numba.float64(numba.types.CPointer(numba.float64), numba.intp, numba.types.voidptr)

    @numba.cfunc(signature, nogil=True, cache=True)
    def c_cost(theta_pointer, n, data):
        header = numba.carray(data, 2, dtype=np.float64)
        n_widths, m = int(header[0]), int(header[1])
        widths_f = numba.carray(data, 2 + n_widths, dtype=np.float64)[2:]
        widths = np.empty(n_widths, dtype=np.int64)
        for k in range(n_widths):
            widths[k] = int(widths_f[k])
        size = 2 + n_widths + widths[0] * m + m
        buffer = numba.carray(data, size, dtype=np.float64)
        X = buffer[2 + n_widths : 2 + n_widths + widths[0] * m].reshape((widths[0], m))
        labels = buffer[2 + n_widths + widths[0] * m :]
        theta = numba.carray(theta_pointer, n)
        return cost(theta, widths, X, labels)

    return cost, c_cost, repeat_cost


def numba_cost():
    """The ``@numba.njit`` cost ``cost(theta, widths, X, labels)`` (compiled on first call)."""
    return _numba_functions()[0]


def c_cost():
    """The ``@cfunc`` cost ``double cost(const double *theta, Py_ssize_t n, void *data)``."""
    return _numba_functions()[1]


def fresh_numba_cost():
    """A new, never-compiled njit copy of the cost, to measure compilation from scratch."""
    import numba

    return numba.njit(nogil=True)(numba_cost().py_func)


def cost_seconds(mlp: MLP, seconds: float = 0.2, rounds: int = 5) -> float:
    """``t_J``: one evaluation of :func:`numba_cost` on one core, as fastgc's kernel makes it.

    The cost is called from a compiled loop (no Python call per evaluation, which at ~100
    parameters would cost as much as the evaluation), with BLAS capped at one thread. The loop
    is warmed up, sized to last about ``seconds / rounds``, and the best of ``rounds`` runs is
    divided by its length.
    """
    from threadpoolctl import threadpool_limits

    cost, repeat_cost = numba_cost(), _numba_functions()[2]
    theta = mlp.theta.copy()
    args = mlp.args

    def run(count: int) -> float:
        started = time.perf_counter()
        repeat_cost(cost, theta, args, count)
        return time.perf_counter() - started

    with threadpool_limits(limits=1, user_api="blas"):
        run(2)
        count = 1
        while True:
            elapsed = run(count)
            if elapsed >= seconds / rounds / 2 or count >= 1 << 24:
                break
            count *= 2
        best = min([elapsed] + [run(count) for _ in range(rounds)])
    return best / count


def python_seconds(cost, mlp: MLP, seconds: float = 0.2) -> float:
    """Best time of one call ``cost(theta, *mlp.args)`` from Python, BLAS capped at one thread
    (the one-core time of a NumPy cost, as the course loop and SciPy call it)."""
    from threadpoolctl import threadpool_limits

    theta = mlp.theta.copy()
    args = mlp.args
    with threadpool_limits(limits=1, user_api="blas"):
        cost(theta, *args)
        best = float("inf")
        deadline = time.perf_counter() + seconds
        calls = 0
        while calls < 5 or time.perf_counter() < deadline:
            started = time.perf_counter()
            cost(theta, *args)
            best = min(best, time.perf_counter() - started)
            calls += 1
    return best


@functools.lru_cache(maxsize=None)
def trivial_cost():
    """An njit cost that reads one entry: ``0.5 * theta[0] + 1.0`` (the per-index overhead)."""
    import numba

    @numba.njit(nogil=True, cache=True)
    def cost(theta):
        return 0.5 * theta[0] + 1.0

    return cost


def trivial_problem(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Theta of ``n`` zeros and the exact gradient of :func:`trivial_cost`."""
    theta = np.zeros(n)
    grads = np.zeros(n)
    grads[0] = 0.5
    return theta, grads


def engine_cost(engine: str, mlp: MLP) -> tuple[object, tuple]:
    """The cost and args each engine is benchmarked with.

    numba: the njit cost; cython: the ``@cfunc`` cost (no GIL, OpenMP threads); python: the
    NumPy cost.
    """
    if engine == "numba":
        return numba_cost(), mlp.args
    if engine == "cython":
        return c_cost(), (mlp.packed(),)
    if engine == "python":
        return numpy_cost, mlp.args
    raise ValueError(f"engine must be 'numba', 'cython' or 'python', got {engine!r}")
