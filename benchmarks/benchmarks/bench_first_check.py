"""The first check in a new process, cold and warm cache: fastgc's share of it.

What a user feels on every ``pytest`` run or notebook restart. Measured in a fresh interpreter
(see :mod:`._first_check`), after the cost itself is compiled, with Numba's cache directory
empty (``cold``) or filled by one earlier process (``warm``).
"""

import shutil
import tempfile

from . import _first_check


class TrackFirstCheck:
    """Seconds of the first check of a new process, beyond compiling the cost; ``second``:
    the first check of another cost with the same argument types, in the same process."""

    params = (list(_first_check.COSTS), ["cold", "warm"], ["first", "second"])
    param_names = ["cost", "cache", "check"]
    unit = "seconds"
    number = 1
    repeat = 1
    timeout = 300.0

    def setup_cache(self):
        """One run per cost and cache state, shared by the parameters that read it."""
        measured = {}
        for cost in _first_check.COSTS:
            cache_dir = tempfile.mkdtemp(prefix="fastgc-first-check-")
            try:
                measured[cost, "cold"] = _first_check.measure(cost, cache_dir)
                measured[cost, "warm"] = _first_check.measure(cost, cache_dir)
            finally:
                shutil.rmtree(cache_dir, ignore_errors=True)
        return measured

    def track_first_check_seconds(self, measured, cost, cache, check):
        return measured[cost, cache][check]
