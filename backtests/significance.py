"""Significance tests for forecast and trading results: is an edge real or luck?

Point metrics from :mod:`llmsignal.backtests.metrics` say how a method did on one backtest;
these functions say whether that is distinguishable from chance, and ``verdict`` turns the
answers, corrected for how many rows were tried, into words::

    stat, p = diebold_mariano(model_errors, naive_errors)          # stat < 0: the model is more accurate
    low, high = sharpe_ci(period_returns(equity))                    # annualised, stationary bootstrap, BCa
    dsr = deflated_sharpe_from_returns(period_returns(equity), n_trials=configurations_that_could_trade)

The bootstrap, its block length and the model confidence set come from ``arch.bootstrap``; the
distributions from ``scipy.stats``. Sharpe ratios are annualised (``Calendar.periods_per_year``)
in ``sharpe_ci``; the deflated Sharpe functions work in per-period units, as Bailey and
López de Prado write them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import pandas as pd
from arch.bootstrap import MCS, StationaryBootstrap, optimal_block_length
from scipy import integrate, stats

from llmsignal.backtests.metrics import FX, Calendar, annualised_sharpe

EULER_GAMMA = float(np.euler_gamma)

ArrayLike = np.ndarray | pd.Series | list


def _losses(errors: ArrayLike, loss: str) -> np.ndarray:
    errors = np.asarray(errors, dtype=float)
    if loss == "squared":
        return errors**2
    if loss == "absolute":
        return np.abs(errors)
    raise ValueError(f"loss must be 'squared' or 'absolute', not {loss!r}")


ANDREWS_BARTLETT = 1.1447  # Andrews (1991): the MSE-optimal Bartlett bandwidth is 1.1447 (alpha(1) n)^(1/3)
BANDWIDTH_FACTOR = 2.0  # a test wants less bias than an estimate: twice that (benchmarks/dm_size.py measures why)
RHO_CAP = 0.97  # the AR(1) coefficient of the plug-in, kept off the unit root


def dm_bandwidth(differential: ArrayLike, horizon: int = 1, factor: float = BANDWIDTH_FACTOR) -> float:
    """Bartlett bandwidth M of the Diebold-Mariano variance: lags j < M count, with weight 1 - j/M.

    ``factor`` times the Andrews (1991) AR(1) plug-in (2 by default: the MSE-optimal bandwidth estimates the
    variance well but leaves a test 1-3 points over its level), at least ``horizon`` (an h-step error is
    MA(h-1)) and at most the number of bars. At 600 bars, independent differentials get M of about 3 (M <= 1
    is the plain variance), AR(1) ones with coefficient 0.5 about 23, and 0.8 about 50.
    """
    d = np.asarray(differential, dtype=float)
    centred = d - d.mean()
    scale = centred[:-1] @ centred[:-1]
    rho = float(np.clip(centred[1:] @ centred[:-1] / scale, -RHO_CAP, RHO_CAP)) if scale > 0 else 0.0
    alpha = 4 * rho**2 / ((1 - rho) ** 2 * (1 + rho) ** 2)
    plug_in = ANDREWS_BARTLETT * (alpha * len(d)) ** (1 / 3)
    return float(min(max(factor * plug_in, horizon, 1.0), len(d)))


def _bartlett_weights(bandwidth: float) -> np.ndarray:
    """Weights 1 - j/M of lags j = 0, 1, ... below M (lag 0 alone for M <= 1)."""
    return 1 - np.arange(max(1, int(np.ceil(bandwidth)))) / max(bandwidth, 1.0)


def _fixed_b_reference(weights: np.ndarray, n: int) -> tuple[float, float]:
    """Mean and Satterthwaite degrees of freedom of the Bartlett variance over the true one, at fixed b = M/n.

    Exact for independent Gaussian differentials: the estimate is the quadratic form e'CWCe/n (C centres,
    W holds the weights by lag), so its mean is tr(CWC)/n and its variance 2 tr((CWC)^2)/n^2. Matching a
    scaled chi-square gives the statistic's reference, a Student t. At M = 1 this is the paired t-test
    (mean (n-1)/n, n-1 degrees of freedom); for larger M it is the fixed-b distribution of Kiefer and
    Vogelsang (2005), whose 5% critical values it reproduces within 1% for b <= 0.1 and exceeds (a
    conservative test) beyond.
    """
    lags = len(weights)
    counts = n - np.arange(lags)
    trace = n * weights[0]
    total = trace + 2 * (counts[1:] * weights[1:]).sum()  # 1'W1
    squares = n * weights[0] ** 2 + 2 * (counts[1:] * weights[1:] ** 2).sum()  # tr(W^2)
    row_sums = np.convolve(np.ones(n), np.r_[weights[::-1], weights[1:]])[lags - 1: lags - 1 + n]  # W1
    mean = (trace - total / n) / n
    variance = 2 * (squares - 2 * (row_sums @ row_sums) / n + total**2 / n**2) / n**2
    return float(mean), float(2 * mean**2 / variance)


def diebold_mariano(errors_a: ArrayLike, errors_b: ArrayLike, horizon: int = 1,
                    loss: str = "squared") -> tuple[float, float]:
    """Diebold-Mariano statistic and two-sided p-value for equal accuracy of forecasts A and B.

    ``errors_*`` are forecast errors (forecast - actual) on the same bars; pairs with a
    NaN on either side are dropped. ``loss`` is "squared" or "absolute". The loss
    differential L(A) - L(B) is tested against zero, so a negative statistic means
    A is more accurate; the variance allows for serial dependence of the differential,
    as ``loss_differential_test`` says.

    Identical losses give (0.0, 1.0); a constant non-zero differential gives
    (-inf or inf, 0.0); fewer than two usable pairs give (nan, nan).
    """
    return loss_differential_test(_losses(errors_a, loss), _losses(errors_b, loss), horizon)


def loss_differential_test(losses_a: ArrayLike, losses_b: ArrayLike, horizon: int = 1) -> tuple[float, float]:
    """Diebold-Mariano on per-bar losses already computed (minus the log score, the CRPS): A - B tested.

    As ``diebold_mariano``: a negative statistic means A's losses are smaller. Per-bar losses cluster
    with volatility, so the mean differential's variance is a Newey-West (Bartlett) long-run variance
    with the data-driven bandwidth of ``dm_bandwidth``, and the statistic is referred to its fixed-b
    distribution (``_fixed_b_reference``: a Student t). With AR(1) differentials of no true difference
    over 600 bars it rejects at 5% in about 5-7% of samples at coefficients 0.5 to 0.9 (the paired
    t-test: 25% and 54% at 0.5 and 0.8), and finds a shift of 0.3 marginal standard deviations at 0.5
    in 99% (``benchmarks/dm_size.py``). Where no lag gets weight it is the paired t-test.

    >>> stat, p = loss_differential_test([1.0, 2.0, 1.5, 1.2], [2.0, 2.5, 2.4, 2.0])
    >>> stat < 0 and p < 0.01
    True
    """
    loss_a, loss_b = np.asarray(losses_a, dtype=float), np.asarray(losses_b, dtype=float)
    if loss_a.shape != loss_b.shape or loss_a.ndim != 1:
        raise ValueError(f"losses must be 1-D and the same length, got {loss_a.shape} and {loss_b.shape}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    d = loss_a - loss_b
    d = d[~np.isnan(d)]
    n = len(d)
    if n < 2:
        return float("nan"), float("nan")
    if not d.any():
        return 0.0, 1.0
    if horizon >= n:
        raise ValueError(f"horizon {horizon} is too long for {n} observations")
    return _hac_test(d, dm_bandwidth(d, horizon))


def _hac_test(d: np.ndarray, bandwidth: float) -> tuple[float, float]:
    """The statistic and p-value of ``loss_differential_test`` at a given Bartlett bandwidth."""
    n, mean = len(d), d.mean()
    centred = d - mean
    weights = _bartlett_weights(min(bandwidth, n))
    gammas = np.array([centred[k:] @ centred[: n - k] / n for k in range(len(weights))])
    variance = float(gammas[0] + 2 * (weights[1:] * gammas[1:]).sum())
    if variance <= 0:  # a constant differential: every bar says the same thing
        return float(np.copysign(np.inf, mean)), 0.0
    scale, dof = _fixed_b_reference(weights, n)
    statistic = float(mean / np.sqrt(variance / n) * np.sqrt(scale))
    return statistic, float(2 * stats.t.sf(abs(statistic), df=dof))


def pooled_loss_differential_test(differentials: dict[str, pd.Series], horizon: int = 1) -> tuple[float, float]:
    """Diebold-Mariano across instruments: is the mean loss differential over every instrument's bars zero?

    ``differentials`` maps an instrument to its per-bar loss differential L(A) - L(B), indexed by time (NaN bars
    are dropped); instruments may cover different spans. The mean is over all bars, each counted once. Its
    variance is Driscoll and Kraay's (1998): each instrument's deviations from that mean are summed per
    timestamp, and the sums get the Newey-West variance, bandwidth and fixed-b reference of
    ``loss_differential_test``, so bars that move together across instruments on the same timestamp (a USD
    shock in every dollar pair) count as the one piece of evidence they are, as do neighbouring bars.
    With two instruments of no true difference whose AR(1) differentials (coefficient 0.5, 600 bars) correlate 0.7
    across instruments, it rejects at 5% in about 7% of samples; stacking the instruments into one series for
    ``loss_differential_test`` rejects in 15%, and a paired t-test on the stack in 38%
    (``benchmarks/pooled_dm_size.py``). With one instrument it is ``loss_differential_test`` exactly.

    >>> times = pd.date_range("2024-01-01", periods=4, freq="h")
    >>> stat, p = pooled_loss_differential_test({"EURUSD": pd.Series([-1.0, -0.5, -0.9, -0.8], times),
    ...                                          "USDJPY": pd.Series([-0.7, -1.1, -0.6, -1.0], times)})
    >>> stat < 0 and p < 0.01
    True
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if not differentials:
        raise ValueError("no instruments to pool")
    panel = pd.DataFrame({name: pd.Series(series, dtype=float) for name, series in differentials.items()})
    values = panel.sort_index().to_numpy()
    present = ~np.isnan(values)
    values, present = values[present.any(axis=1)], present[present.any(axis=1)]
    bars, periods = int(present.sum()), len(values)
    if periods < 2:
        return float("nan"), float("nan")
    pooled = values[present]  # row by row: one instrument's bars in their own order
    if not pooled.any():
        return 0.0, 1.0
    if horizon >= periods:
        raise ValueError(f"horizon {horizon} is too long for {periods} timestamps")
    mean = pooled.sum() / bars
    deviations = np.where(present, values - mean, 0.0).sum(axis=1)  # per timestamp, over its instruments
    average = np.where(present, values, 0.0).sum(axis=1) / present.sum(axis=1)  # the bandwidth's series
    weights = _bartlett_weights(min(dm_bandwidth(average, horizon), periods))
    gammas = np.array([deviations[k:] @ deviations[: periods - k] / periods for k in range(len(weights))])
    variance = float(gammas[0] + 2 * (weights[1:] * gammas[1:]).sum())
    if variance <= 0:
        return float(np.copysign(np.inf, mean)), 0.0
    scale, dof = _fixed_b_reference(weights, periods)
    statistic = float(mean / np.sqrt(variance / periods * (periods / bars) ** 2) * np.sqrt(scale))
    return statistic, float(2 * stats.t.sf(abs(statistic), df=dof))


