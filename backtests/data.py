"""Load OHLC(V) bars and split them in time order.

    >>> bars = load_bars()                       # EURUSD H1 shipped with the `backtesting` package
    >>> bars = load_bars("EURUSD_H1.csv")        # any CSV of bars, or a MetaTrader 5 "Export Bars" file
    >>> split = split_bars(bars, test=0.2)

Columns come out as ``open, high, low, close, volume`` on a sorted, unique
``DatetimeIndex``. Every problem is a ``DataError`` whose message names the file.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

PRICE_COLUMNS = ["open", "high", "low", "close"]
DEFAULT_DATA = "EURUSD"
MIN_BARS = 200


class DataError(ValueError):
    """Bars that cannot be used, with the file and the problem in the message."""


def default_data_path(name: str = DEFAULT_DATA) -> Path:
    """A data set shipped by the `backtesting` package: EURUSD (hourly), GOOG (daily) or BTCUSD (monthly)."""
    return Path(str(files("backtesting.test") / f"{name}.csv"))


def load_bars(path: str | Path | None = None) -> pd.DataFrame:
    """Read and check bars; ``None`` means the bundled EURUSD H1 data."""
    path = default_data_path() if path is None else Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    # MetaTrader 5 writes its exports in UTF-16 with a byte-order mark
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    text = raw.decode(encoding, errors="replace")
    frame = _parse_mt5(text) if text.lstrip().startswith("<") else _parse_csv(text, path)
    return _check(frame, path)


def _parse_mt5(text: str) -> pd.DataFrame:
    """MetaTrader 5 'Export Bars': tab-separated <DATE> <TIME> <OPEN> ... <SPREAD>, dates like 2024.01.02."""
    frame = pd.read_csv(io.StringIO(text), sep="\t")
    frame.columns = [c.strip("<>").lower() for c in frame.columns]
    stamp = frame["date"].astype(str) + (" " + frame["time"].astype(str) if "time" in frame else "")
    frame.index = pd.to_datetime(stamp, format="mixed", errors="coerce")
    if "volume" not in frame and "tickvol" in frame:
        frame["volume"] = frame["tickvol"]
    elif "tickvol" in frame and (frame["volume"] == 0).all():
        frame["volume"] = frame["tickvol"]  # FX exports carry ticks in TICKVOL and zeros in VOL
    return frame


def _parse_csv(text: str, path: Path) -> pd.DataFrame:
    try:
        sep = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter
    except csv.Error:
        sep = ","
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    time_columns = [c for c in frame.columns if c in ("date", "time", "datetime", "timestamp", "unnamed: 0", "")]
    if not time_columns:
        raise DataError(f"{path}: no Date/Time column (found columns: {', '.join(frame.columns)})")
    if {"date", "time"} <= set(time_columns):
        stamp = frame["date"].astype(str) + " " + frame["time"].astype(str)
    else:
        stamp = frame[time_columns[0]].astype(str)
    frame.index = pd.to_datetime(stamp, format="mixed", errors="coerce")
    return frame


def _check(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(frame.columns)})")
    if frame.index.isna().any():
        row = int(np.flatnonzero(frame.index.isna())[0]) + 2
        raise DataError(f"{path}: unreadable timestamp on line {row}")
    bars = frame[PRICE_COLUMNS].apply(pd.to_numeric, errors="coerce")
    bars["volume"] = pd.to_numeric(frame["volume"], errors="coerce") if "volume" in frame else 0.0
    bars.index.name = "timestamp"
    if bars[PRICE_COLUMNS].isna().any().any():
        stamp = bars.index[bars[PRICE_COLUMNS].isna().any(axis=1)][0]
        raise DataError(f"{path}: missing or non-numeric price (NaN) at {stamp}")
    if (bars[PRICE_COLUMNS] <= 0).any().any():
        stamp = bars.index[(bars[PRICE_COLUMNS] <= 0).any(axis=1)][0]
        raise DataError(f"{path}: non-positive price at {stamp}")
    if bars.index.duplicated().any():
        raise DataError(f"{path}: duplicate timestamp {bars.index[bars.index.duplicated()][0]}")
    if not bars.index.is_monotonic_increasing:
        position = int(np.flatnonzero(np.diff(bars.index.asi8) < 0)[0]) + 1
        raise DataError(f"{path}: timestamps are not sorted (bar {bars.index[position]} comes after "
                        f"{bars.index[position - 1]}); sort the file by time")
    if len(bars) < MIN_BARS:
        raise DataError(f"{path}: only {len(bars)} bars; at least {MIN_BARS} are needed")
    bars["volume"] = bars["volume"].fillna(0.0)
    return bars


@dataclass(frozen=True)
class Split:
    """Positions of a chronological train / validation / test split of one bar frame."""

    bars: pd.DataFrame
    val_start: int
    test_start: int

    @property
    def train(self) -> pd.DataFrame:
        return self.bars.iloc[:self.val_start]

    @property
    def val(self) -> pd.DataFrame:
        return self.bars.iloc[self.val_start:self.test_start]

    @property
    def test(self) -> pd.DataFrame:
        return self.bars.iloc[self.test_start:]

    def dates(self) -> dict:
        stamp = lambda i: str(self.bars.index[i])  # noqa: E731
        return {"train": [stamp(0), stamp(self.val_start - 1)],
                "val": [stamp(self.val_start), stamp(self.test_start - 1)],
                "test": [stamp(self.test_start), stamp(len(self.bars) - 1)]}


def split_bars(bars: pd.DataFrame, test: float = 0.2, val: float = 0.1, context: int = 48,
               source: str = "data") -> Split:
    """Train / validation / test in time order; the test part is the last ``test`` fraction."""
    if not (0 < test < 1 and 0 <= val < 1 and test + val < 1):
        raise DataError(f"{source}: test ({test}) and validation ({val}) fractions must be in (0, 1) and sum below 1")
    test_start = int(round(len(bars) * (1 - test)))
    val_start = int(round(len(bars) * (1 - test - val)))
    if val_start <= context + 1 or len(bars) - test_start < 2:
        raise DataError(f"{source}: {len(bars)} bars are too few for a training window of {context + 1} "
                        "returns and a test period; give more bars")
    return Split(bars, val_start, test_start)


def walk_forward_splits(bars: pd.DataFrame, folds: int, test: float = 0.2, val: float = 0.1, context: int = 48,
                        rolling: bool = False, source: str = "data") -> list[Split]:
    """``folds`` consecutive test windows covering the last ``test`` fraction of ``bars``.

    Each fold trains on the bars before its window only: all of them (expanding) or, with ``rolling``,
    as many as the first fold had. The last ``val`` fraction of a fold's training bars is its validation.
    """
    if folds < 1:
        raise DataError(f"{source}: --walk-forward needs at least 1 fold, got {folds}")
    first = int(round(len(bars) * (1 - test)))
    edges = np.linspace(first, len(bars), folds + 1).round().astype(int)
    if np.diff(edges).min() < 2:
        raise DataError(f"{source}: {len(bars) - first} test bars are too few for {folds} folds")
    splits = []
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        begin = start - first if rolling else 0
        val_start = start - int(round((start - begin) * val / (1 - test)))
        if val_start - begin <= context + 1:
            raise DataError(f"{source}: fold starting {bars.index[start]} has too few training bars")
        splits.append(Split(bars.iloc[begin:end], int(val_start - begin), int(start - begin)))
    return splits
