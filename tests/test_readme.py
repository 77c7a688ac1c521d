"""The README's Python examples run as written and say what the README claims."""

from __future__ import annotations

import os
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


def test_readme_executor_examples_run_on_workers_and_match_the_local_check():
    blocks = python_blocks()
    (block,) = [block for block in blocks if 'executor="processes"' in block]
    namespace: dict = {}
    exec(compile(blocks[0], "README.md[quick start]", "exec"), namespace)
    local = namespace["result"]
    saved = dict(os.environ)  # Dask's nannies set OMP_NUM_THREADS=1 here when they spawn
    try:
        exec(compile(block, "README.md[executors]", "exec"), namespace)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    result = namespace["result"]
    assert result.executor == "dask" and result.n_workers == 2
    assert result.approx.tobytes() == local.approx.tobytes()
    assert (namespace["pool"]._shutdown_thread, result.verdict) == (True, "correct")
    commands = "\n".join(bash_commands())
    assert "dask scheduler" in commands and "dask worker tcp://" in commands


def test_readme_commands_are_the_ones_ci_runs():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_command = next(line for line in text.splitlines() if "pytest" in line and "pip install" in line)
    assert test_command.strip() in ci
    assert "python -m fastgc demo" in text


def bash_commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_entry_points_run_in_order_and_say_what_the_readme_claims(tmp_path, monkeypatch):
    """The quick start, then every example of "Checking code where it is", in one namespace,
    in a scratch directory (they write .npz, .png and .json files)."""
    import subprocess
    import sys

    import matplotlib

    matplotlib.use("Agg")
    require_engine("cython")
    blocks = python_blocks()
    start = next(k for k, block in enumerate(blocks) if "fastgc.check_fn(" in block)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md[quick start]", "exec"), namespace)
    for k, block in enumerate(blocks[start:], start):
        exec(compile(block, f"README.md[python block {k}]", "exec"), namespace)
        if "check_fn(" in block:
            assert namespace["result"].verdict == "correct"
            assert namespace["result"].ignored_gradients == ("dZ2", "dA1", "dZ1")
        if "check_layer(" in block and "assert_passed" not in block:
            assert namespace["result"].verdict == "correct"
            assert list(namespace["result"].per_parameter) == ["x", "gamma", "beta"]
            assert not namespace["bn_param"]["running_mean"].any()  # yours is left alone
        if "check_model(" in block:
            assert namespace["result"].verdict == "correct"
        if "fastgc.torch" in block:
            assert namespace["result"].verdict == "correct"
            assert list(namespace["result"].per_parameter)[:2] == ["0.weight", "0.bias"]
            assert namespace["function_result"].verdict == "correct"
        if "fastgc.jax" in block:
            assert namespace["result"].verdict == "correct"
            assert list(namespace["result"].per_parameter) == ["layer.b", "layer.w"]
        if ".plot(" in block:
            assert namespace["summary"]["verdict"] == "bug"
            assert len(namespace["figure"].axes) == 3  # the differences, W2's map, its colour bar
            assert (tmp_path / "check.png").exists() and (tmp_path / "check.json").exists()
    # The command line section: its command, run on the files the block before it wrote, with
    # the quick start's cost as mymodel.cost.
    (tmp_path / "mymodel.py").write_text(blocks[0])
    commands = [line for text in bash_commands() for line in text.splitlines()
                if line.startswith("python -m fastgc check ")]
    assert len(commands) == 2 and "--plan screen" in commands[1]
    for command in commands:
        completed = subprocess.run([sys.executable, *command.split()[1:]], capture_output=True,
                                   text=True, cwd=tmp_path, timeout=300)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert "CORRECT" in completed.stdout
    assert "plan screen" in completed.stdout
    assert (tmp_path / "result.json").exists() and (tmp_path / "result.png").exists()
