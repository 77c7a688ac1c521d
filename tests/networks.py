"""A battery of small neural networks with hand-written backpropagation.

Every network comes as a :class:`Case`: a parameter dict, a cost function and an
analytic gradient function.  Correct cases have exact gradients; buggy cases
contain realistic backpropagation mistakes, and ``Case.buggy`` names every
parameter whose analytic gradient is wrong.

Conventions (the usual course notation):

* examples are stored in columns, ``Z = W @ A_prev + b`` with ``W`` of shape
  ``(n_out, n_in)`` and ``b`` of shape ``(n_out, 1)``;
* the cost is averaged over the ``m`` examples;
* the output delta is ``dZ = A - Y`` and ``dW = dZ @ A_prev.T / m``.

Data and initial parameters are generated in float64 from fixed seeds and then
rounded through float32, so a float32 case and its float64 twin hold exactly the
same numbers.  A float32 case computes in float32 throughout.

``cost`` and ``grads`` only read the parameter arrays they are given; they never
modify them and never keep references to them.  Only the data (``X``, ``Y``,
dropout masks) live in the closures.

The networks stay away from ReLU kinks: every ReLU / leaky-ReLU pre-activation of
every case is at least ``0.1`` away from zero, so finite differences with steps
up to about ``1e-2`` never cross a kink.

This module depends on NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Case", "correct_cases", "buggy_cases", "all_cases", "kinked_cases"]

F64 = np.dtype(np.float64)
F32 = np.dtype(np.float32)

LEAK = 0.2           # leaky-ReLU slope for negative inputs
KINK_MARGIN = 0.1    # minimum |pre-activation| for (leaky) ReLU units
BN_EPS = 1e-5


@dataclass(frozen=True, eq=False, repr=False)
class Case:
    name: str
    params: dict
    cost: Callable[[dict], float]
    grads: Callable[[dict], dict]
    buggy: frozenset
    dtype: np.dtype

    def __repr__(self) -> str:
        n = sum(v.size for v in self.params.values())
        bugs = ",".join(sorted(self.buggy)) or "-"
        return f"Case({self.name!r}, {n} params, buggy={bugs})"


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

def _f32_exact(a):
    """Round a float64 array through float32 (so both twins share values)."""
    return np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)


def _sigmoid(z):
    # 0.5 * (1 + tanh(z / 2)) never overflows and keeps the dtype
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _act(kind, z):
    if kind == "relu":
        return np.maximum(z, 0)
    if kind == "leaky":
        return np.where(z > 0, z, LEAK * z)
    if kind == "tanh":
        return np.tanh(z)
    if kind == "sigmoid":
        return _sigmoid(z)
    raise ValueError(kind)


def _act_prime(kind, z, a):
    if kind == "relu":
        return (z > 0).astype(z.dtype)
    if kind == "leaky":
        return np.where(z > 0, 1.0, LEAK).astype(z.dtype)
    if kind == "tanh":
        return 1.0 - a * a
    if kind == "sigmoid":
        return a * (1.0 - a)
    raise ValueError(kind)


def _log_softmax(z):
    s = z - np.max(z, axis=0, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=0, keepdims=True))


def _loss(kind, z, y):
    """Return (cost, output activation) for logits ``z`` of the last layer."""
    m = z.shape[1]
    if kind == "ce":
        logp = _log_softmax(z)
        return -np.sum(y * logp) / m, np.exp(logp)
    if kind == "bce":
        # numerically stable form of -y log(s) - (1 - y) log(1 - s), s = sigmoid(z)
        per = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return np.sum(per) / m, _sigmoid(z)
    if kind == "mse":
        r = z - y
        return np.sum(r * r) / (2 * m), z
    raise ValueError(kind)


def _apply_simple_bug(g, bug, info):
    """Mistakes that act on one finished gradient array.

    ``bug`` looks like ``"dW2_doubled"``: the first token is the gradient key.
    """
    key, _, kind = bug.partition("_")
    if key not in g:
        return g
    if kind == "doubled":
        g[key] = g[key] * 2
    elif kind == "times_4":
        g[key] = g[key] * 4
    elif kind == "sign_flip":
        g[key] = -g[key]
    elif kind == "single_entry_10pct":
        # a hand-unrolled update of one entry picked up a stray factor
        arr = g[key].copy()
        arr[info["entry"]] *= 1.1
        g[key] = arr
    elif kind == "swapped_neighbours":
        # an off-by-one in a loop writes two neighbouring entries crosswise
        arr = g[key].copy()
        (i, j) = info["entry"]
        arr[i, j], arr[i, j + 1] = arr[i, j + 1], arr[i, j]
        g[key] = arr
    return g


def _cast(params64, dtype):
    return {k: v.astype(dtype) for k, v in params64.items()}


# ---------------------------------------------------------------------------
# multilayer perceptrons
# ---------------------------------------------------------------------------

class _MLP:
    """Fully connected network; builds correct and buggy cost/grads closures."""

    def __init__(self, net, *, sizes, act, loss, m, seed, w_scale=1.0,
                 x_scale=1.0, lam=0.0, keep=None, zero_w=(), tiny_row=None,
                 unused_bias=(), logit_max=None, b_scale=0.1, b1_offset=0.0,
                 kink_margin=KINK_MARGIN):
        self.net = net
        self.sizes = list(sizes)
        self.L = len(sizes) - 1
        self.act = act
        self.loss = loss
        self.m = m
        self.lam = lam
        self.keep = keep
        self.unused_bias = frozenset(unused_bias)

        rng = np.random.default_rng(seed)
        L = self.L
        scales = w_scale if isinstance(w_scale, (list, tuple)) else [w_scale] * L
        bscales = b_scale if isinstance(b_scale, (list, tuple)) else [b_scale] * L
        p = {}
        for l in range(1, L + 1):
            n_in, n_out = sizes[l - 1], sizes[l]
            W = rng.standard_normal((n_out, n_in)) * scales[l - 1] / np.sqrt(n_in)
            if l in zero_w:
                W = np.zeros_like(W)
            p[f"W{l}"] = W
            p[f"b{l}"] = bscales[l - 1] * rng.standard_normal((n_out, 1))
        if b1_offset:
            # push every first-layer unit into tanh saturation (vanishing b1 gradient)
            b1 = p["b1"]
            p["b1"] = b1 + b1_offset * np.where(b1 >= 0, 1.0, -1.0)

        # candidate examples; keep the first m whose ReLU units avoid the kink
        nc = 40 * m
        Xc = rng.standard_normal((sizes[0], nc)) * np.reshape(x_scale, (-1, 1))
        if tiny_row is not None:
            Xc[tiny_row] *= 1e-10
        K = sizes[-1]
        if loss == "ce":
            Yc = np.eye(K)[:, rng.integers(0, K, nc)]
        elif loss == "bce":
            Yc = rng.integers(0, 2, (1, nc)).astype(np.float64)
        else:
            Yc = rng.standard_normal((K, nc))
        masks_c = {}
        if keep is not None:
            for l in range(1, L):
                masks_c[l] = (rng.random((sizes[l], nc)) < keep).astype(np.float64)

        Zs, _ = self._forward(p, Xc, masks_c)
        ok = np.ones(nc, dtype=bool)
        if act in ("relu", "leaky"):
            for Z in Zs[:-1]:
                ok &= np.all(np.abs(Z) >= kink_margin, axis=0)
        cols = np.flatnonzero(ok)[:m]
        if cols.size < m:
            raise RuntimeError(f"{net}: could not find {m} kink-free examples")
        X, Y = Xc[:, cols], Yc[:, cols]
        masks = {l: mk[:, cols] for l, mk in masks_c.items()}

        if logit_max is not None:
            # scale the last layer so that the largest |logit| is logit_max
            Zs, _ = self._forward(p, X, masks)
            s = logit_max / np.max(np.abs(Zs[-1]))
            p[f"W{L}"] = p[f"W{L}"] * s
            p[f"b{L}"] = p[f"b{L}"] * s

        self.params64 = {k: _f32_exact(v) for k, v in p.items()}
        self.X64, self.Y64 = _f32_exact(X), _f32_exact(Y)
        self.masks64 = {l: _f32_exact(mk) for l, mk in masks.items()}

        # positions used by the single-entry bugs, chosen from the true dW1
        g = self._grads(self.params64, self.X64, self.Y64, self.masks64, None, {})
        dW1 = g["dW1"]
        self.info = {}
        self.info["entry"] = np.unravel_index(np.argmax(np.abs(dW1)), dW1.shape)
        if dW1.shape[1] > 1:
            diff = np.abs(dW1[:, 1:] - dW1[:, :-1])
            self.info["swap"] = np.unravel_index(np.argmax(diff), diff.shape)

    # -- forward / backward -------------------------------------------------

    def _forward(self, p, X, masks):
        A = X
        Zs, As = [], [X]
        for l in range(1, self.L + 1):
            Z = p[f"W{l}"] @ A
            if l not in self.unused_bias:
                Z = Z + p[f"b{l}"]
            Zs.append(Z)
            if l < self.L:
                A = _act(self.act, Z)
                if l in masks:
                    A = A * masks[l] / self.keep
            else:
                A = None
            As.append(A)
        return Zs, As

    def _cost(self, p, X, Y, masks):
        Zs, _ = self._forward(p, X, masks)
        J, _ = _loss(self.loss, Zs[-1], Y)
        if self.lam:
            reg = sum(np.sum(p[f"W{l}"] * p[f"W{l}"]) for l in range(1, self.L + 1))
            J = J + self.lam / (2 * self.m) * reg
        return float(J)

    def _grads(self, p, X, Y, masks, bug, info):
        m, L, lam, keep = self.m, self.L, self.lam, self.keep
        Zs, As = self._forward(p, X, masks)
        _, out = _loss(self.loss, Zs[-1], Y)
        dZ = out - Y
        if bug == "bce_double_sigmoid_prime":
            dZ = dZ * out * (1.0 - out)
        if bug == "mse_residual_sign":
            dZ = Y - out
        g = {}
        for l in range(L, 0, -1):
            W, b, A_prev = p[f"W{l}"], p[f"b{l}"], As[l - 1]
            if bug == f"dW{l}_missing_1_over_m":
                dW = dZ @ A_prev.T
            elif bug == f"dW{l}_transposed":
                dW = A_prev @ dZ.T / m
            else:
                dW = dZ @ A_prev.T / m
            if lam:
                if bug == f"dW{l}_l2_not_over_m":
                    dW = dW + lam * W
                elif bug != f"dW{l}_missing_l2":
                    dW = dW + (lam / m) * W

            if l in self.unused_bias and bug != f"db{l}_for_unused_bias":
                db = np.zeros_like(b)
            elif bug == f"db{l}_wrong_axis":
                # summed over units instead of examples; reshape hides it (n_l == m)
                db = (np.sum(dZ, axis=0) / m).reshape(b.shape)
            elif bug == f"db{l}_summed_all":
                db = np.full_like(b, np.sum(dZ) / m)
            elif bug == f"db{l}_missing_1_over_m":
                db = np.sum(dZ, axis=1, keepdims=True)
            else:
                db = np.sum(dZ, axis=1, keepdims=True) / m
            if lam and bug == f"db{l}_has_l2":
                db = db + (lam / m) * b
            g[f"dW{l}"], g[f"db{l}"] = dW, db

            if l == 1:
                break
            k = l - 1                      # hidden layer we propagate into
            dA = W.T @ dZ
            if k in masks:
                if bug == f"dropout_mask_forgotten_l{k}":
                    dA = dA / keep
                elif bug == f"dropout_keep_prob_forgotten_l{k}":
                    dA = dA * masks[k]
                else:
                    dA = dA * masks[k] / keep
            Zk = Zs[k - 1]
            Ak = _act(self.act, Zk)        # activation before dropout
            if bug == f"tanh_prime_1_minus_a_l{k}":
                dZ = dA * (1.0 - Ak)
            elif bug == f"sigmoid_prime_a_l{k}":
                dZ = dA * Ak
            elif bug == f"relu_mask_from_dA_l{k}":
                dZ = dA * (dA > 0)
            elif bug == f"leaky_slope_dropped_l{k}":
                dZ = dA * (Zk > 0)
            else:
                dZ = dA * _act_prime(self.act, Zk, Ak)

        g = {f"d{name}": g[f"d{name}"] for name in self.params64}   # W1, b1, ... order
        if bug is not None:
            g = _apply_simple_bug(g, bug, info)
        for k2, v in g.items():
            assert v.dtype == X.dtype, (self.net, bug, k2, v.dtype)
        return g

    def case(self, bug, buggy, dtype):
        dtype = np.dtype(dtype)
        X, Y = self.X64.astype(dtype), self.Y64.astype(dtype)
        masks = {l: mk.astype(dtype) for l, mk in self.masks64.items()}
        info = {"entry": self.info["entry"]}
        if bug is not None and bug.endswith("swapped_neighbours"):
            info["entry"] = self.info["swap"]

        def cost(params):
            return self._cost(params, X, Y, masks)

        def grads(params):
            return self._grads(params, X, Y, masks, bug, info)

        return Case(
            name=f"{self.net}__{bug or 'correct'}__{dtype.name}",
            params=_cast(self.params64, dtype),
            cost=cost,
            grads=grads,
            buggy=frozenset(buggy),
            dtype=dtype,
        )


# ---------------------------------------------------------------------------
# batch normalization in the hidden layer
# ---------------------------------------------------------------------------

class _BatchNormNet:
    """X -> W1 -> batch norm (gamma1, beta1) -> tanh -> W2, b2 -> softmax CE.

    The first layer has no bias: batch norm would cancel it.
    """

    def __init__(self, net, *, n0=4, n1=6, K=3, m=8, seed=1301):
        self.net, self.m = net, m
        rng = np.random.default_rng(seed)
        p = {
            "W1": rng.standard_normal((n1, n0)) / np.sqrt(n0),
            "gamma1": 1.0 + 0.3 * rng.standard_normal((n1, 1)),
            "beta1": 0.2 * rng.standard_normal((n1, 1)),
            "W2": rng.standard_normal((K, n1)) / np.sqrt(n1),
            "b2": 0.1 * rng.standard_normal((K, 1)),
        }
        X = rng.standard_normal((n0, m)) + 0.5
        Y = np.eye(K)[:, rng.integers(0, K, m)]
        self.params64 = {k: _f32_exact(v) for k, v in p.items()}
        self.X64, self.Y64 = _f32_exact(X), _f32_exact(Y)

    def _forward(self, p, X):
        Z1 = p["W1"] @ X
        mu = np.mean(Z1, axis=1, keepdims=True)
        D = Z1 - mu
        var = np.mean(D * D, axis=1, keepdims=True)
        inv = 1.0 / np.sqrt(var + BN_EPS)
        Zh = D * inv
        A1 = np.tanh(p["gamma1"] * Zh + p["beta1"])
        Z2 = p["W2"] @ A1 + p["b2"]
        return inv, Zh, A1, Z2

    def _cost(self, p, X, Y):
        *_, Z2 = self._forward(p, X)
        J, _ = _loss("ce", Z2, Y)
        return float(J)

    def _grads(self, p, X, Y, bug):
        m = self.m
        inv, Zh, A1, Z2 = self._forward(p, X)
        _, P = _loss("ce", Z2, Y)
        dZ2 = P - Y
        dW2 = dZ2 @ A1.T / m
        db2 = np.sum(dZ2, axis=1, keepdims=True) / m
        dA1 = p["W2"].T @ dZ2
        dZt = dA1 * (1.0 - A1 * A1)
        if bug == "dgamma_missing_xhat":
            dgamma = np.sum(dZt, axis=1, keepdims=True) / m
        else:
            dgamma = np.sum(dZt * Zh, axis=1, keepdims=True) / m
        dbeta = np.sum(dZt, axis=1, keepdims=True) / m
        if bug == "dbeta_sign_flip":
            dbeta = -dbeta
        if bug == "dgamma_dbeta_swapped":
            dgamma, dbeta = dbeta, dgamma
        dZh = dZt * p["gamma1"]
        if bug == "bn_backward_missing_var_term":
            dZ1 = inv * (dZh - np.mean(dZh, axis=1, keepdims=True))
        else:
            dZ1 = inv * (dZh - np.mean(dZh, axis=1, keepdims=True)
                         - Zh * np.mean(dZh * Zh, axis=1, keepdims=True))
        dW1 = dZ1 @ X.T / m
        return {"dW1": dW1, "dgamma1": dgamma, "dbeta1": dbeta, "dW2": dW2, "db2": db2}

    def case(self, bug, buggy, dtype):
        dtype = np.dtype(dtype)
        X, Y = self.X64.astype(dtype), self.Y64.astype(dtype)
        return Case(
            name=f"{self.net}__{bug or 'correct'}__{dtype.name}",
            params=_cast(self.params64, dtype),
            cost=lambda params: self._cost(params, X, Y),
            grads=lambda params: self._grads(params, X, Y, bug),
            buggy=frozenset(buggy),
            dtype=dtype,
        )


# ---------------------------------------------------------------------------
# small 2-D convolution followed by a dense softmax layer
# ---------------------------------------------------------------------------

class _ConvNet:
    """1-channel 5x5 images -> 2 filters 3x3 (valid, stride 1) + bias -> tanh
    -> flatten (filter-major) -> dense -> softmax CE.

    Images are stored as X[n, row, col] (examples first for the convolution);
    the dense part uses the column convention.
    """

    def __init__(self, net, *, F=2, k=3, size=5, K=3, m=6, seed=1401):
        self.net, self.m, self.F, self.k = net, m, F, k
        self.o = size - k + 1
        rng = np.random.default_rng(seed)
        nflat = F * self.o * self.o
        p = {
            "K1": rng.standard_normal((F, k, k)) / k,
            "b1": 0.1 * rng.standard_normal(F),
            "W2": rng.standard_normal((K, nflat)) / np.sqrt(nflat) * 2.0,
            "b2": 0.1 * rng.standard_normal((K, 1)),
        }
        X = rng.standard_normal((m, size, size))
        Y = np.eye(K)[:, rng.integers(0, K, m)]
        self.params64 = {k_: _f32_exact(v) for k_, v in p.items()}
        self.X64, self.Y64 = _f32_exact(X), _f32_exact(Y)

    def _forward(self, p, X):
        m, o, k = self.m, self.o, self.k
        K1 = p["K1"]
        Zc = np.zeros((m, self.F, o, o), dtype=X.dtype)
        for u in range(k):
            for v in range(k):
                Zc += K1[None, :, u, v, None, None] * X[:, None, u:u + o, v:v + o]
        Zc += p["b1"][None, :, None, None]
        Ac = np.tanh(Zc)
        A1 = Ac.reshape(m, -1).T
        Z2 = p["W2"] @ A1 + p["b2"]
        return Ac, A1, Z2

    def _cost(self, p, X, Y):
        *_, Z2 = self._forward(p, X)
        J, _ = _loss("ce", Z2, Y)
        return float(J)

    def _grads(self, p, X, Y, bug):
        m, o, k = self.m, self.o, self.k
        Ac, A1, Z2 = self._forward(p, X)
        _, P = _loss("ce", Z2, Y)
        dZ2 = P - Y
        if bug == "dW2_flatten_order_mismatch":
            # flattened position-major here, filter-major in the forward pass
            A1_wrong = Ac.transpose(0, 2, 3, 1).reshape(m, -1).T
            dW2 = dZ2 @ A1_wrong.T / m
        else:
            dW2 = dZ2 @ A1.T / m
        db2 = np.sum(dZ2, axis=1, keepdims=True) / m
        dA1 = p["W2"].T @ dZ2
        dZc = dA1.T.reshape(Ac.shape) * (1.0 - Ac * Ac)
        dK = np.empty_like(p["K1"])
        for u in range(k):
            for v in range(k):
                dK[:, u, v] = np.einsum("nfij,nij->f", dZc, X[:, u:u + o, v:v + o]) / m
        if bug == "dK1_flipped":
            # convolution instead of correlation in the backward pass
            dK = dK[:, ::-1, ::-1].copy()
        if bug == "db1_mean_over_positions":
            db1 = np.sum(np.mean(dZc, axis=(2, 3)), axis=0) / m
        else:
            db1 = np.sum(dZc, axis=(0, 2, 3)) / m
        return {"dK1": dK, "db1": db1, "dW2": dW2, "db2": db2}

    def case(self, bug, buggy, dtype):
        dtype = np.dtype(dtype)
        X, Y = self.X64.astype(dtype), self.Y64.astype(dtype)
        return Case(
            name=f"{self.net}__{bug or 'correct'}__{dtype.name}",
            params=_cast(self.params64, dtype),
            cost=lambda params: self._cost(params, X, Y),
            grads=lambda params: self._grads(params, X, Y, bug),
            buggy=frozenset(buggy),
            dtype=dtype,
        )


# ---------------------------------------------------------------------------
# the battery
# ---------------------------------------------------------------------------

def _networks():
    return {
        # 4-8-6-3 ReLU, hidden width 8 == batch 8 (lets a wrong-axis db1 keep its shape)
        "mlp_relu_ce": _MLP("mlp_relu_ce", sizes=[4, 8, 6, 3], act="relu",
                            loss="ce", m=8, seed=101, w_scale=1.5),
        "mlp_leaky_bce": _MLP("mlp_leaky_bce", sizes=[4, 6, 5, 1], act="leaky",
                              loss="bce", m=10, seed=202, w_scale=1.5),
        "mlp_tanh_mse": _MLP("mlp_tanh_mse", sizes=[3, 7, 5, 2], act="tanh",
                             loss="mse", m=6, seed=303, w_scale=1.2),
        "mlp_sigmoid_ce": _MLP("mlp_sigmoid_ce", sizes=[4, 6, 3], act="sigmoid",
                               loss="ce", m=8, seed=404, w_scale=2.0),
        # 10-20-3: W1 has 200 entries (283 parameters in all)
        "mlp_tanh_ce_wide": _MLP("mlp_tanh_ce_wide", sizes=[10, 20, 3], act="tanh",
                                 loss="ce", m=12, seed=505, w_scale=1.2),
        # square W2 (6x6) so a transposed gradient keeps its shape
        "mlp_relu_l2_ce": _MLP("mlp_relu_l2_ce", sizes=[4, 6, 6, 3], act="relu",
                               loss="ce", m=8, seed=606, w_scale=1.5, lam=0.7),
        "mlp_relu_dropout_ce": _MLP("mlp_relu_dropout_ce", sizes=[5, 7, 6, 3],
                                    act="relu", loss="ce", m=10, seed=707,
                                    w_scale=1.5, keep=0.8),
        # b2 is a parameter but the forward pass never adds it
        "mlp_unused_bias_mse": _MLP("mlp_unused_bias_mse", sizes=[3, 6, 4, 2],
                                    act="tanh", loss="mse", m=6, seed=808,
                                    unused_bias=(2,)),
        # logits reach +-40; stable log-sum-exp
        "mlp_large_logits_ce": _MLP("mlp_large_logits_ce", sizes=[4, 6, 5],
                                    act="tanh", loss="ce", m=8, seed=909,
                                    logit_max=40.0),
        # 4 tanh layers; first layer pushed into saturation, so the b1 gradient
        # is under 1% of the whole gradient
        "deep_tanh_ce": _MLP("deep_tanh_ce", sizes=[3, 6, 6, 6, 2], act="tanh",
                             loss="ce", m=8, seed=1001, w_scale=[1.0, 1.0, 1.0, 2.0],
                             b1_offset=3.5),
        # W2 == 0: dW1 and db1 are exactly zero, all hidden units symmetric in effect
        "mlp_zero_w2_tanh_ce": _MLP("mlp_zero_w2_tanh_ce", sizes=[4, 5, 3],
                                    act="tanh", loss="ce", m=6, seed=1101,
                                    zero_w=(2,)),
        # input feature 2 is ~1e-10, so column 2 of dW1 is ~1e-12
        "mlp_tiny_feature_bce": _MLP("mlp_tiny_feature_bce", sizes=[4, 5, 1],
                                     act="sigmoid", loss="bce", m=8, seed=1201,
                                     w_scale=2.0, tiny_row=2),
        "bn_tanh_ce": _BatchNormNet("bn_tanh_ce"),
        "conv2d_tanh_ce": _ConvNet("conv2d_tanh_ce"),
    }


# (network, bug, buggy parameters, also as float32?)
_BUGS = [
    ("mlp_relu_ce", "db1_wrong_axis", {"b1"}, True),
    ("mlp_relu_ce", "relu_mask_from_dA_l1", {"W1", "b1"}, False),
    ("mlp_relu_ce", "dW2_doubled", {"W2"}, False),
    ("mlp_relu_ce", "db3_missing_1_over_m", {"b3"}, False),

    ("mlp_leaky_bce", "leaky_slope_dropped_l1", {"W1", "b1"}, True),
    ("mlp_leaky_bce", "dW3_sign_flip", {"W3"}, False),
    ("mlp_leaky_bce", "db1_times_4", {"b1"}, False),

    ("mlp_tanh_mse", "tanh_prime_1_minus_a_l1", {"W1", "b1"}, True),
    ("mlp_tanh_mse", "dW2_missing_1_over_m", {"W2"}, False),
    ("mlp_tanh_mse", "mse_residual_sign",
     {"W1", "b1", "W2", "b2", "W3", "b3"}, False),

    ("mlp_sigmoid_ce", "sigmoid_prime_a_l1", {"W1", "b1"}, True),
    ("mlp_sigmoid_ce", "db2_summed_all", {"b2"}, False),

    ("mlp_tanh_ce_wide", "dW1_single_entry_10pct", {"W1"}, True),
    ("mlp_tanh_ce_wide", "dW1_swapped_neighbours", {"W1"}, False),
    ("mlp_tanh_ce_wide", "db1_sign_flip", {"b1"}, False),

    ("mlp_relu_l2_ce", "dW1_missing_l2", {"W1"}, True),
    ("mlp_relu_l2_ce", "db2_has_l2", {"b2"}, False),
    ("mlp_relu_l2_ce", "dW2_transposed", {"W2"}, False),
    ("mlp_relu_l2_ce", "dW3_l2_not_over_m", {"W3"}, False),

    ("mlp_relu_dropout_ce", "dropout_mask_forgotten_l1", {"W1", "b1"}, True),
    ("mlp_relu_dropout_ce", "dropout_keep_prob_forgotten_l2",
     {"W1", "b1", "W2", "b2"}, False),

    ("bn_tanh_ce", "dgamma_missing_xhat", {"gamma1"}, True),
    ("bn_tanh_ce", "dbeta_sign_flip", {"beta1"}, False),
    ("bn_tanh_ce", "dgamma_dbeta_swapped", {"gamma1", "beta1"}, False),
    ("bn_tanh_ce", "bn_backward_missing_var_term", {"W1"}, False),

    ("conv2d_tanh_ce", "dK1_flipped", {"K1"}, True),
    ("conv2d_tanh_ce", "db1_mean_over_positions", {"b1"}, False),
    ("conv2d_tanh_ce", "dW2_flatten_order_mismatch", {"W2"}, False),

    ("mlp_unused_bias_mse", "db2_for_unused_bias", {"b2"}, False),

    ("mlp_large_logits_ce", "db2_sign_flip", {"b2"}, True),
    ("mlp_large_logits_ce", "dW1_missing_1_over_m", {"W1"}, False),

    ("deep_tanh_ce", "db1_sign_flip", {"b1"}, True),
    ("deep_tanh_ce", "tanh_prime_1_minus_a_l3",
     {"W1", "b1", "W2", "b2", "W3", "b3"}, False),
    ("deep_tanh_ce", "dW4_doubled", {"W4"}, False),

    ("mlp_zero_w2_tanh_ce", "db2_missing_1_over_m", {"b2"}, False),

    ("mlp_tiny_feature_bce", "bce_double_sigmoid_prime",
     {"W1", "b1", "W2", "b2"}, True),
]

_CACHE = {}


def _battery():
    if not _CACHE:
        nets = _networks()
        correct, buggy = [], []
        for net in nets.values():
            for dt in (F64, F32):
                correct.append(net.case(None, (), dt))
        for net_name, bug, params, f32 in _BUGS:
            net = nets[net_name]
            assert set(params) <= set(net.params64), (net_name, bug)
            buggy.append(net.case(bug, params, F64))
            if f32:
                buggy.append(net.case(bug, params, F32))
        _CACHE["correct"], _CACHE["buggy"] = correct, buggy
    return _CACHE["correct"], _CACHE["buggy"]


def kinked_cases(seeds=range(4)) -> list:
    """ReLU and leaky-ReLU networks whose examples are NOT kept away from the kinks, correct
    and with single-parameter bugs, in float64 and float32: finite differences here often
    cross a kink, which must not be called a bug, while the bugs must still be found."""
    cases = []
    bugs = ["dW2_doubled", "db1_sign_flip", "dW1_single_entry_10pct", "db2_times_4"]
    for seed in seeds:
        for act, loss, sizes in (("relu", "ce", [5, 8, 6, 3]), ("leaky", "bce", [5, 8, 6, 1]),
                                 ("relu", "mse", [5, 8, 6, 3])):
            net = _MLP(f"kinked_{act}_{loss}_{seed}", sizes=sizes, act=act, loss=loss, m=12,
                       seed=1000 + seed, lam=0.3 if seed % 3 == 0 else 0.0, kink_margin=0.0)
            for dtype in (F64, F32):
                cases.append(net.case(None, (), dtype))
                for bug in bugs:
                    cases.append(net.case(bug, {bug.split("_")[0][1:]}, dtype))
    # Wider layers and a batch of 64 in float32: many kinks at once, and more round-off.
    for seed, act, loss, sizes in ((1, "relu", "ce", [20, 32, 16, 5]),
                                   (6, "leaky", "bce", [20, 32, 16, 1])):
        net = _MLP(f"kinked_wide_{act}_{loss}_{seed}", sizes=sizes, act=act, loss=loss, m=64,
                   seed=2000 + seed, lam=0.5 if seed % 2 else 0.0, kink_margin=0.0,
                   w_scale=1.5)
        cases.append(net.case(None, (), F32))
        cases.append(net.case("dW1_single_entry_10pct", {"W1"}, F32))
    return cases


def correct_cases() -> list:
    """Cases whose analytic gradients are exact (float64 and float32 twins)."""
    return list(_battery()[0])


def buggy_cases() -> list:
    """Cases with wrong analytic gradients for the parameters in ``case.buggy``."""
    return list(_battery()[1])


def all_cases() -> list:
    c, b = _battery()
    return list(c) + list(b)
