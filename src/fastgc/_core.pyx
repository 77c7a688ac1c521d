# cython: language_level=3
"""Compiled kernels of the finite-difference check (Cython, OpenMP when available).

The kernels take validated, C-contiguous, dtype-exact arrays and an explicit ``n_threads``; they
know nothing of parameter names, layouts or reports. Each mirrors a function of
``fastgc.engines._numba_kernels`` and of ``fastgc.engines._reference``: same algorithm, same
order of operations, so the engines agree to the bit. Only cheap structural checks are made
here, to keep the kernels from reading or writing out of bounds; all other validation belongs
to the Python layer.

Built without OpenMP, ``prange`` runs as a plain serial loop and ``openmp_enabled()`` is False.
"""

cimport cython
from cpython.ref cimport PyObject
from cython.parallel cimport prange
from libc.math cimport fabs, isfinite, sqrt
from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fastgc_openmp_enabled(void) { return 1; }
    static int fastgc_openmp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fastgc_openmp_enabled(void) { return 0; }
    static int fastgc_openmp_max_threads(void) { return 1; }
    #endif
    """
    int fastgc_openmp_enabled() noexcept nogil
    int fastgc_openmp_max_threads() noexcept nogil

ctypedef fused floating:
    float
    double

# The C cost for each dtype of theta: J(theta[0:n]) with an opaque user pointer.
ctypedef double (*cost_float64_t)(const double *theta, Py_ssize_t n, void *data) noexcept nogil
ctypedef double (*cost_float32_t)(const float *theta, Py_ssize_t n, void *data) noexcept nogil


def openmp_enabled():
    """Whether this extension was compiled with OpenMP.

    Returns
    -------
    bool
        True if the kernels run their chunks on OpenMP threads, False if they run serially.
    """
    return bool(fastgc_openmp_enabled())


def openmp_max_threads():
    """``omp_get_max_threads()``, or 1 when the extension was compiled without OpenMP.

    Returns
    -------
    int
        The number of threads an OpenMP parallel region would use by default.
    """
    return fastgc_openmp_max_threads()


cdef inline double _call_cost(size_t cost_address, floating *theta, Py_ssize_t n,
                              void *data) noexcept nogil:
    """Call the C cost at ``cost_address`` with the signature matching the dtype of theta."""
    if floating is double:
        return (<cost_float64_t>cost_address)(theta, n, data)
    else:
        return (<cost_float32_t>cost_address)(theta, n, data)


@cython.final
cdef class _PythonCost:
    """A Python ``evaluate(chunk, i)`` shared by the threads, and the first exception it raised."""

    cdef object evaluate
    cdef object error

    def __cinit__(self, evaluate):
        self.evaluate = evaluate
        self.error = None


cdef int _evaluate_python(PyObject *state_ptr, Py_ssize_t chunk, int64_t i,
                          double *value) noexcept with gil:
    """Store ``evaluate(chunk, i)`` in ``value[0]`` and return 0; return -1 on any exception.

    The first exception raised in any thread is kept on the state; once one is kept, no thread
    calls ``evaluate`` again.
    """
    cdef _PythonCost state = <_PythonCost>state_ptr
    if state.error is not None:
        return -1
    try:
        value[0] = state.evaluate(chunk, i)
    except BaseException as exc:
        state.error = exc
        return -1
    return 0


cdef struct _Evaluator:
    # Either a C cost (its address and user data) or a _PythonCost (``python_state``).
    size_t cost_address
    void *data
    PyObject *python_state


cdef inline int _evaluate(const _Evaluator *evaluator, floating *theta, Py_ssize_t n,
                          Py_ssize_t chunk, int64_t i, double *value) noexcept nogil:
    """Store J(theta) in ``value[0]`` and return 0, or return -1 once a Python cost raised."""
    if evaluator.python_state != NULL:
        return _evaluate_python(evaluator.python_state, chunk, i, value)
    value[0] = _call_cost(evaluator.cost_address, theta, n, evaluator.data)
    return 0


@cython.cdivision(True)
cdef void _chunk(const _Evaluator *evaluator, floating *theta, Py_ssize_t n,
                 const int64_t *indices, const double *steps, double *approx,
                 int64_t *failed, Py_ssize_t chunk, Py_ssize_t n_chunks,
                 Py_ssize_t n_indices) noexcept nogil:
    """One chunk of the check on its private copy ``theta`` of length ``n``; stops at once
    when a Python cost raises, or at the first non-finite cost or vanished step."""
    cdef Py_ssize_t k
    cdef int64_t i
    cdef floating saved, upper, lower
    cdef double cost_plus = 0.0, cost_minus = 0.0, represented_step

    failed[chunk] = -1
    for k in range((n_indices * chunk) // n_chunks, (n_indices * (chunk + 1)) // n_chunks):
        i = indices[k]
        saved = theta[i]
        # The sum is formed in double and rounded once into the dtype of theta.
        theta[i] = <floating>(saved + steps[k])
        upper = theta[i]
        if _evaluate(evaluator, theta, n, chunk, i, &cost_plus) != 0:
            theta[i] = saved
            return
        theta[i] = <floating>(saved - steps[k])
        lower = theta[i]
        if _evaluate(evaluator, theta, n, chunk, i, &cost_minus) != 0:
            theta[i] = saved
            return
        # Restore the saved value itself: saved + h - h need not round back to saved.
        theta[i] = saved
        represented_step = <double>upper - <double>lower
        if not (isfinite(cost_plus) and isfinite(cost_minus)) or represented_step == 0.0:
            failed[chunk] = k
            break
        approx[k] = (cost_plus - cost_minus) / represented_step


cdef void _run_chunks(const _Evaluator *evaluator, floating[:, ::1] work,
                      const int64_t[::1] indices, const double[::1] steps, double[::1] approx,
                      int64_t[::1] failed, int n_threads) noexcept:
    """Every chunk of the check, one OpenMP iteration per chunk (static schedule, chunk size
    1), without the GIL."""
    cdef Py_ssize_t n_chunks = work.shape[0]
    cdef Py_ssize_t n = work.shape[1]
    cdef Py_ssize_t n_indices = indices.shape[0]
    cdef Py_ssize_t chunk

    if n_indices == 0:
        for chunk in range(n_chunks):
            failed[chunk] = -1
        return
    for chunk in prange(n_chunks, nogil=True, schedule="static", chunksize=1,
                        num_threads=n_threads):
        _chunk(evaluator, &work[chunk, 0], n, &indices[0], &steps[0], &approx[0], &failed[0],
               chunk, n_chunks, n_indices)


cdef int _check_arguments(Py_ssize_t n_chunks, Py_ssize_t n, const int64_t[::1] indices,
                          const double[::1] steps, double[::1] approx, int64_t[::1] failed,
                          int n_threads) except -1:
    """Raise ValueError unless the shapes agree and every index lies in [0, n)."""
    cdef Py_ssize_t k
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if steps.shape[0] != indices.shape[0]:
        raise ValueError(
            f"steps must have the length of indices ({indices.shape[0]}), got {steps.shape[0]}"
        )
    if approx.shape[0] != indices.shape[0]:
        raise ValueError(
            f"approx must have the length of indices ({indices.shape[0]}), got {approx.shape[0]}"
        )
    if failed.shape[0] != n_chunks:
        raise ValueError(
            f"failed must have length work.shape[0] ({n_chunks}), got {failed.shape[0]}"
        )
    if n_chunks == 0 and indices.shape[0] != 0:
        raise ValueError("work must have at least one row when indices is not empty")
    for k in range(indices.shape[0]):
        if indices[k] < 0 or indices[k] >= n:
            raise ValueError(
                f"indices must lie in [0, {n}) (work.shape[1]), got {indices[k]} at position {k}"
            )
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
def central_differences_c(size_t cost_address, size_t data_address, floating[:, ::1] work,
                          const int64_t[::1] indices, const double[::1] steps,
                          double[::1] approx, int64_t[::1] failed, int n_threads):
    """Two-sided differences of a C cost along the coordinates ``indices``, without the GIL.

    Mirrors ``fastgc.engines._numba_kernels._central_differences`` and
    ``fastgc.engines._reference.central_differences``.

    Parameters
    ----------
    cost_address : int
        Address of the C cost. For float64 ``work``:
        ``double cost(const double *theta, Py_ssize_t n, void *data)``; for float32 ``work``:
        ``double cost(const float *theta, Py_ssize_t n, void *data)``. It is called from
        several threads at once, each on its own row of ``work``.
    data_address : int
        Passed to the cost as ``data`` (0 passes NULL).
    work : float32 or float64 ndarray, shape (n_chunks, n), C-contiguous
        One private copy of theta per chunk; ``indices`` is split into ``n_chunks`` contiguous
        chunks run in parallel, one OpenMP iteration per chunk (static schedule, chunk size 1).
        Every row is restored exactly on return.
    indices : int64 ndarray, shape (m,)
        Coordinates to differentiate along, each in [0, n).
    steps : float64 ndarray, shape (m,)
        The step asked for each coordinate.
    approx : float64 ndarray, shape (m,)
        Output: ``(J(theta + h e_i) - J(theta - h e_i)) / (represented step)``.
    failed : int64 ndarray, shape (n_chunks,)
        Output: -1, or the first position ``k`` in the chunk where a cost was not finite or the
        step vanished in the dtype of theta; the chunk stops there.
    n_threads : int
        Number of OpenMP threads, >= 1 (ignored when compiled without OpenMP).

    Raises
    ------
    ValueError
        If ``n_threads < 1``, ``cost_address`` is 0, the lengths disagree or an index is out of
        bounds.
    """
    cdef _Evaluator evaluator

    if cost_address == 0:
        raise ValueError("cost_address must be a non-null function address, got 0")
    _check_arguments(work.shape[0], work.shape[1], indices, steps, approx, failed, n_threads)
    evaluator.cost_address = cost_address
    evaluator.data = <void *>data_address
    evaluator.python_state = NULL
    _run_chunks(&evaluator, work, indices, steps, approx, failed, n_threads)


@cython.boundscheck(False)
@cython.wraparound(False)
def central_differences_py(object evaluate, floating[:, ::1] work, const int64_t[::1] indices,
                           const double[::1] steps, double[::1] approx, int64_t[::1] failed,
                           int n_threads):
    """Two-sided differences with a Python ``evaluate(chunk, i)`` called under the GIL.

    Mirrors ``fastgc.engines._numba_kernels._central_differences`` and
    ``fastgc.engines._reference.central_differences``.

    The loop runs in an OpenMP ``prange`` over the chunks like ``central_differences_c``, but
    each call of ``evaluate`` holds the GIL, so chunks overlap only while ``evaluate`` releases
    it.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(chunk, i) -> float``: the cost evaluated on ``work[chunk]``; ``i`` is the
        coordinate being moved.
    work, indices, steps, approx, failed, n_threads
        As in ``central_differences_c``.

    Raises
    ------
    ValueError
        If ``n_threads < 1``, the lengths disagree or an index is out of bounds.
    BaseException
        The first exception raised by ``evaluate``, unchanged (``KeyboardInterrupt``
        included), once every thread has stopped and every row of ``work`` is restored.
    """
    cdef _PythonCost state = _PythonCost(evaluate)
    cdef _Evaluator evaluator

    _check_arguments(work.shape[0], work.shape[1], indices, steps, approx, failed, n_threads)
    evaluator.cost_address = 0
    evaluator.data = NULL
    evaluator.python_state = <PyObject *>state
    _run_chunks(&evaluator, work, indices, steps, approx, failed, n_threads)
    if state.error is not None:
        error = state.error
        state.error = None
        raise error


@cython.boundscheck(False)
@cython.wraparound(False)
def block_norms(const double[::1] approx, const double[::1] dtheta,
                const int64_t[::1] offsets, double[:, ::1] norms):
    """Sums of squares of ``approx - dtheta``, ``approx`` and ``dtheta`` per block.

    Mirrors ``fastgc.engines._numba_kernels.block_norms`` and
    ``fastgc.engines._reference.block_norms``,
    summing in the same order.

    Parameters
    ----------
    approx, dtheta : float64 ndarray, shape (m,)
        The finite-difference and the hand-written gradients.
    offsets : int64 ndarray, shape (n_blocks + 1,)
        Non-decreasing bounds of the blocks, within [0, m].
    norms : float64 ndarray, shape (n_blocks, 3)
        Output: per block, the squared 2-norms of the difference, of ``approx`` and of
        ``dtheta``. Non-finite entries propagate.

    Raises
    ------
    ValueError
        If the shapes disagree or ``offsets`` is not a non-decreasing sequence within [0, m].
    """
    cdef Py_ssize_t m = approx.shape[0]
    cdef Py_ssize_t n_blocks = offsets.shape[0] - 1 if offsets.shape[0] > 0 else 0
    cdef Py_ssize_t block
    cdef int64_t i
    cdef double difference, sum_difference, sum_approx, sum_dtheta

    if dtheta.shape[0] != m:
        raise ValueError(f"dtheta must have the length of approx ({m}), got {dtheta.shape[0]}")
    if norms.shape[0] != n_blocks or norms.shape[1] != 3:
        raise ValueError(
            f"norms must have shape ({n_blocks}, 3), got ({norms.shape[0]}, {norms.shape[1]})"
        )
    for block in range(offsets.shape[0]):
        if offsets[block] < 0 or offsets[block] > m or (
            block > 0 and offsets[block] < offsets[block - 1]
        ):
            raise ValueError(
                f"offsets must be non-decreasing within [0, {m}], got {offsets[block]} at "
                f"position {block}"
            )
    with nogil:
        for block in range(n_blocks):
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
# ``fastgc.engines._reference`` (SplitMix64's increment and mixer), in wrapping uint64.
cdef uint64_t _GOLDEN_GAMMA = 0x9E3779B97F4A7C15ULL
cdef uint64_t _MIX_MULTIPLIER_1 = 0xBF58476D1CE4E5B9ULL
cdef uint64_t _MIX_MULTIPLIER_2 = 0x94D049BB133111EBULL
cdef int64_t _IRWIN_HALL_CENTRE = 131070
cdef double _IRWIN_HALL_SCALE = sqrt(3.0 / (65536.0 * 65536.0 - 1.0))
cdef int64_t _GAUSSIAN = 1
cdef int64_t _RELATIVE = 2


cdef inline double _direction_entry(uint64_t seed, int64_t i, int64_t kind) noexcept nogil:
    """Entry ``i`` of the direction ``seed``: +/-1, or Gaussian-like when ``kind & 1``.

    Mirrors ``fastgc.engines._numba_kernels.direction_entry`` and
    ``fastgc.engines._reference.direction_entry``.
    """
    cdef uint64_t z = seed + (<uint64_t>i + 1) * _GOLDEN_GAMMA
    cdef uint64_t total
    z = (z ^ (z >> 30)) * _MIX_MULTIPLIER_1
    z = (z ^ (z >> 27)) * _MIX_MULTIPLIER_2
    z = z ^ (z >> 31)
    if kind & _GAUSSIAN:
        total = (z & 0xFFFF) + ((z >> 16) & 0xFFFF) + ((z >> 32) & 0xFFFF) + (z >> 48)
        return <double>(<int64_t>total - _IRWIN_HALL_CENTRE) * _IRWIN_HALL_SCALE
    return 1.0 if (z >> 63) != 0 else -1.0


cdef inline double _move(double step, uint64_t seed, int64_t i, int64_t kind,
                         double value) noexcept nogil:
    """How far entry i moves: step x v_i (x max(1, |theta_i|) for a relative step)."""
    cdef double move = step * _direction_entry(seed, i, kind)
    cdef double scale
    if kind & _RELATIVE:
        scale = fabs(value)
        move = move * (scale if scale > 1.0 else 1.0)
    return move


cdef void _directional_chunk(const _Evaluator *evaluator, floating *row, const floating *theta,
                             Py_ssize_t n, const double *dtheta, const int64_t *lo,
                             const int64_t *hi, const uint64_t *seeds, const int64_t *kinds,
                             const double *steps, double *out, int64_t *failed,
                             Py_ssize_t chunk, Py_ssize_t n_chunks,
                             Py_ssize_t n_tasks) noexcept nogil:
    """The tasks of one chunk on its private copy ``row``; stops at once when a Python cost
    raises, or at the first non-finite cost or vanished move."""
    cdef Py_ssize_t t
    cdef int64_t i, start, stop
    cdef double move, upper, lower, represented, prediction, step_squares
    cdef double cost_plus = 0.0, cost_minus = 0.0
    cdef int status

    failed[chunk] = -1
    for t in range((n_tasks * chunk) // n_chunks, (n_tasks * (chunk + 1)) // n_chunks):
        start = lo[t]
        stop = hi[t]
        prediction = 0.0
        step_squares = 0.0
        for i in range(start, stop):
            move = _move(steps[t], seeds[t], i, kinds[t], <double>theta[i])
            # Each sum is formed in double and rounded once into the dtype of theta.
            row[i] = <floating>(theta[i] + move)
            upper = <double>row[i]
            row[i] = <floating>(theta[i] - move)
            lower = <double>row[i]
            row[i] = <floating>upper
            represented = upper - lower
            prediction += dtheta[i] * represented
            step_squares += represented * represented
        status = _evaluate(evaluator, row, n, chunk, start, &cost_plus)
        if status == 0:
            for i in range(start, stop):
                row[i] = <floating>(theta[i] - _move(steps[t], seeds[t], i, kinds[t],
                                                     <double>theta[i]))
            status = _evaluate(evaluator, row, n, chunk, start, &cost_minus)
        # Restore the pristine values themselves: theta + m - m need not round back.
        for i in range(start, stop):
            row[i] = theta[i]
        if status != 0:
            return
        if not (isfinite(cost_plus) and isfinite(cost_minus)) or step_squares == 0.0:
            failed[chunk] = t
            break
        out[3 * t] = cost_plus - cost_minus
        out[3 * t + 1] = prediction
        out[3 * t + 2] = step_squares


cdef void _run_directional(const _Evaluator *evaluator, floating[:, ::1] work,
                           const floating[::1] theta, const double[::1] dtheta,
                           const int64_t[::1] lo, const int64_t[::1] hi,
                           const uint64_t[::1] seeds, const int64_t[::1] kinds,
                           const double[::1] steps, double[:, ::1] out, int64_t[::1] failed,
                           int n_threads) noexcept:
    """Every chunk of tasks, one OpenMP iteration per chunk (static schedule, chunk size 1),
    without the GIL."""
    cdef Py_ssize_t n_chunks = work.shape[0]
    cdef Py_ssize_t n = work.shape[1]
    cdef Py_ssize_t n_tasks = lo.shape[0]
    cdef Py_ssize_t chunk

    if n_tasks == 0 or n == 0:
        for chunk in range(n_chunks):
            failed[chunk] = -1
        if n_tasks != 0:  # every range is empty: every move vanished
            failed[0] = 0
        return
    for chunk in prange(n_chunks, nogil=True, schedule="static", chunksize=1,
                        num_threads=n_threads):
        _directional_chunk(evaluator, &work[chunk, 0], &theta[0], n, &dtheta[0], &lo[0],
                           &hi[0], &seeds[0], &kinds[0], &steps[0], &out[0, 0], &failed[0],
                           chunk, n_chunks, n_tasks)


cdef int _check_directional(Py_ssize_t n_chunks, Py_ssize_t n, Py_ssize_t theta_n,
                            Py_ssize_t dtheta_n, const int64_t[::1] lo, const int64_t[::1] hi,
                            Py_ssize_t seeds_n, Py_ssize_t kinds_n, Py_ssize_t steps_n,
                            double[:, ::1] out, Py_ssize_t failed_n, int n_threads) except -1:
    """Raise ValueError unless the shapes agree and every range lies within [0, n]."""
    cdef Py_ssize_t t, n_tasks = lo.shape[0]
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if theta_n != n or dtheta_n != n:
        raise ValueError(
            f"theta and dtheta must have length work.shape[1] ({n}), got {theta_n} and "
            f"{dtheta_n}"
        )
    for name, length in (("hi", hi.shape[0]), ("seeds", seeds_n), ("kinds", kinds_n),
                         ("steps", steps_n)):
        if length != n_tasks:
            raise ValueError(f"{name} must have the length of lo ({n_tasks}), got {length}")
    if out.shape[0] != n_tasks or out.shape[1] != 3:
        raise ValueError(
            f"out must have shape ({n_tasks}, 3), got ({out.shape[0]}, {out.shape[1]})"
        )
    if failed_n != n_chunks:
        raise ValueError(f"failed must have length work.shape[0] ({n_chunks}), got {failed_n}")
    if n_chunks == 0 and n_tasks != 0:
        raise ValueError("work must have at least one row when there are tasks")
    for t in range(n_tasks):
        if lo[t] < 0 or hi[t] < lo[t] or hi[t] > n:
            raise ValueError(
                f"task ranges must satisfy 0 <= lo <= hi <= {n} (work.shape[1]), got "
                f"[{lo[t]}, {hi[t]}) at position {t}"
            )
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
def directional_differences_c(size_t cost_address, size_t data_address, floating[:, ::1] work,
                              const floating[::1] theta, const double[::1] dtheta,
                              const int64_t[::1] lo, const int64_t[::1] hi,
                              const uint64_t[::1] seeds, const int64_t[::1] kinds,
                              const double[::1] steps, double[:, ::1] out,
                              int64_t[::1] failed, int n_threads):
    """Two-sided differences of a C cost along seeded random directions, without the GIL.

    Mirrors ``fastgc.engines._numba_kernels._directional_differences`` (which documents the
    arguments and outputs) and ``fastgc.engines._reference.directional_differences``.

    Parameters
    ----------
    cost_address, data_address : int
        As in ``central_differences_c``.
    work : float32 or float64 ndarray, shape (n_chunks, n), C-contiguous
        One private copy of theta per chunk, each restored exactly on return.
    theta : ndarray, shape (n,), dtype of ``work``
        The pristine parameters.
    dtheta : float64 ndarray, shape (n,)
    lo, hi, kinds : int64 ndarray, shape (T,)
    seeds : uint64 ndarray, shape (T,)
    steps : float64 ndarray, shape (T,)
    out : float64 ndarray, shape (T, 3)
    failed : int64 ndarray, shape (n_chunks,)
    n_threads : int
        Number of OpenMP threads, >= 1.

    Raises
    ------
    ValueError
        If ``n_threads < 1``, ``cost_address`` is 0, the shapes disagree or a range is out of
        bounds.
    """
    cdef _Evaluator evaluator

    if cost_address == 0:
        raise ValueError("cost_address must be a non-null function address, got 0")
    _check_directional(work.shape[0], work.shape[1], theta.shape[0], dtheta.shape[0], lo, hi,
                       seeds.shape[0], kinds.shape[0], steps.shape[0], out, failed.shape[0],
                       n_threads)
    evaluator.cost_address = cost_address
    evaluator.data = <void *>data_address
    evaluator.python_state = NULL
    _run_directional(&evaluator, work, theta, dtheta, lo, hi, seeds, kinds, steps, out, failed,
                     n_threads)


@cython.boundscheck(False)
@cython.wraparound(False)
def directional_differences_py(object evaluate, floating[:, ::1] work,
                               const floating[::1] theta, const double[::1] dtheta,
                               const int64_t[::1] lo, const int64_t[::1] hi,
                               const uint64_t[::1] seeds, const int64_t[::1] kinds,
                               const double[::1] steps, double[:, ::1] out,
                               int64_t[::1] failed, int n_threads):
    """Directional differences with a Python ``evaluate(chunk, i)`` called under the GIL.

    Mirrors ``fastgc.engines._numba_kernels._directional_differences`` and
    ``fastgc.engines._reference.directional_differences``; ``i`` is the first index of the
    task's range. Arguments as in ``directional_differences_c``.

    Raises
    ------
    ValueError
        If ``n_threads < 1``, the shapes disagree or a range is out of bounds.
    BaseException
        The first exception raised by ``evaluate``, unchanged, once every thread has stopped
        and every row of ``work`` is restored.
    """
    cdef _PythonCost state = _PythonCost(evaluate)
    cdef _Evaluator evaluator

    _check_directional(work.shape[0], work.shape[1], theta.shape[0], dtheta.shape[0], lo, hi,
                       seeds.shape[0], kinds.shape[0], steps.shape[0], out, failed.shape[0],
                       n_threads)
    evaluator.cost_address = 0
    evaluator.data = NULL
    evaluator.python_state = <PyObject *>state
    _run_directional(&evaluator, work, theta, dtheta, lo, hi, seeds, kinds, steps, out, failed,
                     n_threads)
    if state.error is not None:
        error = state.error
        state.error = None
        raise error
