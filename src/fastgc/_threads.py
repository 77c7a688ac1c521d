"""The thread count: its one meaning, the global default, and the thread state of a run.

``n_threads`` means: None, the default (``fastgc.set_num_threads``, ``fastgc.threads``, the
``FASTGC_NUM_THREADS`` environment variable, else every usable core for a compiled cost and one
thread for a Python callable, which may keep state between calls); a positive int, that many
threads; a negative int counts back from the usable maximum (-1 = all, -2 = all but one); 0 is
an error; a count above the usable maximum is clamped to it with a :class:`FastGCWarning`.
"Usable" respects the CPU affinity mask, the cgroup CPU quota and ``NUMBA_NUM_THREADS`` /
``OMP_NUM_THREADS`` when they are set.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import numbers
import os
import sys
import threading
import warnings
from typing import Iterator

from ._errors import FastGCWarning, InvalidInputError

_default: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "fastgc_num_threads", default=None
)


def usable_threads() -> int:
    """The most threads a check may use on this machine and in this process."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, quota)
    for variable in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            count = min(count, int(value))
    return max(1, count)


@functools.lru_cache(maxsize=1)
def _cgroup_cpu_quota() -> int | None:
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            return max(1, math.floor(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return None


def _validate(n_threads: object, name: str = "n_threads") -> int:
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise InvalidInputError(
            f"{name} must be None or an int, got {type(n_threads).__name__} {n_threads!r}"
        )
    if n_threads == 0:
        raise InvalidInputError(
            f"{name} must not be 0: use None for all usable cores, a positive count, or a "
            "negative count back from the maximum (-1 = all)"
        )
    return int(n_threads)


def resolve_n_threads(n_threads: int | None = None, unset: int | None = None) -> int:
    """The number of threads a run will use, following the documented meaning.

    ``unset`` replaces "every usable core" when no count was given anywhere (argument,
    ``set_num_threads``/``threads``, ``FASTGC_NUM_THREADS``).
    """
    if n_threads is None:
        n_threads = _default.get()
    if n_threads is None:
        n_threads = _environment_default()
    if n_threads is None:
        return usable_threads() if unset is None else unset
    return count_threads(n_threads)


def count_threads(n_threads: object, name: str = "n_threads", clamp: bool = True) -> int:
    """A thread count given as an int: negative counts back from the usable maximum; above
    it, clamped with a warning (or, with ``clamp=False``, an error)."""
    n_threads = _validate(n_threads, name)
    maximum = usable_threads()
    if n_threads < 0:
        if maximum + 1 + n_threads < 1:
            raise InvalidInputError(
                f"{name}={n_threads} counts back past the {maximum} usable thread(s)"
            )
        return maximum + 1 + n_threads
    if n_threads > maximum:
        if not clamp:
            raise InvalidInputError(
                f"{name}={n_threads} is more than the {maximum} usable thread(s)"
            )
        warnings.warn(
            f"{name}={n_threads} is more than the {maximum} usable thread(s); using "
            f"{maximum}",
            FastGCWarning,
            stacklevel=4,
        )
        return maximum
    return n_threads


def _environment_default() -> int | None:
    value = os.environ.get("FASTGC_NUM_THREADS", "").strip()
    if not value:
        return None
    try:
        count = int(value)
    except ValueError:
        raise InvalidInputError(
            f"FASTGC_NUM_THREADS must be an integer, got {value!r}"
        ) from None
    return _validate(count, "FASTGC_NUM_THREADS")


def set_num_threads(n_threads: int | None) -> None:
    """Set the default thread count of later checks (None restores the automatic choice).

    Parameters
    ----------
    n_threads : int or None
        As the ``n_threads`` argument of :func:`fastgc.check`.

    Examples
    --------
    >>> import fastgc
    >>> fastgc.set_num_threads(1)
    >>> fastgc.get_num_threads()
    1
    >>> fastgc.set_num_threads(None)
    """
    _default.set(None if n_threads is None else _validate(n_threads))


def get_num_threads() -> int:
    """The thread count a check started now with ``n_threads=None`` would use.

    Examples
    --------
    >>> import fastgc
    >>> fastgc.get_num_threads() >= 1
    True
    """
    return resolve_n_threads(None)


@contextlib.contextmanager
def threads(n_threads: int | None) -> Iterator[int]:
    """Use ``n_threads`` as the default inside a ``with`` block, then restore the previous one.

    Examples
    --------
    >>> import fastgc
    >>> with fastgc.threads(1):
    ...     fastgc.get_num_threads()
    1
    """
    token = _default.set(None if n_threads is None else _validate(n_threads))
    try:
        yield resolve_n_threads(None)
    finally:
        _default.reset(token)


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def numba_threads(n_threads: int) -> Iterator[None]:
    """Numba's thread count for this thread set to ``n_threads``, restored on exit."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


_controller: tuple[int, object] | None = None


def _blas_controller() -> object:
    """A cached threadpoolctl controller of the loaded BLAS libraries (finding them takes about
    a millisecond); looked for again whenever modules were imported since, as they may load a
    new BLAS."""
    global _controller
    if _controller is None or _controller[0] != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        _controller = (len(sys.modules), ThreadpoolController().select(user_api="blas"))
    return _controller[1]


_blas_cap_lock = threading.Lock()
_blas_capped = False  # whether a check in this process holds the BLAS cap


@contextlib.contextmanager
def blas_limited(n_threads: int) -> Iterator[None]:
    """Cap BLAS/OpenMP pools inside the cost at one thread while several of ours run.

    The BLAS thread count is process-wide: of overlapping checks (from a thread pool), only
    the one that found it uncapped caps and restores it, so none restores another's cap.
    """
    global _blas_capped
    if n_threads <= 1:
        yield
        return
    with _blas_cap_lock:
        owner, _blas_capped = not _blas_capped, True
    if not owner:
        yield
        return
    try:
        # threadpoolctl's limiter, not direct calls: it also hands back control of a shared
        # OpenBLAS pool, which it grants to one thread at a time.
        with _blas_controller().limit(limits=1, user_api="blas"):  # type: ignore[attr-defined]
            yield
    finally:
        with _blas_cap_lock:
            _blas_capped = False
