"""Options of ``check`` (``fastgc/_validation.py``): a bad value raises fastgc's own error,
whose message names the option, and leaves the caller's arrays untouched."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastgc
from conftest import check_option
from costs import X

pytestmark = pytest.mark.usefixtures("no_thread_default")


@pytest.mark.parametrize("eps", [0.0, -1e-7, math.nan, math.inf, -math.inf])
def test_eps_not_positive_and_finite(inputs, eps):
    with pytest.raises(fastgc.InvalidInputError, match=r"eps must be positive and finite"):
        check_option(inputs, eps=eps)


@pytest.mark.parametrize("eps", ["1e-7", True, [1e-7], 1j])
def test_eps_not_a_number(inputs, eps):
    with pytest.raises(fastgc.InvalidInputError, match=r"eps must be a positive float, got"):
        check_option(inputs, eps=eps)


@pytest.mark.parametrize(
    "thresholds",
    [(1e-3, 1e-7), (1e-3, 1e-3), (-1e-7, 1e-3), (0.0, 1e-3), (1e-7, math.inf),
     (math.nan, 1e-3), (1e-7,), (1e-7, 1e-3, 1e-1), 1e-7, None, ("a", "b"), "12", b"12"],
    ids=["reversed", "equal", "negative", "zero", "inf", "nan", "one", "three", "scalar",
         "None", "strings", "digits", "bytes"],
)
def test_bad_thresholds(inputs, thresholds):
    with pytest.raises(fastgc.InvalidInputError, match=r"thresholds must"):
        check_option(inputs, thresholds=thresholds)


@pytest.mark.parametrize("args", [[X], X, None, "X"], ids=["list", "array", "None", "str"])
def test_args_not_a_tuple(inputs, args):
    with pytest.raises(fastgc.InvalidInputError, match=r"args must be a tuple .* args=\(X,\)"):
        check_option(inputs, args=args)


@pytest.mark.parametrize("progress", [1, 0, "yes", np.ones(1)], ids=["1", "0", "str", "array"])
def test_progress_not_a_bool(inputs, progress):
    with pytest.raises(fastgc.InvalidInputError, match=r"progress must be None, True or False"):
        check_option(inputs, progress=progress)


@pytest.mark.parametrize("hook", ["signature", "reseed"])
def test_hooks_not_callable(inputs, hook):
    with pytest.raises(fastgc.InvalidInputError, match=rf"{hook} must be callable, got str"):
        check_option(inputs, **{hook: "relu masks"})


def test_a_signature_hook_that_raises_is_a_fastgc_error(inputs):
    def signature(p):
        raise RuntimeError("masks unavailable")

    with pytest.raises(fastgc.InvalidInputError,
                       match=r"the signature hook raised RuntimeError: masks unavailable"):
        check_option(inputs, signature=signature)


def test_a_signature_hook_returning_what_numpy_cannot_read_is_a_fastgc_error(inputs):
    class Unreadable:
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("Can't call numpy() on Tensor that requires grad")

    with pytest.raises(fastgc.InvalidInputError,
                       match=r"the signature hook returned a list that cannot be read as arrays "
                             r"\(RuntimeError: Can.t call numpy"):
        check_option(inputs, signature=lambda p: [Unreadable()])
