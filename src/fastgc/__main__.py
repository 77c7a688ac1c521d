"""Command line: ``python -m fastgc demo`` and ``python -m fastgc config``."""

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
    demo.add_argument("--threads", type=int, default=None, help="thread count (default: all)")
    commands.add_parser("config", help="show which engines are available and the thread setup")
    options = parser.parse_args(argv)
    if options.command == "demo":
        from ._demo import run

        return run(n_threads=options.threads)
    from ._engines import show_config

    show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
