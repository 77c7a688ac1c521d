"""A small tanh/softmax MLP written three ways (NumPy on a dict, Numba on a flat theta, a
C-level cfunc) with its analytic gradients, for the engine-parametrized suite."""

from __future__ import annotations

import numpy as np

N_IN, N_HIDDEN, N_OUT, M = 4, 5, 3, 6


def make_mlp(seed: int = 0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_IN, M)).astype(dtype)
    labels = rng.integers(0, N_OUT, size=M)
    Y = np.eye(N_OUT, dtype=dtype)[:, labels]
    params = {
        "W1": (rng.standard_normal((N_HIDDEN, N_IN)) * 0.8).astype(dtype),
        "b1": (rng.standard_normal((N_HIDDEN, 1)) * 0.1).astype(dtype),
        "W2": (rng.standard_normal((N_OUT, N_HIDDEN)) * 0.8).astype(dtype),
        "b2": (rng.standard_normal((N_OUT, 1)) * 0.1).astype(dtype),
    }
    return params, X, Y


def cost(params, X, Y):
    A1 = np.tanh(params["W1"] @ X + params["b1"])
    Z2 = params["W2"] @ A1 + params["b2"]
    Z2 = Z2 - Z2.max(axis=0, keepdims=True)
    log_probs = Z2 - np.log(np.exp(Z2).sum(axis=0, keepdims=True))
    return -np.sum(Y * log_probs) / X.shape[1]


def grads(params, X, Y, bug: str | None = None):
    m = X.shape[1]
    A1 = np.tanh(params["W1"] @ X + params["b1"])
    Z2 = params["W2"] @ A1 + params["b2"]
    P = np.exp(Z2 - Z2.max(axis=0, keepdims=True))
    P /= P.sum(axis=0, keepdims=True)
    dZ2 = (P - Y) / m
    dW2 = dZ2 @ A1.T
    db2 = dZ2.sum(axis=1, keepdims=True)
    dZ1 = (params["W2"].T @ dZ2) * (1 - A1**2)
    dW1 = dZ1 @ X.T
    db1 = dZ1.sum(axis=1, keepdims=True)
    out = {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}
    if bug == "dW2_doubled":
        out["dW2"] = 2 * dW2
    elif bug == "db1_sign":
        out["db1"] = -db1
    elif bug == "one_element":
        out["dW1"] = dW1.copy()
        out["dW1"][2, 1] *= 1.5
    return out


_numba_cost = None


def numba_cost():
    """The same cost as an @njit function of the flat theta (W1, b1, W2, b2 in C order)."""
    global _numba_cost
    if _numba_cost is None:
        import numba

        @numba.njit(cache=False)
        def flat_cost(theta, X, Y):
            n_in, m = X.shape
            n_out = Y.shape[0]
            o1 = N_HIDDEN * n_in
            o2 = o1 + N_HIDDEN
            o3 = o2 + n_out * N_HIDDEN
            W1 = theta[:o1].reshape(N_HIDDEN, n_in)
            b1 = theta[o1:o2].reshape(N_HIDDEN, 1)
            W2 = theta[o2:o3].reshape(n_out, N_HIDDEN)
            b2 = theta[o3 : o3 + n_out].reshape(n_out, 1)
            A1 = np.tanh(W1 @ X + b1)
            Z2 = W2 @ A1 + b2
            total = 0.0
            for j in range(m):
                top = Z2[0, j]
                for k in range(1, n_out):
                    top = max(top, Z2[k, j])
                norm = 0.0
                for k in range(n_out):
                    norm += np.exp(Z2[k, j] - top)
                for k in range(n_out):
                    total -= Y[k, j] * (Z2[k, j] - top - np.log(norm))
            return total / m

        _numba_cost = flat_cost
    return _numba_cost


_cfuncs: dict = {}


def c_cost(X, Y):
    """The flat cost as a Numba @cfunc ``double(double*, intp, void*)`` over fixed X, Y."""
    key = (X.tobytes(), Y.tobytes(), X.dtype.str)
    if key not in _cfuncs:
        import numba
        from numba import types

        flat_cost = numba_cost()
        X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
        element = types.float64 if X.dtype == np.float64 else types.float32
        signature = types.float64(types.CPointer(element), types.intp, types.voidptr)

        if X.dtype == np.float64:

            @numba.cfunc(signature)
            def cost_c(theta_pointer, n, data):
                return flat_cost(numba.carray(theta_pointer, (n,)), X64, Y64)

        else:

            @numba.cfunc(signature)
            def cost_c(theta_pointer, n, data):
                return flat_cost(numba.carray(theta_pointer, (n,)).astype(np.float64), X64, Y64)

        _cfuncs[key] = cost_c
    return _cfuncs[key]
