"""Adapters: the shapes real code comes in, checked through :func:`fastgc.check`.

Each adapter is a leaf that turns one kind of code into a cost, parameters and gradients and
calls the public :func:`fastgc.check`; nothing in the core knows about them.

- :mod:`.functions`: ``check_fn``, a function returning ``(loss, grads)``;
- :mod:`.layers`: ``check_layer``, a layer's ``forward -> (out, cache)`` and
  ``backward(dout, cache)``;
- :mod:`.models`: ``check_model``, an object with a ``params`` mapping and a ``loss`` method;
- :mod:`.torch` and :mod:`.jax` (imported on demand, through ``fastgc.torch`` and
  ``fastgc.jax``): PyTorch modules and functions, JAX losses over pytrees.
"""

from .functions import check_fn
from .layers import check_layer
from .models import check_model

__all__ = ["check_fn", "check_layer", "check_model"]
