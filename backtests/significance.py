"""Significance tests for forecast and trading results: is an edge real or luck?

Point metrics from :mod:`llmsignal.backtests.metrics` say how a tuning method did on one
backtest; these functions say whether that is distinguishable from chance::

    from llmsignal.backtests.significance import diebold_mariano, sharpe_ci, deflated_sharpe_from_returns, verdict

    stat, p = diebold_mariano(model_errors, naive_errors)         # stat < 0: model better
    low, high = sharpe_ci(daily_returns(equity))                   # annualised, block bootstrap
    dsr = deflated_sharpe_from_returns(daily_returns(equity), n_trials=len(methods))
    print(verdict((low, high), p, mase))

Units: Sharpe ratios are annualised (sqrt(PERIODS_PER_YEAR)) only in ``sharpe_ci``;
the deflated Sharpe functions take and compute per-period (e.g. daily) Sharpe,
because the Bailey & López de Prado formulas are written in per-observation terms.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from llmsignal.backtests.metrics import PERIODS_PER_YEAR

EULER_GAMMA = float(np.euler_gamma)

ArrayLike = np.ndarray | pd.Series | list


def _losses(errors: ArrayLike, loss: str) -> np.ndarray:
    errors = np.asarray(errors, dtype=float)
    if loss == "squared":
        return errors**2
    if loss == "absolute":
        return np.abs(errors)
    raise ValueError(f"loss must be 'squared' or 'absolute', not {loss!r}")


def _long_run_variance(d: np.ndarray, horizon: int) -> float:
    """Variance of the mean's numerator, sum of autocovariances up to lag horizon-1.

    An h-step forecast error is at most MA(h-1), so DM (1995) and HLN (1997) use a
    flat window of h-1 lags; the HLN correction below is derived for that window.
    It can go non-positive for h > 1, and then Newey-West (Bartlett) weights,
    which are always >= 0, take over.
    """
    n = len(d)
    centred = d - d.mean()
    gammas = np.array([centred[k:] @ centred[: n - k] / n for k in range(horizon)])
    flat = gammas[0] + 2 * gammas[1:].sum()
    if flat > 0:
        return float(flat)
    bartlett = 1 - np.arange(1, horizon) / horizon
    return float(gammas[0] + 2 * (bartlett * gammas[1:]).sum())


def diebold_mariano(errors_a: ArrayLike, errors_b: ArrayLike, horizon: int = 1,
                    loss: str = "squared") -> tuple[float, float]:
    """Diebold-Mariano statistic and two-sided p-value for equal accuracy of forecasts A and B.

    ``errors_*`` are forecast errors (forecast - actual) on the same bars; pairs with a
    NaN on either side are dropped. ``loss`` is "squared" or "absolute". The loss
    differential L(A) - L(B) is tested against zero, so a negative statistic means
    A is more accurate. The long-run variance covers horizon-1 lags, and the
    Harvey-Leybourne-Newbold small-sample correction with a Student-t(n-1) reference
    is applied; for horizon=1 this is exactly a paired t-test on the losses.

    Identical losses give (0.0, 1.0); a constant non-zero differential gives
    (-inf or inf, 0.0); fewer than two usable pairs give (nan, nan).
    """
    loss_a, loss_b = _losses(errors_a, loss), _losses(errors_b, loss)
    if loss_a.shape != loss_b.shape or loss_a.ndim != 1:
        raise ValueError(f"errors must be 1-D and the same length, got {loss_a.shape} and {loss_b.shape}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    d = loss_a - loss_b
    d = d[~np.isnan(d)]
    n = len(d)
    if n < 2:
        return float("nan"), float("nan")
    if not d.any():
        return 0.0, 1.0
    correction = (n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n
    if correction <= 0 or horizon >= n:
        raise ValueError(f"horizon {horizon} is too long for {n} observations")
    variance = _long_run_variance(d, horizon)
    mean = d.mean()
    if variance <= 0:  # a constant differential: every bar says the same thing
        return float(np.copysign(np.inf, mean)), 0.0
    statistic = float(mean / np.sqrt(variance / n) * np.sqrt(correction))
    return statistic, float(2 * stats.t.sf(abs(statistic), df=n - 1))


def _stationary_indices(rng: np.random.Generator, n: int, rows: int, block: float) -> np.ndarray:
    """Politis-Romano stationary bootstrap: blocks of geometric length (mean ``block``), wrapping around."""
    positions = np.arange(n)
    starts_here = rng.random((rows, n)) < 1 / block
    starts_here[:, 0] = True
    block_start = np.maximum.accumulate(np.where(starts_here, positions, 0), axis=1)
    origin = np.take_along_axis(rng.integers(0, n, (rows, n)), block_start, axis=1)
    return (origin + positions - block_start) % n


def block_bootstrap_ci(values: ArrayLike, statistic: Callable[[np.ndarray], float], block: float | None = None,
                       n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile confidence interval of ``statistic`` over a 1-D series, by stationary bootstrap.

    Returns and forecast hits are serially dependent, so resampling single values
    would understate the spread; resampling blocks of mean length ``block``
    (default n**(1/3), at least 1) keeps short-range dependence. NaNs in
    ``values`` are dropped first, and resamples whose statistic is NaN are ignored.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {values.shape}")
    values = values[~np.isnan(values)]
    n = len(values)
    if n < 2:
        raise ValueError(f"need at least 2 values, got {n}")
    if not 0 < alpha < 1 or n_boot < 1:
        raise ValueError(f"need 0 < alpha < 1 and n_boot >= 1, got alpha={alpha}, n_boot={n_boot}")
    block = max(1.0, round(n ** (1 / 3))) if block is None else float(block)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    rng = np.random.default_rng(seed)
    rows = max(1, 2_000_000 // n)  # bound the index matrices to ~16 MB each on long series
    boot = []
    for done in range(0, n_boot, rows):
        for index in _stationary_indices(rng, n, min(rows, n_boot - done), block):
            boot.append(statistic(values[index]))
    boot = np.asarray(boot, dtype=float)
    if np.isnan(boot).all():
        return float("nan"), float("nan")
    low, high = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def directional_accuracy_ci(called: ArrayLike, moved: ArrayLike, block: float | None = None, n_boot: int = 1000,
                            alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Block-bootstrap CI of the hit rate, counted as in ``metrics.forecast_error``.

    ``called`` and ``moved`` are the forecast and actual moves (or their signs);
    bars where either is zero are left out, as forecast_error does.
    """
    called, moved = np.sign(np.asarray(called, dtype=float)), np.sign(np.asarray(moved, dtype=float))
    counted = (called != 0) & (moved != 0) & ~np.isnan(called) & ~np.isnan(moved)
    hits = (called[counted] == moved[counted]).astype(float)
    return block_bootstrap_ci(hits, np.mean, block=block, n_boot=n_boot, alpha=alpha, seed=seed)


