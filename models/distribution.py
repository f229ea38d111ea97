"""Forecast distributions of the next return, summarised in one frame format for every forecaster.

Every forecaster, tuned or baseline, gives each bar a frame row with the public columns
``close, forecast, p_up, sigma, q05, q25, q50, q75, q95`` (``sigma``: standard deviation of the
next log-return; ``qNN``: quantiles of the next close) and its distribution on the codec's grid of
100 bins (``bin_step`` and ``bin00 .. bin99``, bin 50 "no change"): the columns that the scores
in ``llmsignal.backtests.metrics`` read, by name, so that every row is scored on the same grid:

    >>> probs = np.zeros((1, BINS)); probs[0, [49, 50, 51]] = 0.25, 0.5, 0.25
    >>> row = binned_frame(np.array([1.0]), probs, step=0.001).iloc[0]
    >>> round(float(row["sigma"]), 6), round(float(row["q50"]), 6), float(row["p_up"])
    (0.000764, 1.0, 0.5)

A bin stands for the log-return ``(b - 50) * step`` (the codec's), and is read as spread evenly
across its width ``step`` where a density, a CDF or a quantile is needed; the end bins hold the
tails. A continuous distribution (a baseline's) is put on the grid by integrating it over each bin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmsignal.finetune.codec import BINS, ZERO_BIN, PriceCodec

QUANTILES = {"q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95}
FORECAST_COLUMNS = ["close", "forecast", "p_up", "sigma", *QUANTILES]  # what predictions.csv holds
STEP_COLUMN = "bin_step"
BIN_COLUMNS = [f"bin{b:02d}" for b in range(BINS)]


def bin_edges(step: float) -> np.ndarray:
    """The 101 edges of the bins read as intervals of width ``step`` (the end bins also hold the tails)."""
    return (np.arange(BINS + 1) - ZERO_BIN - 0.5) * step


def histogram_quantiles(probs: np.ndarray, step: float, levels: list[float]) -> np.ndarray:
    """Log-return quantiles at ``levels`` of each row of ``probs`` (rows, levels), bins spread across their width."""
    edges = bin_edges(step)
    cumulative = np.c_[np.zeros(len(probs)), np.cumsum(probs, axis=1)]
    cumulative /= cumulative[:, -1:]  # float sums end a hair off 1
    return np.stack([np.interp(levels, row, edges) for row in cumulative])


def binned_frame(close: np.ndarray, probs: np.ndarray, step: float) -> pd.DataFrame:
    """The forecast frame of bins probabilities ``probs`` (rows, 100) of the next return after each close.

    The forecast is the close times the exponential of the mean return; ``p_up`` the mass above "no
    change" plus half of it.
    """
    close = np.asarray(close, dtype=float)
    returns = PriceCodec(step).bin_returns()
    mean = probs @ returns
    # each bin's mass spread across its width, as every score reads it: the bins' spread plus a uniform's step^2/12
    sigma = np.sqrt(np.maximum(probs @ returns**2 - mean**2, 0.0) + step**2 / 12)
    p_up = probs[:, ZERO_BIN + 1:].sum(1) + 0.5 * probs[:, ZERO_BIN]
    quantiles = close[:, None] * np.exp(histogram_quantiles(probs, step, list(QUANTILES.values())))
    summary = pd.DataFrame({"close": close, "forecast": close * np.exp(mean), "p_up": p_up, "sigma": sigma,
                            **dict(zip(QUANTILES, quantiles.T, strict=True))})
    return _with_bins(summary, probs, step)


def distribution_frame(close: pd.Series, distribution, step: float) -> pd.DataFrame:
    """The forecast frame of a vectorised ``scipy.stats`` distribution of the next log-return after each close.

    ``distribution`` is frozen with one location (and scale) per bar, e.g. ``norm(loc=means, scale=sigma)``;
    its summary is exact, and its bins are its probability of each bin's interval.
    """
    values = close.to_numpy(dtype=float)
    quantiles = np.stack([np.broadcast_to(distribution.ppf(level), values.shape) for level in QUANTILES.values()],
                         axis=1)
    mean, sigma = np.broadcast_arrays(distribution.mean(), distribution.std(), values)[:2]
    summary = pd.DataFrame({"close": values, "forecast": values * np.exp(mean),
                            "p_up": np.broadcast_to(distribution.sf(0.0), values.shape), "sigma": sigma,
                            **dict(zip(QUANTILES, (values[:, None] * np.exp(quantiles)).T, strict=True))},
                           index=close.index)
    return _with_bins(summary, _binned(distribution, step, len(values)), step)


def _binned(distribution, step: float, rows: int) -> np.ndarray:
    """The probability of each bin's interval, the end bins taking the tails: (rows, 100)."""
    inner = bin_edges(step)[1:-1, None]
    below = np.broadcast_to(distribution.cdf(inner).T, (rows, BINS - 1))
    above = np.broadcast_to(distribution.sf(inner).T, (rows, BINS - 1))
    # differences of the CDF lose every digit far above the median, so the upper side takes survival functions
    lower_side = np.diff(np.c_[np.zeros(rows), below, np.ones(rows)], axis=1)
    upper_side = -np.diff(np.c_[np.ones(rows), above, np.zeros(rows)], axis=1)
    median = np.broadcast_to(distribution.median(), (rows,))[:, None]
    centres = PriceCodec(step).bin_returns()[None, :]
    return np.maximum(np.where(centres < median, lower_side, upper_side), 0.0)


def _with_bins(summary: pd.DataFrame, probs: np.ndarray, step: float) -> pd.DataFrame:
    bins = pd.DataFrame(probs, columns=BIN_COLUMNS, index=summary.index)
    return pd.concat([summary, pd.Series(step, index=summary.index, name=STEP_COLUMN), bins], axis=1)
