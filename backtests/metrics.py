"""The one home of the numbers a row reports: forecast error, direction, distribution scores, trading periods and
Sharpe.

    >>> index = pd.DatetimeIndex(["2024-01-07 22:00", "2024-01-08 12:00", "2024-01-08 22:00"])  # UTC: Sun, Mon, Mon
    >>> list(trading_day(index).strftime("%a %d"))   # FX days end at 17:00 New York (22:00 UTC in winter)
    ['Mon 08', 'Mon 08', 'Tue 09']
"""

from __future__ import annotations

import re
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


def forecast_bins(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """The forecast distributions of ``predictions``: (bin probabilities (bars, bins), bin width per bar).

    Read from the columns ``bin00, bin01, ...`` and ``bin_step`` that every forecaster's frame carries
    (``llmsignal.models.distribution``); the middle bin is "no change" and bin ``b`` stands for the
    log-return ``(b - bins // 2) * bin_step``. None for frames without them (a predictions CSV).
    """
    columns = sorted((c for c in predictions.columns if re.fullmatch(r"bin\d+", str(c))), key=lambda c: int(c[3:]))
    if not columns or "bin_step" not in predictions:
        return None
    return predictions[columns].to_numpy(dtype=float), predictions["bin_step"].to_numpy(dtype=float)


def bin_values(count: int, step: np.ndarray) -> np.ndarray:
    """The log-return of each of ``count`` bins, for bins of width ``step`` (one row per width)."""
    return (np.arange(count) - count // 2) * np.asarray(step, dtype=float)[:, None]


def log_score(probs: np.ndarray, step: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """The log density at each outcome: the log of its bin's probability over the bin width (the end bins hold
    the tails). A proper score of the binned outcome, the same for every forecaster on the same grid.

    >>> probs = np.array([[0.0, 0.25, 0.75]])   # three bins of width 0.01 centred on -0.01, 0 and 0.01
    >>> round(float(log_score(probs, np.array([0.01]), np.array([0.012]))[0]), 4)   # log(0.75 / 0.01)
    4.3175
    """
    count = probs.shape[1]
    position = np.floor(np.asarray(outcomes, dtype=float) / step + count // 2 + 0.5)
    chosen = probs[np.arange(len(probs)), np.clip(position, 0, count - 1).astype(int)]
    return np.log(np.maximum(chosen, np.finfo(float).tiny) / step)  # a tiny floor: a finite, dreadful score


def crps(probs: np.ndarray, step: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """The continuous ranked probability score, exactly, of bin distributions read as the log score, the PIT and
    the quantiles read them: each bin's mass spread evenly across its width ``step`` (one per row), bin ``b``
    centred on ``(b - bins // 2) * step``. Lower is better, in the units of ``outcomes``.

    CRPS = the integral of (F(x) - 1{x >= y})^2; F is piecewise linear, so each bin's part has a closed form:
    over a width L on which F - H runs linearly from a to b, L (a^2 + ab + b^2) / 3. Outcomes beyond the grid add
    their distance to it.

    >>> round(float(crps(np.array([[0.0, 1.0, 0.0]]), np.array([1.0]), np.array([0.0]))[0]), 6)  # uniform(-0.5, 0.5)
    0.083333
    """
    count = probs.shape[1]
    step = np.asarray(step, dtype=float)[:, None]
    edges = (np.arange(count + 1) - count // 2 - 0.5) * step
    cdf = np.c_[np.zeros(len(probs)), np.cumsum(probs, axis=1)]
    y = np.asarray(outcomes, dtype=float)[:, None]
    low, high, f0, f1 = edges[:, :-1], edges[:, 1:], cdf[:, :-1], cdf[:, 1:]
    cut = np.clip(y, low, high)  # each bin splits at the outcome: below it H = 0, above it H = 1
    at_cut = f0 + (f1 - f0) * (cut - low) / (high - low)
    below = (cut - low) * (f0**2 + f0 * at_cut + at_cut**2) / 3
    g0, g1 = 1.0 - at_cut, 1.0 - f1
    above = (high - cut) * (g0**2 + g0 * g1 + g1**2) / 3
    beyond = np.maximum(y - edges[:, -1:], 0.0) + np.maximum(edges[:, :1] - y, 0.0)
    return (below + above).sum(1) + beyond[:, 0]


def probability_integral_transform(probs: np.ndarray, step: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """P(next return <= outcome) under each forecast, its bins spread evenly across their width: uniform
    on [0, 1] when the forecasts are calibrated."""
    count = probs.shape[1]
    position = np.clip(np.asarray(outcomes, dtype=float) / step + count // 2 + 0.5, 0, count)  # in bin widths
    below = np.minimum(position.astype(int), count - 1)
    cumulative = np.c_[np.zeros(len(probs)), np.cumsum(probs, axis=1)]
    rows = np.arange(len(probs))
    return np.clip(cumulative[rows, below] + probs[rows, below] * (position - below), 0.0, 1.0)


def calibration_error(pit: np.ndarray) -> float:
    """Mean distance between the share of PIT values below each decile and the decile: 0 when calibrated.

    >>> calibration_error(np.linspace(0.005, 0.995, 100))
    0.0
    """
    pit = np.asarray(pit, dtype=float)
    pit = pit[~np.isnan(pit)]
    levels = np.arange(1, 10) / 10
    return float(np.mean(np.abs((pit[:, None] <= levels).mean(0) - levels))) if len(pit) else float("nan")


def distribution_losses(predictions: pd.DataFrame) -> pd.DataFrame:
    """Each bar's distribution scores against the next close (the last bar has none).

    ``log_score`` (log density of the realised log-return, higher is better), ``crps`` (basis points of
    return, lower is better) and ``pit`` need the bins; ``covered`` (the next close inside [q05, q95])
    and ``qlike`` (log of the predicted variance plus the squared return over it, returns in basis points,
    lower is better) need ``sigma`` and the quantiles. What a frame lacks is NaN.
    """
    close = predictions["close"].to_numpy(dtype=float)
    outcome = np.log(close[1:] / close[:-1])
    nan = np.full(len(outcome), np.nan)
    scores = pd.DataFrame({"log_score": nan, "crps": nan, "pit": nan, "covered": nan, "qlike": nan},
                          index=predictions.index[:-1])
    binned = forecast_bins(predictions)
    if binned is not None:
        probs, step = binned[0][:-1], binned[1][:-1]
        scores["log_score"] = log_score(probs, step, outcome)
        scores["crps"] = crps(probs, step, outcome) * 1e4
        scores["pit"] = probability_integral_transform(probs, step, outcome)
    if {"sigma", "q05", "q95"} <= set(predictions.columns):
        inside = (predictions["q05"].to_numpy()[:-1] <= close[1:]) & (close[1:] <= predictions["q95"].to_numpy()[:-1])
        scores["covered"] = inside.astype(float)
        variance = (predictions["sigma"].to_numpy(dtype=float)[:-1] * 1e4) ** 2
        scores["qlike"] = np.log(variance) + (outcome * 1e4) ** 2 / variance
    return scores


def distribution_scores(predictions: pd.DataFrame) -> dict[str, float]:
    """The means of ``distribution_losses`` over the bars, and the calibration error of the PIT values."""
    losses = distribution_losses(predictions)
    return {"log_score": float(losses["log_score"].mean()), "crps": float(losses["crps"].mean()),
            "coverage_90": float(losses["covered"].mean()), "calibration_error": calibration_error(losses["pit"]),
            "qlike": float(losses["qlike"].mean())}


def mase_scale(close: pd.Series, start: pd.Timestamp) -> float:
    """MASE's denominator: the naive forecast's MAE over every bar before ``start`` (the first forecast bar).

    Only bars before the forecasts are used, so ``llmsignal run`` and ``llmsignal backtest`` of the same
    forecasts on the same bars agree; NaN where no earlier bars exist.
    """
    earlier = close[close.index < start].to_numpy(dtype=float)
    return float(np.mean(np.abs(np.diff(earlier)))) if len(earlier) > 1 else float("nan")


def trading_performance(equity: pd.Series, calendar: Calendar = FX) -> dict[str, float]:
    """Annualised Sharpe ratio of period returns, total return and maximum drawdown (negative)."""
    drawdown = equity / equity.cummax() - 1
    return {"sharpe": annualised_sharpe(period_returns(equity, calendar), calendar),
            "total_return": float(equity.iloc[-1] / equity.iloc[0] - 1), "max_drawdown": float(drawdown.min())}
