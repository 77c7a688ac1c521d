"""``fastgc.check``: validate, run the engine on an executor, diagnose, report.

``check`` only orchestrates: the cost is classified in ``_cost``, options are checked in
``_validation``, the engine is resolved in ``engines``, the kernel runs in
``executors.local``, and verdicts come from ``diagnosis``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ._cost import Baseline, Cost, analytic_gradients, measure_baseline
from ._layout import flatten
from ._result import CheckResult
from ._steps import choose_steps, upcast_float32
from ._threads import blas_limited, interrupts_watched, resolve_n_threads, threads_for_work
from ._validation import (
    guarded_hook,
    validate_args,
    validate_eps,
    validate_hooks,
    validate_progress,
    validate_thresholds,
)
from .diagnosis import (
    Evidence,
    Prober,
    diagnose,
    effective_thresholds,
    lecture_difference,
    signature_crossing,
)
from .engines import resolve_engine
from .executors import placement_hints, placement_of, resolve_executor
from .executors.replay import confirm_directions_reproducible, confirm_reproducible
from .plans import Plan, PlanContext, resolve_plan

if TYPE_CHECKING:
    from ._layout import Layout
    from ._steps import StepRule
    from .diagnosis import Diagnosis
    from .engines import Engine
    from .executors import Placement
    from .plans import PlanOutcome


def _blas_capped(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` run with BLAS capped at one thread throughout: every evaluation of the
    check (baseline, sweep, re-examination) sums in the same order, whatever ``n_threads``.
    One SIGINT handler serves the whole check (the blocks deferring Ctrl-C inside it raise a
    flag) and the one in place comes back at the end."""

    @functools.wraps(function)
    def capped(*args: Any, **kwargs: Any) -> Any:
        with interrupts_watched(), blas_limited():
            return function(*args, **kwargs)

    return capped


