"""``python -m fastgc check``: a gradient check from the command line, for CI.

    python -m fastgc check mymodule:cost --params p.npz --grads g.npz [--args a.npz]
                           [--plan full|screen|sampled | --budget SECONDS]
                           [--json out.json] [--plot out.png]

Exit status: 0 correct, 1 bug, suspicious or inconclusive (``--allow-suspicious``,
``--allow-inconclusive`` let those pass), 2 usage or
input error (the message on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._errors import FastGCError, InvalidInputError

EXIT_CORRECT, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
Check the gradients of a cost against finite differences.

TARGET is module:function (the module importable from the current directory or sys.path) or
path/to/file.py:function. It is called as function(params, *args) and returns a float, or
(loss, grads) with --loss-and-grads.

--params: an .npz archive, one array per parameter (np.savez("p.npz", W1=W1, b1=b1)); the
function receives them as a dict in the archive's order. An .npy file is one array theta.
--grads: an .npz (keys "W1" or "dW1"; other entries are ignored and listed), an .npy (the
flat gradient), or module:function called once as grads(params, *args).
--args: an .npz of positional arguments. Keys arr_0, arr_1, ... (what np.savez("a.npz", X, y)
writes) or arg0, arg1, ... are passed in the order of their numbers; other keys in the
archive's order.

--plan: full (every component, the default), screen (a few random directions per parameter
block, a disagreeing block then localised), sampled (a seeded sample per block). --budget
SECONDS: the full check if it fits the time, else the screen and as large a sample as time
allows.

Exit status: 0 correct, 1 bug, suspicious or inconclusive, 2 usage or input error.
"""


def add_parser(commands: Any) -> None:
    """Register the ``check`` subcommand on ``commands`` (argparse subparsers)."""
    parser = commands.add_parser(
        "check", help="check a cost's gradients from .npz files (exit 0 correct, 1 bug, "
        "suspicious or inconclusive, 2 input error)", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="TARGET",
                        help="the cost: module:function or path/to/file.py:function")
    parser.add_argument("--params", required=True, metavar="P.npz",
                        help="the parameters (.npz, or .npy for one array)")
    parser.add_argument("--grads", metavar="G.npz|MODULE:FUNCTION",
                        help="the analytic gradients (.npz or .npy), or a function computing them")
    parser.add_argument("--loss-and-grads", action="store_true",
                        help="TARGET returns (loss, grads); then no --grads")
    parser.add_argument("--args", metavar="A.npz", help="positional arguments of TARGET (.npz)")
    plans = parser.add_mutually_exclusive_group()
    plans.add_argument("--plan", choices=("full", "screen", "sampled"),
                       help="what is differenced: every component (full, the default), random "
                       "directions per block (screen) or a sample (sampled)")
    plans.add_argument("--budget", type=_seconds, metavar="SECONDS",
                       help="the full check if it fits in SECONDS, else screen and sample")
    parser.add_argument("--json", metavar="OUT.json", help="write the result as JSON")
    parser.add_argument("--plot", metavar="OUT.png",
                        help='draw the result (needs pip install "fastgc[plot]")')
    parser.add_argument("--eps", type=float, help="the step (default: by dtype)")
    parser.add_argument("--threshold-correct", type=float, default=1e-7,
                        help="difference at or below which the gradients are correct (1e-7)")
    parser.add_argument("--threshold-bug", type=float, default=1e-3,
                        help="difference at or above which they are a bug (1e-3)")
    parser.add_argument("--threads", type=int, help="thread count (the cost must be thread-safe)")
    parser.add_argument("--engine", choices=("auto", "numba", "cython", "python"))
    parser.add_argument("--executor", choices=("local", "processes"),
                        help="where the differences run (processes: one worker per core)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes of --executor processes")
    parser.add_argument("--allow-suspicious", action="store_true",
                        help="exit 0 on a suspicious verdict (a bug still exits 1)")
    parser.add_argument("--allow-inconclusive", action="store_true",
                        help="exit 0 on an inconclusive verdict (a bug still exits 1)")
    parser.add_argument("--quiet", action="store_true", help="do not print the report")


