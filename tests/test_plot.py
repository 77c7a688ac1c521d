"""CheckResult.plot(): rendered with Agg and checked for what it shows."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastgc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
X = np.linspace(-1.0, 1.0, 18).reshape(3, 6)


def make_params():
    rng = np.random.default_rng(1)
    return {"W1": rng.standard_normal((4, 3)), "b1": rng.standard_normal((4, 1)) * 0.1,
            "W2": rng.standard_normal((2, 4)), "b2": np.zeros(2)}


def cost(p):
    A1 = np.tanh(p["W1"] @ X + p["b1"])
    return float(np.sum(np.tanh(p["W2"] @ A1 + p["b2"][:, None]) ** 2))


def grads(p):
    A1 = np.tanh(p["W1"] @ X + p["b1"])
    A2 = np.tanh(p["W2"] @ A1 + p["b2"][:, None])
    dZ2 = 2 * A2 * (1 - A2**2)
    dZ1 = (p["W2"].T @ dZ2) * (1 - A1**2)
    return {"dW1": dZ1 @ X.T, "db1": dZ1.sum(1, keepdims=True), "dW2": dZ2 @ A1.T,
            "db2": dZ2.sum(1)}


def check(edit=None):
    params = make_params()
    g = grads(params)
    if edit is not None:
        edit(g)
    return fastgc.check(cost, params, g, progress=False)


def bars_and_points(ax):
    (bars,) = ax.containers
    (points,) = [line for line in ax.lines if line.get_marker() == "o"]
    return bars, points


def test_a_correct_check_is_one_log_axis_with_a_bar_and_a_point_per_parameter():
    result = check()
    figure = result.plot()
    (ax,) = figure.axes
    assert ax.get_yscale() == "log"
    bars, points = bars_and_points(ax)
    assert len(bars) == len(points.get_xdata()) == 4
    assert [label.get_text() for label in ax.get_xticklabels()] == ["W1", "b1", "W2", "b2"]
    # Bars reach the adjusted difference (or the axis floor), points the raw difference.
    floor = ax.get_ylim()[0]
    for bar, report, y in zip(bars, result.per_parameter.values(), points.get_ydata()):
        assert bar.get_y() + bar.get_height() == pytest.approx(
            max(report.adjusted_difference, floor))
        assert y == pytest.approx(max(report.difference, floor))
    # The verdict bands: three shaded spans, with the thresholds between them.
    spans = [p for p in ax.patches if p not in bars.patches]
    assert len(spans) == 3
    assert not ax.images
    assert "CORRECT" in ax.get_title()


def test_a_flagged_2d_parameter_gets_a_heat_map_of_its_components():
    def wrong(g):
        g["dW2"] = g["dW2"].copy()
        g["dW2"][1, 2] *= 1.5

    result = check(wrong)
    figure = result.plot()
    assert len(figure.axes) == 3  # the differences, one heat map, its colour bar
    summary, heatmap = figure.axes[:2]
    bars, _ = bars_and_points(summary)
    colors = [matplotlib.colors.to_hex(bar.get_facecolor()) for bar in bars]
    assert colors[2] == "#c62828" and colors[0] == "#2e7d32"  # W2 red, W1 green
    (image,) = heatmap.images
    data = np.asarray(image.get_array())
    assert data.shape == (2, 4)
    assert np.unravel_index(np.argmax(data), data.shape) == (1, 2)
    assert heatmap.get_title().startswith("W2 (2, 4): bug")


def test_flagged_1d_parameters_and_non_finite_gradients():
    def wrong(g):
        g["db2"] = -g["db2"]
        g["dW1"] = g["dW1"].copy()
        g["dW1"][0, 0] = np.nan

    figure = check(wrong).plot()
    maps = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title().split(" ")[0] for ax in maps] == ["W1", "b2"]
    assert np.asarray(maps[1].images[0].get_array()).shape == (1, 2)
    summary = figure.axes[0]
    assert any(text.get_text() == "NaN/Inf" for text in summary.texts)
    assert len(check(wrong).plot(max_heatmaps=0).axes) == 1
    with pytest.raises(fastgc.InvalidInputError, match="max_heatmaps must be"):
        check(wrong).plot(max_heatmaps=-1)


def test_plot_saves_the_file(tmp_path):
    result = check()
    result.plot(tmp_path / "check.png")
    assert (tmp_path / "check.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result.plot(tmp_path / "check.svg")
    assert b"<svg" in (tmp_path / "check.svg").read_bytes()[:500]


def test_plot_does_not_use_pyplot():
    check().plot()
    assert "matplotlib.pyplot" not in sys.modules


def test_without_matplotlib_the_error_names_the_extra():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["matplotlib"] = None
        import numpy as np, fastgc
        result = fastgc.check(lambda p: float(np.sum(p["w"] ** 2)), {"w": np.ones(2)},
                              {"dw": 2 * np.ones(2)}, progress=False)
        try:
            result.plot()
        except fastgc.MissingDependencyError as error:
            assert isinstance(error, ImportError)
            print(error)
        """
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env=environment, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert 'pip install "fastgc[plot]"' in completed.stdout
    assert completed.stdout.startswith("CheckResult.plot needs matplotlib")


def test_an_inconclusive_parameter_has_its_own_colour():
    w = np.array([0.3, -0.2])
    result = fastgc.check(lambda p: float(1e12 + 1e-3 * np.sum(p["w"] ** 2)), {"w": w},
                          {"dw": 2e-3 * w}, progress=False)
    assert result.verdict == "inconclusive"
    figure = result.plot()
    bars, _ = bars_and_points(figure.axes[0])
    assert [matplotlib.colors.to_hex(bar.get_facecolor()) for bar in bars] == ["#6a1b9a"]
    assert "INCONCLUSIVE" in figure.axes[0].get_title()
