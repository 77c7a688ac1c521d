"""Pictures of a check: per-parameter differences with the verdict bands, and heat maps.

Matplotlib is imported only here, on first use, through :func:`fastgc._optional.import_optional`.
The figure is built without pyplot, so it needs no GUI backend (Agg included), and it is not
kept in pyplot's list of open figures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ._optional import import_optional
from ._result import Verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ._result import CheckResult, ParameterReport

VERDICT_COLORS = {"correct": "#2e7d32", "suspicious": "#ef6c00", "inconclusive": "#6a1b9a",
                  "bug": "#c62828"}
HEATMAP_COLUMNS = 2


def plot_result(result: "CheckResult", max_heatmaps: int = 4) -> "Figure":
    """The figure of :meth:`fastgc.CheckResult.plot`."""
    figure_module = import_optional("matplotlib.figure", "plot", purpose="CheckResult.plot")
    if isinstance(max_heatmaps, bool) or not isinstance(max_heatmaps, int) or max_heatmaps < 0:
        from ._errors import InvalidInputError

        raise InvalidInputError(
            f"max_heatmaps must be a non-negative int, got {max_heatmaps!r}"
        )
    flagged = sorted(
        (p for p in result.per_parameter.values() if p.verdict is not Verdict.CORRECT),
        key=lambda p: (-p.verdict.severity, -_finite_or_max(p.adjusted_difference)),
    )[:max_heatmaps]
    flagged = [p for p in flagged if math.prod(p.shape) > 0]
    n_params = len(result.per_parameter)
    map_rows = math.ceil(len(flagged) / HEATMAP_COLUMNS)
    width = min(16.0, max(6.5, 0.45 * n_params + 3.0))
    figure = figure_module.Figure(figsize=(width, 3.8 + 3.2 * map_rows), layout="constrained")
    grid = figure.add_gridspec(1 + map_rows, HEATMAP_COLUMNS,
                               height_ratios=[1.2] + [1.0] * map_rows)
    _differences(figure.add_subplot(grid[0, :]), result)
    for k, report in enumerate(flagged):
        row, column = divmod(k, HEATMAP_COLUMNS)
        _heatmap(figure, figure.add_subplot(grid[1 + row, column]), result, report)
    return figure


def _finite_or_max(value: float) -> float:
    return value if math.isfinite(value) else float("inf")


def _differences(ax: Any, result: "CheckResult") -> None:
    """Bars: the adjusted difference (what the verdict rests on); points: the raw one."""
    reports = list(result.per_parameter.values())
    names = [report.name for report in reports]
    adjusted = np.array([report.adjusted_difference for report in reports], dtype=float)
    raw = np.array([report.difference for report in reports], dtype=float)
    correct, bug = result.thresholds
    values = np.concatenate([adjusted, raw])
    positive = values[np.isfinite(values) & (values > 0)]
    floor = min(correct / 100.0, float(positive.min()) / 10.0 if positive.size else 1.0)
    top = max(10.0, float(positive.max()) * 10.0 if positive.size else 10.0)
    x = np.arange(len(reports))

    def shown(v: np.ndarray) -> np.ndarray:  # zero below the axis' floor, NaN/Inf at the top
        return np.where(np.isfinite(v), np.maximum(v, floor), top / 2.0)

    ax.axhspan(floor, correct, color=VERDICT_COLORS["correct"], alpha=0.10, zorder=0)
    ax.axhspan(correct, bug, color=VERDICT_COLORS["suspicious"], alpha=0.10, zorder=0)
    ax.axhspan(bug, top, color=VERDICT_COLORS["bug"], alpha=0.10, zorder=0)
    for threshold in (correct, bug):
        ax.axhline(threshold, color="0.4", linewidth=0.8, linestyle="--", zorder=1)
    colors = [VERDICT_COLORS[report.verdict.value] for report in reports]
    ax.bar(x, shown(adjusted) - floor, bottom=floor, color=colors, width=0.6, zorder=2)
    (points,) = ax.plot(x, shown(raw), "o", color="black", markersize=4, zorder=3)
    patches = import_optional("matplotlib.patches", "plot", purpose="CheckResult.plot")
    handles = [
        patches.Patch(color=color, label=f"adjusted difference: {verdict}")
        for verdict, color in VERDICT_COLORS.items()
    ]
    points.set_label("difference at the step")
    for k in np.flatnonzero(~np.isfinite(adjusted)):
        ax.annotate("NaN/Inf", (x[k], top / 2.0), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(floor, top)
    ax.set_xticks(x, names, rotation=45 if len(names) > 8 else 0,
                  ha="right" if len(names) > 8 else "center")
    ax.set_xlim(-0.6, len(reports) - 0.4)
    ax.set_ylabel("||approx - dtheta|| / (||approx|| + ||dtheta||)")
    ax.set_title(
        f"fastgc: {result.verdict.value.upper()}, difference {result.difference:.2e} "
        f"(correct <= {correct:.0e}, bug >= {bug:.0e})"
    )
    ax.legend(handles=handles + [points], loc="upper left", fontsize=8)


def _heatmap(figure: Any, ax: Any, result: "CheckResult", report: "ParameterReport") -> None:
    """Where the components of one parameter disagree: the relative score, on a log scale
    from a tenth of the correct-threshold (and below: agreement) to 1."""
    colors = import_optional("matplotlib.colors", "plot", purpose="CheckResult.plot")
    ticker = import_optional("matplotlib.ticker", "plot", purpose="CheckResult.plot")
    lowest = result.thresholds[0] / 10.0
    block = result.layout.block(report.name)
    scores = np.array(result.scores[block], dtype=float)
    scores = np.clip(np.nan_to_num(scores, nan=1.0, posinf=1.0), lowest, 1.0)
    shape = report.shape
    if len(shape) == 2:
        grid, label = scores.reshape(shape), f"{report.name} {shape}"
        worst = report.worst_index
    else:
        rows = shape[0] if len(shape) > 2 else 1
        grid = scores.reshape(rows, -1)
        label = f"{report.name} {shape}" + (" as (first axis, rest)" if len(shape) > 2 else "")
        flat = int(np.ravel_multi_index(report.worst_index, shape)) if shape else 0
        worst = divmod(flat, grid.shape[1])
    image = ax.imshow(grid, cmap="magma_r", norm=colors.LogNorm(vmin=lowest, vmax=1.0),
                      aspect="auto", interpolation="nearest")
    ax.plot([worst[1]], [worst[0]], "x", color="#1565c0", markersize=8, mew=2)
    ax.set_title(f"{label}: {report.verdict.value}\n{report.n_disagreeing} of "
                 f"{grid.size} components disagree (x: the worst)", fontsize=9)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("column" if len(shape) == 2 else "index")
    ax.set_ylabel("row" if len(shape) >= 2 else "")
    figure.colorbar(image, ax=ax, label="relative disagreement")
