"""Helpers shared by the commands."""

from __future__ import annotations

import argparse


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