def block_length(values: np.ndarray) -> float:
    """Politis-White (2004) optimal mean block length of the stationary bootstrap, at least 1."""
    if len(values) < 4 or np.ptp(values) == 0:
        return 1.0
    with np.errstate(divide="ignore", invalid="ignore"):  # a mostly flat series has zero-variance stretches
        found = float(optimal_block_length(values)["stationary"].iloc[0])
    return max(1.0, found) if np.isfinite(found) else 1.0


def bootstrap_ci(values: ArrayLike, statistic: Callable[[np.ndarray], float], reps: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """BCa confidence interval of ``statistic`` over a serially dependent series, by stationary bootstrap.

    Blocks have the Politis-White optimal mean length, so short-range dependence is kept; the BCa
    interval corrects the percentile interval's bias and skew (which at 51 days of AR(1) returns
    covers about 84% instead of 95%). NaNs are dropped first; a statistic the resamples cannot move
    (a series that never changes) gives NaNs.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {values.shape}")
    values = values[~np.isnan(values)]
    if len(values) < 2:
        raise ValueError(f"need at least 2 values, got {len(values)}")
    if not 0 < alpha < 1 or reps < 1:
        raise ValueError(f"need 0 < alpha < 1 and reps >= 1, got alpha={alpha}, reps={reps}")
    bootstrap = StationaryBootstrap(block_length(values), values, seed=seed)
    try:
        low, high = bootstrap.conf_int(lambda x: np.array([statistic(x)]), reps=reps, method="bca", size=1 - alpha)
    except (RuntimeError, ValueError, FloatingPointError):  # a degenerate statistic: BCa has nothing to correct
        return float("nan"), float("nan")
    return float(low[0]), float(high[0])


def directional_accuracy_ci(called: ArrayLike, moved: ArrayLike, reps: int = 1000, alpha: float = 0.05,
                            seed: int = 0) -> tuple[float, float]:
    """Bootstrap CI of the hit rate, counted as in ``metrics.direction`` (bars with no call or no move left out)."""
    called, moved = np.sign(np.asarray(called, dtype=float)), np.sign(np.asarray(moved, dtype=float))
    counted = (called != 0) & (moved != 0) & ~np.isnan(called) & ~np.isnan(moved)
    hits = (called[counted] == moved[counted]).astype(float)
    return bootstrap_ci(hits, np.mean, reps=reps, alpha=alpha, seed=seed)


def sharpe_ci(returns: ArrayLike, calendar: Calendar = FX, reps: int = 1000, alpha: float = 0.05,
              seed: int = 0) -> tuple[float, float]:
    """Bootstrap CI of the annualised Sharpe ratio of period returns, computed as ``metrics`` computes it."""
    return bootstrap_ci(returns, lambda r: annualised_sharpe(r, calendar), reps=reps, alpha=alpha, seed=seed)


def relative_mse_ci(errors: ArrayLike, reference_errors: ArrayLike, reps: int = 1000, alpha: float = 0.05,
                    seed: int = 0) -> tuple[float, float]:
    """Bootstrap CI of MSE / reference MSE - 1 (-0.01: one percent smaller squared errors).

    Both MSEs are recomputed on every resample, from the same bars (the pairs stay together), so the
    reference's own sampling noise is in the interval and what both forecasts share cancels. Bars are
    resampled in stationary blocks of the Politis-White length of the squared-error differential, as in
    ``bootstrap_ci``, and the interval is BCa. Pairs with a NaN are dropped; a reference with no error
    gives NaNs.
    """
    errors, reference = np.asarray(errors, dtype=float), np.asarray(reference_errors, dtype=float)
    keep = ~(np.isnan(errors) | np.isnan(reference))
    squared, reference_squared = errors[keep] ** 2, reference[keep] ** 2
    if len(squared) < 2:
        raise ValueError(f"need at least 2 pairs, got {len(squared)}")
    if not 0 < alpha < 1 or reps < 1:
        raise ValueError(f"need 0 < alpha < 1 and reps >= 1, got alpha={alpha}, reps={reps}")
    if reference_squared.mean() == 0:
        return float("nan"), float("nan")
    bootstrap = StationaryBootstrap(block_length(squared - reference_squared), squared, reference_squared, seed=seed)
    ratio = lambda own, ref: np.array([own.mean() / ref.mean() - 1])  # noqa: E731
    try:
        with np.errstate(divide="ignore", invalid="ignore"):  # a resample of bars where the reference was exact
            low, high = bootstrap.conf_int(ratio, reps=reps, method="bca", size=1 - alpha)
    except (RuntimeError, ValueError, FloatingPointError):
        return float("nan"), float("nan")
    return float(low[0]), float(high[0])


def sharpe_pvalue(returns: ArrayLike) -> float:
    """One-sided p-value of a true Sharpe ratio at or below zero: 1 - PSR(0), skew and fat tails included."""
    returns = np.asarray(returns, dtype=float)
    returns = returns[~np.isnan(returns)]
    if len(returns) < 3 or np.ptp(returns) == 0:
        return float("nan")
    sharpe = float(returns.mean() / returns.std(ddof=1))
    return 1 - probabilistic_sharpe_ratio(sharpe, 0.0, len(returns), float(stats.skew(returns)),
                                          float(stats.kurtosis(returns, fisher=False)))


def sharpe_loss_pvalue(returns: ArrayLike) -> float:
    """One-sided p-value of a true Sharpe ratio at or above zero, the mirror of ``sharpe_pvalue``.

    Small when the returns lose money beyond what luck explains; behind "loses money", Holm-adjusted across
    the rows. The Sharpe ratio's standard error is taken at the null itself, SR = 0, where PSR's skew and
    kurtosis terms vanish and it is 1/sqrt(n): the statistic is SR sqrt(n), the t-statistic of the mean
    return, referred to Student t(n-1). PSR's own form, with the terms at the sample's SR, is too lenient
    here: a large loss in a short sample comes with a sample skew that shrinks its standard error. For 8
    zero-skill rows of 54 daily returns, "any row significant after Holm" happened in 4.8% (Gaussian), 4.4%
    (t6) and 4.3% (t4) of 20,000 families with this test, and in 4.9%, 7.1% and 8.9% with 1 - PSR's mirror.
    NaN without three varying returns.

    >>> losing = np.tile([-0.02, 0.01], 100)
    >>> sharpe_loss_pvalue(losing) < 0.001 < sharpe_pvalue(losing)
    True
    """
    returns = np.asarray(returns, dtype=float)
    returns = returns[~np.isnan(returns)]
    if len(returns) < 3 or np.ptp(returns) == 0:
        return float("nan")
    n = len(returns)
    return float(stats.t.cdf(returns.mean() / returns.std(ddof=1) * np.sqrt(n), df=n - 1))


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm's step-down adjustment: reject where the adjusted p-value is below the level, family-wise.

    NaNs (rows not tested) stay NaN and do not count as tests.

    >>> holm([0.01, 0.04, 0.03, float("nan")]).round(2).tolist()
    [0.03, 0.06, 0.06, nan]
    """
    p = np.asarray(pvalues, dtype=float)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    adjusted = np.full(len(p), np.nan)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def confidence_set(losses: pd.DataFrame, size: float = 0.1, reps: int = 1000, seed: int = 0) -> set[str]:
    """Hansen-Lunde-Nason model confidence set: the columns not shown worse than the best, at level ``size``.

    ``losses`` has one column of per-bar losses per forecaster; ``arch.bootstrap.MCS`` does the work.
    """
    losses = losses.dropna()
    distinct = losses.T.drop_duplicates().T  # forecasters with identical losses are one model to the test
    if distinct.shape[1] < 2:
        return set(losses.columns)
    block = block_length((distinct - distinct.mean(axis=1).to_numpy()[:, None]).iloc[:, 0].to_numpy())
    mcs = MCS(distinct, size=size, reps=reps, block_size=max(1, round(block)), method="R", seed=seed)
    mcs.compute()
    kept = [distinct[name] for name in mcs.included]
    return {name for name in losses.columns if any(losses[name].equals(series) for series in kept)}


@lru_cache(maxsize=256)
def expected_max_normal(n_trials: int) -> float:
    """Expected maximum of ``n_trials`` independent standard normals, by numerical integration.

    >>> round(expected_max_normal(2), 6), round(float(1 / np.sqrt(np.pi)), 6)  # two normals: 1 / sqrt(pi)
    (0.56419, 0.56419)
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    density = lambda x: x * n_trials * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n_trials - 1)  # noqa: E731
    return float(integrate.quad(density, -np.inf, np.inf)[0])


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum per-period Sharpe of ``n_trials`` independent zero-skill trials.

    The false-strategy theorem of Bailey & López de Prado (2014), with the expected maximum of
    normals computed exactly rather than by its Euler-Mascheroni approximation (10% off at N=2).
    The trials' Sharpe estimates are taken as N(0, sharpe_variance); one trial has no selection
    to correct for, so its benchmark is 0.
    """
    return float(np.sqrt(sharpe_variance) * expected_max_normal(n_trials))


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
    frequency; divide annualised ones by sqrt(Calendar.periods_per_year)), used for the
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


