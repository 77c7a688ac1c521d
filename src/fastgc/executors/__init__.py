"""Executors: where the engine's kernel runs.

:class:`LocalExecutor` runs it in this process, on the engine's threads, each on a private
copy of theta. An executor for worker processes or a cluster is a sibling of it: it takes the
same engine, cost and theta and offers the same :class:`LocalSession`-like interface
(``differences`` for given indices, ``sweep`` over all of theta).
"""

from .local import LocalExecutor, LocalSession

__all__ = ["LocalExecutor", "LocalSession"]
