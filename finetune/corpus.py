"""The embedded base's pretraining corpus: synthetic processes and bundled market series.

Everything here is offline: synthetic series come from a seeded generator, the
market series from data that installed packages ship (``arch.data`` and
``backtesting.test``). EURUSD, the default evaluation data, is never part of it.

Every series but WTI carries each bar's high and low too, for text with ``--inputs ohlc``: the market series
their own, the synthetic ones from a simulated intrabar path (a Brownian bridge from the bar's open to its close
at the bar's volatility, 12 steps), so that a bar's range says what its process's volatility was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

FINGERPRINT_WINDOW = 16
INTRABAR_STEPS = 12


@dataclass
class Series:
    name: str
    source: str
    closes: pd.Series  # indexed by timestamp (synthetic series by step number)
    high: pd.Series | None = None  # each bar's high and low on the closes' index, where the series has them
    low: pd.Series | None = None

    def describe(self) -> dict:
        index = self.closes.index
        return {"name": self.name, "source": self.source, "bars": len(self.closes),
                "start": str(index[0]), "end": str(index[-1]), "fingerprint": bars_fingerprint(self.closes)}


def synthetic_series(seed: int, length: int = 4000) -> list[Series]:
    """Random walk with drift, GARCH-like volatility, mean reversion, regime switches and jumps."""
    rng = np.random.default_rng(seed)
    n = length
    garch, garch_sigma = np.empty(n), np.empty(n)
    var, prev = 1e-4, 0.0
    for t in range(n):
        var = 1e-6 + 0.08 * prev**2 + 0.9 * var
        prev = rng.normal(0, np.sqrt(var))
        garch[t], garch_sigma[t] = prev, np.sqrt(var)
    level, reverting = 0.0, np.empty(n)
    for t in range(n):
        level += -0.05 * level + rng.normal(0, 0.01)
        reverting[t] = level
    regimes = np.repeat(rng.choice([-1, 1], size=n // 200 + 1), 200)[:n]
    returns = {
        "random_walk_drift": rng.normal(2e-4, 1e-2, n),
        "garch_volatility": garch,
        "mean_reversion": np.diff(reverting, prepend=0.0),
        "regime_switching": rng.normal(5e-4 * regimes, np.where(regimes > 0, 6e-3, 1.5e-2)),
        "jumps": rng.normal(0, 5e-3, n) + rng.binomial(1, 0.01, n) * rng.normal(0, 5e-2, n),
        "momentum_ar": _ar1(rng, n, 0.3),
    }
    sigmas = {"random_walk_drift": 1e-2, "garch_volatility": garch_sigma, "mean_reversion": 1e-2,
              "regime_switching": np.where(regimes > 0, 6e-3, 1.5e-2), "jumps": 5e-3, "momentum_ar": 8e-3}
    paths = np.random.default_rng([seed, 1])  # its own stream: the closes are what they were before ranges
    index = pd.RangeIndex(n + 1, name="step")
    found = []
    for name, r in returns.items():
        closes = 100 * np.exp(np.r_[0, np.cumsum(r)])
        up, down = intrabar_extremes(r, np.broadcast_to(sigmas[name], r.shape), paths)
        opens, ends = closes[:-1], closes[1:]
        # the first bar has no path: open = high = low = close; the others hold their open and close to the last bit
        high = np.r_[closes[0], np.maximum.reduce([opens * np.exp(up), opens, ends])]
        low = np.r_[closes[0], np.minimum.reduce([opens * np.exp(down), opens, ends])]
        found.append(Series(f"synthetic_{name}", f"numpy seed {seed}", pd.Series(closes, index),
                            pd.Series(high, index), pd.Series(low, index)))
    return found


def intrabar_extremes(returns: np.ndarray, sigmas: np.ndarray, rng: np.random.Generator,
                      steps: int = INTRABAR_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """The highest and lowest log-price, from each bar's open, of a Brownian bridge that ends at the bar's return.

    >>> up, down = intrabar_extremes(np.array([0.01, -0.02]), np.array([0.01, 0.01]), np.random.default_rng(0))
    >>> bool((up >= np.maximum(0, [0.01, -0.02])).all() and (down <= np.minimum(0, [0.01, -0.02])).all())
    True
    """
    walk = np.cumsum(rng.normal(0.0, 1.0, (len(returns), steps)) * (sigmas[:, None] / np.sqrt(steps)), axis=1)
    bridge = walk - np.arange(1, steps + 1) / steps * (walk[:, -1:] - returns[:, None])  # ends exactly at the close
    return np.maximum(bridge.max(axis=1), 0.0), np.minimum(bridge.min(axis=1), 0.0)


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    noise, out = rng.normal(0, 8e-3, n), np.empty(n)
    out[0] = noise[0]
    for t in range(1, n):
        out[t] = phi * out[t - 1] + noise[t]
    return out


def bundled_series() -> list[Series]:
    """Market series shipped inside installed packages (never EURUSD)."""
    from arch.data import nasdaq, sp500, wti
    from backtesting.test import BTCUSD, GOOG

    found = [
        _adjusted("sp500", "arch.data.sp500", sp500.load()),
        _adjusted("nasdaq", "arch.data.nasdaq", nasdaq.load()),
        Series("wti", "arch.data.wti", wti.load().iloc[:, 0]),  # one price a day: no range
        Series("goog", "backtesting.test.GOOG", GOOG["Close"], GOOG["High"], GOOG["Low"]),
        Series("btcusd", "backtesting.test.BTCUSD", BTCUSD["Close"], BTCUSD["High"], BTCUSD["Low"]),
    ]
    kept = []
    for series in found:
        closes = series.closes[series.closes > 0].dropna()  # the close corpus, as before it had ranges
        high, low = (None if x is None else x.loc[closes.index] for x in (series.high, series.low))
        kept.append(Series(series.name, series.source, closes, high, low))
    return kept


def _adjusted(name: str, source: str, frame: pd.DataFrame) -> Series:
    """Adjusted closes as before, with the high and low scaled by the same adjustment (ranges are unchanged)."""
    factor = frame["Adj Close"] / frame["Close"]
    return Series(name, source, frame["Adj Close"], frame["High"] * factor, frame["Low"] * factor)


def bars_fingerprint(closes: pd.Series) -> str:
    return hashlib.sha256(np.asarray(closes, dtype=np.float64).round(8).tobytes()).hexdigest()[:16]


def window_fingerprints(closes: np.ndarray, window: int = FINGERPRINT_WINDOW) -> np.ndarray:
    """One 64-bit hash per run of ``window`` consecutive log-returns (rounded), to find shared bars.

    Returns are compared rather than prices so that a rescaled copy of a series still matches.
    """
    returns = np.round(np.diff(np.log(np.asarray(closes, dtype=np.float64))), 6) + 0.0  # no -0.0
    if len(returns) < window:
        return np.empty(0, dtype=np.uint64)
    runs = np.lib.stride_tricks.sliding_window_view(returns, window)
    return np.array([int.from_bytes(hashlib.blake2b(run.tobytes(), digest_size=8).digest(), "little")
                     for run in np.ascontiguousarray(runs)], dtype=np.uint64)
