"""Command line: ``hyperchroma COMMAND ...`` (also ``python -m hyperchroma``).

One module per command (``cli/fit.py``, ``cli/colorize.py``...), each with ``add_parser(subparsers)`` (ending in
``set_defaults(func=run)``) and ``run(args) -> int``; :mod:`.main` lists them in ``--help`` order and turns
errors a user can cause into one line on stderr and a non-zero exit status.
"""

from .main import build_parser, main

__all__ = ["main", "build_parser"]
