"""Argument types and messages shared by the command line's parsers."""

from __future__ import annotations

import argparse
import sys

from llmsignal.finetune.precision import Precision


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (a step count, a worker count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def warn_precision(precision: Precision) -> None:
    """One line when bfloat16 was asked for and this machine runs float32 instead."""
    if precision.requested == "bfloat16" and not precision.bfloat16:
        print(f"llmsignal: warning: {precision.note}", file=sys.stderr)
