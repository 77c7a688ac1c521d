"""Optional dependencies: never imported by ``import fastgc``; a clear error when missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastgc
from fastgc._optional import import_optional

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = ("torch", "jax", "jaxlib", "matplotlib")


def run_python(code: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=environment, timeout=120)


def test_import_fastgc_and_its_numpy_adapters_load_no_optional_dependency():
    completed = run_python(
        """
        import json, sys
        import numpy as np
        import fastgc, fastgc.testing
        w = np.array([1.0, 2.0])
        fastgc.check_fn(lambda p: (float(p["w"] @ p["w"]), {"w": 2 * p["w"]}), {"w": w},
                        progress=False, engine="python").to_json()
        print(json.dumps(sorted(m for m in sys.modules if sys.modules[m] is not None)))
        """
    )
    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout.splitlines()[-1])
    for name in OPTIONAL:
        assert not [m for m in loaded if m == name or m.startswith(name + ".")], name


@pytest.mark.parametrize("module, extra", [
    ("fastgc.torch", "torch"), ("fastgc.jax", "jax"), ("fastgc.adapters.torch", "torch")])
def test_a_missing_extra_names_the_install_command(module, extra):
    completed = run_python(
        f"""
        import sys
        sys.modules[{extra!r}] = None  # as if it were not installed
        import fastgc
        try:
            import {module}
        except fastgc.MissingDependencyError as error:
            assert isinstance(error, ImportError)
            print(error)
        else:
            raise SystemExit("imported without {extra}")
        """
    )
    assert completed.returncode == 0, completed.stderr
    message = completed.stdout.strip()
    assert message.startswith(f"fastgc.{extra} needs {extra}, which cannot be imported")
    assert message.endswith(f'pip install "fastgc[{extra}]"')


def test_import_optional_raises_a_fastgc_error():
    with pytest.raises(fastgc.MissingDependencyError,
                       match=r'^thing needs no_such_module_xyz, which cannot be imported '
                             r'\(No module named .no_such_module_xyz.\): pip install "fastgc\[x\]"$'):
        import_optional("no_such_module_xyz.sub", "x", purpose="thing")
    assert issubclass(fastgc.MissingDependencyError, (fastgc.FastGCError, ImportError))
