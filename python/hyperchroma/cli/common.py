"""Helpers shared by the commands."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any, Iterator
import contextlib


def csv_list(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (an argparse type)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def csv_floats(text: str) -> list[float]:
    """``"0.5,0.4"`` -> ``[0.5, 0.4]`` (an argparse type)."""
    try:
        return [float(t) for t in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def say(args: argparse.Namespace, text: str) -> None:
    """Print ``text`` unless the command runs with ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(text)


def error_line(text: str) -> None:
    """Print one line to stderr on a line of its own, also while a tqdm progress bar is drawn there."""
    try:
        from tqdm import tqdm
    except ImportError:
        print(text, file=sys.stderr)
        return
    if getattr(tqdm, "_instances", None):
        tqdm.write(text, file=sys.stderr)  # clears the bar's line, writes the text, redraws the bar below
    else:
        print(text, file=sys.stderr)


def end_progress_bars() -> None:
    """Close every tqdm bar still drawn (one an exception left open), so the next line starts clean."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()


@contextlib.contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """While the command runs, a warning (e.g. Pillow's DecompressionBombWarning) prints as one line
    ``hyperchroma COMMAND: warning: ...`` instead of Python's two-line "file:line: Category: text / source"."""
    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        text = " ".join(str(message).split())
        error_line(f"hyperchroma {command}: warning: {text}")

    with warnings.catch_warnings():
        from PIL import Image

        # a large image is worth a warning per image, and must not fail the command (a warnings filter of
        # "error" in the environment would turn it into an exception)
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        warnings.showwarning = show
        yield


def describe_os_error(e: OSError) -> str:
    """An OSError in words: no "[Errno N]", and no name of one of our temporary files."""
    if not e.strerror:
        return str(e)
    why = e.strerror[:1].lower() + e.strerror[1:]
    name = e.filename if e.filename is not None else None
    if name is not None and os.path.basename(os.fspath(name)).startswith(".hyperchroma-"):
        name = os.path.dirname(os.fspath(name)) or "."
        return f"cannot write into folder '{name}': {why}"
    return f"'{os.fspath(name)}': {why}" if name is not None else why


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"expected a number of workers in 1..256, got {text!r}")
    return n


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (else a usage error, exit status 2)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return n


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """``--scheduler ADDRESS`` / ``--workers N``: run on a Dask cluster (the [dask] extra)."""
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on the Dask cluster of this scheduler (e.g. tcp://10.0.0.5:8786; needs the [dask] extra)")
    p.add_argument("--workers", type=_workers, metavar="N",
                   help="run on a local Dask cluster of N worker processes (needs the [dask] extra)")
