"""The entry point: the parser of every command, and one place that turns user errors into exit codes."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import Any, Callable, Sequence

from . import bench, colorize, demo, evaluate, fit, info, train
from .common import describe_os_error, end_progress_bars, one_line_warnings

# Commands in --help order. A new command is a module with add_parser(sub) and run(args) -> int, listed here.
_PARSERS: list[Callable[[Any], None]] = [
    demo.add_parser,
    fit.add_parser,
    colorize.add_parser,
    evaluate.add_parser,
    info.add_parser,
    bench.add_parser,
    train.add_parser,
]


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="hyperchroma",
        description="Colorize grayscale images with a CNN classifier's hypercolumns and a hash table.")
    parser.add_argument("--version", action="version", version=f"hyperchroma {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler, ``docker stop``), raised in the main thread like Ctrl-C's interrupt so the
    same clean-up runs: no partial output and no temporary file is left behind."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_raises():
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except (ValueError, OSError):  # not the main thread (an embedding program's worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 on success, 1 on an error, 2 on a usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    args.argv = argv[argv.index(args.command) + 1:] if args.command in argv else []
    try:
        with one_line_warnings(args.command), _sigterm_raises():
            return int(args.func(args) or 0)
    except Terminated:
        end_progress_bars()
        print(f"hyperchroma {args.command}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        end_progress_bars()
        print(f"hyperchroma {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `hyperchroma info | head`: the reader left, nothing to report
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except MemoryError:
        end_progress_bars()
        print(f"hyperchroma {args.command}: error: out of memory (the input is too large for this machine's "
              "memory limit)", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, ImportError) as e:
        end_progress_bars()  # a bar an error interrupted ends its line first: the error is a line of its own
        text = describe_os_error(e) if isinstance(e, OSError) else str(e)
        print(f"hyperchroma {args.command}: error: {text}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())