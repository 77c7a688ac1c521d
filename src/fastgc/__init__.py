"""fastgc: fast, parallel, trustworthy gradient checking for hand-written backpropagation.

>>> import fastgc
>>> result = fastgc.check(cost, params, grads)   # doctest: +SKIP
>>> print(result)                                # doctest: +SKIP

Importing fastgc is cheap: Numba and the compiled extension are loaded on first use, and the
optional submodules ``fastgc.torch``, ``fastgc.jax`` and ``fastgc.testing`` only when imported.
"""

from ._check import check
from ._config import show_config
from .adapters import check_fn, check_layer, check_model
from ._errors import (
    CostError,
    CostTypeError,
    EngineError,
    ExecutorError,
    FastGCError,
    FastGCWarning,
    GradientCheckError,
    InvalidDtypeError,
    InvalidInputError,
    IrreproducibleCostError,
    MissingDependencyError,
)
from ._layout import Layout, flatten
from ._patterns import bug_patterns
from ._result import BlockCoverage, CheckResult, Component, Label, ParameterReport, Verdict
from .plans import Budget, Full, Sampled, Screen
from ._threads import get_num_threads, set_num_threads, threads
from ._tune import suggest_threads
from ._version import __version__

__all__ = [
    "BlockCoverage",
    "Budget",
    "CheckResult",
    "Component",
    "CostError",
    "CostTypeError",
    "EngineError",
    "ExecutorError",
    "FastGCError",
    "FastGCWarning",
    "GradientCheckError",
    "InvalidDtypeError",
    "InvalidInputError",
    "IrreproducibleCostError",
    "Label",
    "Layout",
    "MissingDependencyError",
    "Full",
    "ParameterReport",
    "Sampled",
    "Screen",
    "Verdict",
    "bug_patterns",
    "check",
    "check_fn",
    "check_layer",
    "check_model",
    "flatten",
    "get_num_threads",
    "set_num_threads",
    "show_config",
    "suggest_threads",
    "threads",
]
