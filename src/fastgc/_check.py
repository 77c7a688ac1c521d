"""``fastgc.check``: validate, run the engine in rounds, diagnose, report."""

from __future__ import annotations

import contextlib
import importlib
import math
import numbers
import time
import weakref
from typing import Any, Callable, Iterator

import numpy as np

from . import _reference
from ._diagnosis import (
    diagnose,
    lecture_difference,
    measure_roundoff,
    signature_crossing,
)
from ._engines import (
    Cost,
    block_norms,
    chunk_count,
    cost_value,
    is_numba_dispatcher,
    make_runner,
    resolve_engine,
)
from ._errors import CostError, CostTypeError, EngineError, InvalidInputError
from ._layout import Layout, flatten, flatten_gradients
from ._result import CheckResult
from ._steps import StepRule, choose_steps
from ._threads import blas_limited, in_main_thread, numba_threads, resolve_n_threads

# Each round of the compiled loop lasts about this long, so that the progress bar moves and
# Ctrl-C is answered promptly without the per-round overhead showing.
ROUND_SECONDS = 0.25
# Rounds stay small enough that their index and step arrays cost no memory to speak of.
MAX_ROUND = 1 << 16
PROGRESS_AFTER_SECONDS = 3.0


def check(
    cost: Callable[..., float],
    params: Any,
    grads: Any,
    *,
    args: tuple = (),
    eps: float | None = None,
    thresholds: tuple[float, float] = (1e-7, 1e-3),
    n_threads: int | None = None,
    engine: str | None = None,
    progress: bool | None = None,
    signature: Callable[..., Any] | None = None,
    reseed: Callable[[], Any] | None = None,
) -> CheckResult:
    """Check analytic gradients against two-sided finite differences of the cost.

    For every entry theta[i] of the flattened parameters, the cost is evaluated at
    theta[i] + h and theta[i] - h on a private copy (restored exactly after each entry), and
    ``(J+ - J-) / (represented step)`` is compared with the analytic gradient, overall, per
    parameter and per component.

    Parameters
    ----------
    cost : callable
        ``cost(params, *args) -> float``, called with views into fastgc's working copy in the
        structure of ``params`` (nothing is copied per evaluation; do not write into them).
        An ``@numba.njit`` function is called as ``cost(theta, *args)`` with the flat theta
        (see :func:`flatten` for the offsets) and runs in the compiled parallel engine. A
        Numba ``@cfunc`` or ctypes function ``double cost(const double *theta, Py_ssize_t n,
        void *data)`` (``const float *`` for float32) runs in the Cython engine without the GIL.
    params : dict, nested dicts, list, tuple or ndarray
        The parameters: float32 or float64 arrays of any shape (a dict's order is the
        flattening order, W1, b1, ..., WL, bL), or a single array theta. Never modified.
    grads : same structure as params, flat ndarray, or callable
        The analytic gradients. Dict keys equal the parameter names or carry the "d" prefix
        ("dW1"). A callable is called once as ``grads(params, *args)``. Entries that match no
        parameter (intermediates such as "dZ2") are ignored and listed in the report, as long
        as every parameter has its gradient.
    args : tuple, optional
        Extra arguments passed to ``cost`` (and to ``grads`` when it is callable).
    eps : float, optional
        The step. Default: 1e-7 for float64 (the lecture value), ``2**-8 * max(1, |theta_i|)``
        for float32, where 1e-7 would be lost in round-off. A given eps is used as is.
    thresholds : (float, float), default (1e-7, 1e-3)
        A difference at or below the first is correct, at or above the second a bug, between
        suspicious. For float32 they are raised to what that precision can attain.
    n_threads : int, optional
        None: the default (:func:`set_num_threads`, ``FASTGC_NUM_THREADS``, else all usable
        cores for a compiled cost and 1 for a Python callable, which may keep state between
        calls and mostly holds the GIL); negative counts back from the maximum (-1 = all); 0 is
        an error. A Python cost run on several threads must be thread-safe.
    engine : {"auto", "numba", "cython", "python"}, optional
        Default: ``FASTGC_ENGINE``, else auto (numba for an njit cost, then cython, then python).
    progress : bool, optional
        Show a progress bar; by default shown when the check is expected to take over 3 s.
    signature : callable, optional
        ``signature(params) -> array(s)`` that changes when a non-differentiable point is crossed
        (for example the ReLU masks); used to recognise kinks exactly.
    reseed : callable, optional
        Called before every evaluation of the cost, for stochastic costs (dropout): reset the
        random generator there. Runs the serial Python engine.

    Returns
    -------
    CheckResult
        ``verdict``, ``difference``, ``per_parameter``, ``worst(k)``, ``numerical_grads``,
        ``raise_if_failed()``; ``print(result)`` shows the report.

    Raises
    ------
    InvalidInputError, InvalidDtypeError
        Malformed params, grads or options; the message names the parameter and index.
    CostError
        The cost raised, or returned a non-finite or non-scalar value (the index is named).
    EngineError
        The requested engine is not installed or cannot run this cost.

    Examples
    --------
    >>> import numpy as np, fastgc
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((3, 5))
    >>> params = {"W1": rng.standard_normal((2, 3)), "b1": np.zeros((2, 1))}
    >>> def cost(p):
    ...     return float(np.sum(np.tanh(p["W1"] @ X + p["b1"]) ** 2) / 5)
    >>> def grads(p):
    ...     A = np.tanh(p["W1"] @ X + p["b1"])
    ...     dZ = 2 * A * (1 - A**2) / 5
    ...     return {"dW1": dZ @ X.T, "db1": dZ.sum(axis=1, keepdims=True)}
    >>> result = fastgc.check(cost, params, grads, progress=False)
    >>> result.verdict
    <Verdict.CORRECT: 'correct'>
    >>> bad = fastgc.check(cost, params, lambda p: {**grads(p), "db1": -grads(p)["db1"]},
    ...                    progress=False)
    >>> bad.verdict == "bug", bad.worst_parameter().name
    (True, 'b1')
    """
    started = time.perf_counter()
    theta, layout = flatten(params)
    args = _validate_args(args)
    eps = _validate_eps(eps)
    thresholds = _validate_thresholds(thresholds)
    if progress is not None and not isinstance(progress, bool):
        raise InvalidInputError(f"progress must be None, True or False, got {progress!r}")
    for name, hook in (("signature", signature), ("reseed", reseed)):
        if hook is not None and not callable(hook):
            raise InvalidInputError(f"{name} must be callable, got {type(hook).__name__}")

    cost_ = Cost.classify(cost, args, layout)
    if reseed is not None:
        cost_.reseed = reseed
        if engine not in (None, "auto", "python"):
            raise EngineError(
                f"reseed is called before every evaluation, which only the serial Python engine "
                f"can do; pass engine='python' (or leave engine unset), not {engine!r}"
            )
        engine = "python"
    dtheta, ignored_gradients = _analytic_gradients(grads, theta, layout, args)
    # A Python cost may keep state between calls (a layer caching its activations), so it
    # runs on several threads only when a count was asked for.
    n_threads = resolve_n_threads(n_threads, unset=1 if cost_.kind == "python" else None)
    engine_name = resolve_engine(engine, cost_)
    parallel = _parallel_allowed(engine_name)
    n_chunks = chunk_count(engine_name, n_threads) if parallel else 1
    steps = choose_steps(theta, eps)

    cost_at_theta, seconds_per_cost, compile_seconds = _baseline(cost_, theta)
    work = np.empty((n_chunks, layout.size), dtype=layout.dtype)
    work[:] = theta
    run = make_runner(engine_name, cost_, work, parallel)
    approx = np.empty(layout.size, dtype=np.float64)
    with _thread_state(engine_name, n_chunks):
        compile_seconds += _warm_up(run, engine_name, cost_, work, parallel)
        _run_rounds(run, cost_, theta, work, steps, approx, seconds_per_cost, progress)
    del run, work  # free the per-thread copies before the diagnosis allocates

    norms = block_norms(engine_name, approx, dtheta, layout.offsets)
    difference = lecture_difference(norms)
    crossed = None
    if signature is not None:
        crossed = signature_crossing(signature, _structure_for(cost_), theta)
    prober = _Prober(cost_, theta)

    def roundoff() -> float:
        sample = np.unique(np.linspace(0, layout.size - 1, min(4, layout.size)).astype(np.int64))
        return measure_roundoff(prober.near, cost_at_theta, sample, steps)

    diagnosis = diagnose(
        approx, dtheta, layout, steps, cost_at_theta, thresholds, norms,
        probe=prober.probe, crossed=crossed, measure_roundoff=roundoff,
    )
    return CheckResult(
        verdict=diagnosis.verdict,
        difference=difference,
        per_parameter=diagnosis.per_parameter,
        approx=approx,
        dtheta=dtheta,
        layout=layout,
        thresholds=diagnosis.thresholds,
        step_description=steps.description,
        noise_floor=diagnosis.noise_floor,
        engine=engine_name,
        n_threads=n_chunks,
        seconds=time.perf_counter() - started - compile_seconds,
        compile_seconds=compile_seconds,
        n_evaluations=2 * layout.size + 2 + prober.evaluations,
        labels=diagnosis.labels,
        corrected=diagnosis.corrected,
        ignored_gradients=ignored_gradients,
        _scores=diagnosis.scores,
    )


