"""Helpers shared by the commands."""

from __future__ import annotations

import argparse


def csv_list(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (an argparse type)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def say(args: argparse.Namespace, text: str) -> None:
    """Print ``text`` unless the command runs with ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(text)
