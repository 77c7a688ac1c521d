"""``python -m fastgc demo large``: the screened network names each planted bug, and the
gradients it checks against are the network's true ones."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import fastgc
from conftest import require_engine
from fastgc import _demo_large

README = Path(__file__).resolve().parents[1] / "README.md"


def test_demo_large_backprop_is_the_true_gradient():
    params, X, Y, sizes = _demo_large.large_network(width=6, layers=3, batch=2)
    result = fastgc.check(
        lambda p: _demo_large.network_cost()(np.concatenate([v.ravel() for v in p.values()]),
                                             X, Y, sizes),
        params, _demo_large.backprop(params, X, Y), progress=False)
    assert result.verdict == "correct"


def test_demo_large_names_every_planted_bug_with_few_evaluations():
    require_engine("numba")
    lines: list[str] = []
    assert _demo_large.run(lines.append, width=256, layers=4) == 0
    text = "\n".join(lines)
    assert "263,168 parameters in 8 blocks" in text
    assert "worst component W3[17, 123]" in text
    assert "look first at b3" in text
    used = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) cost evaluations instead", text)]
    assert len(used) == 3 and max(used) < 1000


def test_readme_large_network_example_runs_as_it_says():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if 'plan="screen"' in b]
    namespace: dict = {}
    exec(compile(block, "README.md[large networks]", "exec"), namespace)
    result = namespace["result"]
    assert result.verdict == "bug" and tuple(result.worst(1)[0][:2]) == ("W1", (3, 17))
    assert result.evaluations < 400
    assert fastgc.bug_patterns(result) == {"W1": "a single wrong entry at [3, 17]"}
    assert namespace["chosen"].plan == "full" and namespace["chosen"].verdict == "bug"
