"""Layers written the way the courses write them (forward -> (out, cache), backward(dout, cache)),
each with a planted bug to be found."""

from __future__ import annotations

import numpy as np


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def affine_backward_wrong_db(dout, cache):
    dx, dw, db = affine_backward(dout, cache)
    return dx, dw, db / dout.shape[0]  # averaged instead of summed


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    x = cache
    dout[x <= 0] = 0  # in place, as many course solutions do
    return dout


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
    cache = None
    if mode == "train":
        mu = x.mean(axis=0)
        var = x.var(axis=0)
        std = np.sqrt(var + eps)
        x_hat = (x - mu) / std
        out = gamma * x_hat + beta
        cache = (x_hat, gamma, std)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
    else:
        x_hat = (x - running_mean) / np.sqrt(running_var + eps)
        out = gamma * x_hat + beta
        cache = (x_hat, gamma, np.sqrt(running_var + eps))
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    x_hat, gamma, std = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    dx = (N * dx_hat - dx_hat.sum(axis=0) - x_hat * np.sum(dx_hat * x_hat, axis=0)) / (N * std)
    return dx, dgamma, dbeta


def batchnorm_backward_wrong_dgamma(dout, cache):
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    x_hat = cache[0]
    return dx, np.sum(dout * x_hat**2, axis=0), dbeta  # x_hat squared: wrong


def tanh_gate_forward(x, prev_h, Wx, Wh):
    """Two outputs, like an LSTM step: (next_h, gate, cache)."""
    a = x @ Wx + prev_h @ Wh
    next_h = np.tanh(a)
    gate = 1.0 / (1.0 + np.exp(-a))
    return next_h, gate, (x, prev_h, Wx, Wh, next_h, gate)


def tanh_gate_backward(dnext_h, dgate, cache):
    x, prev_h, Wx, Wh, next_h, gate = cache
    da = dnext_h * (1 - next_h**2) + dgate * gate * (1 - gate)
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da


def tanh_gate_backward_forgets_gate(dnext_h, dgate, cache):
    x, prev_h, Wx, Wh, next_h, gate = cache
    da = dnext_h * (1 - next_h**2)  # the second output's gradient is dropped
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da


def word_embedding_forward(x, W):
    return W[x], (x, W)


def word_embedding_backward(dout, cache):
    x, W = cache
    dW = np.zeros_like(W)
    np.add.at(dW, x, dout)
    return dW


def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N = x.shape[0]
    loss = -log_probs[np.arange(N), y].mean()
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1
    return loss, dx / N


class TwoLayerNet:
    """cs231n's model object: parameters in self.params, loss(X, y) -> (loss, grads)."""

    def __init__(self, input_dim=6, hidden_dim=5, num_classes=3, reg=0.1, seed=0,
                 wrong_b2=False):
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": rng.standard_normal((input_dim, hidden_dim)) * 0.5,
            "b1": rng.standard_normal(hidden_dim) * 0.1,
            "W2": rng.standard_normal((hidden_dim, num_classes)) * 0.5,
            "b2": rng.standard_normal(num_classes) * 0.1,
        }
        self.reg = reg
        self.wrong_b2 = wrong_b2

    def loss(self, X, y):
        p = self.params
        hidden = np.tanh(X @ p["W1"] + p["b1"])
        scores = hidden @ p["W2"] + p["b2"]
        loss, dscores = softmax_loss(scores, y)
        loss += 0.5 * self.reg * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))
        grads = {"W2": hidden.T @ dscores + self.reg * p["W2"], "b2": dscores.sum(axis=0)}
        if self.wrong_b2:
            grads["b2"] = -grads["b2"]
        dhidden = (dscores @ p["W2"].T) * (1 - hidden**2)
        grads["W1"] = X.T @ dhidden + self.reg * p["W1"]
        grads["b1"] = dhidden.sum(axis=0)
        return loss, grads
