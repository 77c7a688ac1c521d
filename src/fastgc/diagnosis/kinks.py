"""Kinks told by the user: a signature (ReLU masks, say) that changes where J is not smooth."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .._errors import InvalidInputError
from .._validation import exception_text


def signature_crossing(
    signature: Callable[..., Any], call_with: Callable[[np.ndarray], Any], theta: np.ndarray
) -> Callable[[int, float], bool]:
    """``crossed(i, s)``: does the user's signature (e.g. ReLU masks) change at theta +/- s e_i?

    Parameters
    ----------
    signature : callable
        ``signature(params) -> array(s)``, the user's hook.
    call_with : callable
        Turns a flat theta into what ``signature`` takes (the structure of params, or theta).
    theta : ndarray, shape (n,)
        The flat parameters; copied once, never modified.

    Returns
    -------
    callable
        ``crossed(i, s) -> bool``; it restores its copy of theta exactly after each call.
    """
    probe = theta.copy()
    reference = _signature_bytes(signature(call_with(probe)))

    def crossed(i: int, s: float) -> bool:
        saved = probe[i]
        try:
            for delta in (s, -s):
                probe[i] = saved + np.float64(delta)
                if _signature_bytes(signature(call_with(probe))) != reference:
                    return True
        finally:
            probe[i] = saved
        return False

    return crossed


def _signature_bytes(value: Any) -> bytes:
    try:
        return _bytes_of(value)
    except Exception as error:  # an object NumPy cannot read (a tensor that requires grad)
        raise InvalidInputError(
            f"the signature hook returned a {type(value).__name__} that cannot be read as "
            f"arrays ({type(error).__name__}: {exception_text(error)}); return NumPy arrays "
            "(or lists, tuples or dicts of them)"
        ) from error


def _bytes_of(value: Any) -> bytes:
    if isinstance(value, (list, tuple)):
        return b"|".join(_bytes_of(v) for v in value)
    if isinstance(value, dict):
        return b"|".join(_bytes_of(v) for v in value.values())
    return np.ascontiguousarray(np.asarray(value)).tobytes()
