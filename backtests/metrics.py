"""The one home of the numbers a row reports: forecast error, direction, trading periods and Sharpe.

    >>> index = pd.DatetimeIndex(["2024-01-07 22:00", "2024-01-08 12:00", "2024-01-08 22:00"])  # UTC: Sun, Mon, Mon
    >>> list(trading_day(index).strftime("%a %d"))   # FX days end at 17:00 New York (22:00 UTC in winter)
    ['Mon 08', 'Mon 08', 'Tue 09']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class Calendar:
    """Where one trading period ends and how many there are in a year.

    The default is FX's: a day runs to the 17:00 New York rollover (so Sunday evening's bars open Monday's
    day), five days a week, 260 a year. Bars a day or longer apart are periods of their own (see
    ``for_bars``). Every Sharpe ratio, tearsheet, fold and sweep uses the same calendar.
    """

    day_end: str = "17:00"
    timezone: str = "America/New_York"
    periods_per_year: int = 260
    per_bar: bool = False

    @classmethod
    def for_bars(cls, index: pd.DatetimeIndex, day_end: str = "17:00", timezone: str = "America/New_York") -> Calendar:
        """FX days for intraday bars; each bar its own period for daily (252 a year) or monthly (12) bars."""
        spacing = pd.Series(index).diff().median() if len(index) > 1 else pd.Timedelta(hours=1)
        if spacing >= pd.Timedelta(days=20):
            return cls(day_end, timezone, 12, per_bar=True)
        if spacing >= pd.Timedelta(days=1):
            return cls(day_end, timezone, 252, per_bar=True)
        return cls(day_end, timezone)


FX = Calendar()


def trading_day(index: pd.DatetimeIndex, calendar: Calendar = FX) -> pd.DatetimeIndex:
    """The trading day of each timestamp (naive timestamps are UTC): the date on which its period ends."""
    hours, minutes = (int(part) for part in calendar.day_end.split(":"))
    stamps = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    local = stamps.tz_convert(calendar.timezone).tz_localize(None)
    return (local + pd.Timedelta(hours=24 - hours, minutes=-minutes)).normalize()


def period_returns(equity: pd.Series | pd.DataFrame, calendar: Calendar = FX) -> pd.Series | pd.DataFrame:
    """Compounded returns per trading period of equity curves (what Sharpe ratios and tearsheets use).

    The first day's return is measured from the first bar's equity, so no day is lost.
    """
    if calendar.per_bar:
        return equity.pct_change().dropna(how="all")
    periods = equity.groupby(trading_day(equity.index, calendar)).last()
    start = equity.iloc[[0]].set_axis([periods.index[0] - pd.Timedelta(days=1)])
    return pd.concat([start, periods]).pct_change().dropna(how="all")


def annualised_sharpe(returns: np.ndarray | pd.Series, calendar: Calendar = FX) -> float:
    """Mean over standard deviation of period returns, times the square root of periods per year; 0 if flat."""
    returns = np.asarray(returns, dtype=float)
    std = returns.std(ddof=1) if len(returns) > 1 else 0.0
    return float(returns.mean() / std * np.sqrt(calendar.periods_per_year)) if std > 0 else 0.0


def direction(called: np.ndarray, moved: np.ndarray) -> dict[str, float]:
    """Directional accuracy, its base rate and the Pesaran-Timmermann test of calling direction at all.

    Bars where the forecast called no move, or the close did not move, are left out. The base rate is the
    share of the more common move: what always calling it would score. ``da_pvalue`` is one-sided
    Pesaran-Timmermann (1992): how likely a hit rate this far above what the calls' and moves' own
    frequencies give by chance is; a forecaster that always calls the same side scores its base rate and
    has no test (p = 1).
    """
    counted = (called != 0) & (moved != 0) & ~np.isnan(called) & ~np.isnan(moved)
    up_called, up_moved = called[counted] > 0, moved[counted] > 0
    n = int(counted.sum())
    if n == 0:
        return {"directional_accuracy": float("nan"), "da_base_rate": float("nan"), "da_pvalue": float("nan")}
    hits = float(np.mean(up_called == up_moved))
    py, px = float(up_moved.mean()), float(up_called.mean())
    chance = py * px + (1 - py) * (1 - px)
    variance = chance * (1 - chance) / n - ((2 * py - 1) ** 2 * px * (1 - px) / n + (2 * px - 1) ** 2 * py * (1 - py)
                                            / n + 4 * py * px * (1 - py) * (1 - px) / n**2)
    p = float(stats.norm.sf((hits - chance) / np.sqrt(variance))) if variance > 1e-15 else 1.0
    return {"directional_accuracy": hits, "da_base_rate": max(py, 1 - py), "da_pvalue": p}


def forecast_error(predictions: pd.DataFrame, scale: float | None = None) -> dict[str, float]:
    """MSE, MAE, relative MAE, MASE and direction of next-close forecasts.

    ``predictions`` has ``close`` (bar t) and ``forecast`` (of bar t+1); the last bar has no actual next
    close and is left out. ``relmae`` is the MAE over the naive forecast's (next close = this close) MAE on
    the same bars: below 1 beats naive there. ``mase`` is Hyndman's: the MAE over ``scale``, the naive
    forecast's MAE on the training bars (NaN without it).
    """
    actual = predictions["close"].shift(-1).to_numpy()[:-1]
    close = predictions["close"].to_numpy()[:-1]
    forecast = predictions["forecast"].to_numpy()[:-1]
    error = forecast - actual
    mae, naive_mae = float(np.mean(np.abs(error))), float(np.mean(np.abs(actual - close)))
    return {"mse": float(np.mean(error**2)), "mae": mae,
            "relmae": mae / naive_mae if naive_mae > 0 else float("nan"),
            "mase": mae / scale if scale else float("nan"),
            **direction(np.sign(forecast - close), np.sign(actual - close))}


def naive_scale(train_close: pd.Series) -> float:
    """The naive forecast's MAE over the training bars: MASE's denominator."""
    return float(np.mean(np.abs(np.diff(train_close.to_numpy()))))


def trading_performance(equity: pd.Series, calendar: Calendar = FX) -> dict[str, float]:
    """Annualised Sharpe ratio of period returns, total return and maximum drawdown (negative)."""
    drawdown = equity / equity.cummax() - 1
    return {"sharpe": annualised_sharpe(period_returns(equity, calendar), calendar),
            "total_return": float(equity.iloc[-1] / equity.iloc[0] - 1), "max_drawdown": float(drawdown.min())}
