"""The embedded base's pretraining corpus: synthetic processes and bundled market series.

Everything here is offline: synthetic series come from a seeded generator, the
market series from data that installed packages ship (``arch.data`` and
``backtesting.test``). EURUSD, the default evaluation data, is never part of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

FINGERPRINT_WINDOW = 16


@dataclass
class Series:
    name: str
    source: str
    closes: pd.Series  # indexed by timestamp (synthetic series by step number)

    def describe(self) -> dict:
        index = self.closes.index
        return {"name": self.name, "source": self.source, "bars": len(self.closes),
                "start": str(index[0]), "end": str(index[-1]), "fingerprint": bars_fingerprint(self.closes)}


def synthetic_series(seed: int, length: int = 4000) -> list[Series]:
    """Random walk with drift, GARCH-like volatility, mean reversion, regime switches and jumps."""
    rng = np.random.default_rng(seed)
    n = length
    garch = np.empty(n)
    var, prev = 1e-4, 0.0
    for t in range(n):
        var = 1e-6 + 0.08 * prev**2 + 0.9 * var
        prev = rng.normal(0, np.sqrt(var))
        garch[t] = prev
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
    index = pd.RangeIndex(n + 1, name="step")
    return [Series(f"synthetic_{name}", f"numpy seed {seed}", pd.Series(100 * np.exp(np.r_[0, np.cumsum(r)]), index))
            for name, r in returns.items()]


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
        Series("sp500", "arch.data.sp500", sp500.load()["Adj Close"]),
        Series("nasdaq", "arch.data.nasdaq", nasdaq.load()["Adj Close"]),
        Series("wti", "arch.data.wti", wti.load().iloc[:, 0]),
        Series("goog", "backtesting.test.GOOG", GOOG["Close"]),
        Series("btcusd", "backtesting.test.BTCUSD", BTCUSD["Close"]),
    ]
    return [Series(s.name, s.source, s.closes[s.closes > 0].dropna()) for s in found]


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
