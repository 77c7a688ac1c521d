"""Pure-Python reference kernels: the last-resort engine and the tests' oracle.

Each function mirrors its twin in ``fastgc.engines._numba_kernels`` and ``fastgc._core``
operation for operation (NumPy scalars keep the same dtype rules), so results agree to the bit.
"""

from __future__ import annotations

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

    Mirrors ``fastgc.engines._numba_kernels.central_differences`` (see there for the arguments), run
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
            if not (np.isfinite(cost_plus) and np.isfinite(cost_minus)) or represented_step == 0.0:
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
