"""Synthetic hourly bars for the benchmarks and the tests (a random walk, a planted AR(1), stochastic volatility),
the same for the same seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmsignal.finetune.bars import check_bars


def synthetic_bars(n: int = 600, seed: int = 1, start: str = "2020-01-01") -> pd.DataFrame:
    """``n`` hourly bars of a geometric random walk (0.1% an hour), as a CSV file holds them: a ``Date`` index and
    ``Open, High, Low, Close, Volume`` columns; ``.to_csv(path)`` writes a file ``llmsignal --data`` reads."""
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.r_[close[0], close[:-1]]
    index = pd.date_range(start, periods=n, freq="h", name="Date")
    return pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) * 1.0005,
                         "Low": np.minimum(open_, close) * 0.9995, "Close": close,
                         "Volume": rng.integers(100, 1000, n)}, index=index)


def ar1_bars(n: int = 3000, phi: float = -0.6, sigma: float = 1e-3, seed: int = 0) -> pd.DataFrame:
    """Hourly bars whose log returns follow r_t = phi * r_(t-1) + e_t."""
    rng = np.random.default_rng(seed)
    shocks, returns = rng.normal(0, sigma, n), np.zeros(n)
    for t in range(1, n):
        returns[t] = phi * returns[t - 1] + shocks[t]
    close = 1.1 * np.exp(np.cumsum(returns))
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.0002,
                         "low": np.minimum(open_, close) * 0.9998, "close": close, "volume": 1.0},
                        index=pd.date_range("2020-01-01", periods=n, freq="h", name="timestamp"))


def loaded_bars(n: int = 600, seed: int = 1) -> pd.DataFrame:
    """The same bars as ``llmsignal.data.load_bars`` gives them from that file: checked, lower-case columns."""
    return check_bars(synthetic_bars(n, seed).rename(columns=str.lower), "synthetic bars")


def stochastic_volatility_bars(n: int = 3000, seed: int = 0, vol: float = 1e-3, persistence: float = 0.98,
                               vol_of_vol: float = 0.5, steps: int = 60,
                               start: str = "2021-01-04") -> tuple[pd.DataFrame, pd.Series]:
    """``n`` hourly bars whose volatility follows a log-AR(1), each bar a path of ``steps`` Gaussian steps, and the
    true volatility of each bar's next return.

    ``log(sigma[t] / vol) = persistence log(sigma[t - 1] / vol) + shock``, ``vol`` the median volatility per bar and
    ``vol_of_vol`` the stationary standard deviation of ``log sigma``; bar ``t``'s path has volatility ``sigma[t]``
    per bar. Each bar opens at the last close, its high and low are the path's extremes and its close the path's
    end: the range sees the volatility of the bar, the close only one draw of it. The series is checked bars, as
    ``load_bars`` gives them; ``true_sigma[t]`` is the standard deviation of log(close[t + 1] / close[t]).

    >>> bars, true_sigma = stochastic_volatility_bars(500, seed=1)
    >>> bool((bars["high"] >= bars[["open", "close"]].max(axis=1)).all()), len(true_sigma) == len(bars)
    (True, True)
    """
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, vol_of_vol * np.sqrt(1 - persistence**2), n + 1)
    log_sigma = np.empty(n + 1)
    log_sigma[0] = rng.normal(0.0, vol_of_vol)  # a draw of the stationary distribution: no burn-in needed
    for t in range(1, n + 1):
        log_sigma[t] = persistence * log_sigma[t - 1] + shocks[t]
    sigma = vol * np.exp(log_sigma)  # sigma[t]: the volatility of bar t's own path
    path = np.cumsum(rng.standard_normal((n, steps)) * (sigma[:n, None] / np.sqrt(steps)), axis=1)
    close = 1.1 * np.exp(np.cumsum(path[:, -1]))
    open_ = np.r_[1.1, close[:-1]]
    inside = open_[:, None] * np.exp(path)
    # the close too: its cumulated product and the path's own end differ in the last digit
    high = np.maximum.reduce([open_, close, inside.max(axis=1)])
    low = np.minimum.reduce([open_, close, inside.min(axis=1)])
    index = pd.date_range(start, periods=n, freq="h", name="timestamp")
    frame = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=index)
    return check_bars(frame, "stochastic-volatility bars"), pd.Series(sigma[1:], index=index, name="true_sigma")
