"""fastgc.testing: assertions that fail a test with the report as the message."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastgc
from fastgc.testing import assert_gradients, assert_passed

ROOT = Path(__file__).resolve().parents[1]
w = np.linspace(-1.0, 1.0, 10)


def cost(p):
    return float(np.sum(np.sin(p["w"])))


def grads_off_by(relative):
    return {"dw": np.cos(w) * (1 + relative)}


def test_correct_gradients_pass_and_return_the_result():
    result = assert_gradients(cost, {"w": w}, grads_off_by(0.0))
    assert result.verdict == "correct"


def test_a_bug_fails_with_the_report_as_the_message():
    with pytest.raises(AssertionError) as caught:
        assert_gradients(cost, {"w": w}, {"dw": -np.cos(w)})
    error = caught.value
    assert isinstance(error, fastgc.GradientCheckError)
    assert str(error) == str(error.result)
    assert str(error).startswith("fastgc gradient check: BUG")
    assert "look first at w" in str(error)


def test_suspicious_fails_by_default_and_passes_when_allowed():
    with pytest.raises(fastgc.GradientCheckError, match="SUSPICIOUS"):
        assert_gradients(cost, {"w": w}, grads_off_by(1e-5))
    result = assert_gradients(cost, {"w": w}, grads_off_by(1e-5), allow="suspicious")
    assert result.verdict == "suspicious"
    with pytest.raises(fastgc.GradientCheckError, match="BUG"):
        assert_gradients(cost, {"w": w}, grads_off_by(0.5), allow="suspicious")


def swamped_cost(p):
    return float(1e12 + 1e-3 * np.sum(p["w"] ** 2))  # round-off swamps every step


def test_inconclusive_fails_by_default_and_passes_only_when_allowed():
    swamped = ({"w": np.array([0.3, -0.2])}, {"dw": 2e-3 * np.array([0.3, -0.2])})
    with pytest.raises(fastgc.GradientCheckError, match="INCONCLUSIVE"):
        assert_gradients(swamped_cost, *swamped)
    with pytest.raises(fastgc.GradientCheckError, match="INCONCLUSIVE"):
        assert_gradients(swamped_cost, *swamped, allow="suspicious")
    result = assert_gradients(swamped_cost, *swamped, allow="inconclusive")
    assert result.verdict == "inconclusive"
    with pytest.raises(fastgc.GradientCheckError, match="BUG"):
        assert_gradients(cost, {"w": w}, grads_off_by(0.5), allow="inconclusive")


def test_options_are_passed_to_check():
    result = assert_gradients(lambda p, scale: scale * cost(p), {"w": w},
                              {"dw": 3.0 * np.cos(w)}, args=(3.0,), engine="python")
    assert result.engine == "python"


def test_assert_passed_takes_any_result():
    result = fastgc.check(cost, {"w": w}, grads_off_by(1e-5), progress=False)
    with pytest.raises(fastgc.GradientCheckError):
        assert_passed(result)
    assert assert_passed(result, allow="suspicious") is result
    with pytest.raises(fastgc.InvalidInputError,
                       match=r"allow must be None, 'suspicious' or 'inconclusive'"):
        assert_passed(result, allow="bug")
    with pytest.raises(fastgc.InvalidInputError, match=r"takes the CheckResult of a check"):
        assert_passed("correct")


def run_pytest(*arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments],
        capture_output=True, text=True, cwd=ROOT, env=environment, timeout=300,
    )


def test_the_example_test_file_in_the_docs_passes():
    completed = run_pytest("docs/examples/test_my_layer.py")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "3 passed" in completed.stdout


def test_a_failing_test_shows_the_report(tmp_path):
    test_file = tmp_path / "test_layer_bug.py"
    test_file.write_text(textwrap.dedent(
        """
        import numpy as np
        from fastgc.testing import assert_gradients

        def test_sign_flip():
            w = np.array([0.5, -1.0, 2.0])
            assert_gradients(lambda p: float(np.sum(p["w"] ** 3)), {"w": w}, {"dw": -3 * w**2})
        """
    ))
    completed = run_pytest(str(test_file), "--rootdir", str(tmp_path))
    assert completed.returncode == 1
    assert "GradientCheckError: fastgc gradient check: BUG" in completed.stdout
    assert "look first at w" in completed.stdout