def _validate_args(args: Any) -> tuple:
    if not isinstance(args, tuple):
        raise InvalidInputError(
            f"args must be a tuple of extra cost arguments, got {type(args).__name__} "
            "(write args=(X, Y), or args=(X,) for one)"
        )
    return args


def _validate_eps(eps: Any) -> float | None:
    if eps is None:
        return None
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise InvalidInputError(f"eps must be a positive float, got {type(eps).__name__} {eps!r}")
    if not math.isfinite(eps) or eps <= 0:
        raise InvalidInputError(f"eps must be positive and finite, got {eps!r}")
    return float(eps)


def _validate_thresholds(thresholds: Any) -> tuple[float, float]:
    try:
        correct, bug = (float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"thresholds must be two numbers (correct, bug), got {thresholds!r}"
        ) from None
    if not (0 < correct < bug and math.isfinite(bug)):
        raise InvalidInputError(
            f"thresholds must satisfy 0 < correct < bug < inf, got {thresholds!r}"
        )
    return correct, bug


def _analytic_gradients(
    grads: Any, theta: np.ndarray, layout: Layout, args: tuple
) -> tuple[np.ndarray, tuple[str, ...]]:
    """dtheta, and the names of gradient entries that match no parameter (ignored)."""
    if callable(grads) and not isinstance(grads, np.ndarray):
        snapshot = theta.copy()
        target = snapshot if is_numba_dispatcher(grads) else layout.unflatten(snapshot)
        try:
            grads = grads(target, *args)
        except Exception as error:
            raise InvalidInputError(
                f"grads(params) raised {type(error).__name__}: {error}"
            ) from error
    return flatten_gradients(grads, layout)