@_blas_capped
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
    plan: "str | Plan | None" = None,
    budget: float | None = None,
    upcast: bool = False,
    executor: Any = None,
    n_workers: int | None = None,
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
        calls and mostly holds the GIL; one thread as well for a check whose evaluations take
        under 10 ms in all, where a parallel region costs more than it saves); negative counts
        back from the maximum (-1 = all); 0 is an error. A Python cost run on several threads
        must be thread-safe. BLAS inside the cost runs on one thread for the whole check, so
        the results do not depend on it.
    engine : {"auto", "numba", "cython", "python"}, optional
        Default: ``FASTGC_ENGINE``, else auto (numba for an njit cost, then cython, then python).
    progress : bool, optional
        Show a progress bar; by default shown when the check is expected to take over 3 s.
    signature : callable, optional
        ``signature(params) -> array(s)`` that changes when a non-differentiable point is crossed
        (for example the ReLU masks); used to recognise kinks exactly.
    reseed : callable, optional
        Called before every evaluation of the cost, for stochastic costs (dropout): reset the
        random generator there. Runs the serial Python engine (in each worker, with an
        executor other than local).
    plan : {"full", "screen", "sampled"} or plan object, optional
        What is differenced. "full" (the default): every component. "screen": a few random
        directions per block, a disagreeing block confirmed at another step and localised to
        its wrong components (a few hundred evaluations instead of 2n). "sampled": a seeded
        sample per block. ``fastgc.Screen(directions=, seed=)`` and
        ``fastgc.Sampled(per_block=, seed=)`` set their options.
    budget : float, optional
        Seconds: the full check if its predicted time fits, else the screen and then as
        large a sample as the time left allows. Not combined with ``plan``.
    upcast : bool, default False
        For float32 parameters: evaluate the cost in float64 (on a float64 copy of the
        parameters; yours are untouched) against your float32 gradients, judged with the
        accuracy float32 gradients can attain. Finite differences, along random directions
        above all, resolve far more in float64. The cost must accept float64 parameters and
        return a float64.
    executor : {"local", "processes"}, concurrent.futures.Executor or dask Client, optional
        Where the finite differences run. None or "local": this process, on ``n_threads``
        threads. "processes": ``n_workers`` worker processes of this machine (a Python cost
        then uses every core). A ``concurrent.futures.Executor``: its workers, with the
        payload sent along with every task. A ``dask.distributed.Client``: the workers of its
        cluster (``pip install "fastgc[dask]"``). Workers receive the cost, args and theta
        once, must compute the caller's J(theta) exactly, and return only numbers: the
        result is bitwise the local one, whatever the plan (the screen's directions run on
        the workers too, with the analytic gradient shipped once). With workers,
        ``n_threads`` is per worker (default 1 for a Python cost).
    n_workers : int, optional
        The worker processes of ``executor="processes"`` (default: one per usable core).

    Returns
    -------
    CheckResult
        ``verdict``, ``difference``, ``per_parameter``, ``worst(k)``, ``numerical_grads``,
        ``coverage``, ``evaluations``, ``raise_if_failed()``; ``print(result)`` shows the
        report.

    Raises
    ------
    InvalidInputError, InvalidDtypeError
        Malformed params, grads or options; the message names the parameter and index.
    ExecutorError
        The cost, args or ``reseed`` cannot be pickled for the workers, a worker computes
        another J(theta), or the workers were lost.
    CostError
        The cost raised, or returned a non-finite or non-scalar value, or replaced an array of
        the structure it was handed (the index is named).
    IrreproducibleCostError
        On several threads or workers: a sample of the differences (of components, and of
        the screen's random directions) evaluated again serially came back other (the cost
        is not thread-safe, or not a function of its parameters); indices and values named.
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
    args = validate_args(args)
    eps = validate_eps(eps)
    thresholds = validate_thresholds(thresholds)
    theta, layout, thresholds = upcast_float32(theta, layout, thresholds, upcast)
    progress = validate_progress(progress)
    validate_hooks(signature=signature, reseed=reseed)
    plan_ = resolve_plan(plan, budget)

    cost_ = Cost.classify(cost, args, layout, reseed)
    dtheta, ignored_gradients = analytic_gradients(grads, theta, layout, args)
    # A Python cost may keep state between calls (a layer caching its activations), so it
    # runs on several threads only when a count was asked for.
    requested_threads = n_threads
    n_threads = resolve_n_threads(n_threads, unset=1 if cost_.may_keep_state else None)
    engine_ = resolve_engine(engine, cost_)
    steps = choose_steps(theta, eps)
    baseline = measure_baseline(cost_, theta)
    n_threads = threads_for_work(n_threads, requested_threads, 2 * theta.size * baseline.seconds)

    problem = _Problem(theta, layout, dtheta, ignored_gradients, cost_, engine_, steps, baseline,
                       started)
    executor_ = resolve_executor(executor, n_workers, engine_, cost_, theta, n_threads,
                                 requested_threads, steps, baseline.value,
                                 dtheta if plan_.moves_along_directions else None)
    prober = Prober(cost_.value_at, theta)
    run = _run(problem, plan_, executor_, progress,
               effective_thresholds(thresholds, layout.dtype), prober)
    crossed = None
    if signature is not None:
        crossed = signature_crossing(
            guarded_hook(signature, "signature"), cost_.structure, theta
        )
    diagnosis, norms = _diagnose(problem, run.outcome, thresholds, prober, crossed)
    return _result(problem, run, diagnosis, norms, 2 + run.replayed + prober.evaluations)


@dataclass(frozen=True)
class _Problem:
    """A validated check: the flat parameters and gradients, the cost and how it runs."""

    theta: np.ndarray
    layout: "Layout"
    dtheta: np.ndarray
    ignored_gradients: tuple[str, ...]
    cost: Cost
    engine: "Engine"
    steps: "StepRule"
    baseline: Baseline
    started: float  # perf_counter() when the check began


