"""The README's Python examples run as written and say what the README claims."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import require_engine

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run_and_check_correct_gradients():
    require_engine("numba")
    blocks = python_blocks()
    assert len(blocks) >= 3
    namespace: dict = {}
    exec(compile(blocks[0], "README.md[quick start]", "exec"), namespace)
    assert namespace["result"].verdict == "correct"
    exec(compile(blocks[1], "README.md[njit]", "exec"), namespace)
    result = namespace["result"]
    assert result.engine == "numba"
    assert result.verdict == "correct"
    assert list(result.per_parameter) == ["W1", "b1", "W2", "b2"]
    exec(compile(blocks[2], "README.md[threads]", "exec"), namespace)
    suggestion = namespace["suggestion"]
    assert suggestion.recommended in suggestion.table


def test_readme_commands_are_the_ones_ci_runs():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_command = next(line for line in text.splitlines() if "pytest" in line and "pip install" in line)
    assert test_command.strip() in ci
    assert "python -m fastgc demo" in text