def _structure_for(cost: Cost) -> Callable[[np.ndarray], Any]:
    if cost.kind == "python":
        return cost.layout.unflatten
    return lambda theta: theta


def _parallel_allowed(engine: str) -> bool:
    """Numba's workqueue layer cannot run parallel regions from several threads at once."""
    if engine != "numba" or in_main_thread():
        return True
    import numba

    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel region has run yet: which layer will be chosen?
        pass
    layer = numba.config.THREADING_LAYER
    if layer in ("omp", "tbb", "safe", "threadsafe"):
        return True
    if layer != "default":
        return False
    # The default tries tbb, then omp, then workqueue: safe when one of the first two loads.
    for module in ("numba.np.ufunc.tbbpool", "numba.np.ufunc.omppool"):
        try:
            importlib.import_module(module)
            return True
        except Exception:  # ImportError, or a missing libgomp/libtbb
            continue
    return False


@contextlib.contextmanager
def _thread_state(engine: str, n_chunks: int) -> Iterator[None]:
    with blas_limited(n_chunks):
        if engine == "numba":
            with numba_threads(n_chunks):
                yield
        else:
            yield


def _baseline(cost: Cost, theta: np.ndarray) -> tuple[float, float, float]:
    """J(theta), the seconds one evaluation takes, and the seconds spent compiling it."""
    timings: list[float] = []
    values: list[float] = []
    compiled_before = _n_signatures(cost)
    value = float("nan")
    for _ in range(2):  # the first may compile; both must agree
        probe = theta.copy()
        started = time.perf_counter()
        try:
            raw = cost.call(probe)
        except Exception as error:
            raise CostError(
                f"the cost raised {type(error).__name__} at the unperturbed parameters: {error}"
            ) from error
        timings.append(time.perf_counter() - started)
        value = cost_value(raw, cost.layout, None)
        if cost.layout.dtype == np.float64 and getattr(raw, "dtype", None) == np.float32:
            raise CostTypeError(
                "the cost returned a float32 value for float64 parameters: float32 round-off "
                "swamps a finite difference at float64 steps; return a float64 (or give float32 "
                "parameters, for which fastgc chooses larger steps)"
            )
        if not math.isfinite(value):
            raise CostError(
                f"the cost is {value} at the unperturbed parameters; it must be finite there"
            )
        if values and value != values[0]:
            raise CostError(
                f"the cost returned {values[0]!r} and then {value!r} for the same parameters: "
                "it is not deterministic. Fix its random state (dropout masks, sampling) or "
                "pass reseed= to reset it before every evaluation"
            )
        values.append(value)
    seconds = min(timings)
    compiled = _n_signatures(cost) != compiled_before
    compile_seconds = max(0.0, timings[0] - seconds) if compiled else 0.0
    return value, seconds, compile_seconds


