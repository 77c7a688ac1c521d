"""Numba kernels of the finite-difference check.

These kernels take validated, C-contiguous, dtype-exact arrays and know nothing of parameter
names, layouts or reports. Each mirrors a function of the Cython extension ``fastgc._core``
and of the pure-Python reference ``fastgc.engines._reference``: same algorithm, same order of
operations, so the engines agree to the bit. This module imports Numba and is itself imported
lazily.
"""

import functools

import numba
import numpy as np
from numba.core import cgutils
from numba.extending import intrinsic

# Compiled on first use, never at import. The kernels call no user code by name: the cost
# reaches them as an argument, a first-class function typed by its signature only (the
# ``*_at`` entries build it from the address of the compiled cost), so one compilation per
# argument types serves every cost and can be kept in Numba's on-disk cache (NUMBA_CACHE_DIR,
# else beside this file, else the user's cache directory).
_JIT_OPTIONS = {"nogil": True}


def _compiled_once(**options):
    """``numba.njit(cache=True, **options)``, or without the cache when Numba finds no
    writable place for one (a read-only install and cache directory): compiled in memory."""

    def decorate(function):
        try:
            return numba.njit(cache=True, **_JIT_OPTIONS, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(cache=False, **_JIT_OPTIONS, **options)(function)

    return decorate


def _central_differences(cost, args, work, indices, steps, approx, failed):  # pragma: no cover
    """Two-sided differences of ``cost`` along the coordinates ``indices``.

    Mirrors ``fastgc._core.central_differences_c`` and
    ``fastgc.engines._reference.central_differences``.

    Parameters
    ----------
    cost : numba dispatcher or first-class function
        ``cost(theta, *args) -> float``; the engine passes it typed by its signature, so
        that the kernel is compiled once for every cost with these argument types.
    args : tuple
        Extra arguments of ``cost``.
    work : ndarray, shape (n_chunks, n)
        One private copy of theta per chunk; ``indices`` is split into ``n_chunks`` contiguous
        chunks run in parallel. Every row is restored exactly on return.
    indices : int64 ndarray, shape (m,)
        Coordinates to differentiate along.
    steps : float64 ndarray, shape (m,)
        The step asked for each coordinate.
    approx : float64 ndarray, shape (m,)
        Output: ``(J(theta + h e_i) - J(theta - h e_i)) / (represented step)``.
    failed : int64 ndarray, shape (n_chunks,)
        Output: -1, or the first position ``k`` in the chunk where a cost was not finite or the
        step vanished in the dtype of theta; the chunk stops there.
    """
    n_chunks = work.shape[0]
    n_indices = indices.shape[0]
    for chunk in numba.prange(n_chunks):
        theta = work[chunk]
        failed[chunk] = -1
        for k in range((n_indices * chunk) // n_chunks, (n_indices * (chunk + 1)) // n_chunks):
            i = indices[k]
            saved = theta[i]
            theta[i] = saved + steps[k]
            upper = theta[i]
            cost_plus = cost(theta, *args)
            theta[i] = saved - steps[k]
            lower = theta[i]
            cost_minus = cost(theta, *args)
            # Restore the saved value itself: saved + h - h need not round back to saved.
            theta[i] = saved
            represented_step = np.float64(upper) - np.float64(lower)
            if not (np.isfinite(cost_plus) and np.isfinite(cost_minus)) or represented_step == 0.0:
                failed[chunk] = k
                break
            approx[k] = (np.float64(cost_plus) - np.float64(cost_minus)) / represented_step


# The loop is written once and inlined into the entries below, which are what Numba compiles
# (and caches): one compilation per entry instead of the loop's and the entry's (a sixth less
# of a first check's time with a cold cache). The body stays inside the prange (a call there
# costs Numba a third more compilation); in the serial entry the prange runs as a range.
_central_loop = numba.njit(inline="always", **_JIT_OPTIONS)(_central_differences)


@intrinsic
def _function_at(typingctx, address, function_type):  # pragma: no cover
    """The first-class function of type ``function_type`` (a type reference) whose compiled
    code is at ``address``: Numba's own calling convention, so that what the cost raises
    propagates as it would from a direct call."""
    function = function_type.instance_type

    def codegen(context, builder, signature, arguments):
        pointer = context.get_value_type(numba.types.voidptr)
        value = cgutils.create_struct_proxy(function)(context, builder)
        value.jit_addr = builder.inttoptr(arguments[0], pointer)
        value.c_addr = cgutils.get_null_value(pointer)
        value.py_addr = cgutils.get_null_value(pointer)
        return value._getvalue()

    return function(address, function_type), codegen


@_compiled_once(parallel=True)
def central_differences_at(address, cost_type, args, work, indices, steps, approx,
                           failed):  # pragma: no cover
    """:func:`_central_differences` of the cost compiled at ``address``, of first-class type
    ``cost_type``, its chunks on Numba's threads: compiled once per argument types for every
    cost."""
    _central_loop(_function_at(address, cost_type), args, work, indices, steps, approx, failed)


@_compiled_once()
def central_differences_serial_at(address, cost_type, args, work, indices, steps, approx,
                                  failed):  # pragma: no cover
    """The same loop without threads, for calls from inside a foreign thread pool where
    Numba's workqueue layer cannot nest parallel regions, and for runs of one chunk."""
    _central_loop(_function_at(address, cost_type), args, work, indices, steps, approx, failed)


@_compiled_once()
def block_norms(approx, dtheta, offsets, norms):  # pragma: no cover
    """Sums of squares of ``approx - dtheta``, ``approx`` and ``dtheta`` per block.

    Mirrors ``fastgc._core.block_norms`` and ``fastgc.engines._reference.block_norms``.

    ``offsets`` (int64, shape (n_blocks + 1,)) bounds the blocks; ``norms`` (float64, shape
    (n_blocks, 3)) receives, per block, the squared 2-norms of the difference, of ``approx``
    and of ``dtheta``. Non-finite entries propagate.
    """
    for block in range(offsets.shape[0] - 1):
        sum_difference = 0.0
        sum_approx = 0.0
        sum_dtheta = 0.0
        for i in range(offsets[block], offsets[block + 1]):
            difference = approx[i] - dtheta[i]
            sum_difference += difference * difference
            sum_approx += approx[i] * approx[i]
            sum_dtheta += dtheta[i] * dtheta[i]
        norms[block, 0] = sum_difference
        norms[block, 1] = sum_approx
        norms[block, 2] = sum_dtheta


# The counter-based generator of the directional kernels; the constants are those of
# ``fastgc.engines._reference`` (SplitMix64's increment and mixer), typed so that Numba keeps
# every operation in wrapping uint64 arithmetic.
_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_MULTIPLIER_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_MULTIPLIER_2 = np.uint64(0x94D049BB133111EB)
_LOW16 = np.uint64(0xFFFF)
_ONE = np.uint64(1)
_SHIFTS = (np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(16), np.uint64(32),
           np.uint64(48), np.uint64(63))
_IRWIN_HALL_CENTRE = 131070
_IRWIN_HALL_SCALE = (3.0 / (65536.0 * 65536.0 - 1.0)) ** 0.5
_GAUSSIAN = 1
_RELATIVE = 2


@_compiled_once()
def direction_entry(seed, i, kind):  # pragma: no cover
    """Entry ``i`` of the direction ``seed``: +/-1, or Gaussian-like when ``kind & 1``.

    Mirrors ``fastgc._core._direction_entry`` and ``fastgc.engines._reference.direction_entry``.
    """
    z = seed + (np.uint64(i) + _ONE) * _GOLDEN_GAMMA
    z = (z ^ (z >> _SHIFTS[0])) * _MIX_MULTIPLIER_1
    z = (z ^ (z >> _SHIFTS[1])) * _MIX_MULTIPLIER_2
    z = z ^ (z >> _SHIFTS[2])
    if kind & _GAUSSIAN:
        total = ((z & _LOW16) + ((z >> _SHIFTS[3]) & _LOW16) + ((z >> _SHIFTS[4]) & _LOW16)
                 + (z >> _SHIFTS[5]))
        return np.float64(np.int64(total) - _IRWIN_HALL_CENTRE) * _IRWIN_HALL_SCALE
    return 1.0 if (z >> _SHIFTS[6]) != np.uint64(0) else -1.0


@_compiled_once()
def _move(step, seed, i, kind, value):  # pragma: no cover
    """How far entry i moves: step x v_i (x max(1, |theta_i|) for a relative step)."""
    move = step * direction_entry(seed, i, kind)
    if kind & _RELATIVE:
        move = move * max(1.0, abs(np.float64(value)))
    return move


def _directional_differences(cost, args, work, theta, dtheta, lo, hi, seeds, kinds, steps, out,
                            failed):  # pragma: no cover
    """Two-sided differences of ``cost`` along seeded random directions within index ranges.

    Mirrors ``fastgc._core.directional_differences_c`` and
    ``fastgc.engines._reference.directional_differences``.

    Task t moves ``theta[lo[t]:hi[t]]`` by ``+/- steps[t] * v`` (times max(1, |theta_i|) when
    ``kinds[t] & 2``), where ``v_i = direction_entry(seeds[t], i, kinds[t])`` is computed on
    the fly, evaluates the cost at both points and restores the range from the pristine
    ``theta`` (never by arithmetic).

    Parameters
    ----------
    cost : numba dispatcher or first-class function
        ``cost(theta, *args) -> float`` (passed as :func:`_central_differences` takes it).
    args : tuple
        Extra arguments of ``cost``.
    work : ndarray, shape (n_chunks, n)
        One private copy of theta per chunk; the tasks are split into ``n_chunks`` contiguous
        chunks run in parallel. Every row is restored exactly on return.
    theta : ndarray, shape (n,)
        The pristine parameters, dtype of ``work``; read only.
    dtheta : float64 ndarray, shape (n,)
        The analytic gradient.
    lo, hi : int64 ndarray, shape (T,)
        The index range of each task, 0 <= lo <= hi <= n.
    seeds : uint64 ndarray, shape (T,)
        The direction of each task.
    kinds : int64 ndarray, shape (T,)
        Bit 1: Gaussian-like entries instead of signs; bit 2: relative steps.
    steps : float64 ndarray, shape (T,)
        The step of each task.
    out : float64 ndarray, shape (T, 3)
        Output per task: ``J+ - J-``, the analytic prediction
        ``sum_i dtheta_i (fl(theta_i + h v_i) - fl(theta_i - h v_i))`` over the represented
        moves, and the sum of the squared represented moves.
    failed : int64 ndarray, shape (n_chunks,)
        Output: -1, or the first task of the chunk where a cost was not finite or every move
        vanished in the dtype of theta; the chunk stops there.
    """
    n_chunks = work.shape[0]
    n_tasks = lo.shape[0]
    for chunk in numba.prange(n_chunks):
        row = work[chunk]
        failed[chunk] = -1
        for t in range((n_tasks * chunk) // n_chunks, (n_tasks * (chunk + 1)) // n_chunks):
            start, stop = lo[t], hi[t]
            seed, kind, step = seeds[t], kinds[t], steps[t]
            prediction = 0.0
            step_squares = 0.0
            for i in range(start, stop):
                move = _move(step, seed, i, kind, theta[i])
                row[i] = theta[i] + move
                upper = np.float64(row[i])
                row[i] = theta[i] - move
                lower = np.float64(row[i])
                row[i] = upper
                represented = upper - lower
                prediction += dtheta[i] * represented
                step_squares += represented * represented
            cost_plus = cost(row, *args)
            for i in range(start, stop):
                row[i] = theta[i] - _move(step, seed, i, kind, theta[i])
            cost_minus = cost(row, *args)
            # Restore the pristine values themselves: theta + m - m need not round back.
            for i in range(start, stop):
                row[i] = theta[i]
            if not (np.isfinite(cost_plus) and np.isfinite(cost_minus)) or step_squares == 0.0:
                failed[chunk] = t
                break
            out[t, 0] = np.float64(cost_plus) - np.float64(cost_minus)
            out[t, 1] = prediction
            out[t, 2] = step_squares


# Inlined into its entries, as the central loop is.
_directional_loop = numba.njit(inline="always", **_JIT_OPTIONS)(_directional_differences)


@_compiled_once(parallel=True)
def directional_differences_at(address, cost_type, args, work, theta, dtheta, lo, hi, seeds,
                               kinds, steps, out, failed):  # pragma: no cover
    """:func:`_directional_differences` of the cost compiled at ``address``, of first-class
    type ``cost_type``, its chunks on Numba's threads: compiled once per argument types for
    every cost."""
    _directional_loop(_function_at(address, cost_type), args, work, theta, dtheta, lo, hi,
                      seeds, kinds, steps, out, failed)


@_compiled_once()
def directional_differences_serial_at(address, cost_type, args, work, theta, dtheta, lo, hi,
                                      seeds, kinds, steps, out, failed):  # pragma: no cover
    """The same loop without threads (inside a foreign thread pool, or on one chunk)."""
    _directional_loop(_function_at(address, cost_type), args, work, theta, dtheta, lo, hi,
                      seeds, kinds, steps, out, failed)


@functools.lru_cache(maxsize=None)
def specialised_kernels():
    """``(central_differences, central_differences_serial)`` compiled anew for each cost,
    in memory (nothing specialised on one cost reaches the on-disk cache): the way to run a
    cost that Numba cannot pass as a first-class function."""
    return tuple(numba.njit(cache=False, parallel=parallel, **_JIT_OPTIONS)(_central_differences)
                 for parallel in (True, False))


@functools.lru_cache(maxsize=None)
def specialised_directional_kernels():
    """``(directional_differences, directional_differences_serial)`` compiled anew for each
    cost, in memory, for a cost that Numba cannot pass as a first-class function."""
    return tuple(
        numba.njit(cache=False, parallel=parallel, **_JIT_OPTIONS)(_directional_differences)
        for parallel in (True, False)
    )
