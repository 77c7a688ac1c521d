"""The thread count: its one meaning, the global default, and the thread state of a run.

``n_threads`` means: None, the default (``fastgc.set_num_threads``, ``fastgc.threads``, the
``FASTGC_NUM_THREADS`` environment variable, else every usable core for a compiled cost and one
thread for a Python callable, which may keep state between calls); a positive int, that many
threads; a negative int counts back from the usable maximum (-1 = all, -2 = all but one); 0 is
an error; a count above the usable maximum is clamped to it with a :class:`FastGCWarning`.
"Usable" respects the CPU affinity mask, the cgroup CPU quota and ``NUMBA_NUM_THREADS`` /
``OMP_NUM_THREADS`` when they are set. When no count was given anywhere, a check whose
evaluations take less than :data:`SERIAL_BELOW_SECONDS` in all runs on one thread
(:func:`threads_for_work`): a parallel region would cost more than it saves.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import numbers
import os
import signal
import sys
import threading
import warnings
from typing import Any, Iterator

from ._errors import FastGCWarning, InvalidInputError

# The process-wide default of set_num_threads, seen by checks started in any thread, and the
# override of a ``with threads(...)`` block, which belongs to the code inside that block.
_global_default: int | None = None
_UNSET = object()
_block_default: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "fastgc_num_threads", default=_UNSET
)


def _current_default() -> int | None:
    value = _block_default.get()
    return _global_default if value is _UNSET else value


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
        n_threads = _current_default()
    if n_threads is None:
        n_threads = _environment_default()
    if n_threads is None:
        return usable_threads() if unset is None else unset
    return count_threads(n_threads)


# A parallel region costs tens of microseconds to start on a quiet machine, milliseconds on a
# busy one, and a compilation of its kernel the first time: below this much work, one thread
# is faster.
SERIAL_BELOW_SECONDS = 0.01


def threads_for_work(n_threads: int, requested: int | None, work_seconds: float) -> int:
    """``n_threads`` (as resolved), or one thread when no count was given anywhere (argument
    ``requested``, ``set_num_threads``/``threads``, ``FASTGC_NUM_THREADS``) and the run's
    evaluations take under :data:`SERIAL_BELOW_SECONDS` on one thread."""
    if requested is not None or work_seconds >= SERIAL_BELOW_SECONDS:
        return n_threads
    if _current_default() is not None or _environment_default() is not None:
        return n_threads
    return 1


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
            stacklevel=_caller_stacklevel(),
        )
        return maximum
    return n_threads


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of ``warnings.warn`` called here that points at the first frame
    outside fastgc: the user's line, however deep the call went inside the package."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _PACKAGE_DIR + os.sep
    ):
        frame, level = frame.f_back, level + 1
    return level


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

    The default is the process's: it holds for checks started in any thread (a ``with
    threads(...)`` block still overrides it inside the block).

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
    global _global_default
    _global_default = None if n_threads is None else _validate(n_threads)


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

    The block's default holds for the code inside it (its thread or task), above the
    process-wide :func:`set_num_threads`.

    Examples
    --------
    >>> import fastgc
    >>> with fastgc.threads(1):
    ...     fastgc.get_num_threads()
    1
    """
    token = _block_default.set(None if n_threads is None else _validate(n_threads))
    try:
        yield resolve_n_threads(None)
    finally:
        _block_default.reset(token)


# The main thread's identifier, read once (and again in a forked child, whose main thread is
# the one that forked): a check asks which thread it runs in about ten times.
_main_thread_ident = threading.main_thread().ident


def in_main_thread() -> bool:
    # By identifier: the same answer as comparing thread objects, without looking this one up.
    return threading.get_ident() == _main_thread_ident


# --------------------------------------------------------------------------------------------
# Forked children.

_forked = False


def in_forked_child() -> bool:
    """Whether this process was forked (``os.fork``, ``multiprocessing``'s fork start method)
    from one that had imported fastgc.

    GNU OpenMP's thread pool does not survive a fork: a parallel region started in the child
    deadlocks (the Cython engine) or aborts the process (Numba's ``omp`` layer). A forked
    child therefore runs those engines serially, with the same results.
    """
    return _forked


def forked_from_a_clean_parent() -> None:
    """Declare this forked process's parent free of thread pools: a fork server, which only
    imports modules and forks, never starts one. Its children run parallel regions as any
    process does."""
    global _forked
    _forked = False


