"""``python -m fastgc demo large``: a network of over ten million parameters, screened.

A ten-layer tanh network (1024 units per layer, twenty parameter blocks) with a compiled
``@numba.njit`` cost, checked three times with ``plan="screen"``: correct backprop, one wrong
component in one weight matrix, one scaled bias gradient. Each report names the block (and
the index of the single wrong component); the demo prints the evaluations used against the
2n of a full check, and the time against a full check's time projected from the same
evaluations.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

Params = dict[str, np.ndarray]

WIDTH, LAYERS, BATCH = 1024, 10, 4
WRONG_ENTRY = ("W3", (17, 123))


def scaled_bias(layers: int) -> str:
    """The bias whose gradient the third run doubles: that of the middle layer (b6 of 10)."""
    return f"b{layers // 2 + 1}"


def large_network(width: int = WIDTH, layers: int = LAYERS, batch: int = BATCH,
                  seed: int = 0) -> tuple[Params, np.ndarray, np.ndarray, np.ndarray]:
    """Parameters W1, b1, ..., WL, bL of a ``layers``-layer network of ``width`` units, and
    data X, Y and the layer sizes (the cost's arguments)."""
    rng = np.random.default_rng(seed)
    sizes = np.full(layers + 1, width, dtype=np.int64)
    params: Params = {}
    for layer in range(1, layers + 1):
        n_in, n_out = int(sizes[layer - 1]), int(sizes[layer])
        params[f"W{layer}"] = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
        params[f"b{layer}"] = 0.1 * rng.standard_normal((n_out, 1))
    X = rng.standard_normal((width, batch))
    Y = rng.standard_normal((width, batch))
    return params, X, Y, sizes


_compiled_cost = None


def network_cost() -> Callable[..., float]:
    """The cost as an ``@numba.njit`` function of the flat theta: half the mean squared error
    of the last layer's output (tanh hidden layers, linear output)."""
    global _compiled_cost
    if _compiled_cost is None:
        import numba

        @numba.njit(cache=False)
        def cost(theta, X, Y, sizes):  # pragma: no cover (compiled)
            A = X.copy()
            offset = 0
            layers = sizes.shape[0] - 1
            for layer in range(layers):
                n_in, n_out = sizes[layer], sizes[layer + 1]
                W = theta[offset:offset + n_out * n_in].reshape((n_out, n_in))
                offset += n_out * n_in
                b = theta[offset:offset + n_out]
                offset += n_out
                Z = W @ A
                for i in range(n_out):
                    for j in range(Z.shape[1]):
                        Z[i, j] += b[i]
                A = np.tanh(Z) if layer < layers - 1 else Z
            total = 0.0
            for i in range(A.shape[0]):
                for j in range(A.shape[1]):
                    total += (A[i, j] - Y[i, j]) ** 2
            return 0.5 * total / A.shape[1]

        _compiled_cost = cost
    return _compiled_cost


def backprop(params: Params, X: np.ndarray, Y: np.ndarray) -> Params:
    """The analytic gradients, in NumPy."""
    layers = len(params) // 2
    activations = [X]
    for layer in range(1, layers + 1):
        Z = params[f"W{layer}"] @ activations[-1] + params[f"b{layer}"]
        activations.append(np.tanh(Z) if layer < layers else Z)
    m = X.shape[1]
    dZ = (activations[-1] - Y) / m
    grads: Params = {}
    for layer in range(layers, 0, -1):
        grads[f"dW{layer}"] = dZ @ activations[layer - 1].T
        grads[f"db{layer}"] = dZ.sum(axis=1, keepdims=True)
        if layer > 1:
            A = activations[layer - 1]
            dZ = (params[f"W{layer}"].T @ dZ) * (1.0 - A * A)
    return grads


def planted(grads: Params, bug: str | None, bias: str = "b6") -> Params:
    """``grads`` with one wrong component of W3, or the gradient of ``bias`` doubled."""
    grads = dict(grads)
    if bug == "entry":
        name, index = WRONG_ENTRY
        wrong = grads["d" + name].copy()
        wrong[index] = 1.5 * wrong[index] + 1e-3
        grads["d" + name] = wrong
    elif bug == "bias":
        grads["d" + bias] = 2.0 * grads["d" + bias]
    return grads


def run(print_: Callable[[str], None] = print, n_threads: int | None = None,
        width: int = WIDTH, layers: int = LAYERS) -> int:
    """Screen the large network three times; 0 when every report names the planted bug."""
    from ._check import check

    params, X, Y, sizes = large_network(width, layers)
    n = sum(value.size for value in params.values())
    print_(f"a {layers}-layer tanh network, {n:,} parameters in {len(params)} blocks, "
           "compiled cost; plan='screen'\n")
    grads = backprop(params, X, Y)
    cost = network_cost()
    bias = scaled_bias(layers)
    right = []
    for title, bug in (("correct backprop", None),
                       (f"one wrong component: d{WRONG_ENTRY[0]}{list(WRONG_ENTRY[1])}", "entry"),
                       (f"d{bias} doubled", "bias")):
        started = time.perf_counter()
        result = check(cost, params, planted(grads, bug, bias), args=(X, Y, sizes), plan="screen",
                       n_threads=n_threads, progress=False)
        elapsed = time.perf_counter() - started
        per_evaluation = result.seconds / max(result.evaluations, 1)
        print_(f"=== {title}")
        print_(str(result))
        print_(
            f"{result.evaluations:,} cost evaluations instead of {2 * n:,} "
            f"({result.evaluations / (2 * n):.4%}); {elapsed:.1f} s instead of about "
            f"{_duration(2 * n * per_evaluation)} for a full check at the same speed\n"
        )
        right.append(_names_the_bug(result, bug, bias))
    return 0 if all(right) else 1


def _names_the_bug(result, bug: str | None, bias: str) -> bool:
    flagged = {name for name, p in result.per_parameter.items() if p.verdict == "bug"}
    if bug is None:
        return result.verdict == "correct"
    if bug == "bias":
        return flagged == {bias}
    worst = result.worst(1)[0]
    return flagged == {WRONG_ENTRY[0]} and (worst.name, worst.index) == WRONG_ENTRY


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
