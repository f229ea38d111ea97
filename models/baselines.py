"""The cheap forecasters an LLM has to beat, on the same bars and in the same format as the predictor.

Each returns a frame indexed like the test bars with ``close``, ``forecast`` and
``p_up``; every forecast for bar ``t`` uses closes up to ``t`` and parameters
fitted on the training split only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from llmsignal.finetune.bars import Split

AR_ORDER = 5


def _frame(split: Split, mean_return: np.ndarray, sigma: float) -> pd.DataFrame:
    close = split.test["close"]
    p_up = norm.cdf(mean_return / sigma) if sigma > 0 else np.full(len(close), 0.5)
    return pd.DataFrame({"close": close, "forecast": close.to_numpy() * np.exp(mean_return), "p_up": p_up},
                        index=close.index)


def naive(split: Split) -> pd.DataFrame:
    """Next close = this close."""
    return _frame(split, np.zeros(len(split.test)), 0.0)


def drift(split: Split) -> pd.DataFrame:
    """Next return = the mean return of the training split."""
    returns = np.diff(np.log(split.train["close"].to_numpy()))
    return _frame(split, np.full(len(split.test), returns.mean()), returns.std())


def autoregression(split: Split, order: int = AR_ORDER) -> pd.DataFrame:
    """A linear AR(order) on log-returns, least squares on the training split."""
    returns = np.diff(np.log(split.bars["close"].to_numpy()))
    train = returns[:split.val_start - 1]
    lags = np.lib.stride_tricks.sliding_window_view(train, order + 1)
    design = np.c_[np.ones(len(lags)), lags[:, :-1]]
    coef, *_ = np.linalg.lstsq(design, lags[:, -1], rcond=None)
    sigma = float(np.std(lags[:, -1] - design @ coef))
    # the return ending at bar t is returns[t - 1]; the forecast for t uses returns[t - order: t]
    ends = np.arange(split.test_start, len(split.bars))
    history = np.stack([returns[t - order:t] for t in ends])
    return _frame(split, coef[0] + history @ coef[1:], sigma)


BASELINES = {"naive": naive, "drift": drift, "ar": autoregression}