def _n_signatures(cost: Cost) -> int:
    """How many specialisations a Numba cost has compiled (0 for other costs)."""
    return len(getattr(cost.function, "signatures", ())) if cost.kind == "numba" else 0


# Per njit cost, the argument types its check kernels were compiled for in this process: a
# check that finds its types here skips the warm-up call (a parallel launch that does nothing).
_compiled: "weakref.WeakKeyDictionary[Any, set]" = weakref.WeakKeyDictionary()


def _type_key(value: Any) -> Any:
    """What decides Numba's compiled specialisation for an argument, cheaply: dtype, rank,
    memory layout and flags of arrays, element keys of tuples, the type of anything else."""
    if isinstance(value, np.ndarray):
        flags = value.flags
        return (value.dtype.str, value.ndim, flags.c_contiguous, flags.f_contiguous,
                flags.writeable, flags.aligned)
    if isinstance(value, tuple):
        return (type(value), tuple(_type_key(item) for item in value))
    return type(value)


def _warm_up(
    run: Callable, engine: str, cost: Cost, work: np.ndarray, parallel: bool
) -> float:
    """Compile the engine's kernels for this cost before timing and progress start."""
    if engine != "numba":
        return 0.0
    key = (_type_key(cost.args), _type_key(work), parallel)
    try:
        seen = _compiled.setdefault(cost.function, set())
    except TypeError:  # not weakly referenceable: warm up every time
        seen = set()
    if key in seen:
        return 0.0
    started = time.perf_counter()
    empty = np.empty(0)
    block_norms("numba", empty, empty, np.zeros(1, dtype=np.int64))
    try:
        run(np.empty(0, dtype=np.int64), empty, empty, np.empty(work.shape[0], dtype=np.int64))
    except Exception as error:
        raise CostError(
            "Numba could not compile the check around this cost (are all args arrays, "
            f"numbers or tuples of them, and does the cost return a float?): {error}"
        ) from error
    seen.add(key)
    return time.perf_counter() - started


def _run_rounds(
    run: Callable,
    cost: Cost,
    theta: np.ndarray,
    work: np.ndarray,
    steps: StepRule,
    approx: np.ndarray,
    seconds_per_cost: float,
    progress: bool | None,
) -> None:
    """Run the kernel over all of theta in rounds, then check the copies came back intact."""
    n, n_chunks = theta.shape[0], work.shape[0]
    seconds_per_index = 2.0 * max(seconds_per_cost, 1e-8) / n_chunks
    show = progress if progress is not None else n * seconds_per_index > PROGRESS_AFTER_SECONDS
    failed = np.empty(n_chunks, dtype=np.int64)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="fastgc", unit="param", leave=False)
    done = 0
    try:
        while done < n:
            size = int(
                min(n - done, MAX_ROUND, max(64 * n_chunks, ROUND_SECONDS / seconds_per_index))
            )
            start, stop = done, done + size
            indices = np.arange(start, stop, dtype=np.int64)
            round_steps = steps(start, stop)
            started = time.perf_counter()
            try:
                run(indices, round_steps, approx[start:stop], failed)
            except CostError:
                raise
            except Exception as error:  # raised inside compiled code: find the index in Python
                work[:] = theta
                _locate_error(cost, theta, indices, round_steps, error)
            if np.any(failed >= 0):
                k = int(failed[failed >= 0].min())
                _describe_failure(cost, theta, int(indices[k]), float(round_steps[k]))
            # Size the next round from what this one really took.
            seconds_per_index = max((time.perf_counter() - started) / size, 1e-9)
            done = stop
            if bar is not None:
                bar.update(size)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"fastgc check interrupted after {done} of {n} components; the caller's arrays "
            "are untouched"
        ) from None
    finally:
        if bar is not None:
            bar.close()
    _check_restored(work, theta, cost.layout)


