"""What a check found: the verdict, per-parameter diagnosis, worst components and the report."""

from __future__ import annotations

import enum
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ._errors import GradientCheckError
from ._layout import Layout

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class Verdict(str, enum.Enum):
    """How far the analytic gradients are from the numerical ones.

    A ``str`` enum, so ``result.verdict == "bug"`` works. ``INCONCLUSIVE``: some components
    disagree beyond the tolerance and no step the cost can be evaluated at told why (round-off
    swamps every estimate, or the re-examination budget ran out); it is not a pass. In order of
    severity: correct, suspicious, inconclusive, bug.
    """

    CORRECT = "correct"
    SUSPICIOUS = "suspicious"
    INCONCLUSIVE = "inconclusive"
    BUG = "bug"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    def __str__(self) -> str:
        return self.value


_SEVERITY = {
    Verdict.CORRECT: 0, Verdict.SUSPICIOUS: 1, Verdict.INCONCLUSIVE: 2, Verdict.BUG: 3
}


def worst_verdict(verdicts: Any) -> Verdict:
    return max(verdicts, key=lambda v: v.severity, default=Verdict.CORRECT)


class Label(str, enum.Enum):
    """What re-examining a disagreeing component at other steps showed."""

    AGREES_LARGER_STEP = "agrees at a larger step (round-off)"
    AGREES_SMALLER_STEP = "agrees at a smaller step or higher order (truncation)"
    KINK = "kink (non-differentiable point crossed)"
    NOISE = "unresolved: numeric estimates too noisy to judge at any step"
    LIKELY_BUG = "likely bug (stable numeric value differs)"
    NON_FINITE = "analytic gradient is NaN or Inf"

    def __str__(self) -> str:
        return self.value


class Component(NamedTuple):
    """One entry of theta, numeric against analytic."""

    name: str
    index: tuple[int, ...]
    flat_index: int
    numeric: float
    analytic: float
    abs_error: float
    rel_error: float
    label: str | None


@dataclass(frozen=True)
class ParameterReport:
    """The check of one parameter block (for example ``W2``).

    ``difference`` is the lecture's ``||approx - dtheta|| / (||approx|| + ||dtheta||)`` on this
    block alone; ``adjusted_difference`` is the same after re-examination and with the noise
    floor subtracted, which is what the verdict is based on. ``n_unresolved`` counts the
    components that disagree beyond the tolerance with nothing to explain it (too noisy at
    every step tried, or beyond the re-examination budget): any makes the block inconclusive
    unless it is a bug.
    """

    name: str
    shape: tuple[int, ...]
    difference: float
    adjusted_difference: float
    verdict: Verdict
    max_abs_error: float
    worst_index: tuple[int, ...]
    n_disagreeing: int
    n_non_finite: int
    n_unresolved: int = 0


@dataclass(frozen=True)
class BlockCoverage:
    """How one parameter block was checked.

    Attributes
    ----------
    name : str
        The parameter.
    size : int
        Its number of components.
    components : int
        Components differenced one by one (central differences, as in a full check).
    directions : int
        Random directions (within the block or a sub-range of it) it was differenced along.
    evaluations : int
        Cost evaluations spent on it.
    detection_limit : float
        For a block judged only along random directions: the relative error
        ``||error|| / ||gradient||`` below which the test could have missed it (0.0 when
        every component was checked; inf when the block's gradient is too small to tell).
    finding : str
        What was found, in a few words ("every component", "passed the screen", "single wrong
        entries located", "block-wide error", ...).
    """

    name: str
    size: int
    components: int
    directions: int
    evaluations: int
    detection_limit: float = 0.0
    finding: str = ""