def run(options: argparse.Namespace) -> int:
    """Run the check described by ``options``; the exit status.

    Anything that goes wrong is status 2, never 1, so that CI cannot take a crash for a
    verdict: fastgc's own errors as one line, anything else with its traceback.
    """
    try:
        return _run(options)
    except FastGCError as error:
        print(f"fastgc check: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        traceback.print_exc()
        print("fastgc check: error: the check failed unexpectedly (traceback above)",
              file=sys.stderr)
        return EXIT_USAGE


def _run(options: argparse.Namespace) -> int:
    from ._check import check
    from .adapters import check_fn

    if options.loss_and_grads and options.grads is not None:
        raise InvalidInputError("--loss-and-grads takes the gradients from TARGET: drop --grads")
    if not options.loss_and_grads and options.grads is None:
        raise InvalidInputError(
            "give the analytic gradients: --grads G.npz, --grads module:function, or "
            "--loss-and-grads when TARGET returns (loss, grads)"
        )
    if options.plot:  # before the check, not after it
        from ._optional import import_optional

        import_optional("matplotlib.figure", "plot", purpose="--plot")
    target = load_function(options.target, "TARGET")
    params = load_params(options.params)
    args = load_args(options.args) if options.args else ()
    check_options: dict[str, Any] = {
        "args": args,
        "eps": options.eps,
        "thresholds": (options.threshold_correct, options.threshold_bug),
        "n_threads": options.threads,
        "engine": options.engine,
        "executor": options.executor,
        "n_workers": options.workers,
        "plan": options.plan,
        "budget": options.budget,
    }
    if options.loss_and_grads:
        result = check_fn(target, params, **check_options)
    else:
        grads = _load_grads(options.grads)
        result = check(target, params, grads, **check_options)
    if not options.quiet:
        print(result)
    if options.json:
        _write(lambda: result.to_json(options.json), "--json", options.json)
    if options.plot:
        _write(lambda: result.plot(options.plot), "--plot", options.plot)
    allowed = {"correct"}
    if options.allow_suspicious:
        allowed.add("suspicious")
    if options.allow_inconclusive:
        allowed.add("inconclusive")
    return EXIT_CORRECT if result.verdict.value in allowed else EXIT_FAILED


def _seconds(text: str) -> float:
    """``--budget``'s value: a positive, finite number of seconds (else argparse's usage
    error, exit 2)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not np.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return seconds


def _write(write: Callable[[], Any], flag: str, path: str) -> None:
    try:
        write()
    except OSError as error:
        raise InvalidInputError(f"{flag} {path}: cannot write: {error}") from error


def load_function(spec: str, what: str) -> Callable[..., Any]:
    """The function named by ``module:function`` or ``path/to/file.py:function``."""
    module_part, colon, name = spec.rpartition(":")
    if not colon or not module_part or not name:
        raise InvalidInputError(
            f"{what} must be module:function or path/to/file.py:function, got {spec!r}"
        )
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        module = _import_file(Path(module_part), what)
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` does, also for the fastgc script
        try:
            module = importlib.import_module(module_part)
        except Exception as error:
            raise InvalidInputError(
                f"{what}: cannot import module {module_part!r}: {type(error).__name__}: {error}"
            ) from error
    function = module
    for part in name.split("."):  # module:Class.method or module:obj.attr
        try:
            function = getattr(function, part)
        except AttributeError:
            raise InvalidInputError(
                f"{what}: {module_part} has no attribute {name!r}"
            ) from None
    if not callable(function):
        raise InvalidInputError(f"{what}: {spec} is {type(function).__name__}, not a function")
    return function  # type: ignore[return-value]


def _import_file(path: Path, what: str) -> Any:
    if not path.is_file():
        raise InvalidInputError(f"{what}: no such file {str(path)!r}")
    module_name = re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidInputError(f"{what}: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up there
    sys.path.insert(0, str(path.resolve().parent))  # its own imports of neighbouring modules
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise InvalidInputError(
            f"{what}: importing {str(path)!r} raised {type(error).__name__}: {error}"
        ) from error
    return module


def _read_arrays(path: str, flag: str) -> dict[str, np.ndarray] | np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InvalidInputError(f"{flag} {path}: no such file") from None
    except (OSError, ValueError) as error:
        raise InvalidInputError(
            f"{flag} {path}: not a NumPy .npz or .npy file (object arrays are not read): {error}"
        ) from error
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        try:
            return {key: loaded[key] for key in loaded.files}
        except ValueError as error:  # an object array inside the archive
            raise InvalidInputError(f"{flag} {path}: {error}") from error


def load_params(path: str) -> dict[str, np.ndarray] | np.ndarray:
    """The parameters in ``path``: a dict in the archive's order, or one array."""
    params = _read_arrays(path, "--params")
    if isinstance(params, dict) and not params:
        raise InvalidInputError(f"--params {path}: the archive is empty")
    return params


def _load_grads(spec: str) -> Any:
    if Path(spec).is_file() or spec.endswith((".npz", ".npy")):
        return _read_arrays(spec, "--grads")
    return load_function(spec, "--grads")


_NUMBERED = re.compile(r"(?:arr_|arg)(\d+)")


def load_args(path: str) -> tuple:
    """Positional arguments: numbered keys (arr_0, arg0, ...) by number, else archive order."""
    arrays = _read_arrays(path, "--args")
    if isinstance(arrays, np.ndarray):
        return (arrays,)
    numbers = [_NUMBERED.fullmatch(key) for key in arrays]
    if arrays and all(numbers):
        order = sorted(int(match.group(1)) for match in numbers if match)
        if order != list(range(len(order))):
            raise InvalidInputError(
                f"--args {path}: numbered keys must run 0, 1, 2, ... without gaps, got "
                f"{list(arrays)}"
            )
        by_number = {int(m.group(1)): arrays[key] for m, key in zip(numbers, arrays) if m}
        return tuple(by_number[k] for k in range(len(by_number)))
    return tuple(arrays.values())