def _annualised_sharpe(returns: np.ndarray) -> float:
    std = returns.std(ddof=1)
    return float(returns.mean() / std * np.sqrt(PERIODS_PER_YEAR)) if std > 0 else 0.0


def sharpe_ci(daily_returns: ArrayLike, block: float | None = None, n_boot: int = 1000, alpha: float = 0.05,
              seed: int = 0) -> tuple[float, float]:
    """Block-bootstrap CI of the annualised Sharpe ratio, computed as in ``metrics.trading_performance``."""
    return block_bootstrap_ci(daily_returns, _annualised_sharpe, block=block, n_boot=n_boot, alpha=alpha, seed=seed)


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum per-period Sharpe of ``n_trials`` independent zero-skill trials.

    The false-strategy theorem of Bailey & López de Prado (2014); the Sharpe
    estimates of the trials are taken as N(0, sharpe_variance). One trial has no
    selection to correct for, so its benchmark is 0.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    quantiles = stats.norm.ppf([1 - 1 / n_trials, 1 - 1 / (n_trials * np.e)])
    return float(np.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * quantiles[0] + EULER_GAMMA * quantiles[1]))


def probabilistic_sharpe_ratio(sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """Probability that the true per-period Sharpe exceeds ``benchmark`` (Bailey & López de Prado 2012).

    ``kurtosis`` is the plain (non-excess) kurtosis, 3 for normal returns; negative
    skew and fat tails widen the Sharpe's standard error and lower the probability.
    """
    if n_obs < 2:
        raise ValueError(f"n_obs must be >= 2, got {n_obs}")
    spread = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if spread <= 0:  # impossible for real moments (kurtosis >= 1 + skew**2); a sign of excess kurtosis passed
        raise ValueError(f"skew={skew}, kurtosis={kurtosis} give a non-positive variance; is kurtosis non-excess?")
    return float(stats.norm.cdf((sharpe - benchmark) * np.sqrt(n_obs - 1) / np.sqrt(spread)))


def deflated_sharpe_ratio(sharpe: float, n_trials: int, n_obs: int, skew: float, kurtosis: float,
                          sharpe_variance: float | None = None) -> float:
    """Deflated Sharpe ratio: probability the true Sharpe beats the best of ``n_trials`` unskilled trials.

    All in per-period units: ``sharpe`` is the non-annualised Sharpe of the chosen
    strategy (annualised / sqrt(periods per year)), over ``n_obs`` returns with
    ``skew`` and non-excess ``kurtosis``; ``sharpe_variance`` is the variance of the
    per-period Sharpe across the trials. Without it, 1/(n_obs-1) is used: the
    variance of a zero-skill Sharpe estimate, i.e. trials that differ only by noise.
    With one trial this is the PSR against 0.
    """
    if sharpe_variance is None:
        sharpe_variance = 1 / (n_obs - 1) if n_obs > 1 else float("nan")
    if sharpe_variance < 0:
        raise ValueError(f"sharpe_variance must be >= 0, got {sharpe_variance}")
    benchmark = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(sharpe, benchmark, n_obs, skew, kurtosis)


def deflated_sharpe_from_returns(returns: ArrayLike, n_trials: int, trial_sharpes: ArrayLike | None = None) -> float:
    """Deflated Sharpe ratio of a return series (NaNs dropped), moments estimated from it.

    ``trial_sharpes`` are the per-period Sharpes of every trial (same return
    frequency; divide annualised ones by sqrt(PERIODS_PER_YEAR)), used for the
    variance across trials; without them the zero-skill default applies. Constant
    returns have no Sharpe and give NaN.
    """
    returns = np.asarray(returns, dtype=float)
    returns = returns[~np.isnan(returns)]
    if len(returns) < 3:
        raise ValueError(f"need at least 3 returns, got {len(returns)}")
    if np.ptp(returns) == 0:  # std would be rounding noise, not zero, and the Sharpe meaningless
        return float("nan")
    std = returns.std(ddof=1)
    variance = None
    if trial_sharpes is not None:
        trial_sharpes = np.asarray(trial_sharpes, dtype=float)
        if len(trial_sharpes) < 2:
            raise ValueError("trial_sharpes needs at least 2 trials to estimate a variance")
        variance = float(trial_sharpes.var(ddof=1))
    return deflated_sharpe_ratio(float(returns.mean() / std), n_trials, len(returns), float(stats.skew(returns)),
                                 float(stats.kurtosis(returns, fisher=False)), sharpe_variance=variance)


def verdict(sharpe_ci: tuple[float, float], dm_pvalue: float, mase: float, level: float = 0.05) -> str:
    """One line in plain words from a Sharpe CI, a DM p-value against the naive forecast, and MASE.

    The DM p-value is two-sided, so MASE gives the direction: significant with
    MASE < 1 "beats naive forecast", with MASE > 1 "worse than naive". The Sharpe
    interval gives the trading side: above zero is "evidence of edge", below zero
    "loses money", straddling zero no trading edge. Neither: "no evidence of edge".
    """
    low, high = sharpe_ci
    significant = bool(dm_pvalue < level)  # NaN compares False: no evidence
    shown = "p<0.001" if dm_pvalue < 0.001 else f"p={dm_pvalue:.2g}"
    forecast = None
    if significant and mase < 1:
        forecast = f"beats naive forecast ({shown})"
    elif significant and mase > 1:
        forecast = f"worse than naive ({shown})"
    trading = None
    if low > 0:
        trading = f"evidence of edge (Sharpe CI {low:.2f} to {high:.2f} above zero)"
    elif high < 0:
        trading = f"loses money (Sharpe CI {low:.2f} to {high:.2f} below zero)"
    if forecast is None and trading is None:
        return "no evidence of edge"
    if trading is None:
        return f"{forecast} but no trading edge"
    return trading if forecast is None else f"{forecast}; {trading}"