@dataclass(frozen=True, eq=False)
class CheckResult:
    """The outcome of :func:`fastgc.check`; ``print(result)`` shows the report.

    Attributes
    ----------
    verdict : Verdict
        The worst of the overall and per-parameter verdicts.
    difference : float
        ``||approx - dtheta||_2 / (||approx||_2 + ||dtheta||_2)`` over all of theta.
    per_parameter : dict of str to ParameterReport
    approx, dtheta : ndarray, shape (n,)
        Numeric (at the chosen step) and analytic gradients, flat, float64.
    layout : Layout
    scores : ndarray, shape (n,)
        Per component, the relative disagreement left after re-examination and with the noise
        floor subtracted (inf where the analytic gradient is NaN or Inf); what :meth:`worst`
        ranks by.
    executor, n_workers : str, int
        Where the finite differences ran ("local", "processes", "dask", or the class of the
        executor given) and on how many workers; ``n_threads`` is per worker.
    hints : tuple of str
        Advice on running such a check faster (a Python cost on one thread of a machine
        with more cores: ``executor="processes"``).
    ignored_gradients : tuple of str
        Entries of the gradient dict that match no parameter (intermediates such as "dZ2"),
        ignored by the check.
    explained : dict of str to int
        How many components disagree beyond the correct threshold at the check's step and yet
        count as agreeing, by reason ("within the noise floor", "kinks", "agree at another
        step"); the report's headline gives them when the difference is above the threshold.
    plan : str
        How theta was checked: "full" (every component), "screen" or "sampled".
    coverage : dict of str to BlockCoverage
        Per block: components checked one by one, directions, evaluations, detection limit.
    plan_notes : tuple of str
        What the plan checked, and what a pass does and does not prove.
    checked : ndarray of bool, shape (n,), or None
        Which components were differenced one by one (None: all of them); elsewhere
        ``approx`` holds the analytic value.
    """

    verdict: Verdict
    difference: float
    per_parameter: dict[str, ParameterReport]
    approx: np.ndarray
    dtheta: np.ndarray
    layout: Layout
    thresholds: tuple[float, float]
    step_description: str
    noise_floor: float
    engine: str
    n_threads: int
    seconds: float
    compile_seconds: float
    n_evaluations: int
    labels: dict[int, str] = field(default_factory=dict)
    corrected: dict[int, float] = field(default_factory=dict)
    ignored_gradients: tuple[str, ...] = ()
    executor: str = "local"  # where the differences ran: local, processes, dask, ...
    n_workers: int = 1  # n_threads is then per worker
    hints: tuple[str, ...] = ()  # advice on running the check faster
    scores: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    explained: dict[str, int] = field(default_factory=dict)
    plan: str = "full"
    coverage: dict[str, BlockCoverage] = field(default_factory=dict)
    plan_notes: tuple[str, ...] = ()
    checked: np.ndarray | None = field(default=None, repr=False)

    @property
    def evaluations(self) -> int:
        """Cost evaluations used in all (the same as ``n_evaluations``)."""
        return self.n_evaluations

    @property
    def numerical_grads(self) -> Any:
        """The numerical gradients in the same structure and shapes as ``params``."""
        return self.layout.unflatten(self.approx.astype(self.layout.dtype))

    @property
    def passed(self) -> bool:
        """Neither a bug nor inconclusive (a suspicious verdict passes)."""
        return self.verdict not in (Verdict.BUG, Verdict.INCONCLUSIVE)

    def worst(self, k: int = 10, parameter: str | None = None) -> list[Component]:
        """The ``k`` components that disagree most, worst first (within ``parameter`` if given).

        Ranked by relative error after the noise floor is subtracted (NaN/Inf first), then by
        absolute error. Each entry gives the parameter name, the index within it, the flat index,
        numeric and analytic values, absolute and relative error, and the re-examination label.
        """
        block = self.layout.block(parameter) if parameter is not None else slice(None)
        positions = np.arange(self.layout.size)[block]
        with np.errstate(invalid="ignore"):
            errors = np.nan_to_num(np.abs(self.approx - self.dtheta)[block], nan=np.inf)
        order = positions[np.lexsort((-errors, -self.scores[block]))][: max(int(k), 0)]
        components = []
        for i in order:
            name, index = self.layout.locate(i)
            numeric = float(self.corrected.get(int(i), self.approx[i]))
            analytic = float(self.dtheta[i])
            abs_error = abs(numeric - analytic)
            denominator = abs(numeric) + abs(analytic)
            rel_error = abs_error / denominator if denominator > 0 else 0.0
            if not np.isfinite(analytic):
                abs_error = rel_error = float("inf")
            components.append(
                Component(name, index, int(i), numeric, analytic, abs_error, rel_error,
                          self.labels.get(int(i)))
            )
        return components

    def worst_parameter(self) -> ParameterReport:
        """The parameter to look at first: worst verdict, then largest adjusted difference."""
        return max(
            self.per_parameter.values(),
            key=lambda p: (p.verdict.severity, p.n_non_finite > 0, p.adjusted_difference),
        )

    def raise_if_failed(self, *, allow_inconclusive: bool = False) -> "CheckResult":
        """Raise :class:`fastgc.GradientCheckError` (carrying this result) on a bug verdict,
        and on an inconclusive one unless ``allow_inconclusive``.

        Examples
        --------
        >>> import numpy as np, fastgc
        >>> w = np.array([1.0, 2.0])
        >>> fastgc.check(lambda p: float(np.sum(p["w"] ** 2)), {"w": w}, {"dw": 2 * w},
        ...              progress=False).raise_if_failed().verdict
        <Verdict.CORRECT: 'correct'>
        """
        if self.verdict is Verdict.BUG or (
            self.verdict is Verdict.INCONCLUSIVE and not allow_inconclusive
        ):
            raise GradientCheckError(self)
        return self

    def to_dict(self, n_worst: int = 10) -> dict[str, Any]:
        """Everything the report shows, as plain Python values (str, float, int, list, dict).

        Parameters
        ----------
        n_worst : int, default 10
            How many of the worst components to include (those that disagree beyond the noise
            floor or were re-examined, as in the report).

        Returns
        -------
        dict
            Keys ``verdict``, ``meaning``, ``look_first``, ``difference``, ``thresholds``,
            ``step``, ``noise_floor``, ``n_parameters``, ``dtype``, ``engine``, ``n_threads``
            (per worker), ``executor``, ``n_workers``,
            ``n_evaluations``, ``seconds``, ``compile_seconds``, ``parameters`` (one dict per
            parameter, in order), ``reexamined`` (label to count), ``worst_components``,
            ``ignored_gradients``, ``explained``, ``notes``, ``plan``, ``coverage`` (one dict
            per block) and ``plan_notes``. Floats may be inf or NaN (a NaN gradient).

        Examples
        --------
        >>> import numpy as np, fastgc
        >>> params = {"w": np.array([1.0, 2.0])}
        >>> result = fastgc.check(lambda p: float(np.sum(p["w"] ** 2)), params,
        ...                       {"dw": 2 * params["w"], "dz": np.ones(3)}, progress=False)
        >>> summary = result.to_dict()
        >>> summary["verdict"], summary["parameters"][0]["name"], summary["ignored_gradients"]
        ('correct', 'w', ['dz'])
        """
        from ._report import MEANING, reported_components, zero_numeric_notes

        worst_parameter = self.worst_parameter()
        top = self.worst(1, parameter=worst_parameter.name)
        look_first = None
        if self.verdict is not Verdict.CORRECT and top:
            look_first = {
                "parameter": worst_parameter.name,
                "adjusted_difference": worst_parameter.adjusted_difference,
                "component": _component_dict(top[0]),
            }
        return {
            "verdict": self.verdict.value,
            "meaning": MEANING[self.verdict],
            "look_first": look_first,
            "difference": float(self.difference),
            "thresholds": {"correct": self.thresholds[0], "bug": self.thresholds[1]},
            "step": self.step_description,
            "noise_floor": float(self.noise_floor),
            "n_parameters": self.layout.size,
            "dtype": str(self.layout.dtype),
            "engine": self.engine,
            "n_threads": self.n_threads,
            "executor": self.executor,
            "n_workers": self.n_workers,
            "n_evaluations": self.n_evaluations,
            "seconds": self.seconds,
            "compile_seconds": self.compile_seconds,
            "parameters": [
                {
                    "name": report.name,
                    "shape": list(report.shape),
                    "difference": float(report.difference),
                    "adjusted_difference": float(report.adjusted_difference),
                    "verdict": report.verdict.value,
                    "max_abs_error": float(report.max_abs_error),
                    "worst_index": list(report.worst_index),
                    "n_disagreeing": report.n_disagreeing,
                    "n_non_finite": report.n_non_finite,
                    "n_unresolved": report.n_unresolved,
                }
                for report in self.per_parameter.values()
            ],
            "reexamined": dict(Counter(self.labels.values()).most_common()),
            "worst_components": [
                _component_dict(c) for c in reported_components(self, n_worst)
            ],
            "ignored_gradients": list(self.ignored_gradients),
            "explained": dict(self.explained),
            "notes": zero_numeric_notes(self) + list(self.hints),
            "plan": self.plan,
            "coverage": [
                {"name": c.name, "size": c.size, "components": c.components,
                 "directions": c.directions, "evaluations": c.evaluations,
                 "detection_limit": float(c.detection_limit), "finding": c.finding}
                for c in self.coverage.values()
            ],
            "plan_notes": list(self.plan_notes),
        }

    def to_json(self, path: str | os.PathLike | None = None, n_worst: int = 10) -> str:
        """:meth:`to_dict` as strict JSON, written to ``path`` when one is given.

        Non-finite numbers, which strict JSON lacks, are written as the strings "inf", "-inf"
        and "nan".

        Returns
        -------
        str
            The JSON text.

        Examples
        --------
        >>> import json, numpy as np, fastgc
        >>> w = np.array([1.0, 2.0])
        >>> result = fastgc.check(lambda p: float(np.sum(p["w"] ** 2)), {"w": w},
        ...                       {"dw": np.array([2.0, np.nan])}, progress=False)
        >>> json.loads(result.to_json())["parameters"][0]["adjusted_difference"]
        'inf'
        """
        text = json.dumps(_strict(self.to_dict(n_worst)), indent=2, allow_nan=False)
        if path is not None:
            with open(path, "w", encoding="utf-8") as file:
                file.write(text + "\n")
        return text

    def plot(
        self, path: str | os.PathLike | None = None, *, max_heatmaps: int = 4
    ) -> "Figure":
        """Per-parameter differences on a log axis with the verdict bands, and a heat map of
        the disagreement of each flagged parameter (needs ``pip install "fastgc[plot]"``).

        Parameters
        ----------
        path : str or path-like, optional
            Save the figure there (the format from the suffix: .png, .pdf, .svg).
        max_heatmaps : int, default 4
            At most this many flagged parameters (not correct; the worst first) get a heat map
            of the relative disagreement of their components: 2-D parameters as they are, 1-D
            ones as a row, higher-dimensional ones as (first axis, the rest).

        Returns
        -------
        matplotlib.figure.Figure
            Made without pyplot, so it works with any backend (Agg included) and is not
            registered as an open pyplot figure.

        Examples
        --------
        >>> import numpy as np, fastgc
        >>> w = np.array([[1.0, 2.0], [3.0, 4.0]])
        >>> result = fastgc.check(lambda p: float(np.sum(p["w"] ** 2)), {"w": w},
        ...                       {"dw": 2 * w + np.eye(2)}, progress=False)
        >>> figure = result.plot()           # result.plot("check.png") saves it too
        >>> [ax.get_title().split(":")[0] for ax in figure.axes[1:2]]
        ['w (2, 2)']
        """
        from ._plot import plot_result

        figure = plot_result(self, max_heatmaps=max_heatmaps)
        if path is not None:
            figure.savefig(path, dpi=100)
        return figure

    def __str__(self) -> str:
        from ._report import format_report

        return format_report(self)

    def __repr__(self) -> str:
        return (
            f"CheckResult(verdict={self.verdict.value!r}, difference={self.difference:.3e}, "
            f"n={self.layout.size}, engine={self.engine!r}, n_threads={self.n_threads})"
        )


def _component_dict(c: Component) -> dict[str, Any]:
    return {
        "name": c.name,
        "index": list(c.index),
        "flat_index": c.flat_index,
        "numeric": c.numeric,
        "analytic": c.analytic,
        "abs_error": c.abs_error,
        "rel_error": c.rel_error,
        "label": c.label,
    }


def _strict(value: Any) -> Any:
    """``value`` with non-finite floats replaced by "inf", "-inf" or "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value
