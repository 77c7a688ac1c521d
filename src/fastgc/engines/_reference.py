"""Pure-Python reference kernels: the last-resort engine and the tests' oracle.

Each function mirrors its twin in ``fastgc.engines._numba_kernels`` and ``fastgc._core``
operation for operation (NumPy scalars keep the same dtype rules), so results agree to the bit.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np


def central_differences(
    evaluate: Callable[[int, int], float],
    work: np.ndarray,
    indices: np.ndarray,
    steps: np.ndarray,
    approx: np.ndarray,
    failed: np.ndarray,
) -> None:
    """Two-sided differences along ``indices``; ``evaluate(chunk, i)`` returns J(work[chunk]).

    Mirrors ``fastgc.engines._numba_kernels._central_differences`` (see there for the arguments), run
    serially chunk after chunk.
    """
    n_chunks = work.shape[0]
    n_indices = indices.shape[0]
    for chunk in range(n_chunks):
        theta = work[chunk]
        failed[chunk] = -1
        for k in range((n_indices * chunk) // n_chunks, (n_indices * (chunk + 1)) // n_chunks):
            i = indices[k]
            saved = theta[i]
            theta[i] = saved + steps[k]
            upper = theta[i]
            try:
                cost_plus = evaluate(chunk, i)
                theta[i] = saved - steps[k]
                lower = theta[i]
                cost_minus = evaluate(chunk, i)
            finally:
                theta[i] = saved
            represented_step = np.float64(upper) - np.float64(lower)
            # math's test of finiteness gives NumPy's on these numbers, for less.
            finite = math.isfinite(cost_plus) and math.isfinite(cost_minus)
            if not finite or represented_step == 0.0:
                failed[chunk] = k
                break
            approx[k] = (np.float64(cost_plus) - np.float64(cost_minus)) / represented_step


def block_norms(
    approx: np.ndarray, dtheta: np.ndarray, offsets: np.ndarray, norms: np.ndarray
) -> None:
    """Squared norms of ``approx - dtheta``, ``approx`` and ``dtheta`` per block.

    Mirrors ``fastgc.engines._numba_kernels.block_norms``, summing in the same order.
    """
    for block in range(offsets.shape[0] - 1):
        lo, hi = offsets[block], offsets[block + 1]
        sum_difference = 0.0
        sum_approx = 0.0
        sum_dtheta = 0.0
        for i in range(lo, hi):
            a = float(approx[i])
            d = float(dtheta[i])
            sum_difference += (a - d) * (a - d)
            sum_approx += a * a
            sum_dtheta += d * d
        norms[block, 0] = sum_difference
        norms[block, 1] = sum_approx
        norms[block, 2] = sum_dtheta


# The counter-based generator of the directional kernels (SplitMix64's increment and mixer):
# entry i of direction ``seed`` is a pure function of (seed, i), so no direction is stored
# and every engine and thread count draws the same numbers.
_MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
MIX_MULTIPLIER_1 = 0xBF58476D1CE4E5B9
MIX_MULTIPLIER_2 = 0x94D049BB133111EB
#: ``kinds`` bit: Gaussian-like entries (a centred sum of four 16-bit uniforms, variance 1)
#: instead of Rademacher signs.
GAUSSIAN = 1
#: ``kinds`` bit: entry i is also scaled by max(1, |theta_i|) (the float32 step rule).
RELATIVE = 2
# Four 16-bit uniforms sum to 131070 on average with variance 4 (65536**2 - 1) / 12; integer
# sums and one rounded product, so every engine gets the same bits.
IRWIN_HALL_CENTRE = 131070
IRWIN_HALL_SCALE = (3.0 / (65536.0 * 65536.0 - 1.0)) ** 0.5


def direction_entry(seed: int, i: int, kind: int) -> float:
    """Entry ``i`` of the direction ``seed``: +/-1, or Gaussian-like when ``kind & GAUSSIAN``.

    Mirrors ``fastgc.engines._numba_kernels.direction_entry`` and ``fastgc._core``'s
    ``_direction_entry``.
    """
    z = (seed + (i + 1) * GOLDEN_GAMMA) & _MASK64
    z = ((z ^ (z >> 30)) * MIX_MULTIPLIER_1) & _MASK64
    z = ((z ^ (z >> 27)) * MIX_MULTIPLIER_2) & _MASK64
    z = z ^ (z >> 31)
    if kind & GAUSSIAN:
        total = (z & 0xFFFF) + ((z >> 16) & 0xFFFF) + ((z >> 32) & 0xFFFF) + (z >> 48)
        return float(total - IRWIN_HALL_CENTRE) * IRWIN_HALL_SCALE
    return 1.0 if z >> 63 else -1.0


def directional_differences(
    evaluate: Callable[[int, int], float],
    work: np.ndarray,
    theta: np.ndarray,
    dtheta: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    seeds: np.ndarray,
    kinds: np.ndarray,
    steps: np.ndarray,
    out: np.ndarray,
    failed: np.ndarray,
) -> None:
    """Two-sided differences along seeded random directions; ``evaluate(chunk, i)`` returns
    J(work[chunk]).

    Mirrors ``fastgc.engines._numba_kernels._directional_differences`` (see there for the
    arguments), run serially chunk after chunk.
    """
    n_chunks = work.shape[0]
    n_tasks = lo.shape[0]
    for chunk in range(n_chunks):
        row = work[chunk]
        failed[chunk] = -1
        for t in range((n_tasks * chunk) // n_chunks, (n_tasks * (chunk + 1)) // n_chunks):
            start, stop = int(lo[t]), int(hi[t])
            seed, kind, step = int(seeds[t]), int(kinds[t]), np.float64(steps[t])
            prediction = 0.0
            step_squares = 0.0
            try:
                for i in range(start, stop):
                    move = _move(step, seed, i, kind, theta[i])
                    row[i] = theta[i] + move
                    upper = np.float64(row[i])
                    lower = np.float64(theta.dtype.type(theta[i] - move))
                    represented = upper - lower
                    prediction += float(dtheta[i]) * float(represented)
                    step_squares += float(represented) * float(represented)
                cost_plus = evaluate(chunk, start)
                for i in range(start, stop):
                    row[i] = theta[i] - _move(step, seed, i, kind, theta[i])
                cost_minus = evaluate(chunk, start)
            finally:
                row[start:stop] = theta[start:stop]
            if not (math.isfinite(cost_plus) and math.isfinite(cost_minus)) or step_squares == 0.0:
                failed[chunk] = t
                break
            out[t, 0] = np.float64(cost_plus) - np.float64(cost_minus)
            out[t, 1] = prediction
            out[t, 2] = step_squares


def _move(step: np.float64, seed: int, i: int, kind: int, value: np.floating) -> np.float64:
    """How far entry i moves: step x v_i (x max(1, |theta_i|) for a relative step), float64."""
    move = step * np.float64(direction_entry(seed, i, kind))
    if kind & RELATIVE:
        move = move * max(np.float64(1.0), abs(np.float64(value)))
    return move