def _after_fork_in_child() -> None:
    global _forked, _blas_cap_lock, _blas_cap_holders, _blas_cap, _cap_held_here
    global _main_thread_ident
    _forked = True
    # threading's own after-fork hook, registered before this one, ran first.
    _main_thread_ident = threading.main_thread().ident
    # The threads that held the BLAS cap or its lock did not come along.
    _blas_cap_lock = threading.Lock()
    _blas_cap_holders, _blas_cap = 0, None
    _cap_held_here = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class numba_threads:
    """Numba's thread count for this thread set to ``n_threads``, restored on exit.

    Set and restored with Ctrl-C deferred, so that an interrupt cannot fall between reading
    the count and restoring it. A class rather than a generator: a check enters it every time.
    """

    __slots__ = ("_wanted", "_previous")

    def __init__(self, n_threads: int) -> None:
        self._wanted, self._previous = n_threads, None

    def __enter__(self) -> None:
        import numba

        wanted = min(self._wanted, numba.config.NUMBA_NUM_THREADS)
        current = numba.get_num_threads()  # per thread: nothing else changes it meanwhile
        if current == wanted:  # nothing to set, nothing to restore
            return
        try:
            with interrupts_deferred():
                self._previous = current
                numba.set_num_threads(wanted)
        except BaseException:  # an interrupt delivered as the deferral ends: restore first
            self.__exit__()
            raise

    def __exit__(self, *exc_info: Any) -> None:
        previous, self._previous = self._previous, None
        if previous is not None:
            import numba

            with interrupts_deferred():
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


class _BlasCap:
    """Every BLAS library of a threadpoolctl controller set to one thread, and what each had.

    What threadpoolctl's ``limit`` does for these libraries, without building its description
    of every library (version, paths, ...) on each entry: a check would pay that twice.
    """

    __slots__ = ("_found",)

    def __init__(self, controller: Any) -> None:
        self._found = [(library, library.num_threads) for library in controller.lib_controllers]
        for library, num_threads in self._found:
            if num_threads != 1:  # one already on one thread is left as it is
                library.set_num_threads(1)

    def restore(self) -> None:
        """Give every library back the thread count it had (also one that was on one thread
        already, in case the cost changed it meanwhile)."""
        for library, num_threads in self._found:
            library.set_num_threads(num_threads)


_blas_cap_lock = threading.Lock()
_blas_cap_holders = 0  # how many checks in this process are inside blas_limited
_blas_cap: _BlasCap | None = None  # the cap, which restores the settings it found
# Whether the calling thread is inside blas_limited already: a block nested in it (a session
# opened inside a check) is then covered by the outer one, which restores the settings.
_cap_held_here = threading.local()


class blas_limited:
    """BLAS/OpenMP pools inside the cost capped at one thread for as long as a check runs.

    Always, whatever the check's own thread count: a threaded BLAS sums in an order that
    depends on its thread count, so capping it only for parallel checks would make the numeric
    gradients depend on ``n_threads``. The BLAS thread count is process-wide: of overlapping
    checks (from a thread pool, or nested), the first caps it and the last to leave restores
    what the first found, so no check runs uncapped while another still needs the cap. Entry
    and exit run with Ctrl-C deferred, so an interrupt cannot leave the cap behind. A block
    inside another in the same thread does nothing: the outer block holds the cap throughout.
    A class rather than a generator: a check enters it twice.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = False

    def __enter__(self) -> None:
        if getattr(_cap_held_here, "held", False):
            return
        try:
            with interrupts_deferred():
                _hold_blas_cap()
                self._held = _cap_held_here.held = True
        except BaseException:  # an interrupt delivered as the deferral ends: release first
            self.__exit__()
            raise

    def __exit__(self, *exc_info: Any) -> None:
        if self._held:
            self._held = False
            with interrupts_deferred():
                _cap_held_here.held = False
                _release_blas_cap()


def _hold_blas_cap() -> None:
    global _blas_cap_holders, _blas_cap
    with _blas_cap_lock:
        if _blas_cap_holders == 0:
            _blas_cap = _BlasCap(_blas_controller())
        _blas_cap_holders += 1


def _release_blas_cap() -> None:
    global _blas_cap_holders, _blas_cap
    with _blas_cap_lock:
        _blas_cap_holders -= 1
        if _blas_cap_holders == 0:
            cap, _blas_cap = _blas_cap, None
            # threadpoolctl lets one thread at a time set a shared OpenBLAS pool: the last
            # check to leave may run in another thread than the first, which set the cap.
            _clear_openblas_control(force=True)
            cap.restore()  # type: ignore[union-attr]
            _clear_openblas_control(force=False)  # others may set it again, as before


def _clear_openblas_control(force: bool) -> None:
    """Let any thread set OpenBLAS's shared pool again (``force``: whichever thread holds
    it; else only if this one does), as threadpoolctl's own limiter does when it leaves."""
    clear = _openblas_control_clearer()
    if clear is not None:
        clear(force=force)


@functools.lru_cache(maxsize=1)
def _openblas_control_clearer() -> Any:
    """threadpoolctl's ``clear_controlling_thread``, or None for an older threadpoolctl, which
    lets any thread set the limit."""
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:
        return None
    return getattr(OpenBLASController, "clear_controlling_thread", None)


# --------------------------------------------------------------------------------------------
# Ctrl-C kept away from code that must not be interrupted half-way.

_deferring = threading.local()

try:  # the C functions under the signal module, without its conversions to enums (slow)
    import _signal as _raw_signal
except ImportError:  # pragma: no cover - not CPython
    _raw_signal = signal  # type: ignore[assignment]