@dataclass(frozen=True)
class _Run:
    """What running a plan on an executor gave: its outcome, and how and where it ran."""

    outcome: "PlanOutcome"
    placement: "Placement"
    compile_seconds: float
    replayed: int  # cost evaluations of the serial replay
    hints: tuple[str, ...]


def _run(
    problem: _Problem, plan: Plan, executor: Any, progress: bool | None,
    thresholds: tuple[float, float], prober: Prober,
) -> _Run:
    """The plan run in a session of the executor, then a sample of its differences (of
    components, and along directions) replayed serially when the numbers came from several
    threads or workers, which must agree to the bit."""
    started = time.perf_counter()
    with executor.open() as session:
        outcome = plan.run(PlanContext(
            session, problem.theta, problem.dtheta, problem.layout, problem.steps,
            problem.baseline.value, problem.baseline.seconds, executor.n_chunks, progress,
            thresholds, prober,
        ))
    compile_seconds = problem.baseline.compile_seconds + session.compile_seconds
    placement = placement_of(executor)
    hints = placement_hints(problem.cost, placement,
                            time.perf_counter() - started - session.compile_seconds)
    replayed = 0
    if placement.n_workers * placement.threads_per_worker > 1:
        workers = placement.executor != "local"
        replayed = confirm_reproducible(
            problem.cost, problem.theta, problem.steps, outcome.approx, problem.dtheta,
            among=outcome.checked if outcome.partial else None, workers=workers)
        # The screen judges most blocks from directions alone: replay some of those too.
        replayed += confirm_directions_reproducible(
            problem.cost, problem.theta, problem.dtheta, outcome.directional_rows,
            workers=workers)
    return _Run(outcome, placement, compile_seconds, replayed, hints)


def _diagnose(
    problem: _Problem, outcome: "PlanOutcome", thresholds: tuple[float, float],
    prober: Prober, crossed: Any,
) -> tuple["Diagnosis", np.ndarray]:
    """The plan's evidence judged: the diagnosis, and the squared norms per block."""
    norms = problem.engine.block_norms(outcome.approx, problem.dtheta, problem.layout.offsets)
    evidence = Evidence(approx=outcome.approx, dtheta=problem.dtheta, layout=problem.layout,
                        steps=problem.steps, cost_at_theta=problem.baseline.value,
                        block_norms=norms, measured_roundoff=outcome.measured_roundoff,
                        decided_blocks=outcome.decided_blocks)
    diagnosis = diagnose(evidence, thresholds, prober, crossed)
    return outcome.merge(diagnosis, problem.layout, problem.dtheta), norms


def _result(
    problem: _Problem, run: _Run, diagnosis: "Diagnosis", norms: np.ndarray,
    other_evaluations: int,
) -> CheckResult:
    """The result of a check, from what was run, where, and how it was judged."""
    outcome, placement, compile_seconds = run.outcome, run.placement, run.compile_seconds
    return CheckResult(
        verdict=diagnosis.verdict,
        difference=outcome.overall_difference(diagnosis, lecture_difference(norms)),
        per_parameter=diagnosis.per_parameter,
        approx=outcome.approx,
        dtheta=problem.dtheta,
        layout=problem.layout,
        thresholds=diagnosis.thresholds,
        step_description=problem.steps.description,
        noise_floor=diagnosis.noise_floor,
        engine=problem.engine.name,
        n_threads=placement.threads_per_worker,
        executor=placement.executor,
        n_workers=placement.n_workers,
        hints=run.hints,
        seconds=time.perf_counter() - problem.started - compile_seconds,
        compile_seconds=compile_seconds,
        n_evaluations=outcome.evaluations + other_evaluations,
        labels=diagnosis.labels,
        corrected=diagnosis.corrected,
        scores=diagnosis.scores,
        ignored_gradients=problem.ignored_gradients,
        explained=diagnosis.explained,
        plan=outcome.name,
        coverage=outcome.coverage,
        plan_notes=outcome.notes,
        checked=outcome.checked if outcome.partial else None,
    )
