"""The cheap forecasters an LLM has to beat, on the same bars and in the same format as the predictor.

Each returns the forecast frame of the test bars (``llmsignal.models.distribution``): ``close``,
``forecast``, ``p_up``, ``sigma``, the quantiles of the next close and the distribution on the
codec's grid of the split. Every forecast for bar ``t`` uses closes up to ``t`` and parameters
fitted on the training split only; nothing is refitted on the test bars.

- ``naive``, ``drift``, ``ar``: point forecasts with a Gaussian of their training residuals' scale.
- ``garch``: GARCH(1,1) with Student-t innovations (``arch``), fitted on the training returns and
  filtered forward with those parameters: its one-step predictive distribution.
- ``climatology``: the training returns' distribution (a Gaussian kernel density), the same every bar.
- ``har-range``: a HAR regression (Corsi 2009) of each bar's Garman-Klass variance, read from its open, high,
  low and close, on its means over the last bar, day and week; fitted on the training split, filtered forward. It
  reads the bars' ranges, so that a model that reads them has a baseline that does too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from arch import arch_model
from scipy.stats import gaussian_kde, norm, t

from llmsignal.finetune.bars import Split
from llmsignal.finetune.codec import PriceCodec
from llmsignal.models.distribution import bin_edges, binned_frame, distribution_frame

AR_ORDER = 5
MIN_DEGREES_OF_FREEDOM = 2.5  # a Student t needs more than 2 for a variance; fatter tails are held here
GARMAN_KLASS = 2 * np.log(2) - 1


class BaselineSkipped(ValueError):
    """A baseline that these bars cannot feed (no ranges for ``har-range``), with the reason in the message."""


def _returns(split: Split) -> np.ndarray:
    """Log-returns of the split's bars: ``returns[i]`` is from close ``i`` to close ``i + 1``."""
    return np.diff(np.log(split.bars["close"].to_numpy()))


def _train_returns(split: Split) -> np.ndarray:
    return _returns(split)[:split.val_start - 1]


def _step(split: Split) -> float:
    """The grid of the tuned models on this split: the codec fitted on its training closes."""
    return PriceCodec.fit(split.train["close"].to_numpy()).step


def _gaussian(split: Split, mean_return: np.ndarray, sigma: float) -> pd.DataFrame:
    return distribution_frame(split.test["close"], norm(loc=mean_return, scale=sigma), _step(split))


def naive(split: Split) -> pd.DataFrame:
    """Next close = this close; its residuals are the returns themselves."""
    returns = _train_returns(split)
    return _gaussian(split, np.zeros(len(split.test)), float(np.sqrt(np.mean(returns**2))))


def drift(split: Split) -> pd.DataFrame:
    """Next return = the mean return of the training split."""
    returns = _train_returns(split)
    return _gaussian(split, np.full(len(split.test), returns.mean()), float(returns.std()))


def autoregression(split: Split, order: int = AR_ORDER) -> pd.DataFrame:
    """A linear AR(order) on log-returns, least squares on the training split."""
    returns = _returns(split)
    lags = np.lib.stride_tricks.sliding_window_view(returns[:split.val_start - 1], order + 1)
    design = np.c_[np.ones(len(lags)), lags[:, :-1]]
    coef, *_ = np.linalg.lstsq(design, lags[:, -1], rcond=None)
    sigma = float(np.std(lags[:, -1] - design @ coef))
    # the return ending at bar t is returns[t - 1]; the forecast for t uses returns[t - order: t]
    ends = np.arange(split.test_start, len(split.bars))
    history = np.stack([returns[t - order:t] for t in ends])
    return _gaussian(split, coef[0] + history @ coef[1:], sigma)


def garch(split: Split) -> pd.DataFrame:
    """GARCH(1,1), constant mean, Student-t: fitted on the training returns, then only filtered forward."""
    returns = _returns(split)
    scale = 1.0 / _train_returns(split).std()  # arch's optimiser wants returns of order one
    model = arch_model(returns * scale, mean="Constant", vol="GARCH", p=1, q=1, dist="t")
    fitted = model.fit(last_obs=split.val_start - 1, disp="off")  # the estimation sample ends with training
    # row i of the forecast reads returns up to i (the one ending at bar i + 1) and predicts returns[i + 1]
    ahead = fitted.forecast(horizon=1, start=split.test_start - 1, reindex=False)
    sigma = np.sqrt(ahead.variance.to_numpy()[:, 0]) / scale
    mean, nu = fitted.params["mu"] / scale, fitted.params["nu"]
    # arch's t has unit variance; scipy's scale is the standard deviation times sqrt((nu - 2) / nu)
    return distribution_frame(split.test["close"], t(df=nu, loc=mean, scale=sigma * np.sqrt((nu - 2) / nu)),
                              _step(split))


