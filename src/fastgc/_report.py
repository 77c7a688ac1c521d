"""The text report of a :class:`~fastgc.CheckResult`."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from ._patterns import bug_patterns
from ._result import Verdict

if TYPE_CHECKING:
    from ._result import CheckResult, Component

MEANING = {
    Verdict.CORRECT: "backprop agrees with finite differences",
    Verdict.SUSPICIOUS: "look carefully: the disagreement is above what round-off explains",
    Verdict.INCONCLUSIVE: "the numbers cannot decide: some components disagree and no step "
    "tried told why",
    Verdict.BUG: "backprop is almost surely wrong",
}


def _index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(j) for j in index) + "]"


def format_report(result: "CheckResult", n_worst: int = 10) -> str:
    lines = [
        f"fastgc gradient check: {result.verdict.value.upper()} ({MEANING[result.verdict]})"
    ]
    worst_parameter = result.worst_parameter()
    top = result.worst(1, parameter=worst_parameter.name)
    if result.verdict is not Verdict.CORRECT and top:
        c = top[0]
        lines.append(
            f"  look first at {worst_parameter.name}: adjusted difference "
            f"{worst_parameter.adjusted_difference:.3e}; worst component {c.name}{_index(c.index)}"
            f" numeric {c.numeric:+.6e} vs analytic {c.analytic:+.6e}"
        )
    lines.extend(f"  {line}" for line in verdict_reasons(result))
    for note in zero_numeric_notes(result) + list(result.hints):
        lines.append(f"  note: {note}")
    correct, bug = result.thresholds
    lines.append(
        f"  difference ||approx - dtheta|| / (||approx|| + ||dtheta||) = {result.difference:.3e}"
        f"  (correct <= {correct:.0e}, bug >= {bug:.0e})"
    )
    lines.append(f"  step: {result.step_description}")
    lines.append(f"  noise floor (median, per component): {result.noise_floor:.2e}")
    lines.append(
        f"  {result.layout.size} parameters in {len(result.per_parameter)} block(s), dtype "
        f"{result.layout.dtype}; engine {result.engine}, {_placement(result)}; "
        f"{result.n_evaluations} cost evaluations in {result.seconds:.3f} s"
        + (f" (+{result.compile_seconds:.2f} s compiling)" if result.compile_seconds > 0.05 else "")
    )
    lines.append("")
    name_width = max(9, *(len(name) for name in result.per_parameter))
    lines.append(
        f"  {'parameter':<{name_width}}  {'shape':<12} {'difference':>10} {'adjusted':>10}  "
        f"{'verdict':<12} {'max |error|':>11}  at"
    )
    for report in result.per_parameter.values():
        note = f"  ({report.n_non_finite} NaN/Inf)" if report.n_non_finite else ""
        lines.append(
            f"  {report.name:<{name_width}}  {str(report.shape):<12} {report.difference:>10.2e} "
            f"{report.adjusted_difference:>10.2e}  {report.verdict.value:<12} "
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
    lines.extend(coverage_lines(result))
    patterns = bug_patterns(result)
    if patterns:
        lines.append("")
        lines.extend(f"  kind of bug in {name}: {pattern}" for name, pattern in patterns.items())
    worst = reported_components(result, n_worst)
    if worst and result.verdict is not Verdict.CORRECT:
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


def verdict_reasons(result: "CheckResult") -> list[str]:
    """Sentences under the headline: what is unresolved and what to do about it, or why a
    correct verdict stands over a difference above the correct threshold."""
    if result.verdict is Verdict.INCONCLUSIVE:
        return _unresolved_reasons(result)
    if result.verdict is Verdict.CORRECT and not result.difference <= result.thresholds[0]:
        return [_correct_reason(result)]
    return []


def _unresolved_reasons(result: "CheckResult") -> list[str]:
    unresolved = [p for p in result.per_parameter.values() if p.n_unresolved]
    where = ", ".join(f"{p.name} ({p.n_unresolved})" for p in unresolved)
    if result.layout.dtype == np.float32:
        advice = ("check in float64 (cast the parameters and the data), where round-off is "
                  "far smaller, or pass a larger eps")
    else:
        advice = (f"pass a larger eps (try eps={100 * _typical_step(result):.0e}), or check a "
                  "smaller cost (fewer examples) or parameters nearer 1 in size")
    return [
        f"unresolved: components that disagree beyond the tolerance with nothing to explain "
        f"it, in {where}: round-off swamps every estimate at the steps tried",
        f"advice: {advice}",
    ]


def _typical_step(result: "CheckResult") -> float:
    """The step of the check, read back from its description ("eps=1e-07, ...")."""
    words = result.step_description.split()
    try:
        return float(words[0].split("=")[1].rstrip(","))
    except (IndexError, ValueError):
        return 1e-7


def _correct_reason(result: "CheckResult") -> str:
    explained = result.explained
    words = {"within the noise floor": "within the noise floor", "kinks": "at kinks",
             "agree at another step": "that agree at another step"}
    parts = [f"{count} component{'s' if count != 1 else ''} {words.get(reason, reason)}"
             for reason, count in explained.items()]
    why = ", ".join(parts) if parts else "components within the noise floor"
    return (
        f"why correct: the difference {result.difference:.1e} is above {result.thresholds[0]:.0e}"
        f" only through components that count as agreeing: {why}"
    )


def coverage_lines(result: "CheckResult") -> list[str]:
    """What a plan other than the full one checked, block by block, and what that proves."""
    if result.plan == "full" or not result.coverage:
        return []
    full_evaluations = 2 * result.layout.size
    lines = [
        "",
        f"  plan {result.plan}: {result.n_evaluations} cost evaluations, "
        f"{result.n_evaluations / max(full_evaluations, 1):.4%} of a full check's "
        f"{full_evaluations}",
        f"    {'parameter':<12} {'size':>10} {'one by one':>10} {'directions':>10} "
        f"{'evals':>7} {'limit':>9}  finding",
    ]
    for c in result.coverage.values():
        limit = "-" if c.detection_limit == 0 else f"{c.detection_limit:.1e}"
        lines.append(
            f"    {c.name:<12} {c.size:>10} {c.components:>10} {c.directions:>10} "
            f"{c.evaluations:>7} {limit:>9}  {c.finding}"
        )
    lines.extend(f"  {note}" for note in result.plan_notes)
    return lines


def _placement(result: "CheckResult") -> str:
    """Where the check ran: "1 thread(s)" locally, else the executor and its workers."""
    if result.executor == "local":
        return f"{result.n_threads} thread(s)"
    return (f"on {result.executor}: {result.n_workers} worker(s) x {result.n_threads} "
            "thread(s)")


def reported_components(result: "CheckResult", n_worst: int = 10) -> list["Component"]:
    """The worst components worth showing: those that disagree beyond the noise floor, or that
    were re-examined."""
    return [c for c in result.worst(n_worst) if result.scores[c.flat_index] > 0 or c.label]


# A numeric gradient that is exactly zero on at least this share of the components where
# backprop's is not means the cost's changes were rounded away.
MOSTLY_ZERO = 0.9


def zero_numeric_notes(result: "CheckResult") -> list[str]:
    """Sentences for a numeric gradient that is exactly zero where backprop's is not.

    "bug, numeric 0" alone does not say why: the cost ignored the parameters it was given (it
    reads a copy made before the check), or it computes in a precision that rounds every
    change of the step's size away. Only parameters whose verdict is not correct are looked at.
    """
    layout = result.layout
    zero_blocks, examined = [], 0
    exact_zero = nonzero_analytic = 0
    for k, name in enumerate(layout.names):
        block = slice(int(layout.offsets[k]), int(layout.offsets[k + 1]))
        if result.per_parameter[name].verdict is Verdict.CORRECT:
            continue
        approx, dtheta = result.approx[block], result.dtheta[block]
        analytic = np.isfinite(dtheta) & (dtheta != 0)
        if not analytic.any():
            continue
        examined += 1
        zeros = int(np.count_nonzero(approx[analytic] == 0))
        exact_zero += zeros
        nonzero_analytic += int(np.count_nonzero(analytic))
        if not np.any(approx):
            zero_blocks.append(name)
    if not examined:
        return []
    if not np.any(result.approx):
        return [
            "the numeric gradient is zero everywhere: moving any parameter by the step did not "
            "change the cost at all, while backprop's gradient is not zero. The cost ignores "
            "the parameters it is given: it probably reads a copy made before the check "
            "(arrays captured in a closure, a model's attributes, globals) instead of its "
            "params argument; for a model object that reads its own params dict, "
            "fastgc.check_model puts the values there for you. Or it computes in float32 or lower precision, which rounds every "
            "change of this size away: give float32 parameters (fastgc then takes steps "
            "float32 can resolve) or compute in float64"
        ]
    notes = []
    if zero_blocks:
        names = ", ".join(zero_blocks)
        notes.append(
            f"the numeric gradient of {names} is zero everywhere, while backprop's is not: "
            f"moving {'it' if len(zero_blocks) == 1 else 'them'} did not change the cost. "
            "Does the cost read these parameters from its params argument, or a copy made "
            "before the check?"
        )
    elif exact_zero >= MOSTLY_ZERO * nonzero_analytic:
        notes.append(
            f"the numeric gradient is exactly zero on {exact_zero} of the {nonzero_analytic} "
            "components where backprop's is not: the cost's changes at this step are rounded "
            "away. Does it compute in float32 (or lower) precision? Give float32 parameters "
            "(fastgc then takes steps float32 can resolve) or compute in float64"
        )
    return notes
