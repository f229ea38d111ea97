"""Argument types and messages shared by the command line's parsers."""

from __future__ import annotations

import argparse
import sys

from llmsignal.finetune.precision import PRECISIONS, Precision

BUDGETS = ("converged", "steps")  # --budget: a learning-rate search with early stopping, or fixed steps


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (a step count, a worker count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


MAX_SEED = 2**32 - 1  # numpy's legacy generators take no more; torch takes it too


def seed_int(text: str) -> int:
    """A random seed: a whole number from 0 to ``MAX_SEED`` (``torch.manual_seed(-1)`` fails after the data is read)."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_SEED}, got {str(text)[:40]!r}") \
            from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_SEED}, got {value}")
    return value


def timestamp_text(text: str) -> str:
    """A date or time pandas reads, like 2024-03-01 or '2024-03-01 14:00', returned as given."""
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a date; give one like 2024-03-01 or "
                                         "'2024-03-01 14:00'")
    return text


def inputs_list(text: str) -> list[str]:
    """``close``, ``ohlc`` or ``close,ohlc``: what the models read of each bar, each kind its own rows."""
    from llmsignal.finetune.bars import INPUTS  # here, not at start-up: it loads pandas

    kinds = list(dict.fromkeys(part.strip() for part in str(text).split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in INPUTS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown) or repr(text)} is not one of {', '.join(INPUTS)} "
                                         "(or a comma-separated list of them)")
    return kinds


def one_input(text: str) -> str:
    """One of ``close`` or ``ohlc``."""
    kinds = inputs_list(text)
    if len(kinds) > 1:
        raise argparse.ArgumentTypeError(f"one of {', '.join(kinds)}, not {text!r}: an entry reads one kind")
    return kinds[0]


ENTRY_INPUTS = "close or ohlc: refuse an entry that reads other inputs (default: whatever the entry was tuned on)"


def inputs_flag(parser: argparse.ArgumentParser, several: bool = False, default: str | None = "close",
                help_text: str | None = None) -> None:
    """``--inputs``: what each bar gives the model; ``several`` takes a list (a row per method and kind)."""
    what = ("close (default), ohlc, or close,ohlc for a row per method and kind" if several
            else "close (default) or ohlc")
    help_text = help_text or (f"what the models read of each bar: {what}; ohlc adds each bar's high-low range to "
                              "its return, and needs consistent open/high/low/close bars")
    parser.add_argument("--inputs", action=Checked, convert=inputs_list if several else one_input,
                        default=[default] if several and default else default, metavar="KIND", help=help_text)


class Checked(argparse.Action):
    """Store ``convert(VALUE)``; a value it refuses is one line, ``llmsignal: error: --flag: why``, and exit status 2.

    That is how every other mistake in the input is reported; argparse's own refusal of a ``type=`` would print
    the usage first. ``llmsignal.config_file`` converts a config file's value with the same ``convert``.
    """

    def __init__(self, option_strings: list[str], dest: str, convert, **kwargs) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.convert = convert

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        try:
            value = self.convert(values)
        except argparse.ArgumentTypeError as err:
            parser.exit(2, f"llmsignal: error: {option_string}: {err}\n")
        setattr(namespace, self.dest, value)


def precision_flag(parser: argparse.ArgumentParser, what: str, default: str = "auto") -> None:
    """``--precision`` for a command that runs the model for ``what``."""
    parser.add_argument("--precision", choices=PRECISIONS, default=default,
                        help=f"number format of {what}: bfloat16 (autocast) is faster only on CPUs with AMX or "
                             "AVX-512 BF16 and falls back to float32 on a CPU without them; auto times a training "
                             "step and a forecast in both formats on such a CPU (once, then cached) and takes the "
                             "faster, float32 elsewhere, a GPU included, where bfloat16 measured slower "
                             f"(default: {default})")


def warn_precision(precision: Precision) -> None:
    """One line when bfloat16 was asked for and this machine runs float32 instead."""
    if precision.requested == "bfloat16" and not precision.bfloat16:
        print(f"llmsignal: warning: {precision.note}", file=sys.stderr)
