"""The lecture's example: a 3-layer network (ReLU, ReLU, sigmoid) with cross-entropy.

``python -m fastgc demo`` checks it once with correct backprop and once with the two bugs the
course plants (dW2 doubled, db1 scaled by 4), and prints both reports.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

Params = dict[str, np.ndarray]


def course_network(seed: int = 1) -> tuple[Params, np.ndarray, np.ndarray]:
    """Parameters W1 (5, 4), b1, W2 (3, 5), b2, W3 (1, 3), b3 and data X (4, 3), Y (1, 3)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((4, 3))
    Y = np.array([[1.0, 0.0, 1.0]])
    params = {
        "W1": rng.standard_normal((5, 4)),
        "b1": rng.standard_normal((5, 1)),
        "W2": rng.standard_normal((3, 5)),
        "b2": rng.standard_normal((3, 1)),
        "W3": rng.standard_normal((1, 3)),
        "b3": rng.standard_normal((1, 1)),
    }
    return params, X, Y


def _forward(params: Params, X: np.ndarray) -> tuple[np.ndarray, ...]:
    Z1 = params["W1"] @ X + params["b1"]
    A1 = np.maximum(Z1, 0.0)
    Z2 = params["W2"] @ A1 + params["b2"]
    A2 = np.maximum(Z2, 0.0)
    Z3 = params["W3"] @ A2 + params["b3"]
    A3 = 0.5 * (1.0 + np.tanh(0.5 * Z3))  # the sigmoid, without overflow warnings
    return Z1, A1, Z2, A2, A3


def cost(params: Params, X: np.ndarray, Y: np.ndarray) -> float:
    """Mean binary cross-entropy of the network's sigmoid output."""
    A3 = _forward(params, X)[-1]
    m = X.shape[1]
    return float(-np.sum(Y * np.log(A3) + (1.0 - Y) * np.log(1.0 - A3)) / m)


def backprop(params: Params, X: np.ndarray, Y: np.ndarray, buggy: bool = False) -> Params:
    """Analytic gradients; ``buggy=True`` plants the course's bugs in dW2 and db1."""
    Z1, A1, Z2, A2, A3 = _forward(params, X)
    m = X.shape[1]
    dZ3 = A3 - Y
    dW3 = dZ3 @ A2.T / m
    db3 = dZ3.sum(axis=1, keepdims=True) / m
    dZ2 = (params["W3"].T @ dZ3) * (Z2 > 0)
    dW2 = dZ2 @ A1.T / m * (2.0 if buggy else 1.0)
    db2 = dZ2.sum(axis=1, keepdims=True) / m
    dZ1 = (params["W2"].T @ dZ2) * (Z1 > 0)
    dW1 = dZ1 @ X.T / m
    db1 = dZ1.sum(axis=1, keepdims=True) / m * (4.0 if buggy else 1.0)
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2, "dW3": dW3, "db3": db3}


def run(print_: Callable[[str], None] = print, n_threads: int | None = None) -> int:
    """Check the course network twice and print both reports; 0 when both verdicts are right."""
    from ._check import check
    from ._result import Verdict

    params, X, Y = course_network()
    outcomes = []
    for title, buggy in (("correct backprop", False), ("backprop with the course's bugs", True)):
        started = time.perf_counter()
        result = check(
            cost, params, lambda p, X, Y, buggy=buggy: backprop(p, X, Y, buggy), args=(X, Y),
            n_threads=n_threads,
        )
        elapsed = time.perf_counter() - started
        print_(f"=== {title} (dW2 doubled, db1 x 4)" if buggy else f"=== {title}")
        print_(str(result))
        print_(f"(checked in {elapsed:.3f} s)\n")
        outcomes.append(result.verdict)
    expected = [Verdict.CORRECT, Verdict.BUG]
    return 0 if outcomes == expected else 1
