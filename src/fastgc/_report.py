"""The text report of a :class:`~fastgc.CheckResult`."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._result import CheckResult

_MEANING = {
    "correct": "backprop agrees with finite differences",
    "suspicious": "look carefully: the disagreement is above what round-off explains",
    "bug": "backprop is almost surely wrong",
}


def _index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(j) for j in index) + "]"


def format_report(result: "CheckResult", n_worst: int = 10) -> str:
    verdict = result.verdict.value
    lines = [f"fastgc gradient check: {verdict.upper()} ({_MEANING[verdict]})"]
    worst_parameter = result.worst_parameter()
    top = result.worst(1, parameter=worst_parameter.name)
    if result.verdict.value != "correct" and top:
        c = top[0]
        lines.append(
            f"  look first at {worst_parameter.name}: adjusted difference "
            f"{worst_parameter.adjusted_difference:.3e}; worst component {c.name}{_index(c.index)}"
            f" numeric {c.numeric:+.6e} vs analytic {c.analytic:+.6e}"
        )
    correct, bug = result.thresholds
    lines.append(
        f"  difference ||approx - dtheta|| / (||approx|| + ||dtheta||) = {result.difference:.3e}"
        f"  (correct <= {correct:.0e}, bug >= {bug:.0e})"
    )
    lines.append(f"  step: {result.step_description}")
    lines.append(f"  noise floor (median, per component): {result.noise_floor:.2e}")
    lines.append(
        f"  {result.layout.size} parameters in {len(result.per_parameter)} block(s), dtype "
        f"{result.layout.dtype}; engine {result.engine}, {result.n_threads} thread(s); "
        f"{result.n_evaluations} cost evaluations in {result.seconds:.3f} s"
        + (f" (+{result.compile_seconds:.2f} s compiling)" if result.compile_seconds > 0.05 else "")
    )
    lines.append("")
    name_width = max(9, *(len(name) for name in result.per_parameter))
    lines.append(
        f"  {'parameter':<{name_width}}  {'shape':<12} {'difference':>10} {'adjusted':>10}  "
        f"{'verdict':<10} {'max |error|':>11}  at"
    )
    for report in result.per_parameter.values():
        note = f"  ({report.n_non_finite} NaN/Inf)" if report.n_non_finite else ""
        lines.append(
            f"  {report.name:<{name_width}}  {str(report.shape):<12} {report.difference:>10.2e} "
            f"{report.adjusted_difference:>10.2e}  {report.verdict.value:<10} "
            f"{report.max_abs_error:>11.2e}  {_index(report.worst_index)}{note}"
        )
    if result.ignored_gradients:
        lines.append(
            f"  ignored gradient entries (they match no parameter): "
            f"{', '.join(result.ignored_gradients)}"
        )
    if result.labels:
        counts = Counter(result.labels.values())
        lines.append("")
        lines.append(f"  re-examined or flagged components: {len(result.labels)}")
        for label, count in counts.most_common():
            lines.append(f"    {count:>5}  {label}")
    # Only components that disagree beyond the noise floor, or that were re-examined.
    worst = [c for c in result.worst(n_worst) if result._scores[c.flat_index] > 0 or c.label]
    if worst and result.verdict.value != "correct":
        lines.append("")
        lines.append(f"  worst components (of {result.layout.size}):")
        lines.append(
            f"    {'parameter[index]':<22} {'numeric':>14} {'analytic':>14} {'abs err':>10} "
            f"{'rel err':>10}  label"
        )
        for c in worst:
            lines.append(
                f"    {c.name + _index(c.index):<22} {c.numeric:>14.6e} {c.analytic:>14.6e} "
                f"{c.abs_error:>10.2e} {c.rel_error:>10.2e}  {c.label or ''}"
            )
    return "\n".join(lines)
