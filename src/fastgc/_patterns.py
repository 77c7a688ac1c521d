"""What kind of bug it is: patterns in the disagreeing components of a block.

From the components a check differenced (all of them in a full check, the located and
sampled ones otherwise), recognise the common mistakes: a scale factor (x2, x batch size,
a 1/m too many), a sign flip, a transposed gradient, a wrong row or column, a single wrong
entry, and otherwise an error not proportional to the gradient (a missing or extra term).
Reads only the public fields of a :class:`~fastgc.CheckResult`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._result import CheckResult

PROPORTIONAL = 0.02  # ratios analytic / numeric within 2% of each other: a scale factor
MOST = 0.9


def bug_patterns(result: "CheckResult") -> dict[str, str]:
    """A sentence per block whose verdict is a bug, saying what kind of bug it looks like.

    Parameters
    ----------
    result : CheckResult

    Returns
    -------
    dict of str to str
        Block name to its pattern, for the blocks where one is recognised.

    Examples
    --------
    >>> import numpy as np, fastgc
    >>> w = np.linspace(0.5, 1.5, 6).reshape(2, 3)
    >>> result = fastgc.check(lambda p: float(np.sum(p["w"] ** 2)), {"w": w},
    ...                       {"dw": 4 * w}, progress=False)
    >>> fastgc.bug_patterns(result)["w"]
    'scaled by 2 (every checked component): a factor of 2 too many'
    """
    patterns = {}
    layout = result.layout
    for k, (name, report) in enumerate(result.per_parameter.items()):
        if report.verdict.value != "bug":
            continue
        lo, hi = int(layout.offsets[k]), int(layout.offsets[k + 1])
        pattern = _block_pattern(result, lo, hi, tuple(report.shape))
        if pattern:
            patterns[name] = pattern
    return patterns


def _block_pattern(result: "CheckResult", lo: int, hi: int, shape: tuple) -> str | None:
    checked = np.arange(lo, hi) if result.checked is None else (
        np.flatnonzero(result.checked[lo:hi]) + lo)
    if checked.size == 0:
        return None
    numeric = np.array([result.corrected.get(int(i), result.approx[i]) for i in checked])
    analytic = result.dtheta[checked]
    if not np.all(np.isfinite(analytic)):
        return "NaN or Inf in the gradient"
    wrong = result.scores[checked] > 0
    if not wrong.any():
        return None
    if wrong.sum() == 1 and checked.size > 1:
        index = result.layout.locate(int(checked[wrong][0]))[1]
        return f"a single wrong entry at {list(index)}"
    if len(shape) == 2:
        located = _line(result, checked[wrong], checked, shape)
        if located:
            return located
    scale = _scale(numeric[wrong], analytic[wrong])
    share = "every checked component" if wrong.all() else f"{int(wrong.sum())} components"
    if scale is not None and wrong.mean() >= MOST:
        if abs(scale + 1) < PROPORTIONAL:
            return f"sign flipped ({share})"
        return f"scaled by {scale:.4g} ({share}){_factor_hint(scale)}"
    if wrong.mean() >= MOST:
        return (f"off by an amount not proportional to the gradient ({share}): a missing or "
                "extra term")
    return None


def _scale(numeric: np.ndarray, analytic: np.ndarray) -> float | None:
    """The common ratio analytic / numeric, if there is one."""
    usable = np.abs(numeric) > 1e-12 * max(float(np.max(np.abs(numeric))), 1e-300)
    if usable.sum() < 2:
        return None
    ratios = analytic[usable] / numeric[usable]
    middle = float(np.median(ratios))
    if middle != 0 and np.all(np.abs(ratios - middle) <= PROPORTIONAL * abs(middle)):
        return middle
    return None


def _factor_hint(scale: float) -> str:
    for value, words in ((abs(scale), "too many"), (1 / abs(scale), "missing")):
        whole = round(value)
        if whole >= 2 and abs(value - whole) < PROPORTIONAL * whole:
            return f": a factor of {whole} {words}" + (
                " (the batch size? a 1/m)" if whole > 4 else "")
    return ""


def _line(result: "CheckResult", wrong: np.ndarray, checked: np.ndarray,
          shape: tuple) -> str | None:
    """A wrong row, a wrong column, or a transposed matrix."""
    indices = np.array([result.layout.locate(int(i))[1] for i in wrong])
    rows, columns = np.unique(indices[:, 0]), np.unique(indices[:, 1])
    if wrong.size >= 2 and rows.size == 1 and shape[0] > 1:
        return f"a wrong row: [{int(rows[0])}, :]"
    if wrong.size >= 2 and columns.size == 1 and shape[1] > 1:
        return f"a wrong column: [:, {int(columns[0])}]"
    if shape[0] == shape[1] and _transposed(result, wrong, checked, shape):
        return "transposed: the gradient of entry [i, j] sits at [j, i]"
    return None


def _transposed(result, wrong, checked, shape) -> bool:
    lo = int(wrong[0]) - int(np.ravel_multi_index(result.layout.locate(int(wrong[0]))[1],
                                                  shape))
    numeric_at = {int(i): result.corrected.get(int(i), result.approx[i]) for i in checked}
    matches = 0
    for i in wrong:
        row, column = result.layout.locate(int(i))[1]
        mirror = lo + column * shape[1] + row
        if mirror in numeric_at:
            expected = numeric_at[mirror]
            matches += abs(result.dtheta[i] - expected) <= 1e-4 * (abs(expected) + 1e-300)
    return matches >= MOST * wrong.size
