"""``python -m fastgc demo``: the lecture's network, checked against an independent lecture loop."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import fastgc
from fastgc import _demo


def lecture_difference(params, X, Y, buggy, eps=1e-7):
    names = list(params)
    theta = np.concatenate([params[k].reshape(-1) for k in names])

    def unflatten(vector):
        out, start = {}, 0
        for name in names:
            size = params[name].size
            out[name] = vector[start : start + size].reshape(params[name].shape)
            start += size
        return out

    approx = np.empty_like(theta)
    for i in range(theta.size):
        plus, minus = theta.copy(), theta.copy()
        plus[i] += eps
        minus[i] -= eps
        approx[i] = (
            _demo.cost(unflatten(plus), X, Y) - _demo.cost(unflatten(minus), X, Y)
        ) / (2 * eps)
    grads = _demo.backprop(params, X, Y, buggy)
    dtheta = np.concatenate([grads["d" + k].reshape(-1) for k in names])
    return np.linalg.norm(approx - dtheta) / (np.linalg.norm(approx) + np.linalg.norm(dtheta))


def test_demo_prints_both_reports_and_points_at_the_planted_bugs():
    completed = subprocess.run(
        [sys.executable, "-m", "fastgc", "demo"], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    correct, buggy = out.split("=== backprop with the course's bugs")
    assert "CORRECT" in correct and "BUG" not in correct
    assert "BUG" in buggy and "look first at b1" in buggy
    for name in ("W2", "b1"):
        assert any(line.split()[:1] == [name] and " bug " in line for line in buggy.splitlines())
    assert out.count("checked in") == 2


def test_demo_numbers_match_an_independent_lecture_loop():
    params, X, Y = _demo.course_network()
    for buggy in (False, True):
        result = fastgc.check(
            _demo.cost, params, lambda p, X, Y, b=buggy: _demo.backprop(p, X, Y, b),
            args=(X, Y), progress=False,
        )
        expected = lecture_difference(params, X, Y, buggy)
        if buggy:
            assert abs(result.difference - expected) <= 1e-6 * expected
            assert result.verdict == "bug"
        else:
            assert result.difference < 1e-7 and expected < 1e-7
            assert result.verdict == "correct"
