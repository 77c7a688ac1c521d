"""PyTorch adapters (``pip install "fastgc[torch]"``): ``check_module`` and ``check_function``.

>>> import fastgc.torch
>>> fastgc.torch.check_module(net, lambda m: loss_fn(m(X), y))   # doctest: +SKIP

Importing this module imports torch; ``import fastgc`` alone does not.
"""

from fastgc.adapters.torch import check_function, check_module

__all__ = ["check_function", "check_module"]