class _Watch:
    """The state of the SIGINT handler a check installs once (:class:`interrupts_watched`);
    only the main thread, which alone receives signals, reads or changes it."""

    __slots__ = ("previous", "received")

    def __init__(self) -> None:
        self.previous: Any = None  # the handler the watch replaced, while it is installed
        self.received: list[Any] = []  # frames of interrupts waiting for a deferral's end


_watch = _Watch()
_WATCHED = object()  # an interrupts_deferred block that only raised the flag


def _on_watched_interrupt(signum: int, frame: Any) -> None:
    """SIGINT under a check's watch: recorded inside a deferred block (or in the watch's own
    entry or exit, which must run whole), else handed at once to the handler in place."""
    if getattr(_deferring, "active", False) or (
        frame is not None and frame.f_code in _WATCH_CODES
    ):
        _watch.received.append(frame)
    else:
        _deliver(_watch.previous, frame)


class interrupts_watched:
    """One SIGINT handler for as long as a check runs, so that the blocks deferring Ctrl-C
    inside it (:class:`interrupts_deferred`, a dozen per check) raise a flag instead of
    replacing the handler twice each.

    Outside those blocks an interrupt goes at once to the handler that was in place, as it
    would without the watch; inside one, it waits for the block's end. The handler in place
    comes back on leaving, also when the check was interrupted. The watch is installed only in
    the main thread, under a Python handler (``KeyboardInterrupt``'s by default), outside any
    other watch or deferral; elsewhere the blocks inside defer as they do alone.
    """

    __slots__ = ("_installed",)

    def __enter__(self) -> None:
        self._installed = False
        if (not in_main_thread() or _watch.previous is not None
                or getattr(_deferring, "active", False)):
            return
        try:
            previous = _raw_signal.getsignal(signal.SIGINT)
        except ValueError:  # pragma: no cover - signals unavailable here
            return
        if not callable(previous):  # SIG_DFL, SIG_IGN or a handler installed from C
            return
        _watch.received = []  # nothing left over from an exit that was interrupted
        # The handler before the state: an interrupt landing in between is in this method,
        # so it is recorded, for the end of the first deferral or of the watch.
        _raw_signal.signal(signal.SIGINT, _on_watched_interrupt)
        _watch.previous = previous
        self._installed = True

    def __exit__(self, *exc_info: Any) -> None:
        if not self._installed:
            return
        self._installed = False
        previous, _watch.previous = _watch.previous, None
        _raw_signal.signal(signal.SIGINT, previous)
        # Swapped, not cleared: a frame appended meanwhile cannot be lost.
        frames, _watch.received = _watch.received, []
        # An interrupt already on its way out stands for those recorded.
        if frames and not isinstance(exc_info[1], KeyboardInterrupt):
            _deliver(previous, frames[0])


_WATCH_CODES = frozenset(
    (interrupts_watched.__enter__.__code__, interrupts_watched.__exit__.__code__)
)


class interrupts_deferred:
    """Ctrl-C (SIGINT) recorded, not raised, inside the block, and delivered when it ends.

    For code that an interrupt must not cut in two: a thread setting and its restoration, and
    the Numba compiler, whose state a ``KeyboardInterrupt`` raised half-way through can corrupt
    (a crash of the process at the next compilation). Only the main thread receives signals,
    so elsewhere, and inside an enclosing deferral, the block runs as it is. At the end, a
    recorded interrupt goes to the handler that was in place (``KeyboardInterrupt`` by
    default), once however many arrived. Under a check's :class:`interrupts_watched`, whose
    handler does the recording, the block only raises a flag.

    A class rather than a generator: a check enters it a dozen times, and this is cheaper.
    """

    __slots__ = ("_previous", "_received")

    def __enter__(self) -> None:
        self._previous: Any = None
        if not in_main_thread() or getattr(_deferring, "active", False):
            return
        if _watch.previous is not None:  # the watch's handler records for this block
            self._previous = _WATCHED
            _deferring.active = True
            return
        try:
            previous = _raw_signal.getsignal(signal.SIGINT)
        except ValueError:  # pragma: no cover - signals unavailable here
            return
        if previous is None:  # a handler installed from C: leave it alone
            return
        received: list[Any] = []
        _raw_signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
        self._previous, self._received = previous, received
        _deferring.active = True

    def __exit__(self, *exc_info: Any) -> None:
        previous = self._previous
        if previous is None:
            return
        self._previous = None
        if previous is _WATCHED:
            # Taken while the flag still records (also one that landed in the watch's entry);
            # one arriving after the swap waits for the next deferral or the watch's end.
            frames, _watch.received = _watch.received, []
            _deferring.active = False
            if frames:
                _deliver(_watch.previous, frames[0])
            return
        _deferring.active = False
        _raw_signal.signal(signal.SIGINT, previous)
        if self._received:
            _deliver(previous, self._received[0])


def _deliver(handler: Any, frame: Any) -> None:
    """Hand a deferred SIGINT to the handler that was in place."""
    if callable(handler):
        handler(signal.SIGINT, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)