def _locate_error(
    cost: Cost, theta: np.ndarray, indices: np.ndarray, steps: np.ndarray, error: Exception
) -> None:
    scratch = theta[np.newaxis].copy()
    _reference.central_differences(
        cost.evaluator(scratch), scratch, indices, steps,
        np.empty(indices.shape[0]), np.empty(1, dtype=np.int64),
    )
    raise CostError(
        f"the cost raised {type(error).__name__} in compiled code: {error}"
    ) from error


def _describe_failure(cost: Cost, theta: np.ndarray, i: int, step: float) -> None:
    name, index = cost.layout.locate(i)
    where = f"theta[{i}] (params[{name!r}]{list(index)})"
    probe = theta.copy()
    saved = probe[i]
    probe[i] = saved + np.float64(step)
    upper = probe[i]
    probe[i] = saved - np.float64(step)
    lower = probe[i]
    if upper == lower:
        raise CostError(
            f"the step {step:g} vanishes at {where} = {saved!r} in {theta.dtype}: "
            "pass a larger eps (or leave eps=None for a step scaled to |theta_i|)",
            flat_index=i, location=(name, index),
        )
    for sign, value in (("+", upper), ("-", lower)):
        probe[i] = value
        result = cost_value(cost.call(probe), cost.layout, i)
        if not math.isfinite(result):
            raise CostError(
                f"the cost returned {result} when {where} was moved by {sign}{step:g}; "
                "it must stay finite near the parameters (clip logs, use a stable softmax)",
                flat_index=i, location=(name, index),
            )
    raise CostError(
        f"the cost was not finite near {where} in the parallel run but is when re-evaluated: "
        "is the cost deterministic and free of shared state?",
        flat_index=i, location=(name, index),
    )


def _check_restored(work: np.ndarray, theta: np.ndarray, layout: Layout) -> None:
    integer = np.dtype(f"u{theta.dtype.itemsize}")
    # Bitwise, so that -0.0 and NaN payloads count; the first change of the first copy.
    changed = np.flatnonzero(work.view(integer) != theta.view(integer))
    if changed.size:
        i = int(changed[0]) % theta.shape[0]
        name, index = layout.locate(i)
        raise CostError(
            f"the cost wrote into the parameters it was given (params[{name!r}]{list(index)} "
            "changed): treat them as read-only",
            flat_index=i, location=(name, index),
        )


class _Prober:
    """Serial evaluations around theta for the diagnosis, restoring theta exactly each time.

    ``theta`` is fastgc's own flattened copy, so it serves as the buffer: no n-sized copy.
    """

    def __init__(self, cost: Cost, theta: np.ndarray) -> None:
        self.cost, self.theta, self.evaluations = cost, theta, 0

    def _evaluate(self, i: int) -> float:
        self.evaluations += 1
        try:
            return cost_value(self.cost.call(self.theta), self.cost.layout, i)
        except Exception:  # a cost defined only near theta: this point tells nothing
            return float("nan")

    def probe(self, i: int, step: float) -> tuple[float, float, float, float]:
        """J at theta[i] + step and theta[i] - step, and the two steps as represented."""
        theta, saved = self.theta, self.theta[i]
        try:
            theta[i] = saved + np.float64(step)
            up = float(theta[i]) - float(saved)
            plus = self._evaluate(i)
            theta[i] = saved - np.float64(step)
            down = float(saved) - float(theta[i])
            minus = self._evaluate(i)
        finally:
            theta[i] = saved
        return plus, minus, up, down

    def near(self, i: int, offset: float) -> float:
        """J with theta[i] moved by ``offset``."""
        theta, saved = self.theta, self.theta[i]
        try:
            theta[i] = saved + np.float64(offset)
            return self._evaluate(i)
        finally:
            theta[i] = saved
