"""``fastgc.show_config``: which engines can run here, and the threading facts that decide
speed."""

from __future__ import annotations

import platform
from typing import Any

from ._threads import usable_threads
from ._version import __version__
from .engines import ENGINES, environment_engine, get_engine
from .executors import executor_lines


def show_config(file: Any = None) -> None:
    """Print which engines can run here, and the threading facts that decide speed.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default: standard output).

    Examples
    --------
    >>> import fastgc
    >>> fastgc.show_config()  # doctest: +ELLIPSIS
    fastgc ...
    """
    lines = [f"fastgc {__version__} on Python {platform.python_version()} ({platform.machine()})"]
    engines = [get_engine(name) for name in ENGINES]
    for engine in engines:
        reason = engine.unavailable
        state = "available" if reason is None else "unavailable: " + reason
        lines.append(f"  engine {engine.name:<7} {state}")
    for engine in engines:
        if engine.unavailable is None:
            lines.extend(engine.config_lines())
    lines.extend(executor_lines())
    lines.append(f"  usable threads: {usable_threads()}; FASTGC_ENGINE={environment_engine()}")
    print("\n".join(lines), file=file)
