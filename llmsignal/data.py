"""Load OHLC(V) bars from a file.

    >>> bars = load_bars()                       # EURUSD H1 shipped with the `backtesting` package
    >>> bars = load_bars("EURUSD_H1.csv")        # any CSV of bars, or an MT5 "Export Bars" file  # doctest: +SKIP

Columns come out as ``open, high, low, close, volume`` on a sorted, unique
``DatetimeIndex``. Every problem is a ``DataError`` whose message names the file.
"""

from __future__ import annotations

import csv
import io
from importlib.resources import files
from pathlib import Path

import pandas as pd

from llmsignal.finetune.bars import DataError, check_bars

DEFAULT_DATA = "EURUSD"
DEFAULT_SOURCE = "backtesting.test/EURUSD.csv (EURUSD H1)"


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
    frame = _parse_mt5(text, path) if text.lstrip().startswith("<") else _parse_csv(text, path)
    return check_bars(frame, str(path))


def _parse_mt5(text: str, path: Path) -> pd.DataFrame:
    """MetaTrader 5 'Export Bars': tab-separated <DATE> <TIME> <OPEN> ... <SPREAD>, dates like 2024.01.02."""
    try:
        frame = pd.read_csv(io.StringIO(text), sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: not a readable MetaTrader 5 export ({str(err).splitlines()[0]})") from None
    frame.columns = [str(c).strip().strip("<>").lower() for c in frame.columns]
    if "date" not in frame:
        raise DataError(f"{path}: a MetaTrader 5 export needs a <DATE> column (found: {', '.join(frame.columns)})")
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


