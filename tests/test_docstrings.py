"""The Examples sections of the public docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "fastgc._check",
    "fastgc._layout",
    "fastgc._threads",
    "fastgc._config",
    "fastgc._tune",
    "fastgc._optional",
    "fastgc._result",
    "fastgc.testing",
    "fastgc.adapters.functions",
    "fastgc.adapters.layers",
    "fastgc.adapters.models",
    "fastgc.adapters.torch",
    "fastgc.adapters.jax",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert attempted > 0, f"{name} has no examples"
    assert failures == 0
