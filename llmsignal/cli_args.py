"""Argument types and messages shared by the command line's parsers."""

from __future__ import annotations

import argparse
import sys

from llmsignal.finetune.precision import PRECISIONS, Precision


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (a step count, a worker count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def precision_flag(parser: argparse.ArgumentParser, what: str, default: str = "auto") -> None:
    """``--precision`` for a command that runs the model for ``what``."""
    parser.add_argument("--precision", choices=PRECISIONS, default=default,
                        help=f"number format of {what}: bfloat16 (autocast) is faster only on CPUs with AMX or "
                             "AVX-512 BF16 and falls back to float32 on a CPU without them; auto picks bfloat16 "
                             "on such a CPU and float32 elsewhere, a GPU included, where these models measured "
                             f"slower in bfloat16 (default: {default})")


def warn_precision(precision: Precision) -> None:
    """One line when bfloat16 was asked for and this machine runs float32 instead."""
    if precision.requested == "bfloat16" and not precision.bfloat16:
        print(f"llmsignal: warning: {precision.note}", file=sys.stderr)
