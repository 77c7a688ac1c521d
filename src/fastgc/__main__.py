"""Command line: ``python -m fastgc`` with ``demo``, ``config``, ``tune`` or ``check``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastgc", description="Fast, trustworthy gradient checking."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="check the lecture's 3-layer network, with correct and with buggy backprop"
    )
    demo.add_argument("which", nargs="?", choices=["course", "large"], default="course",
                      help="course: the lecture's network (default); large: a network of over "
                           "ten million parameters, screened")
    demo.add_argument("--threads", type=int, default=None, help="thread count (default: all)")
    commands.add_parser("config", help="show which engines are available and the thread setup")
    tune = commands.add_parser(
        "tune", help="time a check of a Numba MLP cost at each thread count and suggest one"
    )
    tune.add_argument("--params", type=int, default=20_000,
                      help="parameter count of the MLP (default: 20000)")
    tune.add_argument("--seconds", type=float, default=2.0,
                      help="rough budget of the timed runs (default: 2)")
    from ._cli import add_parser as add_check_parser

    add_check_parser(commands)
    options = parser.parse_args(argv)
    if options.command == "check":
        from ._cli import run as run_check

        return run_check(options)
    if options.command == "demo":
        if options.which == "large":
            from ._demo_large import run as run_large

            return run_large(n_threads=options.threads)
        from ._demo import run

        return run(n_threads=options.threads)
    if options.command == "tune":
        from ._tune import example_mlp, suggest_threads

        cost, theta, args = example_mlp(options.params)
        print(suggest_threads(cost, theta, args=args, seconds=options.seconds))
        return 0
    from ._config import show_config

    show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
