"""Python code run in a fresh interpreter that finds fastgc and the tests' helper modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import fastgc

TESTS_DIR = Path(__file__).resolve().parent
SOURCE_DIR = Path(fastgc.__file__).resolve().parent.parent


def run_python(code: str, *argv: str, prelude: str = "", env: dict | None = None,
               cwd: str | Path | None = None) -> dict:
    """Run ``prelude + code`` in a fresh interpreter (in ``cwd``); return the JSON it prints
    last."""
    paths = [str(SOURCE_DIR), str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    environment.pop("FASTGC_ENGINE", None)
    environment.update(env or {})
    # A child that hangs prints where each of its threads is, and exits, before the timeout.
    watchdog = "import faulthandler; faulthandler.dump_traceback_later(90, exit=True)\n"
    completed = subprocess.run(
        [sys.executable, "-c", watchdog + textwrap.dedent(prelude) + textwrap.dedent(code),
         *argv],
        capture_output=True, text=True, env=environment, timeout=120, cwd=cwd,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.splitlines()[-1])
