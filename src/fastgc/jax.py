"""JAX adapter (``pip install "fastgc[jax]"``): ``check(loss, params, grads=None)``.

>>> import fastgc.jax
>>> fastgc.jax.check(loss, params, args=(X, y))   # doctest: +SKIP

Importing this module imports jax; ``import fastgc`` alone does not.
"""

from fastgc.adapters.jax import check, x64

__all__ = ["check", "x64"]
