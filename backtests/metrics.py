"""Forecast error against the naive last-value forecast, and trading performance."""

from __future__ import annotations

import numpy as np
import pandas as pd

PERIODS_PER_YEAR = 252


def forecast_error(predictions: pd.DataFrame) -> dict[str, float]:
    """MSE, MAE, MASE and directional accuracy of next-close forecasts.

    ``predictions`` has ``close`` (bar t) and ``forecast`` (of bar t+1); the last
    bar has no actual next close and is left out. MASE divides by the MAE of the
    naive forecast (next close = this close) on the same bars, so below 1 means
    better than naive. Directional accuracy counts bars where the forecast and
    the actual move have the same sign, ignoring bars that did not move or that
    the forecast called flat.
    """
    actual = predictions["close"].shift(-1).to_numpy()[:-1]
    close = predictions["close"].to_numpy()[:-1]
    forecast = predictions["forecast"].to_numpy()[:-1]
    error = forecast - actual
    naive_mae = np.mean(np.abs(actual - close))
    called, moved = np.sign(forecast - close), np.sign(actual - close)
    counted = (called != 0) & (moved != 0)
    return {
        "mse": float(np.mean(error**2)),
        "mae": float(np.mean(np.abs(error))),
        "mase": float(np.mean(np.abs(error)) / naive_mae) if naive_mae > 0 else float("nan"),
        "directional_accuracy": float(np.mean(called[counted] == moved[counted])) if counted.any() else float("nan"),
    }


def daily_returns(equity: pd.Series | pd.DataFrame) -> pd.Series | pd.DataFrame:
    """Compounded daily returns of intraday equity curves (quantstats and Sharpe work on days).

    The first day's return is measured from the first bar's equity, so no day is lost.
    """
    daily = equity.resample("1D").last().dropna(how="all")
    start = equity.iloc[[0]].set_axis([daily.index[0] - pd.Timedelta(days=1)])
    return pd.concat([start, daily]).pct_change().dropna(how="all")


def trading_performance(equity: pd.Series) -> dict[str, float]:
    """Annualised Sharpe ratio of daily returns, total return and maximum drawdown (negative)."""
    returns = daily_returns(equity)
    std = returns.std()
    sharpe = float(returns.mean() / std * np.sqrt(PERIODS_PER_YEAR)) if std > 0 else 0.0
    drawdown = equity / equity.cummax() - 1
    return {"sharpe": sharpe, "total_return": float(equity.iloc[-1] / equity.iloc[0] - 1),
            "max_drawdown": float(drawdown.min())}
