"""The network battery in ``networks.py`` is what it claims to be.

Checked against an independent float64 central-difference reference
(Richardson-extrapolated), using NumPy only:

* correct cases: every parameter block agrees with the reference;
* buggy cases: exactly the parameters in ``case.buggy`` disagree (per-block
  relative difference >= 1e-2), all others agree;
* ``cost``/``grads`` leave their inputs untouched and return well-formed grads.

float32 cases are compared with the reference of their float64 twin, which holds
exactly the same numbers (data and parameters are rounded through float32).
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import networks  # noqa: E402

CORRECT = networks.correct_cases()
BUGGY = networks.buggy_cases()
ALL = CORRECT + BUGGY
BY_NAME = {c.name: c for c in ALL}

TOL_F64 = 1e-6      # agreement of a correct block, float64 case
TOL_F32 = 1e-3      # agreement of a correct block, float32 case
BUG_MIN = 1e-2      # minimum disagreement of a buggy block


def block_rel(a, b):
    """||a - b|| / (||a|| + ||b||), 0 when both blocks are identical."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = np.linalg.norm(a - b)
    if d == 0.0:
        return 0.0
    return d / (np.linalg.norm(a) + np.linalg.norm(b))


def central_difference(cost, params, h=1e-4):
    """Richardson-extrapolated central differences of ``cost`` in float64.

    For each entry x: D(s) = (J(x+s) - J(x-s)) / (2s) with s = h*max(1,|x|),
    combined as (4 D(s/2) - D(s)) / 3, which removes the O(s^2) error term.
    """
    work = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    out = {}
    for name, arr in work.items():
        flat = arr.reshape(-1)
        g = np.zeros(flat.size)
        for i in range(flat.size):
            x0 = flat[i]
            base = h * max(1.0, abs(x0))
            est = []
            for s in (base, base / 2):
                xp, xm = x0 + s, x0 - s
                flat[i] = xp
                fp = float(cost(work))
                flat[i] = xm
                fm = float(cost(work))
                flat[i] = x0
                est.append((fp - fm) / (xp - xm))
            g[i] = (4.0 * est[1] - est[0]) / 3.0
        out[name] = g.reshape(arr.shape)
    return out


_REF = {}


def float64_twin(case):
    if case.dtype == np.float64:
        return case
    return BY_NAME[case.name.rsplit("__", 1)[0] + "__float64"]


def reference(case):
    twin = float64_twin(case)
    if twin.name not in _REF:
        _REF[twin.name] = central_difference(twin.cost, twin.params)
    return _REF[twin.name]


def per_block(case):
    ref = reference(case)
    g = case.grads({k: v.copy() for k, v in case.params.items()})
    return {k: block_rel(g["d" + k], ref[k]) for k in case.params}


def global_rel(case):
    ref = reference(case)
    g = case.grads({k: v.copy() for k, v in case.params.items()})
    a = np.concatenate([np.ravel(g["d" + k]).astype(np.float64) for k in case.params])
    b = np.concatenate([np.ravel(ref[k]) for k in case.params])
    return block_rel(a, b)


# ---------------------------------------------------------------------------

def test_counts_and_names():
    names = [c.name for c in ALL]
    assert len(names) == len(set(names))
    assert len(BUGGY) >= 36
    assert len(CORRECT) >= 12
    assert sum(c.dtype == np.float32 for c in BUGGY) >= 8
    assert sum(c.dtype == np.float32 for c in CORRECT) >= 4
    assert all(not c.buggy for c in CORRECT)
    assert all(c.buggy for c in BUGGY)
    for c in ALL:
        assert c.name.endswith("__" + c.dtype.name)
        assert c.buggy <= set(c.params)


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.name)
def test_structure_and_no_mutation(case):
    assert 0 < sum(v.size for v in case.params.values()) <= 300
    for v in case.params.values():
        assert v.dtype == case.dtype
    snapshot = {k: v.tobytes() for k, v in case.params.items()}
    J = case.cost(case.params)
    g = case.grads(case.params)
    assert {k: v.tobytes() for k, v in case.params.items()} == snapshot
    assert np.isfinite(float(J))
    assert list(g) == ["d" + k for k in case.params]
    for k, v in case.params.items():
        gk = g["d" + k]
        assert isinstance(gk, np.ndarray)
        assert gk.shape == v.shape
        assert gk.dtype == v.dtype
        assert np.all(np.isfinite(gk))
        assert not np.shares_memory(gk, v)
    # repeated calls give identical answers (no hidden state)
    assert case.cost(case.params) == J
    g2 = case.grads(case.params)
    for k in g:
        assert g2[k].tobytes() == g[k].tobytes()


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.name)
def test_float32_twin_holds_the_same_numbers(case):
    twin = float64_twin(case)
    assert list(twin.params) == list(case.params)
    for k in case.params:
        np.testing.assert_array_equal(case.params[k].astype(np.float64), twin.params[k])
    j32, j64 = float(case.cost(case.params)), float(twin.cost(twin.params))
    assert abs(j32 - j64) <= 1e-5 * max(1.0, abs(j64))


@pytest.mark.parametrize("case", BUGGY, ids=lambda c: c.name)
def test_bug_lives_only_in_grads(case):
    """A buggy case shares its cost with the correct case of the same network."""
    net, _, dt = case.name.split("__")
    ok = BY_NAME[f"{net}__correct__{dt}"]
    assert case.cost(case.params) == ok.cost(ok.params)


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.name)
def test_gradients_against_finite_differences(case):
    tol = TOL_F64 if case.dtype == np.float64 else TOL_F32
    rel = per_block(case)
    for name, r in rel.items():
        if name in case.buggy:
            assert r >= BUG_MIN, f"{name}: bug too small to see ({r:.2e})"
        else:
            assert r < tol, f"{name}: correct block disagrees ({r:.2e})"


def test_some_bugs_are_globally_subtle():
    """A few bugs hide below 1e-2 in a difference over all parameters."""
    subtle = [c.name for c in BUGGY if global_rel(c) < 1e-2]
    assert "deep_tanh_ce__db1_sign_flip__float64" in subtle
    assert len(subtle) >= 3
