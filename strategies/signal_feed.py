"""The signal feed: price bars with the forecast lines a strategy reads."""

from __future__ import annotations

import backtrader as bt
import pandas as pd


class SignalFeed(bt.feeds.PandasData):
    """A ``PandasData`` with three more lines, ``forecast`` (next close), ``p_up`` and ``sigma``.

    >>> feed = SignalFeed(dataname=frame)  # open, high, low, close, volume, forecast, p_up, sigma  # doctest: +SKIP
    """

    lines = ("forecast", "p_up", "sigma")
    params = (("forecast", -1), ("p_up", -1), ("sigma", -1), ("openinterest", None))


def signal_frame(bars: pd.DataFrame, forecasts: pd.DataFrame) -> pd.DataFrame:
    """Bars joined with forecasts on their timestamps; only bars that have a forecast remain.

    ``sigma`` (the forecast's standard deviation of the next log-return) is NaN for forecasts made
    without it, such as a predictions file from before it existed; only strategies that read it mind.
    """
    if "sigma" not in forecasts:
        forecasts = forecasts.assign(sigma=float("nan"))
    joined = bars[["open", "high", "low", "close", "volume"]].join(forecasts[["forecast", "p_up", "sigma"]],
                                                                   how="inner")
    return joined.dropna(subset=["forecast", "p_up"])
