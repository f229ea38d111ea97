"""The cheap forecasters an LLM has to beat, on the same bars and in the same format as the predictor.

Each returns the forecast frame of the test bars (``llmsignal.models.distribution``): ``close``,
``forecast``, ``p_up``, ``sigma``, the quantiles of the next close and the distribution on the
codec's grid of the split. Every forecast for bar ``t`` uses closes up to ``t`` and parameters
fitted on the training split only; nothing is refitted on the test bars.

- ``naive``, ``drift``, ``ar``: point forecasts with a Gaussian of their training residuals' scale.
- ``garch``: GARCH(1,1) with Student-t innovations (``arch``), fitted on the training returns and
  filtered forward with those parameters: its one-step predictive distribution.
- ``climatology``: the training returns' distribution (a Gaussian kernel density), the same every bar.
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


BASELINES = {"naive": naive, "drift": drift, "ar": autoregression, "garch": garch, "climatology": climatology}
