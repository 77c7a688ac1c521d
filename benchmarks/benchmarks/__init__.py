"""asv benchmarks of fastgc (run from ``benchmarks/``: ``asv run --python=same --quick``).

When fastgc is not installed in the running interpreter (``--python=same`` on a source
checkout), the package is imported from the source tree next to this suite.
"""

import importlib.util
import os
import sys

if importlib.util.find_spec("fastgc") is None:  # pragma: no cover - depends on the environment
    _source = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "src")
    sys.path.insert(0, os.path.abspath(_source))
