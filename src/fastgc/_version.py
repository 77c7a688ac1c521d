"""The version of fastgc, in a module of its own so that no module needs the package to read it."""

__version__ = "0.1.0"
