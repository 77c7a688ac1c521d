"""``python -m fastgc check``, run in a subprocess: exit 0 correct, 1 bug, suspicious or
inconclusive, 2 errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

COSTS = """
import numpy as np

def cost(p, X, Y):
    A = np.tanh(p["W"] @ X + p["b"])
    return float(np.sum((A - Y) ** 2) / X.shape[1])

def grads(p, X, Y):
    A = np.tanh(p["W"] @ X + p["b"])
    dZ = 2 * (A - Y) * (1 - A**2) / X.shape[1]
    return {"dW": dZ @ X.T, "db": dZ.sum(axis=1, keepdims=True), "dZ": dZ}

def loss_and_grads(p, X, Y):
    return cost(p, X, Y), grads(p, X, Y)

def returns_text(p, X, Y):
    return "0.5"

def swamped(p, X, Y):
    return float(1e12 + 1e-3 * np.sum(p["W"] ** 2) + 0.0 * np.sum(p["b"]))

def swamped_grads(p, X, Y):
    return {"dW": 2e-3 * p["W"], "db": np.zeros_like(p["b"])}
"""


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "mycosts.py").write_text(COSTS)
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((2, 3)), "b": rng.standard_normal((2, 1))}
    X, Y = rng.standard_normal((3, 5)), rng.standard_normal((2, 5))
    np.savez(tmp_path / "p.npz", **params)
    np.savez(tmp_path / "a.npz", X, Y)  # arr_0, arr_1: positional
    namespace: dict = {}
    exec(COSTS, namespace)
    good = namespace["grads"](params, X, Y)
    np.savez(tmp_path / "g.npz", **good)
    np.savez(tmp_path / "bad.npz", dW=good["dW"], db=-good["db"])
    np.savez(tmp_path / "odd.npz", dW=good["dW"], db=good["db"] * (1 + 1e-5))
    return tmp_path


def fastgc_check(workdir: Path, *arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "fastgc", "check", *arguments], capture_output=True, text=True,
        cwd=workdir, env=environment, timeout=120,
    )


def test_correct_gradients_exit_0_and_write_json_and_plot(workdir):
    completed = fastgc_check(workdir, "mycosts:cost", "--params", "p.npz", "--grads", "g.npz",
                             "--args", "a.npz", "--json", "out.json", "--plot", "out.png")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("fastgc gradient check: CORRECT")
    assert "ignored gradient entries (they match no parameter): dZ" in completed.stdout
    data = json.loads((workdir / "out.json").read_text())
    assert data["verdict"] == "correct"
    assert [p["name"] for p in data["parameters"]] == ["W", "b"]
    assert (workdir / "out.png").read_bytes()[:4] == b"\x89PNG"


def test_a_bug_exits_1_and_names_the_parameter(workdir):
    completed = fastgc_check(workdir, "mycosts:cost", "--params", "p.npz", "--grads", "bad.npz",
                             "--args", "a.npz", "--json", "out.json")
    assert completed.returncode == 1
    assert "look first at b" in completed.stdout
    assert json.loads((workdir / "out.json").read_text())["verdict"] == "bug"


def test_suspicious_exits_1_unless_allowed(workdir):
    arguments = ("mycosts:cost", "--params", "p.npz", "--grads", "odd.npz", "--args", "a.npz")
    completed = fastgc_check(workdir, *arguments)
    assert completed.returncode == 1 and "SUSPICIOUS" in completed.stdout
    assert fastgc_check(workdir, *arguments, "--allow-suspicious", "--quiet").returncode == 0


def test_inconclusive_exits_1_unless_allowed(workdir):
    arguments = ("mycosts:swamped", "--params", "p.npz", "--grads", "mycosts:swamped_grads",
                 "--args", "a.npz")
    completed = fastgc_check(workdir, *arguments)
    assert completed.returncode == 1 and "INCONCLUSIVE" in completed.stdout
    assert fastgc_check(workdir, *arguments, "--allow-suspicious", "--quiet").returncode == 1
    assert fastgc_check(workdir, *arguments, "--allow-inconclusive", "--quiet").returncode == 0


def test_gradients_from_a_function_a_file_target_and_loss_and_grads(workdir):
    for arguments in (
        ("mycosts:cost", "--grads", "mycosts:grads"),
        (str(workdir / "mycosts.py") + ":cost", "--grads", "g.npz"),
        ("mycosts:loss_and_grads", "--loss-and-grads"),
    ):
        completed = fastgc_check(workdir, *arguments, "--params", "p.npz", "--args", "a.npz",
                                 "--threads", "1", "--engine", "python", "--eps", "1e-6")
        assert completed.returncode == 0, (arguments, completed.stdout, completed.stderr)
        assert "eps=1e-06 as given" in completed.stdout


def test_args_with_named_keys_keep_the_archive_order(workdir):
    with np.load(workdir / "a.npz") as archive:
        X, Y = archive["arr_0"], archive["arr_1"]
    np.savez(workdir / "named.npz", X=X, Y=Y)
    np.savez(workdir / "swapped.npz", arg1=Y, arg0=X)
    for name in ("named.npz", "swapped.npz"):
        completed = fastgc_check(workdir, "mycosts:cost", "--params", "p.npz", "--grads",
                                 "g.npz", "--args", name, "--quiet")
        assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize("arguments, message", [
    (("mycosts:cost", "--params", "missing.npz", "--grads", "g.npz"),
     "--params missing.npz: no such file"),
    (("nomodule:cost", "--params", "p.npz", "--grads", "g.npz"),
     "cannot import module 'nomodule'"),
    (("mycosts:nothing", "--params", "p.npz", "--grads", "g.npz"),
     "mycosts has no attribute 'nothing'"),
    (("mycosts", "--params", "p.npz", "--grads", "g.npz"), "TARGET must be module:function"),
    (("mycosts:cost", "--params", "p.npz"), "give the analytic gradients"),
    (("mycosts:cost", "--params", "p.npz", "--grads", "g.npz"),
     "the cost raised TypeError at the unperturbed parameters"),  # no --args
    (("mycosts:returns_text", "--params", "p.npz", "--grads", "g.npz", "--args", "a.npz"),
     "the cost returned str"),
    (("mycosts:cost", "--params", "p.npz", "--grads", "a.npz", "--args", "a.npz"),
     "grads has no gradient for parameter 'W'"),
    (("mycosts:cost", "--params", "p.npz", "--grads", "g.npz", "--args", "a.npz",
      "--threads", "0"), "n_threads"),
])
def test_input_errors_exit_2_with_a_message_and_no_traceback(workdir, arguments, message):
    completed = fastgc_check(workdir, *arguments)
    assert completed.returncode == 2, (completed.stdout, completed.stderr)
    assert completed.stderr.startswith("fastgc check: error: ")
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_usage_errors_exit_2(workdir):
    completed = fastgc_check(workdir, "mycosts:cost")  # --params is required
    assert completed.returncode == 2
    assert "the following arguments are required: --params" in completed.stderr


def test_the_help_documents_how_args_map_to_positions(workdir):
    completed = fastgc_check(workdir, "--help")
    assert completed.returncode == 0
    text = " ".join(completed.stdout.split())
    assert "Keys arr_0, arr_1, ... (what np.savez(\"a.npz\", X, y) writes)" in text
    assert ("Exit status: 0 correct, 1 bug, suspicious or inconclusive, 2 usage or input "
            "error") in text


def test_main_returns_the_exit_status_in_process(workdir, monkeypatch, capsys):
    from fastgc.__main__ import main

    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the command puts the cwd on it
    assert main(["check", "mycosts:cost", "--params", "p.npz", "--grads", "bad.npz", "--args",
                 "a.npz", "--quiet"]) == 1
    assert main(["check", "mycosts:cost", "--params", "p.npz", "--grads", "nothere.npz"]) == 2
    assert "--grads nothere.npz: no such file" in capsys.readouterr().err
    sys.modules.pop("mycosts", None)


def test_a_missing_matplotlib_for_plot_is_an_input_error_before_the_check(workdir):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from fastgc.__main__ import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    completed = subprocess.run(
        [sys.executable, "-c", code, "check", "mycosts:cost", "--params", "p.npz", "--grads",
         "g.npz", "--args", "a.npz", "--plot", "out.png"],
        capture_output=True, text=True, cwd=workdir, env=environment, timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stdout == ""  # no check ran
    assert 'pip install "fastgc[plot]"' in completed.stderr


def test_an_unexpected_failure_exits_2_not_1(workdir, monkeypatch, capsys):
    from fastgc import _check
    from fastgc.__main__ import main

    def broken(*arguments, **options):
        raise RuntimeError("internal")

    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(_check, "check", broken)
    assert main(["check", "mycosts:cost", "--params", "p.npz", "--grads", "g.npz",
                 "--args", "a.npz"]) == 2
    err = capsys.readouterr().err
    assert "RuntimeError: internal" in err and "failed unexpectedly" in err
    sys.modules.pop("mycosts", None)


def test_the_check_runs_on_worker_processes(workdir):
    arguments = ("mycosts:cost", "--params", "p.npz", "--grads", "g.npz", "--args", "a.npz")
    completed = fastgc_check(workdir, *arguments, "--executor", "processes", "--workers", "2",
                             "--json", "out.json")
    assert completed.returncode == 0, completed.stderr
    assert "on processes: 2 worker(s) x 1 thread(s)" in completed.stdout
    data = json.loads((workdir / "out.json").read_text())
    assert (data["executor"], data["n_workers"]) == ("processes", 2)


def test_a_screen_passes_correct_gradients_and_finds_a_planted_bug(workdir):
    arguments = ("mycosts:cost", "--params", "p.npz", "--args", "a.npz", "--plan", "screen")
    completed = fastgc_check(workdir, *arguments, "--grads", "g.npz", "--json", "good.json")
    assert completed.returncode == 0, completed.stderr
    assert "plan screen" in completed.stdout
    assert json.loads((workdir / "good.json").read_text())["plan"] == "screen"
    completed = fastgc_check(workdir, *arguments, "--grads", "bad.npz", "--json", "bad.json")
    assert completed.returncode == 1, completed.stderr
    assert "look first at b" in completed.stdout
    assert "kind of bug in b: sign flipped" in completed.stdout
    data = json.loads((workdir / "bad.json").read_text())
    assert (data["plan"], data["verdict"]) == ("screen", "bug")
    assert [p["verdict"] for p in data["parameters"]] == ["correct", "bug"]


@pytest.mark.parametrize("plan", ["sampled", "full"])
def test_the_other_plans_and_a_budget_run_from_the_command_line(workdir, plan):
    for choice in (("--plan", plan), ("--budget", "30")):
        completed = fastgc_check(workdir, "mycosts:cost", "--params", "p.npz", "--grads",
                                 "bad.npz", "--args", "a.npz", *choice, "--json", "out.json")
        assert completed.returncode == 1, (choice, completed.stderr)
        data = json.loads((workdir / "out.json").read_text())
        assert data["verdict"] == "bug"
        assert data["plan"] == (plan if choice[0] == "--plan" else "full")  # 16 evaluations fit


@pytest.mark.parametrize("arguments, message", [
    (("--plan", "quick"), "argument --plan: invalid choice: 'quick'"),
    (("--budget", "-1"), "argument --budget: must be a positive number of seconds, got '-1'"),
    (("--budget", "soon"), "argument --budget: not a number of seconds: 'soon'"),
    (("--plan", "screen", "--budget", "3"), "argument --budget: not allowed with argument --plan"),
])
def test_a_bad_plan_or_budget_is_a_usage_error(workdir, arguments, message):
    completed = fastgc_check(workdir, "mycosts:cost", "--params", "p.npz", "--grads", "g.npz",
                             "--args", "a.npz", *arguments)
    assert completed.returncode == 2, (completed.stdout, completed.stderr)
    assert completed.stdout == ""  # no check ran
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
