"""Typing stub of the Cython extension ``fastgc._core`` (see ``_core.pyx``)."""

from typing import Callable, SupportsFloat, TypeVar

import numpy as np
from numpy.typing import NDArray

_Floating = TypeVar("_Floating", np.float32, np.float64)

def openmp_enabled() -> bool: ...
def openmp_max_threads() -> int: ...
def central_differences_c(
    cost_address: int,
    data_address: int,
    work: NDArray[_Floating],
    indices: NDArray[np.int64],
    steps: NDArray[np.float64],
    approx: NDArray[np.float64],
    failed: NDArray[np.int64],
    n_threads: int,
) -> None: ...
def central_differences_py(
    evaluate: Callable[[int, int], SupportsFloat],
    work: NDArray[_Floating],
    indices: NDArray[np.int64],
    steps: NDArray[np.float64],
    approx: NDArray[np.float64],
    failed: NDArray[np.int64],
    n_threads: int,
) -> None: ...
def block_norms(
    approx: NDArray[np.float64],
    dtheta: NDArray[np.float64],
    offsets: NDArray[np.int64],
    norms: NDArray[np.float64],
) -> None: ...
def directional_differences_c(
    cost_address: int,
    data_address: int,
    work: NDArray[_Floating],
    theta: NDArray[_Floating],
    dtheta: NDArray[np.float64],
    lo: NDArray[np.int64],
    hi: NDArray[np.int64],
    seeds: NDArray[np.uint64],
    kinds: NDArray[np.int64],
    steps: NDArray[np.float64],
    out: NDArray[np.float64],
    failed: NDArray[np.int64],
    n_threads: int,
) -> None: ...
def directional_differences_py(
    evaluate: Callable[[int, int], SupportsFloat],
    work: NDArray[_Floating],
    theta: NDArray[_Floating],
    dtheta: NDArray[np.float64],
    lo: NDArray[np.int64],
    hi: NDArray[np.int64],
    seeds: NDArray[np.uint64],
    kinds: NDArray[np.int64],
    steps: NDArray[np.float64],
    out: NDArray[np.float64],
    failed: NDArray[np.int64],
    n_threads: int,
) -> None: ...
