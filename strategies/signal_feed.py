"""The signal feed: price bars with the forecast lines a strategy reads."""

from __future__ import annotations

import backtrader as bt
import pandas as pd


class SignalFeed(bt.feeds.PandasData):
    """A ``PandasData`` with two more lines, ``forecast`` (next close) and ``p_up``.

    >>> feed = SignalFeed(dataname=frame)  # frame: open, high, low, close, volume, forecast, p_up  # doctest: +SKIP
    """

    lines = ("forecast", "p_up")
    params = (("forecast", -1), ("p_up", -1), ("openinterest", None))


def signal_frame(bars: pd.DataFrame, forecasts: pd.DataFrame) -> pd.DataFrame:
    """Bars joined with forecasts on their timestamps; only bars that have a forecast remain."""
    joined = bars[["open", "high", "low", "close", "volume"]].join(forecasts[["forecast", "p_up"]], how="inner")
    return joined.dropna(subset=["forecast", "p_up"])
