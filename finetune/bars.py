"""Check a frame of bars and split it in time order.

    >>> index = pd.date_range("2024-01-01", periods=300, freq="h")
    >>> frame = pd.DataFrame({"open": 1.0, "high": 1.1, "low": 0.9, "close": 1.0}, index=index)
    >>> bars = check_bars(frame, source="my.csv")   # sorted, unique, finite positive prices, enough bars
    >>> split = split_bars(bars, test=0.2)
    >>> len(split.train), len(split.val), len(split.test)
    (210, 30, 60)

Every problem is a ``DataError`` whose message names the source of the bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PRICE_COLUMNS = ["open", "high", "low", "close"]
INPUTS = ("close", "ohlc")  # what a model reads of each bar: its close, or its close and its range (codec.py)
MIN_BARS = 200


class DataError(ValueError):
    """Bars that cannot be used, with their source and the problem in the message."""


def check_bars(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """``open, high, low, close, volume`` of ``frame``, or a ``DataError`` naming ``source`` and the problem."""
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)} (found: {', '.join(frame.columns)})")
    if frame.empty:
        raise DataError(f"{source}: a header and no bars; at least {MIN_BARS} are needed")
    if frame.index.isna().any():
        row = int(np.flatnonzero(frame.index.isna())[0]) + 2
        raise DataError(f"{source}: unreadable timestamp on line {row}")
    bars = frame[PRICE_COLUMNS].apply(pd.to_numeric, errors="coerce")
    bars["volume"] = pd.to_numeric(frame["volume"], errors="coerce") if "volume" in frame else 0.0
    bars.index.name = "timestamp"
    if bars[PRICE_COLUMNS].isna().any().any():
        stamp = bars.index[bars[PRICE_COLUMNS].isna().any(axis=1)][0]
        raise DataError(f"{source}: missing or non-numeric price (NaN) at {stamp}")
    if np.isinf(bars[PRICE_COLUMNS]).any().any():
        stamp = bars.index[np.isinf(bars[PRICE_COLUMNS]).any(axis=1)][0]
        raise DataError(f"{source}: infinite price at {stamp}")
    if (bars[PRICE_COLUMNS] <= 0).any().any():
        stamp = bars.index[(bars[PRICE_COLUMNS] <= 0).any(axis=1)][0]
        raise DataError(f"{source}: non-positive price at {stamp}")
    if bars.index.duplicated().any():
        raise DataError(f"{source}: duplicate timestamp {bars.index[bars.index.duplicated()][0]}")
    if not bars.index.is_monotonic_increasing:
        position = int(np.flatnonzero(np.diff(bars.index.asi8) < 0)[0]) + 1
        raise DataError(f"{source}: timestamps are not sorted (bar {bars.index[position]} comes after "
                        f"{bars.index[position - 1]}); sort the file by time")
    if len(bars) < MIN_BARS:
        raise DataError(f"{source}: only {len(bars)} bars; at least {MIN_BARS} are needed")
    bars["volume"] = bars["volume"].fillna(0.0)
    return bars


def check_ranges(bars: pd.DataFrame, source: str) -> None:
    """A ``DataError`` naming the first bar whose low is above its open or close, or whose high is below them
    (bars a model that reads ranges cannot trust), or saying that no bar has a range (close-only data)."""
    prices = [bars[c].to_numpy(dtype=float) for c in PRICE_COLUMNS]
    found = range_problem(*prices)
    if found is not None:
        position, problem = found
        raise DataError(f"{source}: bar {bars.index[position]} has {problem}; --inputs ohlc needs consistent bars")
    if (prices[1] == prices[2]).all():
        raise DataError(f"{source}: high equals low on every bar: close-only data carries no ranges; "
                        "use --inputs close")


def range_problem(opens: np.ndarray, high: np.ndarray, low: np.ndarray,
                  close: np.ndarray) -> tuple[int, str] | None:
    """The position of the first bar whose low is above its open or close, or whose high is below them, and
    what is wrong with it; None when every bar is consistent.

    >>> range_problem(np.array([1.0, 1.06]), np.array([1.2, 1.1]), np.array([0.9, 1.05]), np.array([1.1, 1.02]))
    (1, 'its low 1.05 above its close 1.02')
    """
    checks = [(low, ">", opens, "low", "open"), (low, ">", close, "low", "close"),
              (high, "<", opens, "high", "open"), (high, "<", close, "high", "close")]
    bad = np.column_stack([a > b if sign == ">" else a < b for a, sign, b, _, _ in checks])
    if not bad.any():
        return None
    position = int(np.flatnonzero(bad.any(axis=1))[0])
    a, sign, b, name, other = checks[int(np.argmax(bad[position]))]
    where = "above" if sign == ">" else "below"
    return position, f"its {name} {float(a[position])} {where} its {other} {float(b[position])}"


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