def climatology(split: Split) -> pd.DataFrame:
    """The training returns' distribution for every bar: their Gaussian kernel density on the grid."""
    step = _step(split)
    density = gaussian_kde(_train_returns(split))
    below = [density.integrate_box_1d(-np.inf, edge) for edge in bin_edges(step)[1:-1]]
    probs = np.tile(np.diff(np.r_[0.0, below, 1.0]), (len(split.test), 1))
    return binned_frame(split.test["close"].to_numpy(), probs, step).set_axis(split.test.index)


def bar_variance(bars: pd.DataFrame) -> np.ndarray:
    """Each bar's variance of its close-to-close log-return, from its open, high, low and close.

    Garman and Klass (1980): ``0.5 log(high / low)^2 - (2 log 2 - 1) log(close / open)^2``, the most efficient
    estimator of a driftless Brownian bar from its OHLC, plus the squared gap from the last close to the open (zero
    where a bar opens at the last close), so that it estimates the same return the forecasts are of. The first bar
    has no last close: its gap is taken as zero.
    """
    open_, high, low, close = (np.log(bars[c].to_numpy(dtype=float)) for c in ("open", "high", "low", "close"))
    gap = open_ - np.r_[open_[0], close[:-1]]
    inside = 0.5 * (high - low) ** 2 - GARMAN_KLASS * (close - open_) ** 2
    return gap**2 + np.maximum(inside, 0.0)  # a bar whose open or close lies outside its range would go negative


def har_windows(index: pd.DatetimeIndex, longest: int) -> tuple[int, int, int]:
    """The HAR's three means, in bars: the last bar, a day and a week (five days) of these bars.

    A day is the median number of bars per calendar date (24 for hourly FX, 7 for hourly stocks); for daily and
    longer bars, Corsi's 1, 5 and 22 bars. No window is longer than ``longest``.
    """
    per_day = int(pd.Series(1, index=index).groupby(index.normalize()).size().median())
    windows = (1, 5, 22) if per_day <= 1 else (1, per_day, 5 * per_day)
    return tuple(min(w, longest) for w in windows)  # type: ignore[return-value]


def _har_design(variance: np.ndarray, windows: tuple[int, int, int]) -> np.ndarray:
    """Row ``i``: 1 and the means of ``variance`` over the ``windows`` bars ending at bar ``i`` (NaN before)."""
    cumulative = np.r_[0.0, np.cumsum(variance)]
    columns = [np.ones(len(variance))]
    for w in windows:
        mean = np.full(len(variance), np.nan)
        mean[w - 1:] = (cumulative[w:] - cumulative[:-w]) / w
        columns.append(mean)
    return np.stack(columns, axis=1)


def har_range(split: Split) -> pd.DataFrame:
    """HAR on Garman-Klass variance, fitted on the training split; a Student t of the training standardised returns.

    Least squares on the log variance (HAR's log form), not the variance: one bar's range variance is skewed far
    to the right, and in levels a few spikes set the coefficients (on EURUSD H1 the log form's test log score is
    0.03 higher); in logs the residuals are near symmetric and every forecast is positive. A bar with no range
    (high = low) is floored at a hundredth of the training bars' mean variance before the log. The forecast for
    bar ``t`` (of the return to bar ``t + 1``) reads the bars up to ``t``. Its distribution is centred on zero;
    its scale and tails are a Student t fitted (``scipy.stats``) to the training returns divided by their
    forecasts: that scale absorbs the log form's bias (exp of a mean log is below the mean) and the range's
    against close-to-close returns (discrete prices, gaps), all on the training split.
    """
    bars = split.bars
    if not (bars["high"].iloc[:split.val_start] > bars["low"].iloc[:split.val_start]).any():
        raise BaselineSkipped("har-range left out: the bars have no high-low range (high = low on every training "
                              "bar), so a range-based volatility cannot be read from them")
    log_variance = np.log(np.maximum(bar_variance(bars), 0.01 * bar_variance(split.train).mean()))
    windows = har_windows(bars.index[:split.val_start], longest=max(1, split.val_start // 4))
    design = _har_design(log_variance, windows)
    # the training rows: bar i's design forecasts the log variance of bar i + 1, both inside the training split
    rows = np.arange(windows[-1] - 1, split.val_start - 1)
    coef, *_ = np.linalg.lstsq(design[rows], log_variance[rows + 1], rcond=None)
    sigma = np.exp(0.5 * design @ coef)
    returns = _returns(split)  # returns[i]: from close i to close i + 1, the one the forecast at bar i is of
    standardised = returns[rows] / sigma[rows]
    nu, _, scale = t.fit(standardised, floc=0)
    if nu < MIN_DEGREES_OF_FREEDOM:
        nu, _, scale = t.fit(standardised, f0=MIN_DEGREES_OF_FREEDOM, floc=0)
    ahead = sigma[split.test_start:] * scale
    return distribution_frame(split.test["close"], t(df=nu, loc=0.0, scale=ahead), _step(split))


BASELINES = {"naive": naive, "drift": drift, "ar": autoregression, "garch": garch, "har-range": har_range,
             "climatology": climatology}
READS_RANGES = {"har-range"}  # baselines that read each bar's high and low too: their rows' inputs are "ohlc"
