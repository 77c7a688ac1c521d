"""Optional dependencies, imported when first needed and never by ``import fastgc``.

Every import of an optional package goes through :func:`import_optional`, so that a missing one
fails the same way everywhere: a :class:`~fastgc.MissingDependencyError` that names the extra
to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import MissingDependencyError


def import_optional(name: str, extra: str, *, purpose: str | None = None) -> ModuleType:
    """Import the optional module ``name``, or say which fastgc extra installs it.

    Parameters
    ----------
    name : str
        The module to import, for example ``"torch"`` or ``"matplotlib.figure"``.
    extra : str
        The fastgc extra that installs it (``pip install "fastgc[extra]"``).
    purpose : str, optional
        What needs it ("fastgc.torch", "CheckResult.plot"), for the message. Default: ``name``'s
        top-level package.

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    MissingDependencyError
        If the import fails (also an ``ImportError``). The original error is chained.

    Examples
    --------
    >>> from fastgc._optional import import_optional
    >>> import_optional("json", "none").__name__
    'json'
    >>> import_optional("no_such_package_here", "demo")
    Traceback (most recent call last):
    ...
    fastgc._errors.MissingDependencyError: no_such_package_here needs no_such_package_here, which \
cannot be imported (No module named 'no_such_package_here'): pip install "fastgc[demo]"
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        package = name.split(".")[0]
        raise MissingDependencyError(
            f"{purpose or package} needs {package}, which cannot be imported ({error}): "
            f'pip install "fastgc[{extra}]"'
        ) from error