TRADING_VERDICTS = ("evidence of edge", "loses money", "no evidence of edge")  # how a verdict's trading part starts


def verdict(dm_stat: float, dm_holm: float, sharpe_holm: float, sharpe_low: float, sharpe_high: float, dsr: float,
            in_confidence_set: bool | None = None, level: float = 0.05, dsr_level: float = 0.95,
            sharpe_loss_holm: float = float("nan")) -> str:
    """One line in plain words, each word backed by a test corrected for the rows of the run.

    Forecasts: "beats naive" or "worse than naive" when the Holm-adjusted Diebold-Mariano p-value on
    squared errors is below ``level``; the direction is the sign of the DM statistic itself. Trading:
    "evidence of edge" only when the Holm-adjusted one-sided Sharpe p-value is below ``level``, the
    bootstrap interval lies above zero and the deflated Sharpe ratio reaches ``dsr_level``; "loses
    money", its mirror, only when the Holm-adjusted one-sided p-value of a negative Sharpe
    (``sharpe_loss_pvalue``, adjusted across the same rows) is below ``level`` and the interval lies below
    zero; without ``sharpe_loss_holm`` it is never said. Neither: "no evidence of edge". A forecaster in
    the model confidence set (not shown worse than the most accurate) says so.

    >>> verdict(dm_stat=13.1, dm_holm=1e-30, sharpe_holm=0.5, sharpe_low=-1, sharpe_high=1, dsr=0.3)
    'worse than naive (Holm p<0.001)'
    """
    shown = lambda p: "p<0.001" if p < 0.001 else f"p={p:.2g}"  # noqa: E731
    forecast = trading = None
    if dm_holm < level:  # NaN compares False: not shown
        forecast = f"{'beats naive' if dm_stat < 0 else 'worse than naive'} (Holm {shown(dm_holm)})"
    if sharpe_holm < level and sharpe_low > 0 and dsr >= dsr_level:
        trading = f"{TRADING_VERDICTS[0]} (Holm {shown(sharpe_holm)}, DSR {dsr:.2f})"
    elif sharpe_loss_holm < level and sharpe_high < 0:
        trading = (f"{TRADING_VERDICTS[1]} (Holm {shown(sharpe_loss_holm)}, Sharpe CI {sharpe_low:.2f} to "
                   f"{sharpe_high:.2f})")
    parts = [part for part in (forecast, trading) if part] or [TRADING_VERDICTS[2]]
    if in_confidence_set:
        parts.append("in the confidence set of the most accurate")
    return "; ".join(parts)


def distribution_verdict(log_score_stat: float, log_score_holm: float, crps_stat: float, crps_holm: float,
                         reference: str = "garch", level: float = 0.05) -> str:
    """Whether a forecaster's distribution beats the reference's, in words, on the log score and on the CRPS.

    Each part rests on a Diebold-Mariano test of the per-bar losses (minus the log score; the CRPS) against
    ``reference``, Holm-adjusted across the forecasters tested; the direction is the statistic's sign.

    >>> distribution_verdict(-3.2, 0.004, 0.5, 0.6)
    "log score beats garch's (Holm p=0.004); CRPS not told apart from garch's (Holm p=0.6)"
    """
    def part(name: str, stat: float, p: float) -> str:
        shown = "p<0.001" if p < 0.001 else f"p={p:.2g}"
        if not p < level:
            return f"{name} not told apart from {reference}'s (Holm {shown})"
        return f"{name} {'beats' if stat < 0 else 'worse than'} {reference}'s (Holm {shown})"

    if np.isnan(log_score_holm) and np.isnan(crps_holm):
        return ""
    return "; ".join(part(name, stat, p) for name, stat, p in (("log score", log_score_stat, log_score_holm),
                                                                ("CRPS", crps_stat, crps_holm)) if not np.isnan(p))
